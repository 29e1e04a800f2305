"""Pristine photo sources for the manipulation engine, and multi-scale random crops.

Two sources, nothing downloaded:
- the photos shipped inside installed packages: scikit-image (``skimage/data``), scikit-learn
  (``sklearn/datasets/images``), matplotlib (``mpl-data/sample_data``) and, when installed,
  PyWavelets (``pywt/data/*.npz``, read with ``allow_pickle=False``);
- ``--photos DIR`` (repeatable: the folders are pooled): the user's own photos (any size, any count;
  searched recursively). A file that is not an image (an SVG wallpaper, a text file), or that cannot be
  decoded, is named through ``warn`` and skipped.
"""

from __future__ import annotations

import importlib.util
import os
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
CACHE_BYTES = 1 << 30  # ... and at most this many bytes of them (64 4K wallpapers would be 1.6 GB)
# The engine keeps a photo's short side at most this many crop sizes: the smallest crop (MIN_CROP_FRACTION of
# the short side) is then still >= the crop size, so the crops' scale range and sharpness stay those of the
# full photo, while a pool of 12-megapixel photos fits the cache (a 4000x3000 photo at size 256: 1365x1024).
PHOTO_SIDE_PER_CROP = 4


def warn_stderr(message: str) -> None:
    print(f"demo-data: {message}", file=sys.stderr, flush=True)


@dataclass(frozen=True)
class Photo:
    name: str  # "skimage/astronaut.png", or "photos/<path relative to DIR>" ("photos2/..." for a second DIR)
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


def user_photos(folder: str | Path, warn: Callable[[str], None] = warn_stderr, prefix: str = "photos") -> list[Photo]:
    """Every decodable photo under `folder` (recursive, sorted); other files are named and skipped.

    Each photo is decoded once here, so a corrupt file is found before any sample depends on it.
    Raises InpaintsegError when the folder is missing or holds no usable photo.
    """
    root = Path(folder)
    if not root.is_dir():
        raise InpaintsegError(f"photos_dir {root}: not a folder. Pass a folder of pristine photos.",
                              params=["photos_dir"])
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
        photos.append(Photo(f"{prefix}/{relative.as_posix()}", path))
    if not photos:
        raise InpaintsegError(f"photos_dir {root}: no usable photo found (png, jpg, bmp, tif, webp; at least "
                              f"{MIN_PHOTO_SIDE} px on a side). Add photos or leave photos_dir out.",
                              params=["photos_dir"])
    return photos


def photo_dirs(photos_dir) -> list[Path]:
    """`photos_dir` (None, one folder, or a sequence of folders) as a list of distinct folders."""
    if photos_dir is None:
        return []
    dirs = [photos_dir] if isinstance(photos_dir, (str, os.PathLike)) else list(photos_dir)
    out = []
    for folder in map(Path, dirs):
        if all(folder.resolve() != seen.resolve() for seen in out):
            out.append(folder)
    return out


def find_photos(photos_dir=None, packaged: bool | None = None,
                warn: Callable[[str], None] = warn_stderr) -> list[Photo]:
    """The photo list: packaged photos, the user's (`photos_dir`: one folder or several, pooled in the
    given order; the second folder's photos are named "photos2/...", and so on), or both (`packaged=True`).

    `packaged=None` means: packaged photos only when no `photos_dir` is given.
    """
    dirs = photo_dirs(photos_dir)
    use_packaged = not dirs if packaged is None else packaged
    photos = [photo for i, folder in enumerate(dirs)
              for photo in user_photos(folder, warn, "photos" if i == 0 else f"photos{i + 1}")]
    if use_packaged:
        bundled = packaged_photos()
        if len(bundled) < 3:
            raise InpaintsegError(
                f"demo-data needs the sample photos bundled with scikit-image and scikit-learn, but found "
                f"only {len(bundled)}. Install them (pip install scikit-image scikit-learn) or pass photos_dir=DIR.",
                params=["photos_dir"])
        photos = bundled + photos
    return photos


class PhotoCache:
    """Decode photos on demand, keeping the most recently used ones in memory: at most `capacity` photos
    and `max_bytes` bytes (the newest one always stays, whatever its size). `max_short_side`: a photo whose
    short side is longer is shrunk to it on decoding (INTER_AREA, aspect kept); None keeps every photo whole."""

    def __init__(self, photos: list[Photo], capacity: int = CACHE_PHOTOS, max_bytes: int = CACHE_BYTES,
                 max_short_side: int | None = None):
        self.photos = photos
        self.capacity = capacity
        self.max_bytes = max_bytes
        self.max_short_side = max_short_side
        self._images: OrderedDict[str, np.ndarray] = OrderedDict()

    def _load(self, photo: Photo) -> np.ndarray:
        image = load_photo(photo)
        short = min(image.shape[:2])
        if self.max_short_side is None or short <= self.max_short_side:
            return image
        scale = self.max_short_side / short
        size = (max(1, round(image.shape[1] * scale)), max(1, round(image.shape[0] * scale)))
        return cv2.resize(image, size, interpolation=cv2.INTER_AREA)

    @property
    def nbytes(self) -> int:
        return sum(image.nbytes for image in self._images.values())

    def image(self, photo: Photo) -> np.ndarray:
        if photo.name in self._images:
            self._images.move_to_end(photo.name)
        else:
            self._images[photo.name] = self._load(photo)
            while len(self._images) > 1 and (len(self._images) > self.capacity or self.nbytes > self.max_bytes):
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
