"""Validation calibration of the post-processing: measure every TTA x CRF variant, tabulate, choose.

`calibrate_postprocessing` (called at the end of training) returns the model config's `postprocess`
record that `predict --tta auto --crf auto --threshold auto` and `load_model(...).predict` follow:

- **measure**: per-image Dice at the thresholds 0.01..0.99 of every TTA mode on at most ``max_images``
  validation images at their original size, and of every CRF variant on at most ``crf_max_images`` of them
  (next to no-CRF on the same images), with the time per image;
- **tabulate**: one row per variant: best threshold, its mean Dice, Dice at 0.5, seconds per image, and for
  CRF rows the gain over no-CRF on the same images;
- **choose**: TTA cheapest first, a costlier mode only if it gains more than ``margin``; then a CRF variant only
  if it gains more than ``margin``; the threshold is the best one of the chosen combination.

The model runs at ``precision``, the one `predict` will use on this machine (training resolves predict's
``auto``), recorded as ``calibration.precision`` so the stored threshold is known to match it.
`estimate_seconds` predicts the cost of a calibration before training (the demo's budget planner).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from inpaintseg.data.split import even_subset
from inpaintseg.errors import ConfigError, DataError
from inpaintseg.inference import crf as crf_mod
from inpaintseg.inference.predictor import DEFAULT_BATCH_SIZE, Predictor
from inpaintseg.inference.tta import TTA_CHOICES, tta_cost, tta_plan, tta_views
from inpaintseg.inference.verdicts import calibrate_verdicts
from inpaintseg.metrics import THRESHOLD_GRID, best_of_curve, dice_curve, image_score
from inpaintseg.progress import progress_bar

DEFAULT_MARGIN = 0.005


@dataclass
class Measurement:
    """Per-image Dice curves (over THRESHOLD_GRID) and the time spent, for one TTA x CRF variant."""

    curves: list = field(default_factory=list)
    seconds: float = 0.0
    scores: list = field(default_factory=list)  # (image score, truth area fraction) per image: verdicts

    def mean_curve(self) -> np.ndarray:
        return np.mean(self.curves, axis=0)


@dataclass
class Measurements:
    variants: dict  # (tta, crf) -> Measurement; crf "off" rows hold every measured image
    off_on_crf_images: dict  # tta -> Measurement of no-CRF on the CRF images only
    n_images: int
    n_crf_images: int


def measure(model, model_config: dict, samples: Sequence, device: str, batch_size: int,
            tta_modes: Sequence[str], crf_variants: Sequence[str], crf_params: dict,
            max_images: int, crf_max_images: int, progress: bool = False, precision: str = "32") -> Measurements:
    """Predict the chosen validation images under every TTA mode and CRF variant; keep Dice curves."""
    chosen = even_subset(len(samples), max_images)
    crf_idx = {chosen[i] for i in even_subset(len(chosen), crf_max_images)}
    variants: dict[tuple[str, str], Measurement] = {}
    off_subset: dict[str, Measurement] = {}
    bar = progress_bar(len(chosen), "calibrating", progress)
    # One pass computes every mode (shared views run once); each mode is charged the time it would
    # take alone: the measured time x its share of the forward cost (views x scale^2).
    predictor = Predictor(model, model_config, device=device, tta=tta_modes[0], batch_size=batch_size,
                          precision=precision)
    jobs, _ = tta_plan(tta_modes)
    union_cost = sum(scale * scale for scale, _ in jobs)
    for start in range(0, len(chosen), batch_size):
        indices = chosen[start:start + batch_size]
        batch = [samples[i] for i in indices]
        t0 = time.perf_counter()
        maps = predictor.predict_proba_modes([img for img, _ in batch], tta_modes)
        elapsed = time.perf_counter() - t0
        for mode in tta_modes:
            off = variants.setdefault((mode, "off"), Measurement())
            off_sub = off_subset.setdefault(mode, Measurement())
            off.seconds += elapsed * tta_cost(mode) / union_cost
            for i, (img, mask), p in zip(indices, batch, maps[mode]):
                curve = dice_curve(p, mask)
                off.curves.append(curve)
                off.scores.append((image_score(p), float(mask.mean())))
                if i not in crf_idx:
                    continue
                off_sub.curves.append(curve)
                for name in crf_variants:
                    t1 = time.perf_counter()
                    refined = crf_mod.refine(img, p, crf_params[name])
                    variant = variants.setdefault((mode, name), Measurement())
                    variant.seconds += time.perf_counter() - t1
                    variant.curves.append(dice_curve(refined, mask))
                    variant.scores.append((image_score(refined), float(mask.mean())))
        bar.update(len(batch))
    bar.close()
    return Measurements(variants, off_subset, len(chosen), len(crf_idx) if crf_variants else 0)


def tabulate(measured: Measurements) -> list[dict]:
    """One row per (tta, crf): best threshold and Dice, Dice at 0.5, seconds per image (+ CRF gain)."""
    rows = []
    half = int(np.argmin(np.abs(THRESHOLD_GRID - 0.5)))
    for (mode, name), variant in measured.variants.items():
        threshold, dice = best_of_curve(variant.mean_curve())
        n = len(variant.curves)
        row = {"tta": mode, "crf": name, "n_images": n, "threshold": threshold, "dice": round(dice, 5),
               "dice_at_0.5": round(float(variant.mean_curve()[half]), 5),
               "seconds_per_image": round(variant.seconds / max(n, 1), 5)}
        if name != "off":
            _, base_dice = best_of_curve(measured.off_on_crf_images[mode].mean_curve())
            off = measured.variants[(mode, "off")]
            row["dice_without_crf_same_images"] = round(base_dice, 5)
            row["crf_gain"] = round(dice - base_dice, 5)
            row["seconds_per_image"] = round(row["seconds_per_image"] + off.seconds / len(off.curves), 5)
        rows.append(row)
    return rows


def choose(rows: Sequence[dict], tta_modes: Sequence[str], crf_variants: Sequence[str],
           margin: float = DEFAULT_MARGIN) -> tuple[str, str, float]:
    """(tta, crf, threshold) by the rule in the module docstring; `tta_modes` cheapest first."""
    by_key = {(r["tta"], r["crf"]): r for r in rows}
    chosen_tta = tta_modes[0]
    for mode in tta_modes[1:]:
        if by_key[(mode, "off")]["dice"] > by_key[(chosen_tta, "off")]["dice"] + margin:
            chosen_tta = mode
    chosen_crf, best_gain = "off", margin
    for name in crf_variants:
        gain = by_key[(chosen_tta, name)]["crf_gain"]
        if gain > best_gain:
            chosen_crf, best_gain = name, gain
    return chosen_tta, chosen_crf, by_key[(chosen_tta, chosen_crf)]["threshold"]


def calibrate_postprocessing(
    model,
    model_config: dict,
    samples: Sequence[tuple[np.ndarray, np.ndarray]],
    device: str = "cpu",
    batch_size: int = DEFAULT_BATCH_SIZE,
    tta_modes: Sequence[str] = TTA_CHOICES,  # cheapest first
    crf_variants: Sequence[str] = crf_mod.CRF_VARIANTS,
    crf_params: dict | None = None,
    max_images: int = 300,
    crf_max_images: int = 64,
    margin: float = DEFAULT_MARGIN,
    progress: bool = False,
    precision: str = "32",
) -> dict:
    """Decide threshold, TTA and CRF on validation data; return ``config["postprocess"]``.

    ``samples``: (image uint8 (H, W, 3) RGB at original size, mask uint8 (H, W) {0,1}) pairs (indexed, may
    be lazy). Returns ``{"threshold", "tta", "crf", "crf_params", "calibration": {"table": [...], ...}}``.
    """
    params = crf_mod.default_crf_params() if crf_params is None else crf_params
    if not samples:
        raise DataError("calibration needs at least one validation image; the validation split is empty.")
    for mode in tta_modes:
        tta_views(mode)  # validates
    crf_note = None
    if crf_variants and not crf_mod.crf_available():
        crf_note = f"pydensecrf is not installed; CRF variants were not measured (`{crf_mod.INSTALL_HINT}`)."
        crf_variants = ()
    for name in crf_variants:
        if name not in params:
            raise ConfigError(f"crf_params has no entry for the CRF variant {name!r}; "
                              f"expected keys {sorted(crf_mod.CRF_PRESETS)}.")
        crf_mod.validate_params(params[name], f"crf_params.{name}")

    measured = measure(model, model_config, samples, device, batch_size, tta_modes, crf_variants, params,
                       max_images, crf_max_images, progress, precision)
    table = tabulate(measured)
    chosen_tta, chosen_crf, threshold = choose(table, tta_modes, crf_variants, margin)
    calibration = {
        "table": table,
        "n_val_images": len(samples),
        "n_images": measured.n_images,
        "n_crf_images": measured.n_crf_images,
        "margin": margin,
        "thresholds": "0.01..0.99 step 0.01",
        "dice_rule": "mean over images of per-image Dice; empty truth and empty prediction count 1.0",
        "rule": (f"TTA cheapest first ({' < '.join(tta_modes)}): a costlier mode only if its best Dice beats the "
                 f"current choice by > {margin}; then CRF only if it beats no-CRF on the same "
                 f"{measured.n_crf_images} images by > {margin}; threshold = best of the chosen combination."),
        "device": str(device),
        "seconds_rule": "TTA modes are measured in one pass in which shared views run once; a mode's seconds per "
                        "image = that pass's time x the mode's share of the forward cost (views x scale^2)",

        "precision": precision,
    }
    if crf_note:
        calibration["note"] = crf_note
    chosen_row = next(r for r in table if (r["tta"], r["crf"]) == (chosen_tta, chosen_crf))
    verdicts = calibrate_verdicts(measured.variants[(chosen_tta, chosen_crf)].scores, chosen_row["dice"])
    return {"threshold": threshold, "tta": chosen_tta, "crf": chosen_crf, "crf_params": params,
            "calibration": calibration, "verdicts": verdicts}


def estimate_seconds(samples: Sequence[tuple[np.ndarray, np.ndarray]], forward_rate: float,
                     tta_modes: Sequence[str] = TTA_CHOICES, crf_variants: Sequence[str] = crf_mod.CRF_VARIANTS,
                     crf_params: dict | None = None, max_images: int = 300, crf_max_images: int = 64) -> float:
    """Seconds `calibrate_postprocessing` with these options will take: forward passes (one per TTA view per
    image at `forward_rate` images/s), one Dice curve per image and variant, and the CRF refinements, the
    last two timed once on ``samples[0]`` (with a fixed probability map: the untrained network's output
    does not matter for their cost)."""
    if not samples:
        return 0.0
    if not forward_rate > 0:
        raise ValueError(f"forward_rate must be positive, got {forward_rate}")
    image, mask = samples[0]
    probs = np.linspace(0.0, 1.0, mask.size, dtype=np.float32).reshape(mask.shape)
    t0 = time.perf_counter()
    dice_curve(probs, mask)
    curve_seconds = time.perf_counter() - t0
    crf_seconds = 0.0
    if crf_variants and crf_mod.crf_available():
        params = crf_mod.default_crf_params() if crf_params is None else crf_params
        for name in crf_variants:
            t1 = time.perf_counter()
            crf_mod.refine(image, probs, params[name])
            crf_seconds += time.perf_counter() - t1 + curve_seconds
    else:
        crf_variants = ()
    n = len(even_subset(len(samples), max_images))
    n_crf = len(even_subset(n, crf_max_images)) if crf_variants else 0
    views = sum(len(tta_views(mode)) for mode in tta_modes)
    return n * views / forward_rate + len(tta_modes) * (n * curve_seconds + n_crf * crf_seconds)
