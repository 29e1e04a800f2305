"""Global degradations: what happens to an image after the edit (re-saved, resized, filtered).

`sample_degradations(rng, level)` draws a chain of operations (each with a probability set by the
level: none / default / strong), in this order: resize (0.5-1.5x; half the time back to the original
size, else the image keeps the new size and the mask is resized with nearest-exact, so it stays
binary and aligned), Gaussian blur, Gaussian noise, JPEG (quality 30-100). Every sample gets a chain,
untouched ones too. `apply_degradations` applies a chain deterministically (the noise has its own
seed in the record), so the same chain can be applied to the pristine original (--with-originals).
Separately, two steps model how a photo reaches the editor and leaves it: `sample_pre_jpeg` JPEG-compresses
the source photo before the edit at a camera's qualities (75-95, the way photos arrive), so the authentic
region carries a JPEG grid and the fill does not; `sample_resave` picks how the editing tool saves its result
(PNG, or JPEG at a tool's export qualities), applied after the edit to the image and its pristine original
alike, before the degradation chain.
"""

from __future__ import annotations

import cv2
import numpy as np

from inpaintseg.errors import InpaintsegError

LEVELS = ("none", "default", "strong")
PROBABILITIES = {
    "none": {"pre_jpeg": 0.0, "resave_jpeg": 0.0, "resize": 0.0, "blur": 0.0, "noise": 0.0, "jpeg": 0.0},
    "default": {"pre_jpeg": 0.5, "resave_jpeg": 0.3, "resize": 0.25, "blur": 0.1, "noise": 0.15, "jpeg": 0.4},
    "strong": {"pre_jpeg": 0.7, "resave_jpeg": 0.5, "resize": 0.5, "blur": 0.25, "noise": 0.3, "jpeg": 0.7},
}
JPEG_QUALITY = (30, 100)
# Cameras and phones save at 75-95 (phones ~85-95, consumer cameras' "fine" ~90-95, older/"normal" ~75-85); a
# photo below 75 has usually been re-shared, which the degradation chain's JPEG covers. Half the default
# samples start as such a JPEG and half stay lossless (as PNG datasets and RAW conversions arrive), so the
# JPEG grid alone never tells an authentic photo from a fill.
PRE_JPEG_QUALITY = (75, 95)
# Editing tools' JPEG export: GIMP's default 90, Photoshop's "high"-"maximum" 8-12 (~ libjpeg 75-95), web
# exports ~75-85. The rest save PNG (lossless: nothing changes).
RESAVE_JPEG_QUALITY = (75, 95)
RESIZE_SCALE = (0.5, 1.5)
RESIZE_BACK_PROBABILITY = 0.5
BLUR_SIGMA = (0.3, 1.5)
NOISE_SIGMA = (1.0, 6.0)
MIN_SIDE = 16


def check_level(level: str) -> str:
    if level not in PROBABILITIES:
        raise InpaintsegError(f"degrade_level must be one of {', '.join(LEVELS)}, got {level!r}.",
                              params=["degrade_level"])
    return level


