"""Score predicted masks (a folder, or a submission CSV) against truth masks, streaming over images.

Metrics (a pixel is positive in a probability map when p >= threshold):
- ``dice_mean``: the competition's score, the mean over images of per-image Dice, where an image
  whose truth and prediction are both empty counts 1.0 (and only one of them empty counts 0.0);
- ``dice_pooled``, ``iou_pooled``: over all pixels of all images; ``iou_mean``: per image, averaged;
- ``precision``, ``recall``, ``f1``: pooled pixel counts of the binary predictions;
- with probability maps (8-bit PNGs from ``predict --probs-out``): ``best_f1`` and its threshold, and
  the pixel ROC ``pixel_auc`` (exact for 8-bit maps: 256 bins);
- image level (manipulated = truth non-empty): ``image_auc`` and ``image_accuracy``; the score is
  ``inference.image_score`` of the probability map when given (label = score >= threshold),
  otherwise whether the predicted mask is non-empty;
- ``false_positive``: on images whose truth is empty, the mean predicted area fraction and the number
  of such images with any predicted pixel;
- ``by_method``: mean Dice per inpainting method, from a demo-data ``meta.json``.

Only per-image counts are kept (four integers and a score per image), never the masks.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from inpaintseg.errors import DataError, InpaintsegError, name_list

DICE_RULE = ("Dice = mean over images of per-image Dice 2TP/(2TP+FP+FN); an image with empty truth and "
             "empty prediction counts 1.0, one empty and the other not counts 0.0")
PROB_BINS = 256  # 8-bit probability PNGs: value v -> bin v, so binned metrics are exact


@dataclass
class _Tally:
    """Per-image numbers gathered while streaming."""

    stems: list[str] = field(default_factory=list)
    counts: list[tuple[int, int, int, int]] = field(default_factory=list)  # tp, fp, fn, tn
    scores: list[float] = field(default_factory=list)
    mismatches: list[str] = field(default_factory=list)


def _load_meta(path: Path) -> dict[str, dict[str, str]]:
    """{stem: {"method": ..., "family": ...}} from a demo-data meta.json ({"images": {stem: {"method": ...,
    "family": ...}}}) or a plain {stem: {"method": ...}} / {stem: method} mapping ("family" is optional)."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DataError(f"{path}: meta file not found. Pass the demo data's test/meta.json.") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataError(f"{path}: cannot be read as JSON ({exc}). Pass the demo data's test/meta.json.") from None
    images = data.get("images", data) if isinstance(data, dict) else None
    if not isinstance(images, dict):
        raise DataError(f"{path}: expected a JSON object mapping image ids to records with a \"method\" key "
                        "(as in demo-data's meta.json).")
    records = {}
    for stem, info in images.items():
        if isinstance(info, dict) and "method" in info:
            records[str(stem)] = {"method": str(info["method"])}
            if "family" in info:
                records[str(stem)]["family"] = str(info["family"])
        elif isinstance(info, str):
            records[str(stem)] = {"method": info}
    if not records:
        raise DataError(f"{path}: no image has a \"method\" key; cannot break Dice down per method.")
    return records


def _folder_files(folder: Path) -> dict[str, Path]:
    """{stem: file} of an image folder; DataError for a missing/empty folder, stray files, duplicates."""
    from inpaintseg.data import pair_files

    return {s.stem: s.image_path for s in pair_files(folder)}


def _check_ids(truth: set[str], other: set[str], where: str, role: str) -> list[str]:
    problems = []
    missing = sorted(truth - other)
    extra = sorted(other - truth)
    if missing:
        problems.append(f"{len(missing)} truth image(s) have no {role} in {where}: {name_list(missing)}")
    if extra:
        problems.append(f"{len(extra)} {role}(s) in {where} match no truth mask: {name_list(extra)}")
    return problems


def _read_probs(path: Path) -> np.ndarray:
    """An 8-bit grey probability PNG -> float32 (H, W) in [0, 1] (value / 255)."""
    from inpaintseg.io import read_image

    return read_image(path)[:, :, 0].astype(np.float32) / 255.0


def _shape_text(shape) -> str:
    return f"{shape[1]}x{shape[0]}"


