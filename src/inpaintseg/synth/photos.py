"""Pristine photo sources for the manipulation engine, and multi-scale random crops.

Two sources, nothing downloaded:
- the photos shipped inside installed packages: scikit-image (``skimage/data``), scikit-learn
  (``sklearn/datasets/images``), matplotlib (``mpl-data/sample_data``) and, when installed,
  PyWavelets (``pywt/data/*.npz``, read with ``allow_pickle=False``);
- ``--photos DIR``: the user's own photos (any size, any count; searched recursively). A file that is
  not an image, or that cannot be decoded, is named through ``warn`` and skipped.
"""

from __future__ import annotations

import importlib.util
import sys
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from inpaintseg.errors import DataError, InpaintsegError
from inpaintseg.fileio import IMAGE_EXTENSIONS, is_image_file, read_image

# Natural photos and textures; synthetic/binary ones (horse, logo, phantom, chessboards) are left
# out, and page.png too (its ICC profile makes libpng print a warning).
PACKAGED_PHOTOS = (
    ("skimage", "data", (
        "astronaut.png", "brick.png", "camera.png", "cell.png", "chelsea.png", "clock_motion.png",
        "coffee.png", "coins.png", "color.png", "grass.png", "gravel.png", "hubble_deep_field.jpg",
        "ihc.png", "microaneurysms.png", "moon.png", "motorcycle_left.png", "motorcycle_right.png",
        "retina.jpg", "rocket.jpg", "text.png",
    )),
    ("sklearn", "datasets/images", ("china.jpg", "flower.jpg")),
    ("matplotlib", "mpl-data/sample_data", ("grace_hopper.jpg",)),
    ("pywt", "data", ("aero.npz", "ascent.npz", "camera.npz")),
)
MIN_PHOTO_SIDE = 32  # smaller user photos are skipped (named)
MIN_CROP_FRACTION = 0.25  # smallest crop side, as a fraction of the photo's short side
MAX_UPSCALE = 2.0  # a crop is never enlarged by more than this (it would look blurred)
CACHE_PHOTOS = 64  # decoded photos kept in memory at once


def warn_stderr(message: str) -> None:
    print(f"demo-data: {message}", file=sys.stderr, flush=True)


@dataclass(frozen=True)
class Photo:
    name: str  # "skimage/astronaut.png", or "photos/<path relative to DIR>"
    path: Path


def _package_dir(package: str) -> Path | None:
    """Folder of an installed package, found without importing it."""
    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0])


def packaged_photos() -> list[Photo]:
    """The bundled photos that exist in this installation, in a fixed order."""
    photos = []
    for package, folder, names in PACKAGED_PHOTOS:
        root = _package_dir(package)
        if root is None:
            continue
        for name in names:
            path = root / folder / name
            if path.is_file():
                photos.append(Photo(f"{package}/{name}", path))
    return photos


def _read_npz_photo(path: Path) -> np.ndarray:
    """The first array of an .npz photo (PyWavelets' data) as RGB uint8; never unpickles."""
    try:
        with np.load(path, allow_pickle=False) as data:
            array = np.asarray(data[data.files[0]])
    except (OSError, ValueError, IndexError) as exc:
        raise DataError(f"{path}: cannot be read as an image array ({exc}).") from None
    if array.ndim not in (2, 3) or array.size == 0:
        raise DataError(f"{path}: expected an image array, got shape {array.shape}.")
    if array.dtype != np.uint8:
        low, high = float(array.min()), float(array.max())
        array = ((array - low) / max(high - low, 1e-9) * 255.0).round().astype(np.uint8)
    if array.ndim == 2:
        array = cv2.cvtColor(array, cv2.COLOR_GRAY2RGB)
    return np.ascontiguousarray(array[:, :, :3])


def load_photo(photo: Photo) -> np.ndarray:
    """Decode a photo as RGB uint8 (H, W, 3); DataError when it cannot be decoded."""
    if photo.path.suffix.lower() == ".npz":
        return _read_npz_photo(photo.path)
    return read_image(photo.path)