def jpeg(image: np.ndarray, quality: int) -> np.ndarray:
    """Encode as JPEG at `quality` and decode. Shape: (H, W, 3) RGB uint8 -> same."""
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(image, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise RuntimeError("JPEG encoding failed")
    return cv2.cvtColor(cv2.imdecode(buf, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


def sample_pre_jpeg(rng: np.random.Generator, level: str) -> int | None:
    """The JPEG quality the source photo is saved at before the edit, or None."""
    if rng.random() < PROBABILITIES[level]["pre_jpeg"]:
        return int(rng.integers(PRE_JPEG_QUALITY[0], PRE_JPEG_QUALITY[1] + 1))
    return None


def sample_resave(rng: np.random.Generator, level: str) -> dict:
    """How the editing tool saves its result: {"format": "png"} or {"format": "jpeg", "quality": q}."""
    roll, quality = rng.random(), int(rng.integers(RESAVE_JPEG_QUALITY[0], RESAVE_JPEG_QUALITY[1] + 1))
    if roll < PROBABILITIES[level]["resave_jpeg"]:
        return {"format": "jpeg", "quality": quality}
    return {"format": "png"}


def apply_resave(image: np.ndarray, resave: dict) -> np.ndarray:
    """The image as the tool's file holds it (`sample_resave`). Shape: (H, W, 3) uint8 -> same."""
    if resave["format"] == "jpeg":
        return jpeg(image, resave["quality"])
    if resave["format"] != "png":
        raise ValueError(f"unknown re-save format {resave['format']!r}")
    return image


def sample_degradations(rng: np.random.Generator, level: str) -> list[dict]:
    """A random chain of degradation records for one sample (see the module docstring)."""
    p = PROBABILITIES[level]
    # Draw every random number whatever the level, so levels differ only in which ops are kept.
    rolls = rng.random(4)
    scale = float(rng.uniform(*RESIZE_SCALE))
    back = bool(rng.random() < RESIZE_BACK_PROBABILITY)
    sigma = float(rng.uniform(*BLUR_SIGMA))
    noise = float(rng.uniform(*NOISE_SIGMA))
    noise_seed = int(rng.integers(2**31))
    quality = int(rng.integers(JPEG_QUALITY[0], JPEG_QUALITY[1] + 1))
    ops = []
    if rolls[0] < p["resize"]:
        ops.append({"op": "resize", "scale": round(scale, 4), "back": back})
    if rolls[1] < p["blur"]:
        ops.append({"op": "blur", "sigma": round(sigma, 3)})
    if rolls[2] < p["noise"]:
        ops.append({"op": "noise", "sigma": round(noise, 3), "seed": noise_seed})
    if rolls[3] < p["jpeg"]:
        ops.append({"op": "jpeg", "quality": quality})
    return ops


def _resize(image: np.ndarray, width: int, height: int) -> np.ndarray:
    shrink = width * height < image.shape[0] * image.shape[1]
    return cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_CUBIC)


def apply_degradations(image: np.ndarray, mask: np.ndarray | None,
                       ops: list[dict]) -> tuple[np.ndarray, np.ndarray | None, list[dict]]:
    """Apply `ops` in order; return the image, the mask (resized when the size changes) and the ops
    as applied (a resize that would erase a non-empty mask is done "back" instead).

    Shape: (H, W, 3) uint8, (H, W) uint8 {0,1} or None -> (H', W', 3), (H', W') or None, list.
    """
    from inpaintseg.data.transforms import MASK_RESIZE_INTERPOLATION

    applied = []
    for op in ops:
        kind = op["op"]
        if kind == "resize":
            height, width = image.shape[:2]
            new_w = max(MIN_SIDE, round(width * op["scale"]))
            new_h = max(MIN_SIDE, round(height * op["scale"]))
            resized = _resize(image, new_w, new_h)
            if op["back"]:
                image = _resize(resized, width, height)
            else:
                new_mask = None if mask is None else cv2.resize(mask, (new_w, new_h), interpolation=MASK_RESIZE_INTERPOLATION)
                if new_mask is not None and mask.any() and not new_mask.any():
                    op = {**op, "back": True}
                    image = _resize(resized, width, height)
                else:
                    image, mask = resized, new_mask
        elif kind == "blur":
            image = cv2.GaussianBlur(image, (0, 0), op["sigma"])
        elif kind == "noise":
            noise = np.random.default_rng(op["seed"]).normal(0.0, op["sigma"], image.shape).astype(np.float32)
            image = np.clip(np.round(image.astype(np.float32) + noise), 0, 255).astype(np.uint8)
        elif kind == "jpeg":
            image = jpeg(image, op["quality"])
        else:
            raise ValueError(f"unknown degradation {kind!r}")
        applied.append(op)
    return image, mask, applied
