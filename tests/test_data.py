"""Dataset layer: pairing, bad inputs, the Dataset item, the split, the DataModule, check-data."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import write_pair
from inpaintseg.cli import main
from inpaintseg.data import (InpaintDataModule, InpaintDataset, Sample, pair_files, scan_pairs,
                             split_stems)
from inpaintseg.errors import ConfigError, DataError
from inpaintseg.data.transforms import eval_transform, normalize



def _grey(value: int, h: int = 8, w: int = 10) -> np.ndarray:
    return np.full((h, w, 3), value, np.uint8)


def _square_mask(h: int = 8, w: int = 10) -> np.ndarray:
    mask = np.zeros((h, w), np.uint8)
    mask[2:6, 3:7] = 1  # 16 pixels of 80 -> coverage 0.2
    return mask


@pytest.fixture
def split_dir(tmp_path):
    """images/{a,b,c} + masks/{a,b,c}: a.jpg image with a.png mask; b has an empty mask."""
    images, masks = tmp_path / "images", tmp_path / "masks"
    write_pair(images, masks, "c", _grey(30), _square_mask())
    write_pair(images, masks, "a", _grey(10), _square_mask(), ext=".jpg")
    write_pair(images, masks, "b", _grey(20), np.zeros((8, 10), np.uint8))
    return tmp_path


# ---- pairing ----------------------------------------------------------------------------------------

def test_pairs_by_stem_sorted_across_extensions(split_dir):
    (split_dir / "images" / ".DS_Store").write_bytes(b"\0junk")  # hidden: ignored
    (split_dir / "masks" / "Thumbs.db").write_bytes(b"junk")  # OS junk: ignored
    samples = pair_files(split_dir / "images", split_dir / "masks")
    assert [s.stem for s in samples] == ["a", "b", "c"]
    assert samples[0] == Sample("a", split_dir / "images" / "a.jpg", split_dir / "masks" / "a.png")


def test_images_only(split_dir):
    samples = pair_files(split_dir / "images")
    assert [s.mask_path for s in samples] == [None, None, None]


def _error(images, masks=None) -> str:
    with pytest.raises(DataError) as info:
        pair_files(images, masks)
    return str(info.value)


def test_image_without_mask(split_dir):
    (split_dir / "masks" / "b.png").unlink()
    message = _error(split_dir / "images", split_dir / "masks")
    assert "images without a mask (1)" in message and "b.png" in message and "Fix:" in message


def test_mask_without_image(split_dir):
    (split_dir / "images" / "c.png").unlink()
    message = _error(split_dir / "images", split_dir / "masks")
    assert "masks without an image (1)" in message and "c.png" in message


def test_duplicate_stems(split_dir):
    cv2.imwrite(str(split_dir / "images" / "a.png"), _grey(10))  # a.jpg already there
    message = _error(split_dir / "images", split_dir / "masks")
    assert "duplicate stems" in message and "a (a.jpg, a.png)" in message


def test_zero_byte_file(split_dir):
    (split_dir / "masks" / "c.png").write_bytes(b"")
    message = _error(split_dir / "images", split_dir / "masks")
    assert "empty (0-byte) files (1)" in message and "c.png" in message


def test_non_image_file_and_subfolder(split_dir):
    (split_dir / "images" / "notes.txt").write_text("hello")
    (split_dir / "images" / "extra").mkdir()
    message = _error(split_dir / "images", split_dir / "masks")
    assert "not image files (2)" in message and "notes.txt" in message and "extra" in message


def test_empty_and_missing_folders(tmp_path):
    (tmp_path / "images").mkdir()
    (tmp_path / "images" / ".hidden").write_text("x")  # only hidden files: still empty
    assert "empty images folder" in _error(tmp_path / "images")
    message = _error(tmp_path / "nothere")
    assert "missing images folder" in message and "nothere" in message


def test_many_problems_in_one_error_with_first_20_and_a_count(tmp_path):
    # 25 images and no masks for 23 of them; plus a stray mask: both problems in one message.
    for i in range(25):
        write_pair(tmp_path / "images", tmp_path / "masks" if i < 2 else None, f"im{i:02d}",
                   _grey(i), _square_mask())
    write_pair(tmp_path / "x", tmp_path / "masks", "stray", _grey(1), _square_mask())
    message = _error(tmp_path / "images", tmp_path / "masks")
    assert message.startswith("2 problems")
    assert "images without a mask (23)" in message and "im02.png" in message
    assert "... and 3 more (23 in all)" in message  # 20 shown + 3
    assert "stray.png" in message


def test_scan_pairs_collects_without_raising(split_dir):
    (split_dir / "masks" / "b.png").unlink()
    scan = scan_pairs(split_dir / "images", split_dir / "masks")
    assert [s.stem for s in scan.samples] == ["a", "c"] and len(scan.problems) == 1


# ---- the Dataset --------------------------------------------------------------------------------

def test_item_without_transform_is_normalised_original(split_dir):
    ds = InpaintDataset(split_dir / "images", split_dir / "masks")
    item = ds[2]  # "c": grey 30, square mask
    assert item["stem"] == "c" and item["size"] == (8, 10)
    assert item["image"].shape == (3, 8, 10) and item["image"].dtype == torch.float32
    expected = torch.from_numpy(normalize(_grey(30)).transpose(2, 0, 1).copy())
    torch.testing.assert_close(item["image"], expected)
    assert item["mask"].shape == (1, 8, 10) and item["mask"].dtype == torch.float32
    torch.testing.assert_close(item["mask"][0], torch.from_numpy(_square_mask()).float())


def test_item_with_transform_and_stems(split_dir):
    ds = InpaintDataset(split_dir / "images", split_dir / "masks", eval_transform(16, "crop"),
                        stems=["c", "b"])
    assert len(ds) == 2 and ds.stems == ["c", "b"]
    item = ds[0]
    assert item["image"].shape == (3, 16, 16) and item["size"] == (8, 10)
    assert item["mask"].sum() == 16  # the 4x4 square survives a zero-pad to 16x16
    assert set(item["mask"].unique().tolist()) <= {0.0, 1.0}


def test_images_without_masks_give_zero_masks(split_dir):
    item = InpaintDataset(split_dir / "images")[0]
    assert item["mask"].shape == (1, 8, 10) and item["mask"].sum() == 0


def test_unknown_stems_are_named(split_dir):
    with pytest.raises(DataError, match=r"not in .*images: zz"):
        InpaintDataset(split_dir / "images", split_dir / "masks", stems=["a", "zz"])


def test_corrupt_file_is_named_when_read(split_dir):
    (split_dir / "images" / "b.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    ds = InpaintDataset(split_dir / "images", split_dir / "masks")
    with pytest.raises(DataError, match=r"b\.png.*cannot be decoded"):
        ds[1]


def test_mask_size_mismatch_is_named_when_read(split_dir):
    cv2.imwrite(str(split_dir / "masks" / "c.png"), np.zeros((9, 10), np.uint8))
    ds = InpaintDataset(split_dir / "images", split_dir / "masks")
    with pytest.raises(DataError, match=r"c\.png: mask size 10x9 .* differs from its image c\.png \(10x8\)"):
        ds[2]


# ---- the split ----------------------------------------------------------------------------------

def _stems(n):
    return [f"s{i:03d}" for i in range(n)]


def test_split_is_deterministic_disjoint_and_complete():
    stems, flags = _stems(50), [i % 3 != 0 for i in range(50)]
    train, val = split_stems(stems, flags, 0.1, seed=3)
    assert (train, val) == split_stems(stems, flags, 0.1, seed=3)
    # Input order does not matter: reversed lists give the same split.
    assert (train, val) == split_stems(stems[::-1], flags[::-1], 0.1, seed=3)
    assert not set(train) & set(val) and sorted(train + val) == stems
    assert len(val) == 5  # round(50 * 0.1)
    # 33 of 50 have manipulated pixels: round(5 * 33 / 50) = 3 of them in val, plus 2 empty ones.
    assert sum(flags[stems.index(s)] for s in val) == 3
    assert split_stems(stems, flags, 0.1, seed=4) != (train, val)


@settings(max_examples=80, deadline=None)
@given(st.integers(0, 30), st.integers(0, 30), st.floats(0.05, 0.5), st.integers(0, 10**6))
def test_split_stratifies_when_possible(n_pos, n_neg, fraction, seed):
    n = n_pos + n_neg
    if n < 2:
        return
    flags = [True] * n_pos + [False] * n_neg
    train, val = split_stems(_stems(n), flags, fraction, seed)
    assert len(train) + len(val) == n and not set(train) & set(val)
    expected = min(max(1, round(n * fraction)), n - 1)
    positive = set(_stems(n)[:n_pos])
    if n_pos >= 2 and n_neg >= 2:  # both kinds in both parts
        expected = min(max(expected, 2), n - 2)
        for part in (train, val):
            assert set(part) & positive and set(part) - positive
    assert len(val) == expected


def test_split_bad_arguments():
    with pytest.raises(ConfigError, match="val_fraction"):
        split_stems(_stems(5), [True] * 5, 1.0)
    with pytest.raises(DataError, match="at least 2"):
        split_stems(_stems(1), [True], 0.1)


# ---- the DataModule -----------------------------------------------------------------------------

def test_datamodule_split_and_loaders(make_dataset):
    root = make_dataset(n_train=10, n_test=0, size=32, n_empty=3)
    dm = InpaintDataModule(root, img_size=32, batch_size=4, val_fraction=0.2, seed=1)
    dm.setup("fit")
    split = dm.split
    assert len(split["val"]) == 2 and len(split["train"]) == 8
    assert dm.summary["n_empty_masks"] == 3
    batch = next(iter(dm.train_dataloader()))
    assert batch["image"].shape == (4, 3, 32, 32) and batch["mask"].shape == (4, 1, 32, 32)
    assert len(list(dm.train_dataloader())) == 2  # 8 images, batches of 4
    assert sum(len(b["stem"]) for b in dm.val_dataloader()) == 2
    # The same split is reused when given, e.g. from a saved split.json.
    again = InpaintDataModule(root, img_size=32, split=json.loads(json.dumps(split)))
    again.setup()
    assert again.split == split and again.val_set.stems == split["val"]


def test_datamodule_rejects_a_stale_split(make_dataset):
    root = make_dataset(n_train=4, n_test=0)
    dm = InpaintDataModule(root, img_size=32, split={"train": ["tr_000", "gone"], "val": ["tr_001"]})
    with pytest.raises(DataError, match="gone"):
        dm.setup()
    with pytest.raises(ConfigError, match="disjoint"):
        InpaintDataModule(root, split={"train": ["tr_000"], "val": ["tr_000"]})


def test_workers_get_different_augmentations(make_dataset):
    # Two workers start with copies of the same Compose state. Batches alternate between workers
    # (0, 1, 0, 1, ...), so without seed_worker every pair (2k, 2k+1) would be augmented identically.
    root = make_dataset(n_train=4, n_test=0, size=32, n_empty=0)
    dm = InpaintDataModule(root, img_size=32, input_mode="crop", batch_size=1, val_fraction=0.25,
                           num_workers=2)
    dm.setup()
    reference = dm.train_set[0]["image"]
    dm.train_set.samples = [dm.train_set.samples[0]] * 16  # one file under 16 random D4 draws
    torch.manual_seed(0)  # fixes the workers' base seed: the test is deterministic
    outputs = [b["image"][0] for b in dm.train_dataloader()]
    pairs_equal = [torch.equal(outputs[i], outputs[i + 1]) for i in range(0, 16, 2)]
    assert not all(pairs_equal)
    assert all(torch.isclose(o.sum(), reference.sum(), atol=1e-2) for o in outputs)  # pixels only moved


# ---- check-data CLI -----------------------------------------------------------------------------

def test_check_data_on_a_good_dataset(make_dataset, capsys, tmp_path):
    root = make_dataset(n_train=6, n_test=2, size=32, n_empty=2)
    report = tmp_path / "summary.json"
    assert main(["check-data", str(root), "--json", str(report)]) == 0
    out = capsys.readouterr().out
    assert "[train]" in out and "[test]" in out and "images: 6" in out
    assert "empty masks: 2 of 6 (33.3%)" in out  # n_empty=2 of 6
    assert "problems: none" in out and "OK" in out
    summary = json.loads(report.read_text())
    assert summary["ok"] and summary["splits"][0]["coverage"]["histogram"]["0 (empty)"] == 2


def test_check_data_on_a_split_folder_reports_coverage(split_dir, capsys):
    assert main(["check-data", str(split_dir)]) == 0
    out = capsys.readouterr().out
    # masks: a and c cover 16/80 = 20%, b is empty: mean 13.33%, median 20%
    assert "mean 13.33%, median 20.00%" in out and "empty masks: 1 of 3" in out
    assert "8x10 (3)" in out  # all images 8 high, 10 wide


def test_check_data_names_every_problem(make_dataset, capsys):
    root = make_dataset(n_train=6, n_test=1, size=32)
    train = root / "train"
    (train / "images" / "tr_000.png").write_bytes(b"not a png")               # corrupt
    (train / "masks" / "tr_001.png").write_bytes(b"")                         # zero-byte
    cv2.imwrite(str(train / "masks" / "tr_002.png"), np.zeros((5, 5), np.uint8))  # wrong size
    (train / "masks" / "tr_003.png").unlink()                                 # image without mask
    (train / "images" / "readme.txt").write_text("hi")                        # non-image
    jpeg = cv2.imencode(".jpg", _grey(9, 32, 32))[1].tobytes()
    (train / "images" / "tr_004.png").unlink()
    (train / "images" / "tr_004.jpg").write_bytes(jpeg[: len(jpeg) // 2])      # truncated
    cv2.imwrite(str(train / "images" / "tr_005.bmp"), _grey(9, 4, 4))          # duplicate stem
    assert main(["check-data", str(root)]) == 1
    out = capsys.readouterr().out
    for name in ("tr_000.png", "tr_001.png", "tr_002.png", "tr_003.png", "readme.txt", "tr_004.jpg",
                 "tr_005 (tr_005.bmp, tr_005.png)"):
        assert name in out, name
    assert "truncated" in out and "image 32x32, mask 5x5" in out and "FAILED" in out
    # 6 kinds (corrupt + truncated are one "cannot be read" kind); the duplicate is not also
    # reported as a size mismatch.
    assert "problems (6)" in out and "tr_005.png (image" not in out


def test_check_data_unusable_dir(tmp_path, capsys):
    assert main(["check-data", str(tmp_path / "missing")]) == 2
    assert "folder not found" in capsys.readouterr().err
    assert main(["check-data", str(tmp_path)]) == 2
    assert "no images/ folder" in capsys.readouterr().err


def test_check_data_train_without_masks_is_a_problem(make_dataset, capsys):
    root = make_dataset(n_train=2, n_test=0)
    for f in (root / "train" / "masks").iterdir():
        f.unlink()
    (root / "train" / "masks").rmdir()
    assert main(["check-data", str(root)]) == 1
    assert "missing masks folder" in capsys.readouterr().out


@pytest.mark.parametrize("name", ["casia2_gt", "hifi_ifdl_mixed"])
def test_check_data_on_real_world_samples(name, capsys, realworld):
    folder = realworld(name)
    assert main(["check-data", str(folder)]) == 0
    assert "problems: none" in capsys.readouterr().out