def user_photos(folder: str | Path, warn: Callable[[str], None] = warn_stderr) -> list[Photo]:
    """Every decodable photo under `folder` (recursive, sorted); other files are named and skipped.

    Each photo is decoded once here, so a corrupt file is found before any sample depends on it.
    Raises InpaintsegError when the folder is missing or holds no usable photo.
    """
    root = Path(folder)
    if not root.is_dir():
        raise InpaintsegError(f"--photos {root}: not a folder. Pass a folder of pristine photos.")
    photos = []
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        relative = path.relative_to(root)
        if any(part.startswith(".") for part in relative.parts):
            continue
        if not is_image_file(path):
            warn(f"skipping {path}: not an image file (expected {', '.join(IMAGE_EXTENSIONS)})")
            continue
        try:
            image = read_image(path)
        except DataError as exc:
            warn(f"skipping {exc}")
            continue
        if min(image.shape[:2]) < MIN_PHOTO_SIDE:
            warn(f"skipping {path}: {image.shape[1]}x{image.shape[0]} px is smaller than "
                 f"{MIN_PHOTO_SIDE} px on a side")
            continue
        photos.append(Photo(f"photos/{relative.as_posix()}", path))
    if not photos:
        raise InpaintsegError(f"--photos {root}: no usable photo found (png, jpg, bmp, tif, webp; at least "
                              f"{MIN_PHOTO_SIDE} px on a side). Add photos or leave --photos out.")
    return photos


def find_photos(photos_dir: str | Path | None = None, packaged: bool | None = None,
                warn: Callable[[str], None] = warn_stderr) -> list[Photo]:
    """The photo list: packaged photos, the user's (`photos_dir`), or both (`packaged=True`).

    `packaged=None` means: packaged photos only when no `photos_dir` is given.
    """
    use_packaged = photos_dir is None if packaged is None else packaged
    photos = user_photos(photos_dir, warn) if photos_dir is not None else []
    if use_packaged:
        bundled = packaged_photos()
        if len(bundled) < 3:
            raise InpaintsegError(
                f"demo-data needs the sample photos bundled with scikit-image and scikit-learn, but found "
                f"only {len(bundled)}. Install them (pip install scikit-image scikit-learn) or pass --photos DIR."
            )
        photos = bundled + photos
    return photos


class PhotoCache:
    """Decode photos on demand, keeping the most recently used CACHE_PHOTOS in memory."""

    def __init__(self, photos: list[Photo], capacity: int = CACHE_PHOTOS):
        self.photos = photos
        self.capacity = capacity
        self._images: OrderedDict[str, np.ndarray] = OrderedDict()

    def image(self, photo: Photo) -> np.ndarray:
        if photo.name in self._images:
            self._images.move_to_end(photo.name)
        else:
            self._images[photo.name] = load_photo(photo)
            if len(self._images) > self.capacity:
                self._images.popitem(last=False)
        return self._images[photo.name]

    def pick(self, rng: np.random.Generator) -> tuple[Photo, np.ndarray]:
        photo = self.photos[int(rng.integers(len(self.photos)))]
        return photo, self.image(photo)


def random_crop(rng: np.random.Generator, photo: np.ndarray, size: int) -> tuple[np.ndarray, dict]:
    """A multi-scale random square crop scaled to `size`, flipped left-right half the time.

    The crop side is log-uniform between MIN_CROP_FRACTION of the short side (but not enlarged by
    more than MAX_UPSCALE) and the whole short side, so the same photo appears at several scales.
    Shape: (H, W, 3) uint8 -> (size, size, 3) uint8.
    """
    height, width = photo.shape[:2]
    short = min(height, width)
    low = min(short, max(int(MIN_CROP_FRACTION * short), int(np.ceil(size / MAX_UPSCALE))))
    side = int(round(np.exp(rng.uniform(np.log(low), np.log(short))))) if short > low else short
    side = min(max(side, 1), short)
    y = int(rng.integers(0, height - side + 1))
    x = int(rng.integers(0, width - side + 1))
    crop = photo[y:y + side, x:x + side]
    interpolation = cv2.INTER_AREA if side >= size else cv2.INTER_LINEAR
    crop = cv2.resize(crop, (size, size), interpolation=interpolation)
    flip = bool(rng.random() < 0.5)
    if flip:
        crop = crop[:, ::-1]
    return np.ascontiguousarray(crop), {"crop": [y, x, side], "scale": round(size / side, 4), "flip": flip}
