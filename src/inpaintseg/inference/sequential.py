"""When validation calibration may stop early: paired comparisons of per-image Dice curves with standard errors.

Calibration visits validation images in a fixed random order, so every prefix is a random sample of the
split. After each batch these helpers decide, from the per-image Dice curves seen so far:

- a comparison "B gains more than `margin` over A" is **settled** when the paired mean gain is more than
  ``Z`` standard errors away from the margin, or when ``Z`` standard errors are within ``tolerance`` (then
  either answer costs at most about `tolerance` Dice);
- B **cannot win** when the upper confidence bound of its gain is below max(margin, tolerance) (it is then
  measured no further: its forward passes or CRF runs stop). Below the margin the full search would not take
  it either; between the margin and the tolerance it might, but then its gain, the Dice that dropping it
  costs, is below the tolerance;
- the chosen threshold's **regret bound**: with ~95% confidence per threshold, no other threshold of the grid
  beats it by more than this Dice on the population the images were drawn from.

A gain is measured per image at each side's own best threshold (mean over images = the difference of the two
rows' best mean Dice, as `calibration.tabulate` reports it), on the images both sides have.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from inpaintseg.metrics import THRESHOLD_GRID, best_of_curve

Z = 1.96  # two-sided 95% normal quantile


def best_index(curves: np.ndarray) -> int:
    """Index of the best threshold of the mean curve (ties to 0.5, as `metrics.best_of_curve`)."""
    threshold, _ = best_of_curve(curves.mean(axis=0))
    return int(np.flatnonzero(np.isclose(THRESHOLD_GRID, threshold))[0])


def paired_gain(curves_b: Sequence, curves_a: Sequence) -> tuple[float, float]:
    """(mean, standard error) of B's per-image Dice minus A's, each at its own best threshold, on the
    first min(len) images (both lists follow the same image order). SE is inf below 2 images."""
    n = min(len(curves_a), len(curves_b))
    if n == 0:
        return 0.0, math.inf
    a, b = np.asarray(curves_a[:n]), np.asarray(curves_b[:n])
    diff = b[:, best_index(b)] - a[:, best_index(a)]
    se = float(diff.std(ddof=1) / math.sqrt(n)) if n > 1 else math.inf
    return float(diff.mean()), se


def settled(mean: float, se: float, margin: float, tolerance: float) -> bool:
    """True when "gain > margin" is decided: the mean is Z SE away from the margin, or Z SE <= tolerance."""
    return abs(mean - margin) > Z * se or Z * se <= tolerance


def cannot_win(mean: float, se: float, bar: float) -> bool:
    """True when the gain's upper confidence bound is below `bar` (max(margin, tolerance))."""
    return mean + Z * se < bar


def threshold_regret_bound(curves: Sequence) -> float:
    """Upper confidence bound of the Dice any grid threshold gains over the best one of these curves:
    max over t of (Z x SE - mean) of the paired per-image differences Dice(best) - Dice(t), at least 0."""
    c = np.asarray(curves)
    if len(c) < 2:
        return math.inf
    diff = c[:, [best_index(c)]] - c
    bound = Z * diff.std(axis=0, ddof=1) / math.sqrt(len(c)) - diff.mean(axis=0)
    return max(0.0, float(bound.max()))


def chain_choice(curves: dict, modes: Sequence[str], margin: float, tolerance: float) -> tuple[str, bool]:
    """`calibration.choose`'s TTA rule on the curves so far (cheapest first; a costlier mode only for a gain
    > margin over the current choice), and whether every comparison it made is settled."""
    chosen, all_settled = modes[0], True
    for mode in modes[1:]:
        mean, se = paired_gain(curves[mode], curves[chosen])
        all_settled = all_settled and settled(mean, se, margin, tolerance)
        if mean > margin:
            chosen = mode
    return chosen, all_settled


def losers(curves: dict, modes: Sequence[str], bar: float) -> list[str]:
    """Modes (after the first) that cannot win against any cheaper mode in `modes`: whichever cheaper mode
    the rule holds when it reaches them, they would not gain more than `bar` over it."""
    return [b for i, b in enumerate(modes) if i > 0
            and all(cannot_win(*paired_gain(curves[b], curves[a]), bar) for a in modes[:i])]
