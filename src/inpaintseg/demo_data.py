"""Built-in demo data: synthetic inpainting forgeries made from photos shipped inside packages.

Nothing is downloaded. The photos are the sample images bundled with scikit-image
(``skimage/data``) and scikit-learn (``sklearn/datasets/images``), read straight from the installed
package folders. Each sample is:

1. a random square crop (35-100% of the photo's short side), scaled to ``size`` and maybe flipped;
2. 10% of samples are left untouched (empty mask, method "none"): one in each block of 10;
3. otherwise a random mask covering 1-40% of the image: free-form brush ``strokes``, ``ellipses``,
   ``rectangles`` (some rotated) or a smooth random ``blob``;
4. the masked pixels replaced by one inpainting method: OpenCV Telea (``telea``), OpenCV
   Navier-Stokes (``ns``) -- both followed by noise matched to the surrounding texture so the fill
   is not a tell-tale flat patch -- or an exemplar ``patch`` fill: each mask component is filled
   with the best-matching translated patch from elsewhere in the image (colour-matched, feathered
   into a Telea fill at the border).

Pixels outside the mask are never changed, so the mask is exact ground truth. Every sample has
its own random generator seeded from (seed, split, index): the output does not depend on the
order of generation, and the same arguments give the same bytes.

Layout::

    OUT/train/images/train_00000.png   OUT/train/masks/train_00000.png   OUT/train/meta.json
    OUT/test/images/test_00000.png     OUT/test/masks/test_00000.png     OUT/test/meta.json

meta.json records per image the photo source, crop, mask kind, coverage and inpainting method.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from inpaintseg.errors import InpaintsegError
from inpaintseg.io import atomic_write_text, read_image, write_png

GENERATOR = "inpaintseg demo-data"
FORMAT_VERSION = 1
SPLITS = ("train", "test")
_SPLIT_CODES = {"train": 1, "test": 2}
METHODS = ("telea", "ns", "patch")
MASK_KINDS = ("strokes", "ellipses", "rectangles", "blob")
EMPTY_FRACTION = 0.10
MIN_COVERAGE, MAX_COVERAGE = 0.01, 0.40
MIN_SIZE, MAX_SIZE = 32, 2048
MAX_IMAGES = 100_000
# Natural photos and textures from scikit-image; synthetic/binary ones (horse, logo, phantom,
# chessboards) are left out, and page.png too (its ICC profile makes libpng print a warning).
SKIMAGE_PHOTOS = (
    "astronaut.png", "brick.png", "camera.png", "cell.png", "chelsea.png", "clock_motion.png",
    "coffee.png", "coins.png", "color.png", "grass.png", "gravel.png", "hubble_deep_field.jpg",
    "ihc.png", "moon.png", "motorcycle_left.png", "motorcycle_right.png", "retina.jpg",
    "rocket.jpg", "text.png",
)
SKLEARN_PHOTOS = ("china.jpg", "flower.jpg")
_UNTOUCHED_STREAM = 0x4E4F4E45  # separates the block generators from sample_rng
_STEM_RE = re.compile(r"^(train|test)_\d{5,}\.png$")


# ------------------------------------------------------------------------------------ photos


@dataclass(frozen=True)
class Photo:
    name: str  # e.g. "skimage/astronaut.png"
    path: Path


def _package_dir(package: str) -> Path | None:
    """Folder of an installed package, found without importing it."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0])


def find_photos() -> list[Photo]:
    """The bundled photos that exist in this installation, in a fixed order."""
    photos = []
    for package, folder, names in (
        ("skimage", "data", SKIMAGE_PHOTOS),
        ("sklearn", "datasets/images", SKLEARN_PHOTOS),
    ):
        root = _package_dir(package)
        if root is None:
            continue
        for name in names:
            path = root / folder / name
            if path.is_file():
                photos.append(Photo(f"{package}/{name}", path))
    if len(photos) < 3:
        raise InpaintsegError(
            f"demo-data needs the sample photos bundled with scikit-image and scikit-learn, but "
            f"found only {len(photos)}. Install them: pip install scikit-image scikit-learn"
        )
    return photos


class PhotoCache:
    """Decode each photo once per run."""

    def __init__(self, photos: list[Photo]):
        self.photos = photos
        self._images: dict[str, np.ndarray] = {}

    def image(self, photo: Photo) -> np.ndarray:
        if photo.name not in self._images:
            self._images[photo.name] = read_image(photo.path)
        return self._images[photo.name]


