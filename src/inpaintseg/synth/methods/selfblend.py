"""Family "selfblend": the same photo after a different processing history, pasted back through a
deformed, softened mask (as self-blended images, SBI). The label is the deformed mask; the blend
weight fades towards its border and is 0 outside it."""

from __future__ import annotations

import cv2
import numpy as np

from inpaintseg.synth.blend import alpha_blend, denoise, resample, sharpen
from inpaintseg.synth.masks import deform_mask
from inpaintseg.synth.registry import Fill, MethodContext, method


def _blend_back(ctx: MethodContext, image: np.ndarray, processed: np.ndarray, mask: np.ndarray, info: dict) -> Fill:
    rng = ctx.rng
    label = deform_mask(rng, mask)
    sigma = float(rng.uniform(1.0, 4.0))
    soft = cv2.GaussianBlur(label.astype(np.float32), (0, 0), sigma)
    opacity = float(rng.uniform(0.75, 1.0))
    alpha = (np.clip(2.0 * soft - 0.5, 0.0, 1.0) * label * opacity)[:, :, None]
    info = {**info, "edge_sigma": round(sigma, 3), "opacity": round(opacity, 3)}
    return Fill(alpha_blend(image, processed, alpha), label, info)


@method("reprocess_resample", "selfblend", "region resampled down and up (0.3-0.8x), blended back")
def reprocess_resample(ctx: MethodContext, image: np.ndarray, mask: np.ndarray) -> Fill:
    factor = round(float(ctx.rng.uniform(0.3, 0.8)), 3)
    return _blend_back(ctx, image, resample(image, factor), mask, {"factor": factor})


@method("reprocess_jpeg", "selfblend", "region JPEG-compressed at another quality (20-70), blended back")
def reprocess_jpeg(ctx: MethodContext, image: np.ndarray, mask: np.ndarray) -> Fill:
    from inpaintseg.synth.degrade import jpeg

    quality = int(ctx.rng.integers(20, 71))
    return _blend_back(ctx, image, jpeg(image, quality), mask, {"quality": quality})


@method("reprocess_filter", "selfblend", "region denoised, sharpened or colour-jittered, blended back")
def reprocess_filter(ctx: MethodContext, image: np.ndarray, mask: np.ndarray) -> Fill:
    rng = ctx.rng
    kind = str(rng.choice(("denoise", "sharpen", "colour")))
    if kind == "denoise":
        value = round(float(rng.uniform(20, 60)), 3)
        processed = denoise(image, value)
    elif kind == "sharpen":
        value = round(float(rng.uniform(0.5, 2.0)), 3)
        processed = sharpen(image, value)
    else:  # per-channel gain and offset
        gain = rng.uniform(0.85, 1.15, 3)
        offset = rng.uniform(-12, 12, 3)
        processed = np.clip(image.astype(np.float32) * gain + offset, 0, 255).round().astype(np.uint8)
        value = [round(float(v), 3) for v in (*gain, *offset)]
    return _blend_back(ctx, image, processed, mask, {"filter": kind, "value": value})
