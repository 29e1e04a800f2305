"""The JSON bodies of the API: one prediction, and the model's description."""

from __future__ import annotations

import base64

import cv2
import numpy as np

from inpaintseg import rle
from inpaintseg.inference.pipeline import to_png8
from inpaintseg.inference.postprocess import TTA_OPTIONS

PNG_FAST = [cv2.IMWRITE_PNG_COMPRESSION, 1]  # big maps: fast deflate; still lossless


def png_base64(array: np.ndarray) -> str:
    """A uint8 grey (H, W) array as a base64 PNG string."""
    ok, buf = cv2.imencode(".png", array, PNG_FAST)
    if not ok:  # pragma: no cover - cv2 encodes any uint8 2-D array
        raise RuntimeError("PNG encoding failed")
    return base64.b64encode(buf.tobytes()).decode("ascii")


def prediction_body(pred, image_id: str, width: int, height: int, timings: dict[str, float]) -> dict:
    """``{image_id, width, height, score, label, threshold, tta, crf, rle, mask_png, probability_png, timings}``.

    rle: the submission's row-major ``start length`` pairs of the mask; mask_png: 0/255 at the image's size
    (as ``predict --masks-out``); probability_png: 8-bit, value = round(p x 255) (as ``--probs-out``).
    """
    return {
        "image_id": image_id,
        "width": int(width),
        "height": int(height),
        "score": round(float(pred.score), 6),
        "label": int(pred.label),
        "threshold": float(pred.threshold),
        "tta": pred.tta,
        "crf": pred.crf,
        "manipulated_fraction": round(float(pred.mask.mean()), 6) if pred.mask.size else 0.0,
        "rle": rle.rle_encode(pred.mask),
        "mask_png": png_base64(pred.mask * np.uint8(255)),
        "probability_png": png_base64(to_png8(pred.probability)),
        "timings": {k: round(float(v), 4) for k, v in timings.items()},
    }


def model_body(model, limits: dict) -> dict:
    """What `GET /api/v1/model` answers: the model folder's sections (no weights) and the service limits."""
    config = model.config
    post = model.postprocess()
    return {
        "architecture": config.get("architecture", {}),
        "input": config.get("input", {}),
        "postprocess": {"threshold": post.threshold, "tta": post.tta, "crf": post.crf, "sources": post.sources,
                        "calibration": (config.get("postprocess") or {}).get("calibration", {})},
        "metrics": config.get("metrics", {}),
        "data": config.get("data", {}),
        "device": str(model.device),
        "options": {"tta": list(TTA_OPTIONS)},
        "limits": limits,
    }
