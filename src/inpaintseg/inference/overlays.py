"""Heat-map overlays for analysts: the probability map painted over the image at its native size
(`predict --overlays-out DIR`, and the report's gallery), and the region overlay (`region_overlay`: only the
pixels with p >= threshold are tinted, the rest of the photo is left as it is; `Prediction.overlay()`).

The colour is matplotlib's perceptually uniform, colour-blind-safe "viridis" (dark purple = 0, yellow = 1),
the one colour map of the report, the overlays and the analyst page (whose script carries `VIRIDIS_STOPS`; a
browser test compares its table with `viridis_lut`). In `heatmap_overlay` a pixel's opacity grows with its
probability, so untouched areas keep the photo visible. A 1-pixel outline marks the predicted mask
(``probs >= threshold``).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

MAX_OPACITY = 0.65
REGION_OPACITY = 0.45  # region_overlay's fill: the photo stays readable under the marked region
OUTLINE_RGB = (255, 255, 255)


def viridis_lut() -> np.ndarray:
    """(256, 3) uint8 RGB: the one colour map (module docstring)."""
    return _viridis_lut()


def _viridis_lut() -> np.ndarray:
    """(256, 3) uint8 RGB lookup table of viridis (from OpenCV, which ships it; BGR -> RGB)."""
    import cv2

    ramp = np.arange(256, dtype=np.uint8).reshape(-1, 1)
    return cv2.applyColorMap(ramp, cv2.COLORMAP_VIRIDIS)[:, 0, ::-1].copy()


def heatmap_overlay(image: np.ndarray, probs: np.ndarray, threshold: float | None = None) -> np.ndarray:
    """RGB uint8 (H, W, 3): ``image`` blended with the viridis colour of ``probs`` (opacity = MAX_OPACITY x p),
    plus the outline of ``probs >= threshold`` when a threshold is given.

    Shape: image (H, W, 3) uint8, probs (H, W) float in [0, 1] -> (H, W, 3) uint8
    """
    import cv2

    if image.shape[:2] != probs.shape:
        raise ValueError(f"heatmap_overlay: image {image.shape[:2]} and probabilities {probs.shape} differ in size")
    p = np.clip(np.nan_to_num(probs.astype(np.float32)), 0.0, 1.0)
    colour = _viridis_lut()[np.rint(p * 255).astype(np.uint8)].astype(np.float32)
    alpha = (MAX_OPACITY * p)[:, :, None]
    out = np.rint(image.astype(np.float32) * (1 - alpha) + colour * alpha).astype(np.uint8)
    if threshold is not None:
        mask = (probs >= threshold).astype(np.uint8)
        contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
        cv2.drawContours(out, contours, -1, OUTLINE_RGB, max(1, round(max(image.shape[:2]) / 512)))
    return out


def region_overlay(image: np.ndarray, probs: np.ndarray, threshold: float) -> np.ndarray:
    """RGB uint8 (H, W, 3): ``image`` unchanged where p < threshold; where p >= threshold a translucent
    (`REGION_OPACITY`) fill in the viridis colour of p and the region's outline (white, ~1/512 of the long side).

    Shape: image (H, W, 3) uint8, probs (H, W) float in [0, 1] -> (H, W, 3) uint8
    """
    import cv2

    if image.shape[:2] != probs.shape:
        raise ValueError(f"region_overlay: image {image.shape[:2]} and probabilities {probs.shape} differ in size")
    p = np.clip(np.nan_to_num(probs.astype(np.float32)), 0.0, 1.0)
    mask = probs >= threshold
    out = image.copy()
    colour = _viridis_lut()[np.rint(p[mask] * 255).astype(np.uint8)].astype(np.float32)
    out[mask] = np.rint(image[mask].astype(np.float32) * (1 - REGION_OPACITY) + colour * REGION_OPACITY)
    contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    cv2.drawContours(out, contours, -1, OUTLINE_RGB, max(1, round(max(image.shape[:2]) / 512)))
    return out


def write_overlay(path: str | os.PathLike, image_path: str | os.PathLike, probs: np.ndarray,
                  threshold: float | None = None) -> Path:
    """Decode ``image_path``, draw `heatmap_overlay` and write it as a PNG at the image's native size (atomic)."""
    from inpaintseg import fileio

    fileio.write_png(Path(path), heatmap_overlay(fileio.read_image(Path(image_path)), probs, threshold))
    return Path(path)
