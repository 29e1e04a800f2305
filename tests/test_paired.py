"""Paired batches: an image and its untouched original in the same batch, transformed identically, the
original with an empty mask; clear errors for a missing folder, stray or mis-sized originals."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from conftest import write_pair
from inpaintseg.data.paired import ORIGINAL_SUFFIX, PairedInpaintDataset, collate_pairs, find_originals
from inpaintseg.data.transforms import train_transform
from inpaintseg.errors import ConfigError, DataError


def write_rgb(path: Path, image: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))


def make_paired_dataset(root: Path, n: int = 6, size: int = 32, with_originals: int | None = None) -> Path:
    """n images: noise originals whose rectangle is filled with its mean colour; image i < with_originals
    (default all) gets its original in train/originals/."""
    rng = np.random.default_rng(0)
    for i in range(n):
        original = rng.integers(0, 256, (size, size, 3), np.uint8)
        mask = np.zeros((size, size), np.uint8)
        mask[4 + i:16 + i, 6:20] = 1
        image = original.copy()
        image[mask == 1] = original[mask == 1].mean(axis=0).astype(np.uint8)
        write_pair(root / "train" / "images", root / "train" / "masks", f"im_{i}", image, mask)
        if i < (n if with_originals is None else with_originals):
            write_rgb(root / "train" / "originals" / f"im_{i}.png", original)
    return root


def paired_set(root: Path, size: int = 32) -> PairedInpaintDataset:
    stems = [f"im_{i}" for i in range(len(list((root / "train" / "images").iterdir())))]
    originals = find_originals(root / "train" / "originals", stems)
    transform = train_transform(size, "crop", seed=0, additional_targets={"original": "image"})
    return PairedInpaintDataset(root / "train" / "images", root / "train" / "masks", originals, transform)


def test_pair_differs_exactly_on_the_mask_and_the_original_mask_is_empty(tmp_path):
    # crop mode at the image size: flips/rotations only, drawn once for both; so image and original
    # differ exactly where the (equally transformed) mask is 1.
    dataset = paired_set(make_paired_dataset(tmp_path))
    for index in range(len(dataset)):
        item = dataset[index]
        assert item["image"].shape == (2, 3, 32, 32) and item["mask"].shape == (2, 1, 32, 32)
        assert item["stem"] == [f"im_{index}", f"im_{index}{ORIGINAL_SUFFIX}"]
        differs = (item["image"][0] != item["image"][1]).any(dim=0)
        assert torch.equal(differs, item["mask"][0, 0] == 1)
        assert item["mask"][1].sum() == 0 and item["mask"][0].sum() > 0


def test_images_without_an_original_stay_single_and_batches_concatenate(tmp_path):
    dataset = paired_set(make_paired_dataset(tmp_path, n=4, with_originals=2))
    assert dataset.n_pairs == 2
    batch = collate_pairs([dataset[i] for i in range(4)])
    assert batch["image"].shape == (6, 3, 32, 32) and batch["mask"].shape == (6, 1, 32, 32)
    assert batch["stem"] == ["im_0", "im_0#original", "im_1", "im_1#original", "im_2", "im_3"]


def test_datamodule_puts_pairs_in_one_batch(tmp_path):
    from inpaintseg.data import InpaintDataModule

    root = make_paired_dataset(tmp_path, n=10)
    dm = InpaintDataModule(root, img_size=32, input_mode="crop", batch_size=4, val_fraction=0.2,
                           paired_batches=True)
    dm.setup()
    assert dm.train_items_per_batch == 2 and dm.summary["n_train_pairs"] == len(dm.train_set) == 8
    batches = list(dm.train_dataloader())
    assert len(batches) == 4
    for batch in batches:
        assert batch["image"].shape == (4, 3, 32, 32)
        assert batch["stem"][1] == batch["stem"][0] + ORIGINAL_SUFFIX
        assert batch["mask"][1].sum() == 0 and batch["mask"][3].sum() == 0
    val = next(iter(dm.val_dataloader()))
    assert val["image"].shape[0] == 2 and not any(ORIGINAL_SUFFIX in s for s in val["stem"])  # val unchanged


def test_paired_batches_without_originals_folder_is_a_config_error(tmp_path, make_dataset):
    from inpaintseg.data import InpaintDataModule

    dm = InpaintDataModule(make_dataset(n_train=6), img_size=32, batch_size=2, paired_batches=True)
    with pytest.raises(ConfigError, match="train/originals/ .*--with-originals.*drop --paired-batches"):
        dm.setup()


def test_stray_and_mis_sized_originals_are_named(tmp_path):
    root = make_paired_dataset(tmp_path, n=3)
    write_rgb(root / "train" / "originals" / "stray.png", np.zeros((32, 32, 3), np.uint8))
    with pytest.raises(DataError, match="1 originals .* have no image of the same stem.*stray.png"):
        find_originals(root / "train" / "originals", ["im_0", "im_1", "im_2"])
    (root / "train" / "originals" / "stray.png").unlink()
    write_rgb(root / "train" / "originals" / "im_1.png", np.zeros((30, 32, 3), np.uint8))
    dataset = paired_set(root)
    with pytest.raises(DataError, match=r"im_1.png: original size 32x30 \(WxH\) differs from its image"):
        dataset[1]
