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
- ``by_coverage``: mean Dice per bucket of the truth mask's share of the image (always);
- ``by_method`` / ``by_family`` / ``by_mask_kind`` / ``by_degradation``: mean Dice per manipulation method,
  family, mask kind and degradation chain, from a demo-data ``meta.json``;
- with probability maps also ``pixel_average_precision``, ``pixel_prevalence`` and ``dice_vs_threshold``
  (mean per-image Dice of ``probs >= t`` on the 8-bit maps for t = 0.01 .. 0.99, with its best point);
- ``warnings``: e.g. a submission that fits the truth much better when read in the other RLE order.

Only per-image counts are kept (four integers and a score per image), never the masks.
`evaluate_detailed` returns them with the summary (`Evaluation`): the HTML report renders that object,
so its numbers are the ones `inpaintseg evaluate --json` writes.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from inpaintseg.errors import DataError, name_list
from inpaintseg.evaluation.sources import check_ids, folder_files, load_meta, predictions, read_probs, shape_text
from inpaintseg.evaluation.summary import PerImage, Tally, group_tables, probability_metrics, summary

BASELINES = ("all-empty", "all-full")
DEFAULT_SCORE_THRESHOLD = 0.5  # without a model or a scores file to say which threshold predict used
PROB_BINS = 256  # 8-bit probability PNGs: value v -> bin v, so binned metrics are exact


class EvaluationResult(dict):
    """What `evaluate` returns: the summary (every key `inpaintseg evaluate --json` writes) as a dict, with
    attribute access (``result.dice_mean``), ``to_dict()`` (a plain dict for JSON) and a short repr."""

    def __getattr__(self, name: str):
        try:
            return self[name]
        except KeyError:
            raise AttributeError(f"no metric {name!r}; the metrics are {', '.join(self)}") from None

    def to_dict(self) -> dict:
        return dict(self)

    def __repr__(self) -> str:
        shown = ", ".join(f"{k}={self[k]:.4f}" for k in ("dice_mean", "dice_pooled", "pixel_auc", "image_auc",
                                                         "image_accuracy") if isinstance(self.get(k), float))
        return (f"EvaluationResult({self.get('n_images')} images, {shown}, score_threshold="
                f"{self.get('score_threshold')})")


def model_score_threshold(model_dir: str | os.PathLike) -> float:
    """The image-level threshold a model folder (or a run folder) decides with: what `predict`, the report and
    the service use (the larger of the calibrated pixel threshold and the image gate)."""
    from inpaintseg.inference.postprocess import resolve_postprocess
    from inpaintseg.model.io import model_folder, read_model_config

    post = resolve_postprocess(read_model_config(model_folder(model_dir)))
    return post.image_threshold


