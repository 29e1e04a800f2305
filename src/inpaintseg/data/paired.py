"""Paired batches: each training image next to its untouched original in the same batch.

When a dataset has ``DATA/train/originals/`` (the same stems as ``train/images``; the data engine writes it
with ``demo-data --with-originals``), `PairedInpaintDataset` returns, for every training image that has an
original, both of them: the image with its mask and the original with an all-zero mask, through ONE call of
the training transform (the original is an albumentations additional target), so both get the same crop,
flips, rotation, warp and degradations. The only difference the network sees inside a pair is the
manipulation itself, and every batch holds untouched pixels of the very scenes it must segment.
`collate_pairs` concatenates the items of a batch, so a batch of n items holds up to 2n images; the
DataModule therefore asks for ``batch_size // 2`` items per batch. Images without an original are single.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from inpaintseg.data.dataset import InpaintDataset, load_sample
from inpaintseg.data.pairing import ORIGINALS_FOLDER, problems_message, scan_pairs
from inpaintseg.errors import ConfigError, DataError, name_list
from inpaintseg.fileio import read_image

ORIGINAL_TARGET = "original"    # the albumentations additional target
ORIGINAL_SUFFIX = "#original"   # appended to an original's stem in a batch's "stem" list


def find_originals(originals_dir: str | Path, image_stems: Sequence[str]) -> dict[str, Path]:
    """stem -> original file for the folder `originals_dir`; DataError for listing problems (duplicate
    stems, non-image files ...) and for originals whose stem has no image; ConfigError when the folder
    is missing (paired batches need it)."""
    originals_dir = Path(originals_dir)
    if not originals_dir.is_dir():
        raise ConfigError(
            f"paired_batches: {originals_dir} is not a folder. Paired batches need the untouched originals in "
            f"train/{ORIGINALS_FOLDER}/ (same file stems as train/images; `inpaintseg demo-data --with-originals` "
            "writes them), or drop --paired-batches.")
    scan = scan_pairs(originals_dir)
    problems = [p for p in scan.problems if p.kind != "empty_folder"]
    if problems:
        raise DataError(problems_message(problems))
    originals = {s.stem: s.image_path for s in scan.samples}
    orphans = sorted(set(originals) - set(image_stems))
    if orphans:
        raise DataError(
            f"{len(orphans)} originals in {originals_dir} have no image of the same stem in train/images: "
            f"{name_list(originals[s].name for s in orphans)}. Fix: remove them or add their images.")
    if not originals:
        raise DataError(f"{originals_dir} holds no originals; paired batches have nothing to pair. Fix: add the "
                        "originals or drop --paired-batches.")
    return originals


class PairedInpaintDataset(InpaintDataset):
    """`InpaintDataset` whose items hold the image and, when it has one, its original.

    Item: ``{"image": float32 (k, 3, S, S), "mask": float32 (k, 1, S, S), "stem": [stem(, stem#original)],
    "size": [(H0, W0)] * k}`` with k = 2 when the stem is in `originals`, else 1. `transform` must be a
    training transform built with ``additional_targets={"original": "image"}``.
    """

    def __init__(self, images_dir, masks_dir, originals: Mapping[str, Path], transform,
                 stems: Sequence[str] | None = None):
        super().__init__(images_dir, masks_dir, transform, stems)
        self.originals = {s: Path(p) for s, p in originals.items() if s in set(self.stems)}

    @property
    def n_pairs(self) -> int:
        return len(self.originals)

    def __getitem__(self, index: int) -> dict:
        import torch

        sample = self.samples[index]
        original_path = self.originals.get(sample.stem)
        if original_path is None:
            item = super().__getitem__(index)
            return {"image": item["image"][None], "mask": item["mask"][None], "stem": [item["stem"]],
                    "size": [item["size"]]}
        image, mask = load_sample(sample)
        original = read_image(original_path)
        if original.shape != image.shape:
            raise DataError(
                f"{original_path}: original size {original.shape[1]}x{original.shape[0]} (WxH) differs from its "
                f"image {sample.image_path.name} ({image.shape[1]}x{image.shape[0]}). An original must be the "
                "untouched version of its image at the same size; re-export it.")
        if mask is None:
            mask = np.zeros(image.shape[:2], np.uint8)
        out = self.transform(image=image, mask=mask, **{ORIGINAL_TARGET: original})
        images = np.stack([out["image"], out[ORIGINAL_TARGET]]).transpose(0, 3, 1, 2)    # (2, 3, S, S)
        masks = np.stack([out["mask"], np.zeros_like(out["mask"])])[:, None]             # (2, 1, S, S)
        size = (int(image.shape[0]), int(image.shape[1]))
        return {"image": torch.from_numpy(np.ascontiguousarray(images, dtype=np.float32)),
                "mask": torch.from_numpy(np.ascontiguousarray(masks, dtype=np.float32)),
                "stem": [sample.stem, sample.stem + ORIGINAL_SUFFIX], "size": [size, size]}


def collate_pairs(items: Sequence[dict]) -> dict:
    """DataLoader `collate_fn` for `PairedInpaintDataset`: concatenate the items' images and masks.

    Shape: items with (k_i, C, S, S) tensors -> {"image": (sum k_i, 3, S, S), "mask": (sum k_i, 1, S, S),
    "stem": list, "size": list}.
    """
    import torch

    return {"image": torch.cat([item["image"] for item in items]), "mask": torch.cat([item["mask"] for item in items]),
            "stem": [s for item in items for s in item["stem"]], "size": [z for item in items for z in item["size"]]}
