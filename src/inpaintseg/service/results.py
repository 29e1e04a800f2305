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
    """``mask_png`` (0/255, as ``predict --masks-out``), ``rle`` (the submission's row-major RLE), and the
    area of a uint8 {0, 1} mask: ``manipulated_pixels`` and ``manipulated_fraction`` (0..1), both counted on this
    mask, so the page and every client show the server's numbers."""
    pixels = int(np.count_nonzero(mask))
    return {"manipulated_pixels": pixels,
            "manipulated_fraction": round(pixels / mask.size, 6) if mask.size else 0.0,
            "rle": rle.rle_encode(mask),
            "mask_png": png_base64(mask * np.uint8(255), PNG_MASK)}


def prediction_body(pred, image_id: str, width: int, height: int, encoded: dict, timings: dict[str, float],
                    score_threshold: float | None = None) -> dict:
    """The `schemas.PredictionBody` of one prediction; ``encoded`` = `encode_mask` and `encode_probability`
    merged."""
    verdict = pred.verdict.as_dict() if pred.verdict is not None else None
    return {
        "image_id": image_id,
        "width": int(width),
        "height": int(height),
        "score": round(float(pred.score), 6),
        "label": int(pred.label),
        "score_threshold": float(pred.image_threshold if score_threshold is None else score_threshold),
        "verdict": verdict,
        "threshold": float(pred.threshold),
        "gate": pred.gate,
        "gated": pred.gated,
        "tta": pred.tta,
        "crf": pred.crf,
        **encoded,
        "timings": {k: round(float(v), 4) for k, v in timings.items()},
    }


def json_bytes(body: dict) -> bytes:
    return json.dumps(body, separators=(",", ":")).encode("utf-8")


def _name(path) -> str:
    """The last part of a path-like text: no absolute path leaves the server."""
    return str(path).replace("\\", "/").rstrip("/").rsplit("/", 1)[-1] if path else ""


def model_name(source) -> str:
    """'RUN/model' for a run's model folder (the folder's own name says nothing), else the folder's name."""
    if not source:
        return ""
    name = _name(source)
    parent = _name(str(source).replace("\\", "/").rstrip("/").rsplit("/", 1)[0]) if "/" in str(source) else ""
    return f"{parent}/{name}" if name == "model" and parent else name


def quality(config: dict) -> dict:
    """`schemas.QualityBody`: validation Dice next to the trivial baselines, and the warning when it loses."""
    from inpaintseg.inference.verdicts import quality_warning

    record = (config.get("postprocess") or {}).get("verdicts") or {}
    dice = record.get("model_dice", (config.get("metrics") or {}).get("threshold_val_dice"))
    return {"validation_dice": dice, "baselines": record.get("baselines") or {},
            "warning": quality_warning(config)}


def model_card(model, post) -> list[list[str]]:
    """[label, text] rows summarising the model for a person: what it was trained on and how well it did."""
    config = model.config
    data, training = config.get("data") or {}, config.get("training") or {}
    arch, inp = config.get("architecture") or {}, config.get("input") or {}
    q = quality(config)
    rows = [["Model", f"{model_name(model.source) or arch.get('name', '?')}: {arch.get('name', '?')}, input "
                      f"{inp.get('mode', '?')} {inp.get('size', '?')} px"]]
    if data:
        rows.append(["Trained on", f"{data.get('n_train', '?')} training / {data.get('n_val', '?')} validation "
                                   f"images from '{_name(data.get('data_dir')) or '?'}'"
                     + (f", {training['epochs_completed']} epoch{'s' * (training['epochs_completed'] != 1)}"
                        if training.get("epochs_completed") else "")])
    if q["validation_dice"] is not None:
        base = ", ".join(f"{k} {v:.3f}" for k, v in q["baselines"].items() if v is not None)
        rows.append(["Validation Dice", f"{q['validation_dice']:.3f} with the stored post-processing"
                     + (f" (trivial answers: {base})" if base else "")])
    record = (config.get("postprocess") or {}).get("verdicts") or {}
    if record.get("cutoffs"):
        c = record["cutoffs"]
        rows.append(["Verdict levels", f"likely untouched < {c['uncertain']:.2f} <= uncertain < "
                                       f"{c['likely_manipulated']:.2f} <= likely manipulated (image score; from "
                                       f"{record['n_untouched']} untouched and {record['n_manipulated']} manipulated "
                                       f"{'held-out' if record.get('source') else 'validation'} images)"])
    else:
        rows.append(["Verdict levels", "no false-alarm table in this model folder: manipulated when the image "
                                       f"score >= {post.threshold:g}"])
    gate = "none" if post.gate is None else (f"{post.gate:g} (a mask stays empty when the image score is below it; "
                                             "chosen to flag few untouched images)")
    rows.append(["Post-processing", f"threshold {post.threshold:g}, image gate {gate}, TTA {post.tta}, CRF {post.crf}"])
    if config.get("recipe") or config.get("card"):
        from inpaintseg.model.card import card_lines

        # The shipped model's card (docs/model-card.md): how it was trained and what it measurably scores.
        rows += [["Model card", line] for line in card_lines(config, brief=True)]
    return rows


def model_body(model, limits: dict) -> dict:
    """`schemas.ModelBody`, what `GET /api/v1/model` answers: the model folder's sections (no weights, no
    absolute paths), the model card summary, the quality check and the service limits."""
    config = model.config
    post = model.postprocess()
    data = {k: (_name(v) if k in ("data_dir", "split_file") else v) for k, v in (config.get("data") or {}).items()}
    verdicts = (config.get("postprocess") or {}).get("verdicts")
    calibration = dict((config.get("postprocess") or {}).get("calibration") or {})
    return {
        "name": model_name(model.source) or "model",
        "card": model_card(model, post),
        "quality": quality(config),
        "verdict_levels": None if not verdicts else {k: verdicts.get(k) for k in (
            "cutoffs", "n_untouched", "n_manipulated", "target_rate", "rule", "table")},
        "architecture": config.get("architecture", {}),
        "input": config.get("input", {}),
        "postprocess": {"threshold": post.threshold, "gate": post.gate, "tta": post.tta, "crf": post.crf,
                        "sources": post.sources,
                        "calibration": calibration},
        "metrics": config.get("metrics", {}),
        "data": data,
        "device": str(model.device),
        "options": {"tta": list(TTA_OPTIONS)},
        "limits": limits,
    }
