"""Metrics worked out by hand, plus property tests against exact references."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from inpaintseg.metrics import (PixelHistogram, best_threshold, confusion_counts, dice_from_counts,
                                dice_per_threshold, iou_from_counts, pixel_auc, precision_recall_f1,
                                roc_auc)


def test_confusion_counts_3x3_by_hand():
    pred = torch.tensor([[1, 1, 0], [0, 1, 0], [0, 0, 0]], dtype=torch.bool)
    truth = torch.tensor([[1, 0, 0], [0, 1, 1], [0, 0, 0]], dtype=torch.bool)
    # tp: (0,0), (1,1) = 2; fp: (0,1) = 1; fn: (1,2) = 1; tn: 9 - 4 = 5.
    counts = confusion_counts(torch.stack([pred, ~pred]), torch.stack([truth, truth]))
    assert counts.dtype == torch.long and counts.shape == (2, 4)
    assert counts[0].tolist() == [2, 1, 1, 5]
    # Inverted prediction: tp = truth & ~pred = (1,2) -> 1; fp = ~pred & ~truth = 5; fn = 2; tn = 1.
    assert counts[1].tolist() == [1, 5, 2, 1]
    tp, fp, fn = counts[0, :3].numpy()
    assert dice_from_counts(tp, fp, fn) == pytest.approx(4 / 6)   # 2*2 / (2*2 + 1 + 1)
    assert iou_from_counts(tp, fp, fn) == pytest.approx(0.5)      # 2 / (2 + 1 + 1)


def test_empty_rules():
    # both empty -> 1; prediction on empty truth -> 0; nothing predicted on non-empty truth -> 0.
    tp, fp, fn = np.array([0, 0, 0]), np.array([0, 5, 0]), np.array([0, 0, 3])
    np.testing.assert_array_equal(dice_from_counts(tp, fp, fn), [1.0, 0.0, 0.0])
    np.testing.assert_array_equal(iou_from_counts(tp, fp, fn), [1.0, 0.0, 0.0])
    precision, recall, f1 = precision_recall_f1(tp, fp, fn)
    np.testing.assert_array_equal(precision, [1.0, 0.0, 0.0])
    np.testing.assert_array_equal(recall, [1.0, 0.0, 0.0])
    np.testing.assert_array_equal(f1, [1.0, 0.0, 0.0])


def test_precision_recall_f1_by_hand():
    p, r, f1 = precision_recall_f1(3, 1, 2)   # 3/4, 3/5, 2*3 / (6 + 1 + 2) = 2/3
    assert (float(p), float(r), float(f1)) == pytest.approx((0.75, 0.6, 2 / 3))


def test_roc_auc_with_ties_by_hand():
    # Pairs (pos, neg): 0.4 > 0.1 -> 1, 0.4 = 0.4 -> 1/2, 0.8 beats both -> 2.  3.5 / 4 = 0.875.
    assert roc_auc([0.1, 0.4, 0.4, 0.8], [0, 0, 1, 1]) == pytest.approx(0.875)
    assert roc_auc([0.5, 0.5, 0.5], [0, 1, 1]) == pytest.approx(0.5)
    assert math.isnan(roc_auc([0.1, 0.2], [1, 1]))


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 15), st.booleans()), min_size=2, max_size=60))
def test_roc_auc_matches_pairwise_definition_and_binned_auc(pairs):
    scores = np.array([s for s, _ in pairs], dtype=np.float64)
    labels = np.array([b for _, b in pairs])
    pos, neg = scores[labels], scores[~labels]
    exact = roc_auc(scores / 16 + 1 / 32, labels)   # scores at the centres of 16 bins
    if pos.size == 0 or neg.size == 0:
        assert math.isnan(exact)
        return
    pairwise = ((pos[:, None] > neg[None, :]) + 0.5 * (pos[:, None] == neg[None, :])).mean()
    assert exact == pytest.approx(pairwise)
    # Scores exactly at bin centres lose nothing to binning: histogram AUC == exact AUC.
    assert pixel_auc(scores / 16 + 1 / 32, labels, bins=16) == pytest.approx(exact)


def test_histogram_auc_close_to_exact_and_accumulates():
    rng = np.random.default_rng(0)
    truth = rng.random((4, 32, 32)) < 0.3
    probs = np.clip(0.5 * truth + rng.normal(0.25, 0.2, truth.shape), 0, 1)
    exact = roc_auc(probs, truth)
    histogram = PixelHistogram(bins=1024)
    for p, tr in zip(probs, truth):           # image by image
        histogram.update(p, tr)
    assert histogram.auc() == pytest.approx(exact, abs=1e-3)
    assert pixel_auc(torch.from_numpy(probs), torch.from_numpy(truth)) == pytest.approx(histogram.auc())


def test_histogram_counts_and_best_f1_by_hand():
    histogram = PixelHistogram(bins=4)        # bins [0,.25) [.25,.5) [.5,.75) [.75,1]
    histogram.update(np.array([0.1, 0.3, 0.6, 0.9, 0.9, 0.6]), np.array([0, 0, 1, 1, 1, 0]))
    # >= 0.5: bins 2..3 hold 0.6(+) 0.9(+) 0.9(+) 0.6(-) -> tp 3, fp 1, fn 0, tn 2
    assert histogram.counts_at(0.5) == (3, 1, 0, 2)
    # 0.6 is rounded up to the edge 0.75: tp 2 (0.9, 0.9), fp 0, fn 1, tn 3
    assert histogram.counts_at(0.6) == (2, 0, 1, 3)
    # F1 at edges .25: 2*3/(6+2) = .75; .5: 6/(6+1) = .857; .75: 4/(4+1) = .8 -> best 0.5
    threshold, f1 = histogram.best_f1()
    assert threshold == 0.5 and f1 == pytest.approx(6 / 7)
    assert math.isnan(PixelHistogram().auc())


def test_best_threshold_by_hand():
    probs = [np.array([[0.2, 0.6], [0.9, 0.1]]), np.array([[0.7, 0.3], [0.3, 0.3]])]
    truths = [np.array([[0, 1], [1, 0]]), np.zeros((2, 2))]
    # t=.25: image 1 exact (1.0), image 2 all predicted on empty truth (0.0) -> mean .5
    # t=.5 : 1.0 and 0.0 (0.7 still predicted)                                  -> mean .5
    # t=.8 : image 1 tp 1 fn 1 -> 2/3; image 2 empty, predicted empty -> 1.0     -> mean 5/6
    table = dice_per_threshold(probs, truths, [0.25, 0.5, 0.8])
    np.testing.assert_allclose(table, [[1, 1, 2 / 3], [0, 0, 1]])
    threshold, score = best_threshold(probs, truths, [0.25, 0.5, 0.8])
    assert threshold == 0.8 and score == pytest.approx(5 / 6)


def test_shape_mismatch_errors():
    with pytest.raises(ValueError, match="same shape"):
        confusion_counts(torch.zeros(1, 2, 2), torch.zeros(1, 3, 3))
    with pytest.raises(ValueError, match="image 0"):
        dice_per_threshold([np.zeros(4)], [np.zeros(5)], [0.5])


def test_average_precision_and_curves_by_hand():
    # 4 bins. Positives: one in bin 3, one in bin 1; negative: one in bin 2.
    # Thresholds high to low: edge 3 -> tp 1 fp 0 (R 1/2, P 1); edge 2 -> tp 1 fp 1 (R 1/2, P 1/2);
    # edge 1 -> tp 2 fp 1 (R 1, P 2/3). AP = 1/2 x 1 + 0 x 1/2 + 1/2 x 2/3 = 5/6.
    h = PixelHistogram(4)
    h.update(np.array([0.8, 0.3, 0.6]), np.array([1, 1, 0]))
    assert h.average_precision() == pytest.approx(5 / 6)
    assert h.prevalence() == pytest.approx(2 / 3)
    c = h.curves()
    np.testing.assert_allclose(c["recall"], [1, 1, 0.5, 0.5, 0])
    np.testing.assert_allclose(c["fpr"], [1, 1, 1, 0, 0])
    np.testing.assert_allclose(c["precision"], [2 / 3, 2 / 3, 0.5, 1, 1])
    assert math.isnan(PixelHistogram(4).average_precision())


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 9), st.booleans()), min_size=2, max_size=30))
def test_roc_curve_area_equals_roc_auc(pairs):
    from inpaintseg.metrics import roc_curve

    scores = np.array([s / 10 for s, _ in pairs])
    labels = np.array([y for _, y in pairs])
    if labels.all() or not labels.any():
        return
    fpr, tpr, _ = roc_curve(scores, labels)
    assert np.trapezoid(tpr, fpr) == pytest.approx(roc_auc(scores, labels))


@pytest.mark.parametrize("value, ok", [(0.5, True), ("0.25", True), (1e-9, True), (0.0, False), (1.0, False),
                                       (-0.1, False), (float("nan"), False), ("auto", False), (None, False)])
def test_is_threshold_is_the_open_unit_interval(value, ok):
    from inpaintseg.metrics import is_threshold

    assert is_threshold(value) is ok


def test_check_threshold_names_the_parameter_and_where_the_value_came_from():
    from inpaintseg.errors import ConfigError
    from inpaintseg.metrics import check_threshold

    assert check_threshold("0.3", "threshold") == 0.3
    with pytest.raises(ConfigError, match=r"^score_threshold must be a number in \(0, 1\), got 1\.5\.$"):
        check_threshold(1.5, "score_threshold")
    with pytest.raises(ConfigError, match=r"got 2 \(from config.json\)\.$"):
        check_threshold(2, "threshold", " (from config.json)")
