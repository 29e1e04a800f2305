"""Compositing helpers shared by the methods, and the shortcut breakers applied after a fill.

Shortcut breakers (`break_shortcuts`): a fill that is smoother, sharper or cleaner than the photo
around it is a shortcut the detector learns instead of the generator's traces. With some
probability a fill gets noise re-injected at the texture level of the ring around it, or is
sharpened or blurred. `retouch_whole` gives the same processing to a whole untouched image (a
hard negative: processed but labelled 0).
"""

from __future__ import annotations

import cv2
import numpy as np

# Probability of each post-fill step, per family (classical fills are smooth: noise more often).
NOISE_PROBABILITY = {"classical": 0.8}
DEFAULT_NOISE_PROBABILITY = 0.4
SHARPEN_PROBABILITY = 0.15
BLUR_PROBABILITY = 0.15
HARD_NEGATIVE_PROBABILITY = 0.4  # share of untouched images processed as a whole
HARD_NEGATIVE_KINDS = ("blur", "denoise", "sharpen", "resample")


def ring(mask: np.ndarray, width: int) -> np.ndarray:
    """Pixels within `width` of the mask but outside it. Shape: (H, W) -> (H, W) bool."""
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * width + 1, 2 * width + 1))
    return (cv2.dilate(mask, kernel) > 0) & (mask == 0)


def noise_sigma(image: np.ndarray, region: np.ndarray) -> float:
    """Texture amplitude (grey levels) of `image` in `region`: the RMS of its fine-scale detail.

    Shape: (H, W, 3) uint8, (H, W) bool -> float.
    """
    if not region.any():
        return 0.0
    grey = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY).astype(np.float32)
    detail = grey - cv2.GaussianBlur(grey, (5, 5), 0)
    return float(np.sqrt(np.mean(detail[region] ** 2)))