def _predictions(pred_dir: Path | None, submission: Path | None, truth_ids: set[str]):
    """A function stem, truth_shape -> predicted mask (or a mismatch message), after the id checks."""
    from inpaintseg.io import read_mask
    from inpaintseg.rle import read_submission, rle_decode

    if (pred_dir is None) == (submission is None):
        raise InpaintsegError("give exactly one of --pred MASKS_DIR or --submission CSV.")
    if pred_dir is not None:
        files = _folder_files(pred_dir)
        problems = _check_ids(truth_ids, set(files), str(pred_dir), "predicted mask")

        def get(stem: str, shape) -> np.ndarray:
            return read_mask(files[stem])
    else:
        rows = read_submission(submission)
        problems = _check_ids(truth_ids, set(rows), str(submission), "submission row")

        def get(stem: str, shape) -> np.ndarray:
            try:
                return rle_decode(rows[stem], shape)
            except DataError as exc:
                return f"{stem}: submission RLE does not fit the truth size {_shape_text(shape)} ({exc})"
    return get, problems


def _accumulate(truth_files: dict[str, Path], get_pred, probs_files: dict[str, Path] | None,
                histogram, tally: _Tally, progress: bool) -> None:
    """One image at a time: decode truth, prediction (and probabilities), keep only the counts."""
    from inpaintseg.inference import image_score
    from inpaintseg.io import read_mask

    from tqdm import tqdm

    for stem in tqdm(sorted(truth_files), desc="evaluating", unit="img", disable=not progress):
        truth = read_mask(truth_files[stem]).astype(bool)
        pred = get_pred(stem, truth.shape)
        if isinstance(pred, str):
            tally.mismatches.append(pred)
            continue
        if pred.shape != truth.shape:
            tally.mismatches.append(f"{stem} (prediction {_shape_text(pred.shape)}, truth {_shape_text(truth.shape)})")
            continue
        score = None
        if probs_files is not None:
            probs = _read_probs(probs_files[stem])
            if probs.shape != truth.shape:
                tally.mismatches.append(f"{stem} (probabilities {_shape_text(probs.shape)}, "
                                        f"truth {_shape_text(truth.shape)})")
                continue
            histogram.update(probs, truth)
            score = image_score(probs)
        pred = pred.astype(bool)
        tp = int(np.count_nonzero(pred & truth))
        fp = int(np.count_nonzero(pred)) - tp
        fn = int(np.count_nonzero(truth)) - tp
        tally.stems.append(stem)
        tally.counts.append((tp, fp, fn, truth.size - tp - fp - fn))
        tally.scores.append(float(pred.any()) if score is None else score)


def evaluate(truth_dir: str | os.PathLike, pred_dir: str | os.PathLike | None = None,
             submission: str | os.PathLike | None = None, probs_dir: str | os.PathLike | None = None,
             meta: str | os.PathLike | None = None, threshold: float = 0.5, progress: bool = False) -> dict:
    """Metrics of predictions against the truth masks in ``truth_dir`` (see the module docstring).

    Missing or extra ids, and size mismatches, raise a DataError naming them.
    """
    from inpaintseg.metrics import (PixelHistogram, dice_from_counts, iou_from_counts,
                                    precision_recall_f1, roc_auc)

    if not 0.0 < float(threshold) < 1.0:
        raise InpaintsegError(f"--threshold must lie in (0, 1), got {threshold}.")
    truth_dir = Path(truth_dir)
    truth_files = _folder_files(truth_dir)
    truth_ids = set(truth_files)
    get_pred, problems = _predictions(Path(pred_dir) if pred_dir else None,
                                      Path(submission) if submission else None, truth_ids)
    probs_files = None
    if probs_dir is not None:
        probs_files = _folder_files(Path(probs_dir))
        problems += _check_ids(truth_ids, set(probs_files), str(probs_dir), "probability map")
    methods = _load_meta(Path(meta)) if meta is not None else None
    if problems:
        raise DataError("the predictions do not match the truth masks:\n" + "\n".join(f"  - {p}" for p in problems)
                        + "\nPredict every truth image (ids are file stems) or evaluate against the matching truth folder.")

    histogram = PixelHistogram(PROB_BINS) if probs_files is not None else None
    tally = _Tally()
    _accumulate(truth_files, get_pred, probs_files, histogram, tally, progress)
    if tally.mismatches:
        raise DataError(f"{len(tally.mismatches)} image(s) differ in size from their truth mask: "
                        f"{name_list(tally.mismatches)}. Predictions must have the truth's exact size.")

    counts = np.array(tally.counts, dtype=np.int64).reshape(-1, 4)
    tp, fp, fn, tn = counts.T
    dice = dice_from_counts(tp, fp, fn)
    iou = iou_from_counts(tp, fp, fn)
    precision, recall, f1 = precision_recall_f1(tp.sum(), fp.sum(), fn.sum())
    truth_positive = (tp + fn) > 0
    scores = np.array(tally.scores, dtype=np.float64)
    predicted = scores >= threshold if probs_files is not None else scores > 0
    empty_truth = ~truth_positive
    pixels = tp + fp + fn + tn
    result: dict = {
        "n_images": int(len(counts)),
        "n_manipulated": int(truth_positive.sum()),
        "n_untouched": int(empty_truth.sum()),
        "dice_rule": DICE_RULE,
        "dice_mean": float(dice.mean()),
        "dice_pooled": float(dice_from_counts(tp.sum(), fp.sum(), fn.sum())),
        "iou_mean": float(iou.mean()),
        "iou_pooled": float(iou_from_counts(tp.sum(), fp.sum(), fn.sum())),
        "precision": float(precision),
        "recall": float(recall),
        "f1": float(f1),
        "image_score": ("inference.image_score of the probability map (mean of the top 1% probabilities), "
                        f"label = score >= {threshold:g}") if probs_files is not None
        else "predicted mask non-empty (no probability maps given)",
        "image_auc": _nan_to_none(roc_auc(scores, truth_positive)),
        "image_accuracy": float((predicted == truth_positive).mean()),
        "false_positive": {
            "n_empty_truth_images": int(empty_truth.sum()),
            "images_with_any_predicted_pixel": int((fp[empty_truth] > 0).sum()),
            "mean_area_fraction": float((fp[empty_truth] / np.maximum(pixels[empty_truth], 1)).mean())
            if empty_truth.any() else None,
        },
        "threshold": float(threshold),
        "per_image": {stem: round(float(d), 6) for stem, d in zip(tally.stems, dice)},
    }
    if histogram is not None:
        best_t, best_f1 = histogram.best_f1()
        result["best_f1"] = float(best_f1)
        result["best_f1_threshold"] = float(best_t)
        result["pixel_auc"] = _nan_to_none(histogram.auc())
    if methods is not None:
        result["by_method"] = _by_group(tally.stems, dice, methods, "method")
        if any("family" in record for record in methods.values()):
            result["by_family"] = _by_group(tally.stems, dice, methods, "family")
    return result


