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

from collections.abc import Sequence

import numpy as np
import torch


# ----------------------------------------------------------------------------- confusion counts

def confusion_counts(pred: torch.Tensor, truth: torch.Tensor) -> torch.Tensor:
    """Per-image pixel counts (tp, fp, fn, tn) of boolean (or 0/1) masks.

    Shape: pred, truth (B, ...) with equal shapes -> LongTensor (B, 4).
    """
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
    if isinstance(array, torch.Tensor):
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

def dice_per_threshold(probs_list: Sequence, truths_list: Sequence,
                       thresholds: Sequence[float]) -> np.ndarray:
    """Dice of every image at every threshold ("probability >= t").

    Shape: N images of any (H_i, W_i), T thresholds -> (N, T).
    """
    if len(probs_list) != len(truths_list):
        raise ValueError(f"dice_per_threshold: {len(probs_list)} probability maps but "
                         f"{len(truths_list)} truth masks")
    thresholds = np.asarray(thresholds, dtype=np.float64)
    out = np.zeros((len(probs_list), thresholds.size))
    for i, (probs, truth) in enumerate(zip(probs_list, truths_list)):
        probs = _as_numpy(probs).astype(np.float64).ravel()
        truth = _as_numpy(truth).astype(bool).ravel()
        if probs.shape != truth.shape:
            raise ValueError(f"dice_per_threshold: image {i} has {probs.size} probabilities but "
                             f"{truth.size} truth pixels")
        pos = np.sort(probs[truth])
        neg = np.sort(probs[~truth])
        tp = pos.size - np.searchsorted(pos, thresholds, side="left")   # count of pos >= t
        fp = neg.size - np.searchsorted(neg, thresholds, side="left")
        out[i] = dice_from_counts(tp, fp, pos.size - tp)
    return out


def best_threshold(probs_list: Sequence, truths_list: Sequence,
                   thresholds: Sequence[float] | None = None) -> tuple[float, float]:
    """(threshold, mean per-image Dice) maximising the mean per-image Dice; ties -> the first
    threshold in the given order. Default thresholds: 0.05, 0.10, ..., 0.95."""
    if thresholds is None:
        thresholds = np.round(np.arange(1, 20) * 0.05, 2)
    thresholds = np.asarray(thresholds, dtype=np.float64)
    if thresholds.size == 0 or len(probs_list) == 0:
        raise ValueError("best_threshold: needs at least one threshold and one image")
    mean_dice = dice_per_threshold(probs_list, truths_list, thresholds).mean(axis=0)
    best = int(np.argmax(mean_dice))
    return float(thresholds[best]), float(mean_dice[best])
