"""Inpainting masks: free-form brush strokes (thin / medium / thick, as LaMa's training masks),
object-like polygons and blobs, ellipses and boxes, covering MIN_COVERAGE..MAX_COVERAGE of the image.

Every maker takes (rng, height, width, target_area_px) and returns uint8 {0, 1} of shape (H, W).
"""

from __future__ import annotations

import cv2
import numpy as np

MIN_COVERAGE, MAX_COVERAGE = 0.01, 0.50
# Brush width as a fraction of the image side, per stroke kind (LaMa: thin / medium / thick).
STROKE_WIDTHS = {"strokes_thin": (0.015, 0.04), "strokes_medium": (0.04, 0.09), "strokes_thick": (0.09, 0.2)}
# Largest coverage a kind is asked for (thin strokes covering half the image would be a scribble).
MAX_TARGET = {"strokes_thin": 0.2, "strokes_medium": 0.35}


def _strokes(rng: np.random.Generator, height: int, width: int, area: float, widths: tuple[float, float]) -> np.ndarray:
    """Random-walk brush strokes: each stroke 2-8 segments with round joints, until `area` is covered."""
    mask = np.zeros((height, width), np.uint8)
    side = min(height, width)
    brush = max(1, int(round(rng.uniform(*widths) * side)))
    for _ in range(64):  # strokes
        point = rng.uniform((0, 0), (width - 1, height - 1))
        angle = rng.uniform(0, 2 * np.pi)
        for _ in range(int(rng.integers(2, 9))):
            angle += rng.uniform(-1.5, 1.5)
            length = rng.uniform(0.1, 0.4) * side
            end = np.clip(point + length * np.array([np.cos(angle), np.sin(angle)]), 0, (width - 1, height - 1))
            width_px = max(1, int(round(brush * rng.uniform(0.7, 1.3))))
            cv2.line(mask, tuple(int(v) for v in point), tuple(int(v) for v in end), 1, width_px, cv2.LINE_8)
            point = end
        if mask.sum() >= area:
            break
    return mask


def _polygon(rng: np.random.Generator, height: int, width: int, area: float) -> np.ndarray:
    """An object-like star-shaped polygon: 5-14 vertices at jittered radii around a centre."""
    mask = np.zeros((height, width), np.uint8)
    count = int(rng.integers(5, 15))
    angles = np.sort(rng.uniform(0, 2 * np.pi, count))
    radii = rng.uniform(0.5, 1.0, count)
    # Area of the polygon with unit scale, to scale it to `area`.
    xs, ys = radii * np.cos(angles), radii * np.sin(angles)
    unit_area = 0.5 * abs(np.dot(xs, np.roll(ys, 1)) - np.dot(ys, np.roll(xs, 1)))
    scale = np.sqrt(area / max(unit_area, 1e-6))
    cx, cy = rng.uniform(0.2, 0.8) * width, rng.uniform(0.2, 0.8) * height
    points = np.stack([cx + scale * xs, cy + scale * ys], 1)
    cv2.fillPoly(mask, [np.round(points).astype(np.int32)], 1)
    return mask


def _ellipses(rng: np.random.Generator, height: int, width: int, area: float) -> np.ndarray:
    mask = np.zeros((height, width), np.uint8)
    count = int(rng.integers(1, 4))
    for _ in range(count):
        ratio = rng.uniform(0.3, 1.0)
        semi_major = np.sqrt(area / count / (np.pi * ratio))
        axes = (max(1, int(round(semi_major))), max(1, int(round(semi_major * ratio))))
        center = (int(rng.integers(0, width)), int(rng.integers(0, height)))
        cv2.ellipse(mask, center, axes, float(rng.uniform(0, 180)), 0, 360, 1, -1)
    return mask