def _nan_to_none(value: float) -> float | None:
    return None if value is None or not np.isfinite(value) else float(value)


def _by_group(stems: list[str], dice: np.ndarray, records: dict[str, dict[str, str]], key: str) -> dict[str, dict]:
    """Mean Dice per value of `key` ("method" or "family"); images without a record count as "unknown"."""
    groups: dict[str, list[float]] = {}
    for stem, d in zip(stems, dice):
        groups.setdefault(records.get(stem, {}).get(key, "unknown"), []).append(float(d))
    return {m: {"n": len(v), "dice_mean": float(np.mean(v))} for m, v in sorted(groups.items())}


def _fmt(value) -> str:
    return "n/a" if value is None else f"{value:.4f}"


def format_table(result: dict) -> str:
    """The metrics as an aligned text table (what `inpaintseg evaluate` prints)."""
    rows = [
        ("images", f"{result['n_images']} ({result['n_manipulated']} manipulated, {result['n_untouched']} untouched)"),
        ("Dice (competition: mean per image)", _fmt(result["dice_mean"])),
        ("Dice (pooled pixels)", _fmt(result["dice_pooled"])),
        ("IoU (mean per image)", _fmt(result["iou_mean"])),
        ("IoU (pooled pixels)", _fmt(result["iou_pooled"])),
        ("pixel precision", _fmt(result["precision"])),
        ("pixel recall", _fmt(result["recall"])),
        ("pixel F1", _fmt(result["f1"])),
    ]
    if "best_f1" in result:
        rows += [("best pixel F1 (threshold)", f"{_fmt(result['best_f1'])} ({result['best_f1_threshold']:.3f})"),
                 ("pixel ROC AUC", _fmt(result["pixel_auc"]))]
    fp = result["false_positive"]
    rows += [
        ("image ROC AUC", _fmt(result["image_auc"])),
        ("image accuracy", _fmt(result["image_accuracy"])),
        ("untouched images with predicted pixels",
         f"{fp['images_with_any_predicted_pixel']} of {fp['n_empty_truth_images']}"),
        ("mean false-positive area on untouched", _fmt(fp["mean_area_fraction"])),
    ]
    for key in ("family", "method"):
        for name, info in result.get(f"by_{key}", {}).items():
            rows.append((f"Dice, {key} {name}", f"{_fmt(info['dice_mean'])} (n={info['n']})"))
    width = max(len(name) for name, _ in rows)
    lines = [f"{name:<{width}}  {value}" for name, value in rows]
    lines.append(f"rule: {result['dice_rule']}.")
    lines.append(f"image-level score: {result['image_score']}.")
    return "\n".join(lines)
