"""From the per-image numbers `evaluate_detailed` gathers to its summary: pixel, image-level and
false-positive metrics, the probability-map metrics, the per-group tables (coverage, method, family, mask
kind, degradation) and the RLE-order warning; the key order is the order --json writes."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

# The other RLE reading must beat the given one by this much pooled Dice to warn. (It had to be twice as good
# too, which a transposed submission of blob-like masks never is: a rectangle overlaps its own transpose, so a
# column-major submission read row-major still scored pooled Dice ~0.7 against 1.0, silently.)
ORDER_WARNING_MARGIN = 0.1
DICE_RULE = ("Dice = mean over images of per-image Dice 2TP/(2TP+FP+FN); an image with empty truth and "
             "empty prediction counts 1.0, one empty and the other not counts 0.0")


@dataclass
class Tally:
    """Per-image numbers gathered while streaming."""

    stems: list[str] = field(default_factory=list)
    counts: list[tuple[int, int, int, int]] = field(default_factory=list)  # tp, fp, fn, tn
    scores: list[float] = field(default_factory=list)
    mismatches: list[str] = field(default_factory=list)
    dice_curve_sum: np.ndarray | None = None  # sum over images of dice_curve(probs, truth)
    other_order_counts: list[tuple[int, int, int, int]] = field(default_factory=list)


@dataclass
class PerImage:
    """The per-image numbers as arrays in stem order: counts, Dice, IoU, image scores and decisions."""

    stems: list[str]
    counts: np.ndarray  # (n, 4) int64: tp, fp, fn, tn
    dice: np.ndarray
    iou: np.ndarray
    scores: np.ndarray
    predicted: np.ndarray  # the image-level decision: manipulated
    truth_positive: np.ndarray

    @classmethod
    def of(cls, tally: Tally, threshold: float, with_probs: bool) -> PerImage:
        from inpaintseg.metrics import dice_from_counts, iou_from_counts

        counts = np.array(tally.counts, dtype=np.int64).reshape(-1, 4)
        tp, fp, fn, _ = counts.T
        scores = np.array(tally.scores, dtype=np.float64)
        return cls(tally.stems, counts, dice_from_counts(tp, fp, fn), iou_from_counts(tp, fp, fn), scores,
                   scores >= threshold if with_probs else scores > 0, (tp + fn) > 0)

    @property
    def pixels(self) -> np.ndarray:
        return self.counts.sum(axis=1)


def summary(scored: PerImage, tally: Tally, threshold: float, rle_order: str, with_probs: bool,
            from_submission: bool) -> dict:
    """The pixel, image-level and false-positive metrics (every summary key but the probability-map ones and
    the per-group tables), in the order --json writes them."""
    from inpaintseg.metrics import dice_from_counts, iou_from_counts, precision_recall_f1, roc_auc

    tp, fp, fn, tn = scored.counts.T
    precision, recall, f1 = precision_recall_f1(tp.sum(), fp.sum(), fn.sum())
    truth_positive, predicted = scored.truth_positive, scored.predicted
    empty_truth = ~truth_positive
    pixels = tp + fp + fn + tn
    return {
        "n_images": int(len(scored.counts)),
        "n_manipulated": int(truth_positive.sum()),
        "n_untouched": int(empty_truth.sum()),
        "dice_rule": DICE_RULE,
        "dice_mean": float(scored.dice.mean()),
        "dice_pooled": float(dice_from_counts(tp.sum(), fp.sum(), fn.sum())),
        "iou_mean": float(scored.iou.mean()),
        "iou_pooled": float(iou_from_counts(tp.sum(), fp.sum(), fn.sum())),
        "precision": float(precision),
        "recall": float(recall),
        "f1": float(f1),
        "image_score": ("inference.image_score of the probability map (mean of the top 1% probabilities), "
                        f"label = score >= {threshold:g}") if with_probs
        else "predicted mask non-empty (no probability maps given)",
        "image_auc": _nan_to_none(roc_auc(scored.scores, truth_positive)),
        "image_accuracy": float((predicted == truth_positive).mean()),
        "manipulated_images_flagged": int(predicted[truth_positive].sum()),
        "false_positive": {
            "n_empty_truth_images": int(empty_truth.sum()),
            "images_with_any_predicted_pixel": int((fp[empty_truth] > 0).sum()),
            "images_flagged_manipulated": int(predicted[empty_truth].sum()),
            "mean_area_fraction": float((fp[empty_truth] / np.maximum(pixels[empty_truth], 1)).mean())
            if empty_truth.any() else None,
        },
        "score_threshold": float(threshold),
        "rle_order": rle_order,
        "per_image": {stem: round(float(d), 6) for stem, d in zip(scored.stems, scored.dice)},
        "warnings": _order_warnings(tally, rle_order, dice_from_counts) if from_submission else [],
    }


def probability_metrics(histogram, tally: Tally) -> dict:
    """The metrics only probability maps give: best F1, pixel ROC / average precision, Dice vs threshold."""
    best_t, best_f1 = histogram.best_f1()
    return {
        "best_f1": float(best_f1),
        "best_f1_threshold": float(best_t),
        "pixel_auc": _nan_to_none(histogram.auc()),
        "pixel_average_precision": _nan_to_none(histogram.average_precision()),
        "pixel_prevalence": _nan_to_none(histogram.prevalence()),
        "dice_vs_threshold": _dice_vs_threshold(tally),
    }


def group_tables(scored: PerImage, methods: dict | None) -> dict:
    """Mean Dice per coverage bucket (always) and, with a meta.json, per family, method, mask kind and
    degradation chain (those the records hold; always per method)."""
    tp, _, fn, _ = scored.counts.T
    tables = {"by_coverage": _by_coverage(scored.stems, scored.dice, (tp + fn) / np.maximum(scored.pixels, 1))}
    if methods is not None:
        for key, name in (("family", "by_family"), ("method", "by_method"), ("mask_kind", "by_mask_kind"),
                          ("degradation", "by_degradation")):
            if key == "method" or any(key in record for record in methods.values()):
                tables[name] = _by_group(scored.stems, scored.dice, methods, key)
    return tables


def _dice_vs_threshold(tally: Tally) -> dict:
    from inpaintseg.metrics import THRESHOLD_GRID, best_of_curve

    mean = tally.dice_curve_sum / max(len(tally.stems), 1)
    best_t, best_dice = best_of_curve(mean, THRESHOLD_GRID)
    return {"thresholds": [float(t) for t in THRESHOLD_GRID], "dice_mean": [round(float(d), 6) for d in mean],
            "best_threshold": best_t, "best_dice_mean": round(best_dice, 6),
            "note": "from the 8-bit probability maps (p = value / 255), so it can differ slightly from the "
                    "binary masks' Dice at the same threshold"}


def _order_warnings(tally: Tally, rle_order: str, dice_from_counts) -> list[str]:
    """A warning when reading the submission in the other RLE order fits the truth much better."""
    if not tally.other_order_counts or not tally.counts:
        return []
    given = np.array(tally.counts).sum(axis=0)
    other = np.array(tally.other_order_counts).sum(axis=0)
    d_given = float(dice_from_counts(*given[:3]))
    d_other = float(dice_from_counts(*other[:3]))
    if d_other > d_given + ORDER_WARNING_MARGIN:
        other_name = "column" if rle_order == "row" else "row"
        return [f"the submission fits the truth much better when its RLE is read {other_name}-major (pooled "
                f"Dice {d_other:.4f}) than {rle_order}-major (pooled Dice {d_given:.4f}): it was probably "
                f"written in {other_name}-major order. Evaluate it with --rle-order {other_name}, or re-write "
                f"it with `inpaintseg predict --rle-order {rle_order}`."]
    return []


def _nan_to_none(value: float) -> float | None:
    return None if value is None or not np.isfinite(value) else float(value)


def _by_group(stems: list[str], dice: np.ndarray, records: dict[str, dict[str, str]], key: str) -> dict[str, dict]:
    """Mean Dice per value of `key` ("method" or "family"); images without a record count as "unknown"."""
    groups: dict[str, list[float]] = {}
    for stem, d in zip(stems, dice):
        groups.setdefault(records.get(stem, {}).get(key, "unknown"), []).append(float(d))
    return {m: {"n": len(v), "dice_mean": float(np.mean(v))} for m, v in sorted(groups.items())}


COVERAGE_BUCKETS = ((0.0, "untouched (0%)"), (0.05, "small (<= 5%)"), (0.15, "medium (5-15%)"),
                    (0.30, "large (15-30%)"), (1.0, "very large (> 30%)"))


def _by_coverage(stems: list[str], dice: np.ndarray, coverage: np.ndarray) -> dict[str, dict]:
    """Mean Dice per bucket of the truth mask's share of the image (`COVERAGE_BUCKETS`, upper bounds)."""
    records = {}
    for stem, share in zip(stems, coverage):
        records[stem] = {"coverage": next(name for bound, name in COVERAGE_BUCKETS if share <= bound)}
    groups = _by_group(stems, dice, records, "coverage")
    return {name: groups[name] for _, name in COVERAGE_BUCKETS if name in groups}
