"""Segmentation metrics, shared by training's validation and `inpaintseg evaluate`.

Conventions:
- a pixel is predicted positive when its probability is >= the threshold;
- Dice, IoU, precision, recall and F1 are 1.0 when the prediction and the truth are both empty (the
  competition's rule), and 0.0 when only one of them is empty; with these rules F1 equals Dice;
- `roc_auc` is exact (ties get the average rank) and returns nan when one class is absent;
- `PixelHistogram` / `pixel_auc` bin probabilities into `bins` equal bins on [0, 1] so memory stays
  bounded on any number of pixels; the AUC is then exact for the binned scores (the binning error is
  below 1 / bins for well-spread scores).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import torch


# ----------------------------------------------------------------------------- confusion counts

def confusion_counts(pred: torch.Tensor, truth: torch.Tensor) -> torch.Tensor:
    """Per-image pixel counts (tp, fp, fn, tn) of boolean (or 0/1) masks.

    Shape: pred, truth (B, ...) with equal shapes -> LongTensor (B, 4).
    """
    import torch

    if pred.shape != truth.shape:
        raise ValueError(f"confusion_counts: pred {tuple(pred.shape)} and truth {tuple(truth.shape)} "
                         "must have the same shape")
    if pred.ndim < 1:
        raise ValueError("confusion_counts: expected a batch dimension, got a scalar")
    p = pred.reshape(pred.shape[0], -1).bool()
    t = truth.reshape(truth.shape[0], -1).bool()
    tp = (p & t).sum(dim=1)
    fp = (p & ~t).sum(dim=1)
    fn = (~p & t).sum(dim=1)
    tn = p.shape[1] - tp - fp - fn
    return torch.stack([tp, fp, fn, tn], dim=1).long()


def mask_counts(pred, truth) -> tuple[int, int, int, int]:
    """(tp, fp, fn, tn) of one predicted mask against its truth (numpy, any equal shapes, bool or 0/1)."""
    pred, truth = np.asarray(pred).astype(bool, copy=False), np.asarray(truth).astype(bool, copy=False)
    if pred.shape != truth.shape:
        raise ValueError(f"mask_counts: prediction {pred.shape} and truth {truth.shape} differ in shape")
    tp = int(np.count_nonzero(pred & truth))
    fp = int(np.count_nonzero(pred)) - tp
    fn = int(np.count_nonzero(truth)) - tp
    return tp, fp, fn, truth.size - tp - fp - fn


def mask_dice(pred, truth) -> float:
    """Dice of one predicted mask against its truth (both empty -> 1.0, the competition's rule)."""
    tp, fp, fn, _ = mask_counts(pred, truth)
    return float(dice_from_counts(tp, fp, fn))


def _ratio(num: np.ndarray, den: np.ndarray, both_empty: np.ndarray) -> np.ndarray:
    """num / den, with 1.0 where both masks are empty and 0.0 where den == 0 otherwise."""
    num = np.asarray(num, dtype=np.float64)
    den = np.asarray(den, dtype=np.float64)
    out = np.divide(num, den, out=np.zeros(np.broadcast(num, den).shape), where=den > 0)
    return np.where(both_empty, 1.0, out)


def _counts(tp, fp, fn) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    tp, fp, fn = (np.asarray(v, dtype=np.float64) for v in (tp, fp, fn))
    return tp, fp, fn, (tp + fp + fn) == 0


def dice_from_counts(tp, fp, fn) -> np.ndarray:
    """Dice = 2tp / (2tp + fp + fn), vectorised; 1.0 where prediction and truth are both empty."""
    tp, fp, fn, empty = _counts(tp, fp, fn)
    return _ratio(2 * tp, 2 * tp + fp + fn, empty)


def iou_from_counts(tp, fp, fn) -> np.ndarray:
    """IoU = tp / (tp + fp + fn), vectorised; 1.0 where prediction and truth are both empty."""
    tp, fp, fn, empty = _counts(tp, fp, fn)
    return _ratio(tp, tp + fp + fn, empty)


def precision_recall_f1(tp, fp, fn) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Precision tp/(tp+fp), recall tp/(tp+fn), F1 (= Dice); all 1.0 where both masks are empty and
    0.0 where a denominator is 0 otherwise."""
    tp, fp, fn, empty = _counts(tp, fp, fn)
    precision = _ratio(tp, tp + fp, empty)
    recall = _ratio(tp, tp + fn, empty)
    f1 = _ratio(2 * tp, 2 * tp + fp + fn, empty)
    return precision, recall, f1


# ----------------------------------------------------------------------------- ROC AUC

def _as_numpy(array) -> np.ndarray:
    if hasattr(array, "detach"):  # a torch tensor (torch is not imported for numpy-only callers)
        return array.detach().cpu().numpy()
    return np.asarray(array)


def roc_auc(scores, labels) -> float:
    """Exact ROC AUC (Mann-Whitney U); tied scores get their average rank; nan if a class is absent.

    Shape: scores, labels (N,) (any equal shapes; flattened).
    """
    scores = _as_numpy(scores).astype(np.float64).ravel()
    labels = _as_numpy(labels).astype(bool).ravel()
    if scores.shape != labels.shape:
        raise ValueError(f"roc_auc: {scores.size} scores but {labels.size} labels")
    n_pos = int(labels.sum())
    n_neg = labels.size - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    _, inverse, counts = np.unique(scores, return_inverse=True, return_counts=True)
    # Ranks of a tie group starting at 1-based position s with k members: s .. s+k-1, mean s+(k-1)/2.
    starts = np.cumsum(counts) - counts + 1
    average_rank = starts + (counts - 1) / 2.0
    rank_sum = average_rank[inverse][labels].sum()
    return float((rank_sum - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def roc_curve(scores, labels) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(fpr, tpr, thresholds) of "score >= threshold" at every distinct score, from (0, 0) to (1, 1);
    the area under it equals `roc_auc`. Shape: scores, labels (N,) -> three (K + 2,) arrays."""
    scores = _as_numpy(scores).astype(np.float64).ravel()
    labels = _as_numpy(labels).astype(bool).ravel()
    if scores.shape != labels.shape:
        raise ValueError(f"roc_curve: {scores.size} scores but {labels.size} labels")
    n_pos, n_neg = max(int(labels.sum()), 1), max(int((~labels).sum()), 1)
    thresholds = np.unique(scores)[::-1]
    tpr = np.array([0.0] + [float((labels & (scores >= t)).sum()) / n_pos for t in thresholds] + [1.0])
    fpr = np.array([0.0] + [float((~labels & (scores >= t)).sum()) / n_neg for t in thresholds] + [1.0])
    return fpr, tpr, np.concatenate([[np.inf], thresholds, [-np.inf]])


class PixelHistogram:
    """Accumulates per-pixel probabilities of positive and negative pixels in `bins` bins on [0, 1].

    Bin k holds probabilities in [k/bins, (k+1)/bins) (the last bin includes 1.0). A threshold t is
    applied as "probability >= t" with t rounded up to the next bin edge. The counts are public:
    `positive` and `negative`, int64 arrays of length `bins`.
    """

    def __init__(self, bins: int = 1024) -> None:
        if int(bins) < 2:
            raise ValueError(f"PixelHistogram: bins must be >= 2, got {bins}")
        self.bins = int(bins)
        self.positive = np.zeros(self.bins, dtype=np.int64)
        self.negative = np.zeros(self.bins, dtype=np.int64)

    def update(self, probs, truth) -> None:
        """Add pixels. Shape: probs (any), truth (same shape, bool or 0/1)."""
        probs = _as_numpy(probs).astype(np.float64, copy=False).ravel()
        truth = _as_numpy(truth).astype(bool).ravel()
        if probs.shape != truth.shape:
            raise ValueError(f"PixelHistogram.update: {probs.size} probabilities but {truth.size} "
                             "truth pixels")
        index = np.clip((np.nan_to_num(probs) * self.bins).astype(np.int64), 0, self.bins - 1)
        self.positive += np.bincount(index[truth], minlength=self.bins)
        self.negative += np.bincount(index[~truth], minlength=self.bins)

    def auc(self) -> float:
        """ROC AUC of the binned scores (ties within a bin count half); nan if a class is absent."""
        n_pos, n_neg = self.positive.sum(), self.negative.sum()
        if n_pos == 0 or n_neg == 0:
            return float("nan")
        negatives_below = np.cumsum(self.negative) - self.negative
        wins = (self.positive * (negatives_below + 0.5 * self.negative)).sum()
        return float(wins / (n_pos * n_neg))

    def _edge_index(self, threshold: float) -> int:
        return int(np.clip(np.ceil(float(threshold) * self.bins - 1e-9), 0, self.bins))

    def counts_at(self, threshold: float) -> tuple[int, int, int, int]:
        """(tp, fp, fn, tn) over all accumulated pixels for "probability >= threshold"."""
        k = self._edge_index(threshold)
        tp = int(self.positive[k:].sum())
        fp = int(self.negative[k:].sum())
        return tp, fp, int(self.positive.sum()) - tp, int(self.negative.sum()) - fp

    def curves(self) -> dict[str, np.ndarray]:
        """ROC and precision-recall points at the bin edges k/bins, k = 0..bins (descending thresholds
        last to first): ``threshold``, ``tpr`` (= ``recall``), ``fpr``, ``precision`` (1.0 where nothing
        is predicted positive)."""
        tp = np.concatenate([np.cumsum(self.positive[::-1])[::-1], [0]])  # tp[k]: positives in bins >= k
        fp = np.concatenate([np.cumsum(self.negative[::-1])[::-1], [0]])
        n_pos, n_neg = max(int(self.positive.sum()), 1), max(int(self.negative.sum()), 1)
        precision = np.divide(tp, tp + fp, out=np.ones(tp.shape), where=(tp + fp) > 0)
        return {"threshold": np.arange(self.bins + 1) / self.bins, "tpr": tp / n_pos, "recall": tp / n_pos,
                "fpr": fp / n_neg, "precision": precision}

    def average_precision(self) -> float:
        """Average precision of the binned scores: sum over thresholds (high to low) of the recall gained
        times the precision there (scikit-learn's definition); nan when there is no positive pixel."""
        if self.positive.sum() == 0:
            return float("nan")
        c = self.curves()
        recall_gain = c["recall"][:-1] - c["recall"][1:]  # edge k vs edge k+1
        return float((recall_gain * c["precision"][:-1]).sum())

    def prevalence(self) -> float:
        """Share of positive pixels (the precision of a random guess: the PR curve's baseline)."""
        total = self.positive.sum() + self.negative.sum()
        return float(self.positive.sum() / total) if total else float("nan")

    def best_f1(self) -> tuple[float, float]:
        """(threshold, F1) maximising the pooled pixel F1 over the bin edges 1/bins .. (bins-1)/bins."""
        tp = np.cumsum(self.positive[::-1])[::-1][1:]   # tp[k-1]: positives in bins >= k, k = 1..bins-1
        fp = np.cumsum(self.negative[::-1])[::-1][1:]
        fn = self.positive.sum() - tp
        f1 = dice_from_counts(tp, fp, fn)
        best = int(np.argmax(f1))
        return (best + 1) / self.bins, float(f1[best])


def pixel_auc(probs, truth, bins: int = 1024) -> float:
    """Binned pixel ROC AUC of probabilities against a mask (see `PixelHistogram`)."""
    histogram = PixelHistogram(bins)
    histogram.update(probs, truth)
    return histogram.auc()


# ----------------------------------------------------------------------------- threshold choice
DEFAULT_THRESHOLD = 0.5
THRESHOLD_GRID = np.round(np.arange(1, 100) / 100.0, 2)  # 0.01 .. 0.99: what calibration searches


def is_threshold(value) -> bool:
    """A probability threshold: a number strictly inside (0, 1). NaN, and what float() refuses, is not."""
    try:
        value = float(value)
    except (TypeError, ValueError):
        return False
    return 0.0 < value < 1.0


def check_threshold(value, name: str, note: str = "") -> float:
    """`value` as a float when `is_threshold`, else `ConfigError` naming the parameter `name` (the CLI
    names its flag instead, `commands.flag_names`); `note` says where the value came from."""
    if not is_threshold(value):
        from inpaintseg.errors import ConfigError

        raise ConfigError(f"{name} must be a number in (0, 1), got {value!r}{note}.")
    return float(value)


def dice_curve(probs, truth, thresholds: Sequence[float] = THRESHOLD_GRID) -> np.ndarray:
    """Per-image Dice of ``probs >= t`` against ``truth`` for each threshold t (both empty -> 1.0).

    One pass over the pixels whatever the number of thresholds: each pixel is placed among the sorted
    thresholds (searchsorted), so the counts are exact for the same ``>=`` comparison that makes the
    masks (thresholds are compared in the probabilities' float type).

    Shape: (H, W) float, (H, W) {0,1} -> float64 (len(thresholds),)
    """
    probs = _as_numpy(probs)
    truth = _as_numpy(truth).astype(bool).ravel()
    thresholds = np.asarray(thresholds, dtype=np.float64)
    if probs.size != truth.size:
        raise ValueError(f"dice_curve: {probs.size} probabilities but {truth.size} truth pixels")
    dtype = probs.dtype if np.issubdtype(probs.dtype, np.floating) else np.float64
    order = np.argsort(thresholds, kind="stable")
    ranked = thresholds[order].astype(dtype)
    above = np.searchsorted(ranked, probs.ravel().astype(dtype, copy=False), side="right")  # thresholds <= p
    n = ranked.size
    tp_at = np.cumsum(np.bincount(above[truth], minlength=n + 1)[::-1])[::-1][1:]  # tp_at[k]: above > k
    fp_at = np.cumsum(np.bincount(above[~truth], minlength=n + 1)[::-1])[::-1][1:]
    curve = np.empty(n)
    curve[order] = dice_from_counts(tp_at, fp_at, truth.sum() - tp_at)
    return curve


def dice_per_threshold(probs_list: Sequence, truths_list: Sequence,
                       thresholds: Sequence[float] = THRESHOLD_GRID) -> np.ndarray:
    """Dice of every image at every threshold ("probability >= t").

    Shape: N images of any (H_i, W_i), T thresholds -> (N, T).
    """
    if len(probs_list) != len(truths_list):
        raise ValueError(f"dice_per_threshold: {len(probs_list)} probability maps but "
                         f"{len(truths_list)} truth masks")
    out = np.zeros((len(probs_list), len(thresholds)))
    for i, (probs, truth) in enumerate(zip(probs_list, truths_list)):
        if _as_numpy(probs).size != _as_numpy(truth).size:
            raise ValueError(f"dice_per_threshold: image {i} has {_as_numpy(probs).size} probabilities but "
                             f"{_as_numpy(truth).size} truth pixels")
        out[i] = dice_curve(probs, truth, thresholds)
    return out


def best_of_curve(mean_curve: np.ndarray, thresholds: Sequence[float] = THRESHOLD_GRID) -> tuple[float, float]:
    """(threshold, value) at a curve's maximum; ties go to the threshold nearest 0.5."""
    mean_curve = np.asarray(mean_curve, dtype=np.float64)
    thresholds = np.asarray(thresholds, dtype=np.float64)
    if thresholds.size == 0 or mean_curve.shape != thresholds.shape:
        raise ValueError("best_of_curve: needs one value per threshold and at least one threshold")
    candidates = np.flatnonzero(mean_curve >= mean_curve.max() - 1e-12)
    pick = candidates[np.argmin(np.abs(thresholds[candidates] - DEFAULT_THRESHOLD))]
    return float(thresholds[pick]), float(mean_curve[pick])


def best_threshold(probs_list: Sequence, truths_list: Sequence,
                   thresholds: Sequence[float] = THRESHOLD_GRID) -> tuple[float, float]:
    """(threshold, mean per-image Dice) maximising the mean per-image Dice (the competition's score);
    ties go to the threshold nearest 0.5."""
    if len(thresholds) == 0 or len(probs_list) == 0:
        raise ValueError("best_threshold: needs at least one threshold and one image")
    return best_of_curve(dice_per_threshold(probs_list, truths_list, thresholds).mean(axis=0), thresholds)


# ----------------------------------------------------------------------------- image-level score
SCORE_TOP_FRACTION = 0.01


def image_score(probs, top_fraction: float = SCORE_TOP_FRACTION) -> float:
    """Image-level manipulation score: the mean of the top 1% pixel probabilities.

    Chosen over the plain maximum (one noisy pixel decides) and the mean (a small inpainted region
    drowns in the untouched rest): an untouched image scores low unless a sizeable cluster of
    pixels is confidently positive, while an image whose inpainted area covers >= 1% of its pixels
    scores about the mean probability inside that area. The result lies in [0, 1] and does not
    depend on resolution.

    Shape: (H, W) float -> float
    """
    flat = np.asarray(probs, dtype=np.float32).ravel()
    if flat.size == 0:
        return 0.0
    k = max(1, int(math.ceil(flat.size * top_fraction)))
    top = np.partition(flat, flat.size - k)[flat.size - k:]
    return float(top.mean())
