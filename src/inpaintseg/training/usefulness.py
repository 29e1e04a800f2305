"""Is a trained model useful yet? Its validation Dice next to the two trivial baselines.

A model that marks pixels no better than "every pixel manipulated" (all-full) or "nothing manipulated"
(all-empty) on its own validation images is not useful, whatever its loss curve looks like; training, the demo
and the report say so in one plain line (`verdict_message`), and config.json keeps the numbers (`validation`).
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

MARGIN = 0.02  # a model must beat the better baseline by this much mean Dice to count as useful


def baseline_dice(masks: Iterable[np.ndarray]) -> tuple[float, float]:
    """Mean per-image Dice of all-full and all-empty predictions against `masks` (empty vs empty = 1)."""
    full, empty = [], []
    for mask in masks:
        positive = int(np.count_nonzero(mask))
        full.append(2 * positive / (positive + mask.size) if positive else 0.0)
        empty.append(0.0 if positive else 1.0)
    if not full:
        return float("nan"), float("nan")
    return float(np.mean(full)), float(np.mean(empty))


def validation_section(dice: float | None, masks: Iterable[np.ndarray]) -> dict:
    """config.json's `validation` section: the model's Dice, both baselines and whether it beats them."""
    all_full, all_empty = baseline_dice(masks)
    best = max(all_full, all_empty)
    useful = dice is not None and not np.isnan(best) and dice >= best + MARGIN
    return {"dice": None if dice is None else round(float(dice), 4), "all_full_dice": round(all_full, 4),
            "all_empty_dice": round(all_empty, 4), "useful": bool(useful)}


def verdict_message(section: dict) -> str | None:
    """One plain line when the model is not useful yet (None when it is, or nothing was measured)."""
    if not section or section.get("useful", True) or section.get("dice") is None:
        return None
    return (f"the model is not useful yet: validation Dice {section['dice']:.3f} does not beat marking every pixel "
            f"({section['all_full_dice']:.3f}) or none ({section['all_empty_dice']:.3f}) by {MARGIN}. Train longer "
            "(more epochs or a larger --max-time-minutes), or fine-tune the shipped detector: --init-from base.")
