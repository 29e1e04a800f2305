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
alike, before the degradation chain. Before both, `sample_camera_noise` (a probability set per run, 0 by default)
gives the source photo a camera's sensor noise (`camera_noise`): the authentic region carries it, a generated
fill does not unless the generator reproduces it.
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
# Sensor noise as it leaves a camera's pipeline: its standard deviation at mid grey (8-bit levels; low-ISO
# daylight ~1-2, indoor / high-ISO phone photos ~4-8), the shot (signal-dependent) share of its variance, the
# chroma share of its amplitude (the rest is common to the channels: luma-dominated), and half the time the
# spatial correlation demosaicing gives it.
CAMERA_NOISE_SIGMA = (1.0, 8.0)
CAMERA_NOISE_SHOT = (0.0, 1.0)
CAMERA_NOISE_CHROMA = (0.1, 0.5)
DEMOSAIC_PROBABILITY = 0.5
DEMOSAIC_SIGMA = 0.7


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


def sample_camera_noise(rng: np.random.Generator, probability: float) -> dict | None:
    """The sensor noise record of one source photo (`camera_noise`), or None. Draws nothing from `rng` when
    `probability` is 0, so a run without camera noise writes the bytes it wrote before the option existed."""
    if probability <= 0.0 or rng.random() >= probability:
        return None
    return {"sigma": round(float(rng.uniform(*CAMERA_NOISE_SIGMA)), 3),
            "shot": round(float(rng.uniform(*CAMERA_NOISE_SHOT)), 3),
            "chroma": round(float(rng.uniform(*CAMERA_NOISE_CHROMA)), 3),
            "demosaic": bool(rng.random() < DEMOSAIC_PROBABILITY), "seed": int(rng.integers(2**31))}


def camera_noise(image: np.ndarray, record: dict) -> np.ndarray:
    """Add sensor noise (`sample_camera_noise`'s record): per pixel variance sigma^2 ((1 - shot) + shot I/128)
    (Poisson-Gaussian, equal to sigma^2 at mid grey), a luma component common to the channels plus a chroma
    one, optionally blurred as demosaicing does (rescaled to keep its variance). Shape: (H, W, 3) uint8 -> same."""
    rng = np.random.default_rng(record["seed"])
    height, width = image.shape[:2]
    chroma = record["chroma"]
    unit = (np.sqrt(1.0 - chroma ** 2) * rng.standard_normal((height, width, 1))
            + chroma * rng.standard_normal((height, width, 3))).astype(np.float32)  # unit variance per channel
    if record["demosaic"]:
        kernel = cv2.getGaussianKernel(3, DEMOSAIC_SIGMA)
        unit = cv2.sepFilter2D(unit, -1, kernel, kernel) / float(np.sum(np.outer(kernel, kernel) ** 2) ** 0.5)
    x = image.astype(np.float32)
    std = record["sigma"] * np.sqrt((1.0 - record["shot"]) + record["shot"] * x / 128.0)
    return np.clip(np.round(x + std * unit), 0, 255).astype(np.uint8)


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
