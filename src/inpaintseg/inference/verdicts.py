"""What an image score means: its false-alarm rate on untouched validation images, and a three-level verdict.

At the end of training, calibration hands `calibrate_verdicts` the image score (`metrics.image_score`) and the
truth mask's area fraction of every validation image it predicted with the chosen post-processing; the record
is stored as ``config.json``'s ``postprocess.verdicts``:

- ``table``: for score thresholds 0.00, 0.01, ..., 1.00, the false-alarm rate (the share of untouched
  validation images scoring at or above it) and the detection rate (the share of manipulated ones);
- ``cutoffs``: a score >= ``likely_manipulated`` is "likely manipulated" (the lowest threshold whose false-alarm
  rate is <= ``TARGET_RATE``), a score < ``uncertain`` is "likely untouched" (the highest threshold that misses
  <= ``TARGET_RATE`` of the manipulated images, never above the other cut-off), anything between "uncertain";
- ``baselines``: the validation Dice of the two trivial answers (every mask empty, every mask full) on the
  same images, next to the model's (``model_dice``), so a model that does not beat them can say so.

`verdict_for` turns a score into a `Verdict` (level, false-alarm rate at that score, how many untouched images
that rate rests on). A model folder from before this record gets the old two-level verdict with a note.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np

from inpaintseg.model.model_config import PostprocessConfig

LEVELS = ("likely untouched", "uncertain", "likely manipulated")
OLD_LEVELS = ("untouched", "manipulated")  # models without a verdict record: score < / >= the threshold
TARGET_RATE = 0.05
GRID = tuple(round(i / 100, 2) for i in range(101))
NO_TABLE_NOTE = ("this model folder has no false-alarm table (it was calibrated before the table existed): the "
                 "verdict is the plain score >= threshold rule; retrain to get calibrated verdict levels.")


@dataclass(frozen=True)
class Verdict:
    """One image's verdict: ``level`` (one of `LEVELS`, or of `OLD_LEVELS` for an old model folder),
    ``false_alarm_rate`` (share of untouched validation images scoring at least this high; None without a
    table), ``n_untouched`` (how many untouched validation images the rate rests on) and a sentence."""

    level: str
    false_alarm_rate: float | None
    n_untouched: int | None
    note: str

    def as_dict(self) -> dict:
        return asdict(self)


def _rates(scores: np.ndarray) -> list[float]:
    """Share of ``scores`` >= each grid threshold (1.0 at 0.00)."""
    if scores.size == 0:
        return [0.0] * len(GRID)
    return [round(float((scores >= t).mean()), 6) for t in GRID]


def calibrate_verdicts(scored: Sequence[tuple[float, float]], model_dice: float | None = None,
                       target: float = TARGET_RATE) -> dict:
    """The ``postprocess.verdicts`` record (module docstring) from (image score, truth area fraction) pairs."""
    pairs = np.asarray(list(scored), dtype=np.float64).reshape(-1, 2)
    scores, fractions = pairs[:, 0], pairs[:, 1]
    untouched, manipulated = scores[fractions == 0], scores[fractions > 0]
    false_alarm, detection = _rates(untouched), _rates(manipulated)
    high = next((t for t, r in zip(GRID, false_alarm) if r <= target), 1.0) if untouched.size else None
    low = None
    if high is not None:
        # miss rate at t = 1 - detection rate at t; the largest t that still misses <= target of them
        low = max((t for t, r in zip(GRID, detection) if 1.0 - r <= target), default=0.0) if manipulated.size \
            else high
        low = min(low, high)
    full_dice = np.where(fractions > 0, 2 * fractions / (1 + fractions), 0.0)
    return {
        "table": {"score_threshold": list(GRID), "false_alarm_rate": false_alarm, "detection_rate": detection},
        "n_untouched": int(untouched.size),
        "n_manipulated": int(manipulated.size),
        "cutoffs": None if high is None else {"uncertain": low, "likely_manipulated": high},
        "target_rate": target,
        "rule": (f"likely manipulated: score >= the lowest threshold at which <= {target:.0%} of untouched "
                 f"validation images score as high; likely untouched: score below the highest threshold that "
                 f"misses <= {target:.0%} of manipulated validation images; uncertain: between"),
        "baselines": {"all-empty": round(float((fractions == 0).mean()), 6) if fractions.size else None,
                      "all-full": round(float(full_dice.mean()), 6) if fractions.size else None},
        "model_dice": None if model_dice is None else round(float(model_dice), 6),
    }


def false_alarm_rate(record: dict, score: float) -> float | None:
    """The table's false-alarm rate at the highest grid threshold <= ``score`` (never below the exact rate)."""
    table = record.get("table") or {}
    thresholds, rates = table.get("score_threshold"), table.get("false_alarm_rate")
    if not thresholds or not rates or not record.get("n_untouched"):
        return None
    index = int(np.searchsorted(np.asarray(thresholds), float(score) + 1e-9, side="right")) - 1
    return float(rates[max(index, 0)])


