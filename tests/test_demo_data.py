"""Built-in demo data: determinism, layout, masks, inpainting and the CLI."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import cv2
import numpy as np
import pytest

from inpaintseg import cli
from inpaintseg.demo_data import (
    MASK_KINDS,
    METHODS,
    find_photos,
    generate_demo_data,
    inpaint,
    random_mask,
    sample_rng,
)
from inpaintseg.errors import InpaintsegError


def files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> tuple[Path, dict]:
    """60 train + 10 test images at 64x64 (about a second)."""
    out = tmp_path_factory.mktemp("demo") / "out"
    meta = generate_demo_data(out, n_train=60, n_test=10, size=64, seed=3)
    return out, meta


def test_layout_and_meta(dataset):
    out, meta = dataset
    for split, n in (("train", 60), ("test", 10)):
        stems = [f"{split}_{i:05d}" for i in range(n)]
        assert sorted(p.stem for p in (out / split / "images").iterdir()) == stems
        assert sorted(p.stem for p in (out / split / "masks").iterdir()) == stems
        on_disk = json.loads((out / split / "meta.json").read_text())
        assert on_disk == meta[split] and on_disk["complete"] is True
        assert sorted(on_disk["images"]) == stems
    assert not list(out.rglob(".*.tmp"))  # atomic writes left no temp files


def test_images_and_masks(dataset):
    out, meta = dataset
    infos = {**meta["train"]["images"], **meta["test"]["images"]}
    for stem, info in infos.items():
        split = stem.split("_")[0]
        image = cv2.imread(str(out / split / "images" / f"{stem}.png"), cv2.IMREAD_UNCHANGED)
        mask = cv2.imread(str(out / split / "masks" / f"{stem}.png"), cv2.IMREAD_UNCHANGED)
        assert image.shape == (64, 64, 3) and image.dtype == np.uint8
        assert mask.shape == (64, 64) and set(np.unique(mask)) <= {0, 255}
        coverage = float((mask > 0).mean())
        assert info["coverage"] == pytest.approx(coverage, abs=1e-6)
        if info["method"] == "none":
            assert coverage == 0.0 and info["mask_kind"] == "none"
        else:
            assert 0.01 <= coverage <= 0.40
            assert info["method"] in METHODS and info["mask_kind"] in MASK_KINDS
        assert info["source"].split("/")[0] in ("skimage", "sklearn")


def test_mix_of_methods_and_empty_images(dataset):
    _, meta = dataset
    infos = list(meta["train"]["images"].values()) + list(meta["test"]["images"].values())
    methods = Counter(info["method"] for info in infos)
    assert set(METHODS) <= set(methods)  # all three inpainting methods used across 70 images
    # Exactly one untouched image in each block of 10 indices: 6 of 60 train, 1 of 10 test.
    assert methods["none"] == 7
    for split in ("train", "test"):
        empty = [int(stem[-5:]) for stem, info in meta[split]["images"].items() if info["method"] == "none"]
        assert sorted(i // 10 for i in empty) == list(range(len(meta[split]["images"]) // 10))
    assert len({info["source"] for info in infos}) >= 5


def test_same_seed_same_bytes_and_order_independent(tmp_path):
    generate_demo_data(tmp_path / "a", n_train=6, n_test=3, size=48, seed=7)
    generate_demo_data(tmp_path / "b", n_train=6, n_test=3, size=48, seed=7)
    assert files(tmp_path / "a") == files(tmp_path / "b")
    # Fewer images: each sample has its own generator, so the first ones are byte-identical.
    generate_demo_data(tmp_path / "c", n_train=2, n_test=1, size=48, seed=7)
    a, c = files(tmp_path / "a"), files(tmp_path / "c")
    assert all(a[name] == data for name, data in c.items() if name.endswith(".png"))
    generate_demo_data(tmp_path / "d", n_train=6, n_test=3, size=48, seed=8)
    d = files(tmp_path / "d")
    assert a["train/images/train_00000.png"] != d["train/images/train_00000.png"]


def test_rerun_overwrites_and_removes_stale_files(tmp_path):
    out = tmp_path / "out"
    generate_demo_data(out, n_train=5, n_test=2, size=32, seed=0)
    generate_demo_data(out, n_train=3, n_test=2, size=32, seed=0)
    assert sorted(p.name for p in (out / "train" / "images").iterdir()) == [
        "train_00000.png", "train_00001.png", "train_00002.png"]
    assert sorted(p.name for p in (out / "train" / "masks").iterdir())[-1] == "train_00002.png"


def test_refuses_foreign_folder_and_bad_arguments(tmp_path):
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    with pytest.raises(InpaintsegError, match="not an earlier demo-data output"):
        generate_demo_data(foreign, n_train=2, n_test=1, size=32)
    assert [p.name for p in foreign.iterdir()] == ["notes.txt"]
    (tmp_path / "file").write_text("x")
    with pytest.raises(InpaintsegError, match="not a folder"):
        generate_demo_data(tmp_path / "file", n_train=2, n_test=1, size=32)
    with pytest.raises(InpaintsegError, match="--img-size must be between 32"):
        generate_demo_data(tmp_path / "x", n_train=2, n_test=1, size=8)
    with pytest.raises(InpaintsegError, match="--n-test must be between 1"):
        generate_demo_data(tmp_path / "x", n_train=2, n_test=0, size=32)


@pytest.mark.parametrize("size", [32, 256])
def test_random_mask_coverage_range(size):
    kinds = Counter()
    for index in range(40):
        mask, kind = random_mask(sample_rng(0, "train", index), size)
        kinds[kind] += 1
        assert mask.shape == (size, size) and mask.dtype == np.uint8
        assert set(np.unique(mask)) <= {0, 1}
        assert 0.01 <= mask.mean() <= 0.40
    assert len(kinds) >= 3


@pytest.mark.parametrize("method", METHODS)
def test_inpaint_changes_only_the_masked_region(method):
    rng = np.random.default_rng(0)
    # A noisy gradient image with a 16x16 square hole in the middle.
    ramp = np.linspace(0, 200, 64, dtype=np.float32)[None, :, None] + rng.normal(0, 8, (64, 64, 3))
    image = np.clip(ramp, 0, 255).astype(np.uint8)
    image[24:40, 24:40] = (255, 0, 0)  # bright red content to be removed
    mask = np.zeros((64, 64), np.uint8)
    mask[24:40, 24:40] = 1
    out = inpaint(rng, image, mask, method)
    assert out.shape == image.shape and out.dtype == np.uint8
    np.testing.assert_array_equal(out[mask == 0], image[mask == 0])
    # The red content is gone: the filled square is far from pure red everywhere.
    assert np.abs(out[24:40, 24:40].astype(int) - (255, 0, 0)).sum(axis=2).min() > 50


def test_find_photos_uses_bundled_files():
    photos = find_photos()
    names = {p.name for p in photos}
    assert {"skimage/astronaut.png", "sklearn/china.jpg"} <= names
    assert all(p.path.is_file() for p in photos)


def test_cli_demo_data(tmp_path, capsys):
    out = tmp_path / "demo"
    argv = ["demo-data", "--out", str(out), "--n-train", "4", "--n-test", "2", "--img-size", "32", "--seed", "1"]
    assert cli.main(argv) == 0
    assert "wrote 6 images of 32x32" in capsys.readouterr().out
    assert len(list((out / "test" / "masks").iterdir())) == 2
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "x.png").write_bytes(b"")
    # The old spellings (positional OUT, --size) still work for one release, with a note.
    assert cli.main(["demo-data", str(tmp_path / "other"), "--size", "32"]) == 2
    err = capsys.readouterr().err
    assert "not an earlier demo-data output" in err and "--size is now --img-size" in err
    assert cli.main(["demo-data", "--n-train", "4"]) == 2
    assert "give the output folder" in capsys.readouterr().err