def add_matched_noise(rng: np.random.Generator, image: np.ndarray, filled: np.ndarray,
                      mask: np.ndarray) -> tuple[np.ndarray, float]:
    """Add slightly blurred Gaussian noise inside the mask, at the texture level around it.

    Shape: (H, W, 3) uint8 x2, (H, W) uint8 -> (H, W, 3) uint8, and the noise sigma used.
    """
    sigma = noise_sigma(image, ring(mask, max(3, min(mask.shape) // 32)))
    sigma *= rng.uniform(0.8, 1.6)  # the blur below removes part of the noise amplitude
    if sigma < 0.5:
        return filled, 0.0
    grain = rng.normal(0.0, sigma, filled.shape[:2]).astype(np.float32)
    colour = rng.normal(0.0, 0.3 * sigma, filled.shape).astype(np.float32)
    noise = cv2.GaussianBlur(grain[:, :, None] + colour, (3, 3), 0.5)
    out = filled.astype(np.float32)
    inside = mask.astype(bool)
    out[inside] += noise[inside]
    return np.clip(np.round(out), 0, 255).astype(np.uint8), round(sigma, 3)


def sharpen(image: np.ndarray, amount: float, sigma: float = 1.0) -> np.ndarray:
    """Unsharp mask. Shape: (H, W, 3) uint8 -> same."""
    blurred = cv2.GaussianBlur(image, (0, 0), sigma)
    return cv2.addWeighted(image, 1.0 + amount, blurred, -amount, 0)


def blur(image: np.ndarray, sigma: float) -> np.ndarray:
    return cv2.GaussianBlur(image, (0, 0), sigma)


def denoise(image: np.ndarray, strength: float) -> np.ndarray:
    """Edge-preserving smoothing (bilateral filter; fast at any size)."""
    return cv2.bilateralFilter(image, 5, strength, 3)


def resample(image: np.ndarray, factor: float) -> np.ndarray:
    """Down-sample by `factor` (< 1) and back up: the softness of an up-scaled image."""
    height, width = image.shape[:2]
    small = cv2.resize(image, (max(1, round(width * factor)), max(1, round(height * factor))),
                       interpolation=cv2.INTER_AREA)
    return cv2.resize(small, (width, height), interpolation=cv2.INTER_LINEAR)


def feather_alpha(mask: np.ndarray, feather: float) -> np.ndarray:
    """Blend weight that rises from 1/feather at the mask border to 1 inside, 0 outside.

    Shape: (H, W) uint8 {0,1} -> (H, W, 1) float32.
    """
    distance = cv2.distanceTransform(mask * np.uint8(255), cv2.DIST_L2, 5)
    return np.clip(distance / max(feather, 1.0), 0.0, 1.0)[:, :, None]


def alpha_blend(base: np.ndarray, top: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    out = alpha * top.astype(np.float32) + (1.0 - alpha) * base.astype(np.float32)
    return np.clip(np.round(out), 0, 255).astype(np.uint8)


def poisson_blend(base: np.ndarray, top: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """`top` pasted into `base` inside `mask` with Poisson blending (Perez et al. 2003).

    The result inside the mask keeps `top`'s gradients and meets `base` at the mask's edge:
    out = top + h, with h harmonic inside the mask and h = base - top on the pixels around it
    (image borders: zero normal derivative). Solved exactly with a sparse LU factorisation.
    (OpenCV 5.0's cv2.seamlessClone leaves the destination nearly unchanged, so it is not used.)
    `top` is aligned with `base`. Shape: (H, W, 3) uint8 x2, (H, W) uint8 {0,1} -> (H, W, 3) uint8.
    """
    from scipy.sparse import coo_matrix
    from scipy.sparse.linalg import splu

    inside = mask.astype(bool)
    n = int(inside.sum())
    if n == 0 or n == mask.size:
        return top.copy() if n else base.copy()
    height, width = mask.shape
    index = np.full((height, width), -1, np.int64)
    index[inside] = np.arange(n)
    ys, xs = np.nonzero(inside)
    difference = base.astype(np.float64) - top.astype(np.float64)
    rows, cols = [np.arange(n)], [np.arange(n)]
    diagonal = np.zeros(n)
    rhs = np.zeros((n, 3))
    off_rows, off_cols = [], []
    for dy, dx in ((-1, 0), (1, 0), (0, -1), (0, 1)):
        ny, nx = ys + dy, xs + dx
        valid = (ny >= 0) & (ny < height) & (nx >= 0) & (nx < width)
        diagonal += valid
        neighbour = np.full(n, -1, np.int64)
        neighbour[valid] = index[ny[valid], nx[valid]]
        unknown = neighbour >= 0
        off_rows.append(np.nonzero(unknown)[0])
        off_cols.append(neighbour[unknown])
        known = valid & ~unknown
        rhs[known] += difference[ny[known], nx[known]]
    rows = np.concatenate([np.arange(n), *off_rows])
    cols = np.concatenate([np.arange(n), *off_cols])
    values = np.concatenate([diagonal, -np.ones(sum(len(r) for r in off_rows))])
    system = coo_matrix((values, (rows, cols)), shape=(n, n)).tocsc()
    correction = splu(system).solve(rhs)
    out = base.astype(np.float64)
    out[ys, xs] = top[ys, xs] + correction
    return np.clip(np.round(out), 0, 255).astype(np.uint8)


def break_shortcuts(rng: np.random.Generator, source: np.ndarray, filled: np.ndarray, mask: np.ndarray,
                    family: str, noise_scale: float = 1.0) -> tuple[np.ndarray, list[dict]]:
    """Randomly re-inject matched noise into / sharpen / blur the fill (inside the mask only). `noise_scale`
    multiplies the family's noise probability (the same random draws at any scale: only the outcome moves)."""
    steps = []
    if rng.random() < NOISE_PROBABILITY.get(family, DEFAULT_NOISE_PROBABILITY) * noise_scale:
        filled, sigma = add_matched_noise(rng, source, filled, mask)
        if sigma:
            steps.append({"op": "matched_noise", "sigma": sigma})
    roll = rng.random()
    processed = None
    if roll < SHARPEN_PROBABILITY:
        amount = round(float(rng.uniform(0.3, 1.5)), 3)
        processed = sharpen(filled, amount)
        steps.append({"op": "sharpen", "amount": amount})
    elif roll < SHARPEN_PROBABILITY + BLUR_PROBABILITY:
        sigma = round(float(rng.uniform(0.4, 1.2)), 3)
        processed = blur(filled, sigma)
        steps.append({"op": "blur", "sigma": sigma})
    if processed is not None:
        filled = filled.copy()
        inside = mask.astype(bool)
        filled[inside] = processed[inside]
    return filled, steps


def retouch_whole(rng: np.random.Generator, image: np.ndarray) -> tuple[np.ndarray, dict | None]:
    """A hard negative (with HARD_NEGATIVE_PROBABILITY): the whole image blurred, denoised, sharpened
    or resampled; it stays labelled untouched."""
    if rng.random() >= HARD_NEGATIVE_PROBABILITY:
        return image, None
    kind = str(rng.choice(HARD_NEGATIVE_KINDS))
    if kind == "blur":
        value = round(float(rng.uniform(0.5, 1.5)), 3)
        return blur(image, value), {"op": kind, "sigma": value}
    if kind == "denoise":
        value = round(float(rng.uniform(10, 40)), 3)
        return denoise(image, value), {"op": kind, "strength": value}
    if kind == "sharpen":
        value = round(float(rng.uniform(0.3, 1.5)), 3)
        return sharpen(image, value), {"op": kind, "amount": value}
    value = round(float(rng.uniform(0.4, 0.8)), 3)
    return resample(image, value), {"op": kind, "factor": value}