def verdict_for(score: float, record: dict | None, threshold: float) -> Verdict:
    """A score's `Verdict` under a model's ``postprocess.verdicts`` record (None: an old model folder, judged by
    ``score >= threshold`` with `NO_TABLE_NOTE`)."""
    cutoffs = (record or {}).get("cutoffs")
    if not cutoffs:
        level = OLD_LEVELS[int(score >= threshold)]
        return Verdict(level, None, None, NO_TABLE_NOTE)
    rate = false_alarm_rate(record, score)
    n = int(record["n_untouched"])
    if score >= cutoffs["likely_manipulated"]:
        level = LEVELS[2]
    elif score >= cutoffs["uncertain"]:
        level = LEVELS[1]
    else:
        level = LEVELS[0]
    note = (f"{rate:.0%} of untouched validation images ({round(rate * n)} of {n}) score {score:.3f} or higher"
            if rate is not None else "")
    return Verdict(level, rate, n, note)


NOT_USEFUL_ADVICE = ("Train longer (more epochs, a larger max_time_minutes) or fine-tune the shipped detector "
                     "(init_from 'base').")


FINE_TUNED_ADVICE = ("It was already fine-tuned from {start}: give it more (or more varied) training images or "
                     "more epochs, or use {start} as it is.")


def not_useful_message(config) -> str | None:
    """The one plain line training and the demo print when the model does not beat a trivial answer yet; the
    advice for a fine-tuned model does not send the user to fine-tuning."""
    warning = quality_warning(config)
    if warning is None:
        return None
    start = (config.get("training") or {}).get("init_from")
    advice = FINE_TUNED_ADVICE.format(start=f"'{start}'") if start else NOT_USEFUL_ADVICE
    return f"The model is not useful yet. {warning} {advice}"


def strongest_unbeaten(dice: float, baselines: dict) -> tuple[str, float] | None:
    """(name, Dice) of the highest trivial baseline that ``dice`` does not beat (a tie is no gain), or None;
    ``baselines``: {name: Dice or None}, None entries skipped."""
    beaten = [(name, value) for name, value in baselines.items() if value is not None and dice <= value]
    return max(beaten, key=lambda item: item[1]) if beaten else None


def quality_warning(config) -> str | None:
    """A sentence when the model's validation Dice does not beat a trivial baseline on the same images, else
    None (also None when the model folder does not record the baselines). ``config``: a `ModelConfig` or a
    mapping with a "postprocess" section."""
    record = PostprocessConfig.of(config).verdicts or {}
    model_dice = record.get("model_dice")
    unbeaten = None if model_dice is None else strongest_unbeaten(model_dice, record.get("baselines") or {})
    if unbeaten is None:
        return None
    name, value = unbeaten
    return (f"On its validation images this model's mean Dice ({model_dice:.3f}) does not beat the trivial "
            f"'{name}' answer ({value:.3f}): treat its masks and verdicts as weak evidence.")