def _boxes(rng: np.random.Generator, height: int, width: int, area: float) -> np.ndarray:
    """1-2 boxes, axis-aligned half the time, else rotated."""
    mask = np.zeros((height, width), np.uint8)
    count = int(rng.integers(1, 3))
    for _ in range(count):
        ratio = rng.uniform(0.3, 1.0)
        side = np.sqrt(area / count / ratio)
        center = (float(rng.uniform(0, width)), float(rng.uniform(0, height)))
        angle = 0.0 if rng.random() < 0.5 else float(rng.uniform(0, 90))
        corners = cv2.boxPoints((center, (side, side * ratio), angle))
        cv2.fillPoly(mask, [np.round(corners).astype(np.int32)], 1)
    return mask


def _blob(rng: np.random.Generator, height: int, width: int, area: float) -> np.ndarray:
    """A smooth organic blob: low-frequency noise under a Gaussian envelope, thresholded."""
    cells = int(rng.integers(3, 7))
    noise = cv2.resize(rng.standard_normal((cells, cells)).astype(np.float32), (width, height),
                       interpolation=cv2.INTER_CUBIC)
    cy, cx = rng.uniform(0.2, 0.8) * height, rng.uniform(0.2, 0.8) * width
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    spread = np.sqrt(area) * rng.uniform(0.6, 1.0)
    field = np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * spread**2)) * (1.5 + 0.5 * noise)
    threshold = np.quantile(field, 1.0 - area / (height * width))
    return (field > threshold).astype(np.uint8)


MASK_MAKERS = {
    "strokes_thin": lambda rng, h, w, a: _strokes(rng, h, w, a, STROKE_WIDTHS["strokes_thin"]),
    "strokes_medium": lambda rng, h, w, a: _strokes(rng, h, w, a, STROKE_WIDTHS["strokes_medium"]),
    "strokes_thick": lambda rng, h, w, a: _strokes(rng, h, w, a, STROKE_WIDTHS["strokes_thick"]),
    "polygon": _polygon,
    "blob": _blob,
    "ellipses": _ellipses,
    "boxes": _boxes,
}
MASK_KINDS = tuple(MASK_MAKERS)


def random_mask(rng: np.random.Generator, height: int, width: int | None = None,
                kind: str | None = None) -> tuple[np.ndarray, str]:
    """A random mask covering MIN_COVERAGE..MAX_COVERAGE of the image (target log-uniform).

    Shape: -> (H, W) uint8 {0, 1}, and its kind.
    """
    width = height if width is None else width
    kind = str(rng.choice(MASK_KINDS)) if kind is None else kind
    make = MASK_MAKERS[kind]
    high = MAX_TARGET.get(kind, 0.45)
    for _ in range(20):
        target = float(np.exp(rng.uniform(np.log(0.015), np.log(high))))
        mask = make(rng, height, width, target * height * width)
        if MIN_COVERAGE <= mask.mean() <= MAX_COVERAGE:
            return mask, kind
    # Practically unreachable; fall back to a centred box of 10% of the image.
    mask = np.zeros((height, width), np.uint8)
    bh, bw = max(1, int(height * 0.316)), max(1, int(width * 0.316))
    y0, x0 = (height - bh) // 2, (width - bw) // 2
    mask[y0:y0 + bh, x0:x0 + bw] = 1
    return mask, "boxes"


def deform_mask(rng: np.random.Generator, mask: np.ndarray, strength: float = 0.04) -> np.ndarray:
    """The mask warped by a smooth random displacement field (amplitude `strength` x side), binary.

    Shape: (H, W) uint8 {0, 1} -> (H, W) uint8 {0, 1}; an empty result falls back to `mask`.
    """
    height, width = mask.shape
    amplitude = strength * min(height, width)
    grid = rng.standard_normal((2, 4, 4)).astype(np.float32) * amplitude
    dx = cv2.resize(grid[0], (width, height), interpolation=cv2.INTER_CUBIC)
    dy = cv2.resize(grid[1], (width, height), interpolation=cv2.INTER_CUBIC)
    xx, yy = np.meshgrid(np.arange(width, dtype=np.float32), np.arange(height, dtype=np.float32))
    warped = cv2.remap(mask, xx + dx, yy + dy, cv2.INTER_NEAREST, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    return warped if warped.any() else mask
