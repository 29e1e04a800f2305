"""The JSON bodies of the API: one prediction, and the model's description.

The encoders run in the gate's I/O threads (cv2 releases the GIL): the probability map and the mask are
encoded side by side, and the JSON bytes are built off the event loop.
"""

from __future__ import annotations

import base64
import json

import cv2
import numpy as np

from inpaintseg import rle
from inpaintseg.inference.pipeline import to_png8
from inpaintseg.inference.postprocess import TTA_OPTIONS

# Lossless and fast: zlib level 1; the "sub" filter (where this cv2 has the option) compresses smooth
# probability maps best and fastest; masks are written as 1-bit PNGs (decoders give 0/255 back).
_FILTER = [cv2.IMWRITE_PNG_FILTER, cv2.IMWRITE_PNG_FILTER_SUB] if hasattr(cv2, "IMWRITE_PNG_FILTER_SUB") else []
PNG_PROBABILITY = [cv2.IMWRITE_PNG_COMPRESSION, 1, *_FILTER]
PNG_MASK = [cv2.IMWRITE_PNG_COMPRESSION, 1, cv2.IMWRITE_PNG_BILEVEL, 1]


def png_base64(array: np.ndarray, params: list[int]) -> str:
    """A uint8 grey (H, W) array as a base64 PNG string."""
    ok, buf = cv2.imencode(".png", array, params)
    if not ok:  # pragma: no cover - cv2 encodes any uint8 2-D array
        raise RuntimeError("PNG encoding failed")
    return base64.b64encode(buf.tobytes()).decode("ascii")


def encode_probability(probability: np.ndarray) -> dict:
    """``probability_png``: 8-bit, value = round(p x 255), as ``predict --probs-out`` writes it."""
    return {"probability_png": png_base64(to_png8(probability), PNG_PROBABILITY)}


def encode_mask(mask: np.ndarray) -> dict:
    """``mask_png`` (0/255, as ``predict --masks-out``), ``rle`` (the submission's row-major RLE) and the
    manipulated fraction of a uint8 {0, 1} mask."""
    return {"manipulated_fraction": round(float(mask.mean()), 6) if mask.size else 0.0,
            "rle": rle.rle_encode(mask),
            "mask_png": png_base64(mask * np.uint8(255), PNG_MASK)}


def prediction_body(pred, image_id: str, width: int, height: int, encoded: dict, timings: dict[str, float]) -> dict:
    """``{image_id, width, height, score, label, threshold, tta, crf, manipulated_fraction, rle, mask_png,
    probability_png, timings}``; ``encoded`` = `encode_mask` and `encode_probability` merged."""
    return {
        "image_id": image_id,
        "width": int(width),
        "height": int(height),
        "score": round(float(pred.score), 6),
        "label": int(pred.label),
        "threshold": float(pred.threshold),
        "tta": pred.tta,
        "crf": pred.crf,
        **encoded,
        "timings": {k: round(float(v), 4) for k, v in timings.items()},
    }


def json_bytes(body: dict) -> bytes:
    return json.dumps(body, separators=(",", ":")).encode("utf-8")


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