def sample_rng(seed: int, split: str, index: int) -> np.random.Generator:
    """The generator for one sample, independent of every other sample."""
    return np.random.default_rng([seed, _SPLIT_CODES[split], index])


def is_untouched(seed: int, split: str, index: int) -> bool:
    """Whether a sample is left untouched: exactly one in each block of 10 consecutive indices.

    The position inside the block is random (its own generator per block), so the fraction is
    10% for any count, without depending on the order of generation.
    """
    period = round(1 / EMPTY_FRACTION)
    block_rng = np.random.default_rng([seed, _SPLIT_CODES[split], index // period, _UNTOUCHED_STREAM])
    return index % period == int(block_rng.integers(period))


def random_crop(rng: np.random.Generator, photo: np.ndarray, size: int) -> tuple[np.ndarray, dict]:
    """A random square crop scaled to `size`, flipped left-right half the time.

    Shape: (H, W, 3) uint8 -> (size, size, 3) uint8.
    """
    height, width = photo.shape[:2]
    short = min(height, width)
    # Do not enlarge a small photo by more than 2x (it would look blurred).
    low = min(short, max(int(0.35 * short), size // 2))
    side = int(rng.integers(low, short + 1))
    y = int(rng.integers(0, height - side + 1))
    x = int(rng.integers(0, width - side + 1))
    crop = photo[y:y + side, x:x + side]
    interpolation = cv2.INTER_AREA if side >= size else cv2.INTER_LINEAR
    crop = cv2.resize(crop, (size, size), interpolation=interpolation)
    flip = bool(rng.random() < 0.5)
    if flip:
        crop = crop[:, ::-1]
    return np.ascontiguousarray(crop), {"crop": [y, x, side], "flip": flip}


# ------------------------------------------------------------------------------------- masks


def _ellipses_mask(rng: np.random.Generator, size: int, area: float) -> np.ndarray:
    mask = np.zeros((size, size), np.uint8)
    count = int(rng.integers(1, 4))
    for _ in range(count):
        ratio = rng.uniform(0.3, 1.0)
        semi_major = np.sqrt(area / count / (np.pi * ratio))
        axes = (max(1, int(round(semi_major))), max(1, int(round(semi_major * ratio))))
        center = tuple(int(v) for v in rng.integers(0, size, 2))
        cv2.ellipse(mask, center, axes, float(rng.uniform(0, 180)), 0, 360, 1, -1)
    return mask


def _rectangles_mask(rng: np.random.Generator, size: int, area: float) -> np.ndarray:
    mask = np.zeros((size, size), np.uint8)
    count = int(rng.integers(1, 3))
    for _ in range(count):
        ratio = rng.uniform(0.3, 1.0)
        width = np.sqrt(area / count / ratio)
        center = tuple(float(v) for v in rng.uniform(0, size, 2))
        angle = 0.0 if rng.random() < 0.5 else float(rng.uniform(0, 90))
        corners = cv2.boxPoints((center, (width, width * ratio), angle))
        cv2.fillPoly(mask, [np.round(corners).astype(np.int32)], 1)
    return mask


def _strokes_mask(rng: np.random.Generator, size: int, area: float) -> np.ndarray:
    """Free-form brush strokes: random-walk polylines drawn with a round brush."""
    mask = np.zeros((size, size), np.uint8)
    thickness = int(max(2, rng.uniform(size / 40, size / 10)))
    count = int(rng.integers(1, 5))
    stroke_length = area / thickness / count
    for _ in range(count):
        point = rng.uniform(0, size, 2)
        angle = rng.uniform(0, 2 * np.pi)
        points = [point.copy()]
        drawn = 0.0
        while drawn < stroke_length:
            step = rng.uniform(size / 12, size / 4)
            angle += rng.uniform(-1.2, 1.2)
            point = point + step * np.array([np.cos(angle), np.sin(angle)])
            if np.any((point < 0) | (point > size - 1)):  # bounce off the border
                point = np.clip(point, 0, size - 1)
                angle += np.pi
            points.append(point.copy())
            drawn += step
        polyline = np.round(np.array(points)).astype(np.int32)
        for start, end in zip(polyline[:-1], polyline[1:]):
            cv2.line(mask, tuple(int(v) for v in start), tuple(int(v) for v in end), 1, thickness)
    return mask


def _blob_mask(rng: np.random.Generator, size: int, area: float) -> np.ndarray:
    """A smooth organic blob: low-frequency noise under a Gaussian envelope, thresholded."""
    cells = int(rng.integers(3, 7))
    noise = cv2.resize(rng.standard_normal((cells, cells)).astype(np.float32), (size, size),
                       interpolation=cv2.INTER_CUBIC)
    cy, cx = rng.uniform(0.2, 0.8, 2) * size
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    spread = np.sqrt(area) * rng.uniform(0.6, 1.0)
    envelope = np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * spread**2))
    field = envelope * (1.5 + 0.5 * noise)
    threshold = np.quantile(field, 1.0 - area / size**2)
    return (field > threshold).astype(np.uint8)


_MASK_MAKERS = {
    "strokes": _strokes_mask,
    "ellipses": _ellipses_mask,
    "rectangles": _rectangles_mask,
    "blob": _blob_mask,
}


def random_mask(rng: np.random.Generator, size: int) -> tuple[np.ndarray, str]:
    """A random inpainting mask covering MIN_COVERAGE..MAX_COVERAGE of the image.

    Shape: -> (size, size) uint8 in {0, 1}, and the mask kind.
    """
    kind = str(rng.choice(MASK_KINDS))
    make = _MASK_MAKERS[kind]
    for _ in range(20):
        target = float(np.exp(rng.uniform(np.log(0.015), np.log(0.35))))  # log-uniform
        mask = make(rng, size, target * size * size)
        if MIN_COVERAGE <= mask.mean() <= MAX_COVERAGE:
            return mask, kind
    # Practically unreachable; fall back to a centred rectangle of 10% of the image.
    mask = np.zeros((size, size), np.uint8)
    side = int(round(size * np.sqrt(0.1)))
    start = (size - side) // 2
    mask[start:start + side, start:start + side] = 1
    return mask, "rectangles"


# -------------------------------------------------------------------------------- inpainting


def _ring(mask: np.ndarray, width: int) -> np.ndarray:
    """Pixels within `width` of the mask but outside it. Shape: (H, W) -> (H, W) bool."""
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * width + 1, 2 * width + 1))
    return (cv2.dilate(mask, kernel) > 0) & (mask == 0)


