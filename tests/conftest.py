"""Shared fixtures: tiny synthetic datasets written to tmp folders."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
# The shared real-world samples (real manipulations with masks) live beside the repository, never inside it.
REALWORLD = REPO.parent / "shared" / "realworld"


def realworld_dir(*parts: str) -> Path:
    """A folder of the shared real-world samples, or skip the test saying where it looked."""
    folder = REALWORLD.joinpath(*parts)
    if not folder.is_dir():
        pytest.skip(f"real-world samples not found: looked for {folder} (../shared/realworld beside the repository)")
    return folder


@pytest.fixture
def realworld():
    """`realworld("casia2_gt")` -> that folder of the shared real-world samples, or skip saying where it looked."""
    return realworld_dir


@pytest.fixture(autouse=True, scope="session")
def isolated_cache_dir(tmp_path_factory):
    """demo-data's learned generators: the tiny set (trains in seconds), cached in a tmp folder
    shared by the session instead of the user's cache."""
    mp = pytest.MonkeyPatch()
    mp.setenv("INPAINTSEG_CACHE_DIR", str(tmp_path_factory.mktemp("inpaintseg_cache")))
    mp.setenv("INPAINTSEG_GENERATORS", "tiny")
    yield
    mp.undo()


def write_pair(images_dir: Path, masks_dir: Path | None, stem: str, image: np.ndarray,
               mask: np.ndarray | None, ext: str = ".png") -> None:
    images_dir.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(images_dir / f"{stem}{ext}"), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    if masks_dir is not None and mask is not None:
        masks_dir.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(masks_dir / f"{stem}.png"), (mask > 0).astype(np.uint8) * 255)


def synthetic_sample(rng: np.random.Generator, size: int = 32, empty: bool = False):
    """A noisy image whose manipulated rectangle is smooth (a learnable, inpainting-like cue)."""
    image = rng.integers(0, 256, size=(size, size, 3), dtype=np.uint8)
    mask = np.zeros((size, size), np.uint8)
    if not empty:
        y0, x0 = rng.integers(0, size // 2, size=2)
        h, w = rng.integers(size // 4, size // 2, size=2)
        mask[y0:y0 + h, x0:x0 + w] = 1
        image[mask == 1] = image[mask == 1].mean(axis=0).astype(np.uint8)
    return image, mask


@pytest.fixture
def make_dataset(tmp_path):
    """Factory: make_dataset(n_train=8, n_test=2, size=32, n_empty=2) -> root with train/, test/."""

    def _make(n_train: int = 8, n_test: int = 2, size: int = 32, n_empty: int = 2, seed: int = 0,
              root: Path | None = None) -> Path:
        root = root or tmp_path / "data"
        rng = np.random.default_rng(seed)
        for i in range(n_train):
            image, mask = synthetic_sample(rng, size, empty=i < n_empty)
            write_pair(root / "train" / "images", root / "train" / "masks", f"tr_{i:03d}", image, mask)
        for i in range(n_test):
            image, mask = synthetic_sample(rng, size, empty=i == 0)
            write_pair(root / "test" / "images", root / "test" / "masks", f"te_{i:03d}", image, mask)
        return root

    return _make


# ---- issue 11 (hardening) helpers ----------------------------------------------------------------

def header_png(path: Path, width: int, height: int) -> Path:
    """A tiny PNG whose header claims `width` x `height` (its pixel data is a single pixel's)."""
    import struct
    import zlib

    data = cv2.imencode(".png", np.zeros((1, 1), np.uint8))[1].tobytes()
    ihdr = bytearray(data[16:29])  # after the 8-byte signature, the length and the "IHDR" tag
    struct.pack_into(">II", ihdr, 0, width, height)
    crc = struct.pack(">I", zlib.crc32(b"IHDR" + bytes(ihdr)))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data[:16] + bytes(ihdr) + crc + data[33:])
    return path


TINY_ARCH = {"name": "AttentionUNet", "in_channels": 3, "out_channels": 1, "base_channels": 4, "depth": 2,
             "attention": True}


def export_tiny_model(folder: Path, mode: str = "resize", size: int = 32, postprocess: dict | None = None) -> Path:
    """An untrained width-4 Attention U-Net exported as a model folder (seeded: same weights every time)."""
    import torch

    from inpaintseg.data.input_spec import input_section
    from inpaintseg.model import build_model
    from inpaintseg.model.io import save_model_dir

    torch.manual_seed(0)
    config = {"architecture": TINY_ARCH, "input": input_section(mode, size),
              "postprocess": postprocess or {"threshold": 0.5, "tta": "flip", "crf": "off", "calibration": {}}}
    return save_model_dir(folder, build_model(TINY_ARCH), config)


@pytest.fixture
def three_images_and_model(tmp_path, make_dataset):
    """(a folder of three 32x32 images, an exported width-4 model folder, tmp_path): the inputs of the
    hardening tests of predict / export / evaluate."""
    root = make_dataset(n_train=0, n_test=3, size=32)
    return root / "test" / "images", export_tiny_model(tmp_path / "model"), tmp_path


def predict_cli(images: Path, model: Path, *args: str) -> int:
    """`inpaintseg predict --quiet --threads 1 --model MODEL --images IMAGES ARGS...` in-process; its exit status."""
    from inpaintseg import cli

    return cli.main(["predict", "--quiet", "--threads", "1", "--model", str(model), "--images", str(images), *args])


@pytest.fixture(autouse=True)
def quiet_machine_for_the_precision_cache(monkeypatch):
    """The precision probe skips its cache on a busy machine (`precision_probe.busy_machine`); a test's outcome
    must not depend on the load of the machine running it, so tests see a quiet one unless they say otherwise."""
    monkeypatch.setattr("inpaintseg.precision.busy_machine", lambda: None)