def scores_file_threshold(path: str | os.PathLike) -> float | None:
    """The ``score_threshold`` column of a scores file written by `predict --scores-out` (None when the file
    has no such column or no rows)."""
    import csv

    with open(path, newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            value = (row.get("score_threshold") or "").strip()
            return float(value) if value else None
    return None


@dataclass
class ImageResult:
    """One evaluated image: pixel counts, Dice, image score and whether its truth is non-empty."""

    stem: str
    tp: int
    fp: int
    fn: int
    tn: int
    dice: float
    score: float
    manipulated: bool

    @property
    def false_positive_fraction(self) -> float:
        return self.fp / max(self.tp + self.fp + self.fn + self.tn, 1)


@dataclass
class Evaluation:
    """`evaluate_detailed`'s answer: ``summary`` (what `evaluate` returns and --json writes), the per-image
    results in stem order, and the pixel histogram of the probability maps (None without them)."""

    summary: dict
    images: list[ImageResult]
    histogram: object | None = None


def _accumulate(truth_files: dict[str, Path], get_pred, probs_files: dict[str, Path] | None,
                histogram, tally: Tally, progress: bool, get_other=None) -> None:
    """One image at a time: decode truth, prediction (and probabilities), keep only the counts."""
    from inpaintseg.progress import progress_bar

    with progress_bar(len(truth_files), "evaluating", progress) as bar:
        for stem in sorted(truth_files):
            _accumulate_one(stem, truth_files[stem], get_pred, probs_files, histogram, tally, get_other)
            bar.update(1)


def _accumulate_one(stem: str, truth_file: Path, get_pred, probs_files, histogram, tally: Tally,
                    get_other) -> None:
    from inpaintseg.fileio import read_mask
    from inpaintseg.metrics import dice_curve, image_score, mask_counts

    truth = read_mask(truth_file).astype(bool)
    pred = get_pred(stem, truth.shape)
    if isinstance(pred, str):
        tally.mismatches.append(pred)
        return
    if pred.shape != truth.shape:
        tally.mismatches.append(f"{stem} (prediction {shape_text(pred.shape)}, truth {shape_text(truth.shape)})")
        return
    score = None
    if probs_files is not None:
        probs = read_probs(probs_files[stem])
        if probs.shape != truth.shape:
            tally.mismatches.append(f"{stem} (probabilities {shape_text(probs.shape)}, "
                                    f"truth {shape_text(truth.shape)})")
            return
        histogram.update(probs, truth)
        score = image_score(probs)
        curve = dice_curve(probs, truth)
        tally.dice_curve_sum = curve if tally.dice_curve_sum is None else tally.dice_curve_sum + curve
    pred = pred.astype(bool)
    tally.stems.append(stem)
    tally.counts.append(mask_counts(pred, truth))
    tally.scores.append(float(pred.any()) if score is None else score)
    if get_other is not None:
        other = get_other(stem, truth.shape)
        tally.other_order_counts.append((0, 0, int(truth.sum()), 0) if isinstance(other, str)
                                        else mask_counts(other, truth))


def evaluate(truth_dir: str | os.PathLike, pred_dir: str | os.PathLike | None = None,
             submission: str | os.PathLike | None = None, probs_dir: str | os.PathLike | None = None,
             meta: str | os.PathLike | None = None, score_threshold: float | None = None,
             progress: bool = False, *, rle_order: str = "row", stems=None, threshold: float | None = None,
             model: str | os.PathLike | None = None) -> EvaluationResult:
    """Metrics of predictions against the truth masks in ``truth_dir`` (see the module docstring): the
    ``summary`` of `evaluate_detailed` as an `EvaluationResult`. ``score_threshold`` (the image-level decision)
    defaults to ``model``'s (a model or run folder: what predict used), else 0.5. ``threshold`` is the old name
    of ``score_threshold``."""
    if threshold is not None:
        score_threshold = threshold
    if score_threshold is None:
        score_threshold = model_score_threshold(model) if model is not None else DEFAULT_SCORE_THRESHOLD
    return evaluate_detailed(truth_dir, pred_dir, submission, probs_dir, meta, score_threshold, progress,
                             rle_order=rle_order, stems=stems).summary


def evaluate_detailed(truth_dir: str | os.PathLike, pred_dir: str | os.PathLike | None = None,
                      submission: str | os.PathLike | None = None, probs_dir: str | os.PathLike | None = None,
                      meta: str | os.PathLike | None = None, score_threshold: float = 0.5,
                      progress: bool = False, *, rle_order: str = "row", stems=None) -> Evaluation:
    """Score predictions against the truth masks in ``truth_dir``; the one scoring loop behind
    `inpaintseg evaluate` and the HTML report.

    ``score_threshold``: the image-level decision "image score >= it" (with probability maps).
    ``rle_order``: how the submission's RLE is read, "row" (the default) or "column" (Kaggle's).
    ``stems``: evaluate only these truth ids (default: every truth mask). Missing or extra ids, and size
    mismatches, raise a DataError naming them.
    """
    from inpaintseg.metrics import PixelHistogram, check_threshold
    from inpaintseg.rle import rle_order_code

    threshold = check_threshold(score_threshold, "score_threshold")
    order = rle_order_code(rle_order)
    truth_files, left_out = _truth_files(Path(truth_dir), stems)
    get_pred, get_other, probs_files, problems = _prediction_sources(truth_files, left_out, pred_dir, submission,
                                                                     probs_dir, order)
    methods = load_meta(Path(meta)) if meta is not None else None
    if problems:
        raise DataError("the predictions do not match the truth masks:\n" + "\n".join(f"  - {p}" for p in problems)
                        + "\nPredict every truth image (ids are file stems) or evaluate against the matching truth folder.")

    histogram = PixelHistogram(PROB_BINS) if probs_files is not None else None
    tally = Tally()
    _accumulate(truth_files, get_pred, probs_files, histogram, tally, progress, get_other)
    if tally.mismatches:
        raise DataError(f"{len(tally.mismatches)} image(s) differ in size from their truth mask: "
                        f"{name_list(tally.mismatches)}. Predictions must have the truth's exact size.")
    scored = PerImage.of(tally, threshold, with_probs=probs_files is not None)
    result = summary(scored, tally, threshold, rle_order, with_probs=probs_files is not None,
                     from_submission=submission is not None)
    if histogram is not None:
        result.update(probability_metrics(histogram, tally))
    result.update(group_tables(scored, methods))
    return Evaluation(summary=EvaluationResult(result), images=_image_results(scored), histogram=histogram)


def _truth_files(truth_dir: Path, stems) -> tuple[dict[str, Path], frozenset]:
    """The truth masks to score ({stem: file}, only ``stems`` when given) and the truth ids left out."""
    truth_files = folder_files(truth_dir)
    if stems is None:
        return truth_files, frozenset()
    unknown = sorted(set(stems) - set(truth_files))
    if unknown:
        raise DataError(f"{truth_dir}: no truth mask for {len(unknown)} image(s): {name_list(unknown)}.")
    return {s: truth_files[s] for s in stems}, frozenset(set(truth_files) - set(stems))


def _prediction_sources(truth_files: dict[str, Path], left_out: frozenset, pred_dir, submission, probs_dir,
                        order: str) -> tuple:
    """(get_pred, get_other, probs_files or None, problems): the readers of the predictions (`sources.predictions`),
    the probability maps, and every id that does not match the truth."""
    truth_ids = set(truth_files)
    get_pred, problems, get_other = predictions(Path(pred_dir) if pred_dir else None,
                                                 Path(submission) if submission else None, truth_ids, order, left_out)
    probs_files = None
    if probs_dir is not None:
        probs_files = folder_files(Path(probs_dir))
        problems += check_ids(truth_ids, set(probs_files), str(probs_dir), "probability map", left_out)
    return get_pred, get_other, probs_files, problems


def _image_results(scored: PerImage) -> list[ImageResult]:
    return [ImageResult(stem, int(a), int(b), int(c), int(d), float(e), float(s), bool(m))
            for stem, (a, b, c, d), e, s, m in zip(scored.stems, scored.counts, scored.dice, scored.scores,
                                                  scored.truth_positive)]


def _fmt(value) -> str:
    return "n/a" if value is None else f"{value:.4f}"


def _percent(value) -> str:
    """A 0..1 share as a percent, for a person to read."""
    return "n/a" if value is None else f"{100 * value:.2f}%"


def _count(k, n) -> str:
    """'k of n (p%)'."""
    return "n/a" if k is None or not n else f"{k} of {n} ({100 * k / n:.0f}%)"


def summary_rows(result: dict) -> list[tuple[str, str, str]]:
    """(key, label, text) of every line of the metrics table: `format_table` prints them and the HTML
    report renders them, so both show the same numbers."""
    rows = [
        ("n_images", "images",
         f"{result['n_images']} ({result['n_manipulated']} manipulated, {result['n_untouched']} untouched)"),
        ("dice_mean", "Dice (competition: mean per image)", _fmt(result["dice_mean"])),
        ("dice_pooled", "Dice (pooled pixels)", _fmt(result["dice_pooled"])),
        ("iou_mean", "IoU (mean per image)", _fmt(result["iou_mean"])),
        ("iou_pooled", "IoU (pooled pixels)", _fmt(result["iou_pooled"])),
        ("precision", "pixel precision", _fmt(result["precision"])),
        ("recall", "pixel recall", _fmt(result["recall"])),
        ("f1", "pixel F1", _fmt(result["f1"])),
    ]
    if "best_f1" in result:
        rows += [("best_f1", "best pixel F1 (threshold)",
                  f"{_fmt(result['best_f1'])} ({result['best_f1_threshold']:.3f})"),
                 ("pixel_auc", "pixel ROC AUC", _fmt(result["pixel_auc"])),
                 ("pixel_average_precision", "pixel average precision", _fmt(result.get("pixel_average_precision")))]
    if "dice_vs_threshold" in result:
        curve = result["dice_vs_threshold"]
        rows.append(("dice_vs_threshold", "best mean Dice over thresholds (threshold)",
                     f"{_fmt(curve['best_dice_mean'])} ({curve['best_threshold']:.2f})"))
    fp = result["false_positive"]
    rows += [
        ("image_auc", "image ROC AUC", _fmt(result["image_auc"])),
        ("manipulated_images_flagged", "manipulated images flagged manipulated (image score)",
         _count(result.get("manipulated_images_flagged"), result["n_manipulated"])),
        ("image_accuracy", f"image accuracy (score >= {result['score_threshold']:g})", _percent(result["image_accuracy"])),
        ("false_positive.images_flagged_manipulated", "untouched images flagged manipulated (image score)",
         _count(fp.get("images_flagged_manipulated"), fp["n_empty_truth_images"])),
        ("false_positive.images_with_any_predicted_pixel", "untouched images with any predicted pixel",
         _count(fp["images_with_any_predicted_pixel"], fp["n_empty_truth_images"])),
        ("false_positive.mean_area_fraction", "mean false-positive area on untouched images",
         _percent(fp["mean_area_fraction"])),
    ]
    for key in ("family", "method"):
        for name, info in result.get(f"by_{key}", {}).items():
            rows.append((f"by_{key}.{name}", f"Dice, {key} {name}", f"{_fmt(info['dice_mean'])} (n={info['n']})"))
    return rows


def format_table(result: dict) -> str:
    """The metrics as an aligned text table (what `inpaintseg evaluate` prints)."""
    rows = [(label, text) for _, label, text in summary_rows(result)]
    width = max(len(name) for name, _ in rows)
    lines = [f"{name:<{width}}  {value}" for name, value in rows]
    lines.append(f"rule: {result['dice_rule']}.")
    lines.append(f"image-level score: {result['image_score']}.")
    return "\n".join(lines)


def baseline_submissions(truth_dir: str | os.PathLike, out_dir: str | os.PathLike, stems=None) -> dict[str, Path]:
    """Write the submissions of the two trivial baselines (every mask empty, every mask full) for the
    truth masks of ``truth_dir`` (only ``stems`` when given) into ``out_dir``; {name: CSV path}."""
    from inpaintseg import fileio, rle

    files = folder_files(Path(truth_dir))
    shapes = {stem: fileio.read_mask(files[stem]).shape for stem in (stems if stems is not None else files)}
    out_dir = Path(out_dir)
    paths = {"all-empty": out_dir / "baseline_all_empty.csv", "all-full": out_dir / "baseline_all_full.csv"}
    rle.write_submission(paths["all-empty"], {k: np.zeros(v, np.uint8) for k, v in shapes.items()})
    rle.write_submission(paths["all-full"], {k: np.ones(v, np.uint8) for k, v in shapes.items()})
    return paths