def _noise_sigma(image: np.ndarray, region: np.ndarray) -> float:
    """Texture amplitude (grey levels) of `image` in `region`: the RMS of its fine-scale detail.

    Shape: (H, W, 3) uint8, (H, W) bool -> float.
    """
    if not region.any():
        return 0.0
    grey = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY).astype(np.float32)
    detail = grey - cv2.GaussianBlur(grey, (5, 5), 0)
    return float(np.sqrt(np.mean(detail[region] ** 2)))


def _add_matched_noise(rng: np.random.Generator, image: np.ndarray, filled: np.ndarray,
                       mask: np.ndarray) -> np.ndarray:
    """Add slightly blurred Gaussian noise inside the mask, at the texture level around it.

    A diffusion fill alone is smooth, which would make the region trivially detectable.
    Shape: (H, W, 3) uint8 x2, (H, W) uint8 -> (H, W, 3) uint8.
    """
    sigma = _noise_sigma(image, _ring(mask, max(3, mask.shape[0] // 32)))
    sigma *= rng.uniform(0.8, 1.6)  # the blur below removes part of the noise amplitude
    if sigma < 0.5:
        return filled
    grain = rng.normal(0.0, sigma, filled.shape[:2]).astype(np.float32)
    colour = rng.normal(0.0, 0.3 * sigma, filled.shape).astype(np.float32)
    noise = cv2.GaussianBlur(grain[:, :, None] + colour, (3, 3), 0.5)
    out = filled.astype(np.float32)
    inside = mask.astype(bool)
    out[inside] += noise[inside]
    return np.clip(np.round(out), 0, 255).astype(np.uint8)


def _best_offset(rng: np.random.Generator, source: np.ndarray, component: np.ndarray,
                 ring: np.ndarray, candidates: int = 32) -> tuple[int, int]:
    """The translation (dy, dx) whose source ring best matches the ring around `component`.

    Offsets keep the component's bounding box inside the image and move it by at least a
    quarter of its size. Shape: (H, W, 3), (H, W) uint8, (H, W) bool -> (dy, dx).
    """
    height, width = component.shape
    ys, xs = np.nonzero(component)
    y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
    ry, rx = np.nonzero(ring)
    target = source[ry, rx].astype(np.float32)
    min_shift = max(2, (y1 - y0 + x1 - x0) // 8)
    best, best_cost = (0, 0), np.inf
    for _ in range(candidates):
        dy = int(rng.integers(-y0, height - y1 + 1))
        dx = int(rng.integers(-x0, width - x1 + 1))
        if abs(dy) + abs(dx) < min_shift:
            continue
        sy, sx = ry + dy, rx + dx
        inside = (sy >= 0) & (sy < height) & (sx >= 0) & (sx < width)
        if inside.mean() < 0.5:
            continue
        diff = source[sy[inside], sx[inside]].astype(np.float32) - target[inside]
        cost = float(np.mean(diff**2))
        if cost < best_cost:
            best, best_cost = (dy, dx), cost
    if best == (0, 0):  # none qualified (the component spans the image):
        # use the box's position point-mirrored about the image centre
        best = (height - y1 - y0, width - x1 - x0)
    return best


def patch_fill(rng: np.random.Generator, image: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Exemplar fill: each mask component takes a translated patch from elsewhere in the image.

    The source is the Telea-filled image, so source pixels that fall inside the mask never copy
    the original (removed) content. Each patch is shifted to the mean colour of the ring around
    its component and feathered into the Telea fill over a few pixels at the mask border.
    Shape: (H, W, 3) uint8, (H, W) uint8 -> (H, W, 3) uint8.
    """
    size = mask.shape[0]
    mask255 = mask * np.uint8(255)
    base = cv2.inpaint(image, mask255, int(rng.integers(3, 6)), cv2.INPAINT_TELEA)
    out = base.astype(np.float32)
    ring_width = max(2, size // 40)
    feather = rng.uniform(1.5, 4.0)
    alpha = np.clip(cv2.distanceTransform(mask255, cv2.DIST_L2, 5) / feather, 0.0, 1.0)
    count, labels = cv2.connectedComponents(mask, connectivity=8)
    for label in range(1, count):
        component = (labels == label).astype(np.uint8)
        ring = _ring(component, ring_width)
        dy, dx = _best_offset(rng, base, component, ring)
        ys, xs = np.nonzero(component)
        sy = np.clip(ys + dy, 0, size - 1)
        sx = np.clip(xs + dx, 0, size - 1)
        patch = base[sy, sx].astype(np.float32)
        ry, rx = np.nonzero(ring)
        sry, srx = np.clip(ry + dy, 0, size - 1), np.clip(rx + dx, 0, size - 1)
        patch += base[ry, rx].astype(np.float32).mean(0) - base[sry, srx].astype(np.float32).mean(0)
        a = alpha[ys, xs, None]
        out[ys, xs] = a * patch + (1.0 - a) * out[ys, xs]
    return np.clip(np.round(out), 0, 255).astype(np.uint8)


def inpaint(rng: np.random.Generator, image: np.ndarray, mask: np.ndarray, method: str) -> np.ndarray:
    """Replace the masked pixels of `image` by `method` ("telea", "ns" or "patch").

    Pixels outside the mask are returned unchanged.
    Shape: (H, W, 3) uint8, (H, W) uint8 {0, 1} -> (H, W, 3) uint8.
    """
    if method == "patch":
        filled = patch_fill(rng, image, mask)
    else:
        flag = cv2.INPAINT_TELEA if method == "telea" else cv2.INPAINT_NS
        filled = cv2.inpaint(image, mask * np.uint8(255), int(rng.integers(3, 6)), flag)
        filled = _add_matched_noise(rng, image, filled, mask)
    out = image.copy()
    inside = mask.astype(bool)
    out[inside] = filled[inside]
    return out


# ----------------------------------------------------------------------------------- samples


def make_sample(rng: np.random.Generator, photos: PhotoCache, size: int,
                untouched: bool = False) -> tuple[np.ndarray, np.ndarray, dict]:
    """One (image, mask, info) sample; an `untouched` one has an empty mask and method "none".

    Shape: -> (size, size, 3) uint8, (size, size) uint8 {0, 1}, dict.
    """
    photo = photos.photos[int(rng.integers(len(photos.photos)))]
    image, crop_info = random_crop(rng, photos.image(photo), size)
    info = {"source": photo.name, **crop_info}
    if untouched:
        mask = np.zeros((size, size), np.uint8)
        return image, mask, {**info, "mask_kind": "none", "coverage": 0.0, "method": "none"}
    mask, kind = random_mask(rng, size)
    method = str(rng.choice(METHODS))
    image = inpaint(rng, image, mask, method)
    coverage = round(float(mask.mean()), 6)
    return image, mask, {**info, "mask_kind": kind, "coverage": coverage, "method": method}


def _check_args(n_train: int, n_test: int, size: int, seed: int) -> None:
    for name, value in (("--n-train", n_train), ("--n-test", n_test)):
        if not 1 <= value <= MAX_IMAGES:
            raise InpaintsegError(f"{name} must be between 1 and {MAX_IMAGES}, got {value}.")
    if not MIN_SIZE <= size <= MAX_SIZE:
        raise InpaintsegError(f"--img-size must be between {MIN_SIZE} and {MAX_SIZE} pixels, got {size}.")
    if seed < 0:
        raise InpaintsegError(f"--seed must be a non-negative integer, got {seed}.")


def _is_demo_meta(path: Path) -> bool:
    try:
        return json.loads(path.read_text(encoding="utf-8")).get("generator") == GENERATOR
    except (OSError, ValueError, AttributeError):
        return False


def _prepare_out(out: Path) -> None:
    """Accept a missing or empty folder, or an earlier demo-data output; refuse anything else."""
    if out.exists() and not out.is_dir():
        raise InpaintsegError(f"{out}: exists and is not a folder. Choose a folder path for OUT.")
    if not out.exists() or not any(out.iterdir()):
        return
    if not any(_is_demo_meta(out / split / "meta.json") for split in SPLITS):
        raise InpaintsegError(
            f"{out}: the folder is not empty and is not an earlier demo-data output (it has no "
            f"train/meta.json or test/meta.json written by demo-data). Choose a new or empty "
            f"folder, or delete this one first."
        )


def _remove_stale(split_dir: Path, keep: set[str]) -> None:
    """Delete images/masks from an earlier, larger run that this run does not rewrite."""
    for sub in ("images", "masks"):
        folder = split_dir / sub
        if not folder.is_dir():
            continue
        for path in folder.iterdir():
            if _STEM_RE.match(path.name) and path.stem not in keep:
                path.unlink()


def _meta(split: str, n: int, size: int, seed: int, images: dict, complete: bool) -> dict:
    return {
        "generator": GENERATOR,
        "format_version": FORMAT_VERSION,
        "split": split,
        "n": n,
        "size": size,
        "seed": seed,
        "complete": complete,
        "images": images,
    }


def _write_meta(path: Path, meta: dict) -> None:
    atomic_write_text(path, json.dumps(meta, indent=1, sort_keys=True) + "\n")


def generate_demo_data(out: str | os.PathLike, n_train: int = 400, n_test: int = 100,
                       size: int = 256, seed: int = 0) -> dict[str, dict]:
    """Write the demo dataset to `out` (layout in the module docstring); return {split: meta}.

    `out` must be missing, empty, or an earlier demo-data output (then it is overwritten and
    files beyond the new counts are removed). Raises InpaintsegError for bad arguments or `out`.
    """
    _check_args(n_train, n_test, size, seed)
    out = Path(out)
    _prepare_out(out)
    photos = PhotoCache(find_photos())
    counts = {"train": n_train, "test": n_test}
    result = {}
    for split in SPLITS:
        split_dir = out / split
        stems = [f"{split}_{index:05d}" for index in range(counts[split])]
        # Mark the folder as ours before writing images, so an interrupted run can be re-run.
        _write_meta(split_dir / "meta.json", _meta(split, counts[split], size, seed, {}, False))
        _remove_stale(split_dir, set(stems))
        images = {}
        for index, stem in enumerate(stems):
            rng = sample_rng(seed, split, index)
            untouched = is_untouched(seed, split, index)
            image, mask, info = make_sample(rng, photos, size, untouched)
            write_png(split_dir / "images" / f"{stem}.png", image)
            write_png(split_dir / "masks" / f"{stem}.png", mask * np.uint8(255))
            images[stem] = info
        meta = _meta(split, counts[split], size, seed, images, True)
        _write_meta(split_dir / "meta.json", meta)
        result[split] = meta
    return result
