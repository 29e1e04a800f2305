"""Masks: kinds, coverage range, binary values, stroke widths, deformation."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from inpaintseg.synth.masks import MASK_KINDS, MAX_COVERAGE, MIN_COVERAGE, deform_mask, random_mask


@pytest.mark.parametrize("kind", MASK_KINDS)
@pytest.mark.parametrize("shape", [(32, 32), (64, 64), (256, 256), (48, 80)])
def test_every_kind_is_binary_and_in_the_coverage_range(kind, shape):
    for seed in range(8):
        mask, got = random_mask(np.random.default_rng(seed), *shape, kind=kind)
        assert got == kind and mask.shape == shape and mask.dtype == np.uint8
        assert set(np.unique(mask)) <= {0, 1}
        assert MIN_COVERAGE <= mask.mean() <= MAX_COVERAGE


def test_random_kinds_cover_all_and_coverage_spans_the_range():
    kinds, coverages = set(), []
    for seed in range(200):
        mask, kind = random_mask(np.random.default_rng(seed), 128)
        kinds.add(kind)
        coverages.append(mask.mean())
    assert kinds == set(MASK_KINDS)
    assert min(coverages) < 0.03 and max(coverages) > 0.3


def _mean_depth(mask: np.ndarray) -> float:
    """Mean distance of a mask pixel to the background: about a quarter of a stroke's width."""
    return float(cv2.distanceTransform(mask, cv2.DIST_L2, 5)[mask > 0].mean())


def test_thin_strokes_are_thinner_than_thick_ones():
    thin = [_mean_depth(random_mask(np.random.default_rng(s), 256, kind="strokes_thin")[0]) for s in range(10)]
    thick = [_mean_depth(random_mask(np.random.default_rng(s), 256, kind="strokes_thick")[0]) for s in range(10)]
    # thin brushes: 1.5-4% of 256 px (x1.3 at most) <= 13.3 px wide -> mean depth about 3.3 px (crossings
    # add a little); thick: 9-20% -> 23-51 px -> about 6-13 px.
    assert max(thin) < 6 and np.median(thick) > 2 * np.median(thin)


def test_deform_mask_keeps_a_binary_similar_region():
    mask = np.zeros((64, 64), np.uint8)
    mask[16:48, 16:48] = 1
    warped = deform_mask(np.random.default_rng(0), mask)
    assert warped.shape == mask.shape and set(np.unique(warped)) <= {0, 1}
    assert not np.array_equal(warped, mask)
    assert 0.6 < warped.sum() / mask.sum() < 1.5
    assert (warped & mask).sum() > 0.5 * mask.sum()
