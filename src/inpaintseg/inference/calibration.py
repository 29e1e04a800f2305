"""Validation calibration of the post-processing: measure every TTA x CRF variant, tabulate, choose.

`calibrate_postprocessing` (called at the end of training) returns the model config's `postprocess`
record that `predict --tta auto --crf auto --threshold auto` and `load_model(...).predict` follow:

- **measure**: per-image Dice at the thresholds 0.01..0.99 of the TTA modes on at most ``max_images``
  validation images at their original size (one forward pass per distinct view, shared by all modes and
  every threshold), then of the CRF variants on at most ``crf_max_images`` of them (next to no-CRF on the
  same images), with the time per image. The adaptive search (``tolerance``, the default; see
  `inference.sequential`) visits the images in a fixed random order, stops running a mode or CRF variant once
  it cannot win, stops when the choice is settled and the threshold's regret bound is <= ``tolerance``, and
  refines only the chosen TTA mode's maps with CRF (``choose`` looks at no other CRF row). ``tolerance=None``
  is the full search: every mode on every image, every CRF variant after every mode;
- **tabulate**: one row per variant: best threshold, its mean Dice, Dice at 0.5, seconds per image, and for
  CRF rows the gain over no-CRF on the same images;
- **choose**: TTA cheapest first, a costlier mode only if it gains more than ``margin``; then a CRF variant only
  if it gains more than ``margin``; the threshold is the best one of the chosen combination;
- **gate** (`inference.gate`): an image gate with its threshold, chosen together for each variant from the same
  curves and image scores; the chosen combination keeps it only if it gains more than ``margin``.

The model runs at ``precision``, the one `predict` will use on this machine (training resolves predict's
``auto``), recorded as ``calibration.precision`` so the stored threshold is known to match it.
`estimate_seconds` predicts the cost of a calibration before training (the demo's budget planner).
"""

from __future__ import annotations

import math

import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from inpaintseg.data.split import even_subset
from inpaintseg.errors import ConfigError, DataError
from inpaintseg.inference import crf as crf_mod
from inpaintseg.inference import sequential
from inpaintseg.inference.predictor import DEFAULT_BATCH_SIZE, Predictor
from inpaintseg.inference.tta import TTA_CHOICES, tta_cost, tta_plan, tta_views
from inpaintseg.inference.gate import FALSE_ALARM_TARGET, calibrate_gate, table_fields
from inpaintseg.inference.verdicts import calibrate_verdicts
from inpaintseg.metrics import THRESHOLD_GRID, best_of_curve, dice_curve, image_score
from inpaintseg.progress import progress_bar

DEFAULT_MARGIN = 0.005
DEFAULT_TOLERANCE = 0.01  # adaptive calibration: Dice the early-stopped choice may cost (None: full search)
MIN_IMAGES = 16  # adaptive: images measured before any TTA mode is dropped or the search stops
MIN_CRF_IMAGES = 16  # adaptive: the same for the CRF variants
ORDER_SEED = 0  # images are visited in a fixed random order, so every prefix is a random sample
MAP_CACHE_BYTES = 256 * 2**20  # probability maps of the CRF images kept from the TTA pass (else re-predicted)


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
    search: dict = field(default_factory=dict)  # how the adaptive search went (dropped variants, stop reason)


def visit_order(n: int, max_images: int) -> list[int]:
    """At most ``max_images`` indices spread evenly over range(n), in a fixed random order."""
    chosen = np.asarray(even_subset(n, max_images))
    return [int(i) for i in chosen[np.random.default_rng(ORDER_SEED).permutation(len(chosen))]]


def measure(model, model_config, samples: Sequence, device: str, batch_size: int,
            tta_modes: Sequence[str], crf_variants: Sequence[str], crf_params: dict,
            max_images: int, crf_max_images: int, progress: bool = False, precision: str = "32",
            tolerance: float | None = DEFAULT_TOLERANCE, margin: float = DEFAULT_MARGIN,
            report=None) -> Measurements:
    """Predict validation images under the TTA modes, then the CRF variants; keep Dice curves.

    ``tolerance`` None: every mode on every chosen image and every CRF variant after every mode (the full
    search). Otherwise the adaptive search (`inference.sequential`): modes that cannot win stop running,
    the TTA pass stops once the choice and its threshold are settled, and CRF runs after the chosen mode only.
    """
    order = visit_order(len(samples), max_images)
    predictor = Predictor(model, model_config, device=device, tta=tta_modes[0], batch_size=batch_size,
                          precision=precision)
    variants: dict[tuple[str, str], Measurement] = {}
    search: dict = {"tolerance": tolerance, "dropped": {}, "maps": {} if crf_variants else None}
    seen = _measure_tta(predictor, samples, order, batch_size, tta_modes, variants, search, margin, progress,
                        report, max_images, crf_max_images, len(crf_variants) if crf_variants else 0)
    crf_modes = list(tta_modes) if tolerance is None else [_tta_choice(variants, search["kept"], margin)]
    off_subset = _measure_crf(predictor, samples, seen[:crf_max_images], batch_size, crf_modes,
                              crf_variants, crf_params, variants, search, margin) if crf_variants else {}
    n_crf = len(off_subset[crf_modes[0]].curves) if off_subset else 0
    search.pop("maps", None)
    return Measurements(variants, off_subset, len(seen), n_crf, search)


def _measure_tta(predictor, samples, order, batch_size, tta_modes, variants, search, margin, progress, report,
                 max_images, crf_max_images, n_crf_variants) -> list[int]:
    """The TTA pass: every kept mode on each batch; returns the visited indices. One pass computes the kept
    modes (shared views run once); each is charged the measured time x its share of the forward cost."""
    tolerance = search["tolerance"]
    kept = list(tta_modes)
    bar = progress_bar(len(order), "calibrating", progress)
    seen: list[int] = []
    search["stopped"] = f"all {len(order)} images measured"
    for start in range(0, len(order), batch_size):
        indices = order[start:start + batch_size]
        batch = [samples[i] for i in indices]
        t0 = time.perf_counter()
        maps = predictor.predict_proba_modes([img for img, _ in batch], kept)
        elapsed = time.perf_counter() - t0
        union_cost = sum(scale * scale for scale, _ in tta_plan(kept)[0])
        for mode in kept:
            off = variants.setdefault((mode, "off"), Measurement())
            off.seconds += elapsed * tta_cost(mode) / union_cost
            for (_, mask), p in zip(batch, maps[mode]):
                off.curves.append(dice_curve(p, mask))
                off.scores.append((image_score(p), float(mask.mean())))
        _keep_maps(search["maps"], indices[:max(0, crf_max_images - len(seen))], kept, maps)
        seen.extend(indices)
        bar.update(len(batch))
        if start == 0 and report is not None:
            report(_expectation(elapsed / len(batch), len(order), kept, crf_max_images, n_crf_variants, tolerance))
        if tolerance is None or len(seen) >= len(order) or len(seen) < MIN_IMAGES:
            continue
        curves = {m: variants[(m, "off")].curves for m in kept}
        need = max(margin, tolerance)
        for mode in sequential.losers(curves, kept, need):
            kept.remove(mode)
            _drop_maps(search["maps"], mode)
            search["dropped"][mode] = f"cannot gain > {need} Dice (after {len(seen)} images)"
        chosen, decided = sequential.chain_choice(curves, kept, margin, tolerance)
        bound = sequential.threshold_regret_bound(curves[chosen])
        if decided and bound <= tolerance:
            search["stopped"] = (f"after {len(seen)} of {len(order)} images: TTA choice settled, threshold "
                                 f"regret bound {bound:.4f} <= {tolerance}")
            break
    bar.close()
    search["kept"] = kept
    chosen = _tta_choice(variants, kept, margin)
    search["threshold_regret_bound"] = round(sequential.threshold_regret_bound(variants[(chosen, "off")].curves), 5)
    return seen


def _keep_maps(cache: dict | None, indices: Sequence[int], modes: Sequence[str], maps: dict) -> None:
    """Keep the maps of the first CRF images for the CRF pass while they fit in MAP_CACHE_BYTES."""
    if cache is None:
        return
    for j, index in enumerate(indices):
        for mode in modes:
            size = maps[mode][j].nbytes
            if cache.get("bytes", 0) + size > MAP_CACHE_BYTES:
                return
            cache[(mode, index)] = maps[mode][j]
            cache["bytes"] = cache.get("bytes", 0) + size


def _drop_maps(cache: dict | None, mode: str) -> None:
    if cache:
        for key in [k for k in cache if isinstance(k, tuple) and k[0] == mode]:
            cache["bytes"] -= cache.pop(key).nbytes


def _tta_choice(variants: dict, modes: Sequence[str], margin: float) -> str:
    """`choose`'s TTA mode on the no-CRF rows measured so far (the same rounding as the final choice)."""
    rows = tabulate(Measurements({(m, "off"): variants[(m, "off")] for m in modes}, {}, 0, 0))
    return choose(rows, modes, (), margin)[0]


def _measure_crf(predictor, samples, indices, batch_size, crf_modes, crf_variants, crf_params, variants, search,
                 margin) -> dict:
    """CRF variants after each of `crf_modes` on `indices` (the first visited images), next to no-CRF on the
    same images (maps kept from the TTA pass when they fit); the adaptive search drops a variant that cannot
    gain more than max(margin, tolerance) and stops once every kept variant's gain is settled."""
    tolerance = search["tolerance"]
    kept = list(crf_variants)
    off_subset = {mode: Measurement() for mode in crf_modes}
    for start in range(0, len(indices), batch_size):
        chunk = indices[start:start + batch_size]
        batch = [samples[i] for i in chunk]
        cache = search.get("maps") or {}
        if all((mode, i) in cache for mode in crf_modes for i in chunk):
            maps = {mode: [cache[(mode, i)] for i in chunk] for mode in crf_modes}  # from the TTA pass
        else:
            maps = predictor.predict_proba_modes([img for img, _ in batch], crf_modes)
        for mode in crf_modes:
            for (img, mask), p in zip(batch, maps[mode]):
                off_subset[mode].curves.append(dice_curve(p, mask))
                for name in kept:
                    t1 = time.perf_counter()
                    refined = crf_mod.refine(img, p, crf_params[name])
                    variant = variants.setdefault((mode, name), Measurement())
                    variant.seconds += time.perf_counter() - t1
                    variant.curves.append(dice_curve(refined, mask))
                    variant.scores.append((image_score(refined), float(mask.mean())))
        done = start + len(batch)
        if tolerance is None or done >= len(indices) or done < MIN_CRF_IMAGES:
            continue
        mode = crf_modes[0]
        gains = {name: sequential.paired_gain(variants[(mode, name)].curves, off_subset[mode].curves)
                 for name in kept}
        need = max(margin, tolerance)
        for name, (mean, se) in gains.items():
            if sequential.cannot_win(mean, se, need):
                kept.remove(name)
                search["dropped"][f"crf {name}"] = f"cannot gain > {need} Dice (after {done} images)"
        if all(sequential.settled(*gains[name], margin, tolerance) for name in kept):
            search["crf_stopped"] = f"after {done} of {len(indices)} images"
            break
    search["crf_kept"] = kept
    return off_subset


def _expectation(seconds_per_image: float, n_images: int, modes, crf_max_images: int, n_crf_variants: int,
                 tolerance) -> str:
    worst = seconds_per_image * n_images
    early = "" if tolerance is None else (f"; it stops earlier once the choice is settled (at least "
                                          f"{min(MIN_IMAGES, n_images)} images, ~{seconds_per_image * min(MIN_IMAGES, n_images):.0f} s)")
    crf = f", then {n_crf_variants} CRF variant(s) on up to {min(crf_max_images, n_images)} images" if n_crf_variants else ""
    return (f"calibration: {len(modes)} TTA mode(s) on up to {n_images} validation images at "
            f"{seconds_per_image:.2f} s/image: at most ~{worst:.0f} s{crf}{early}")


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
    model_config,
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
    tolerance: float | None = DEFAULT_TOLERANCE,
    report=None,
    gate_false_alarm: float | None = FALSE_ALARM_TARGET,
) -> dict:
    """Decide threshold, TTA and CRF on validation data; return ``config["postprocess"]``.

    ``samples``: (image uint8 (H, W, 3) RGB at original size, mask uint8 (H, W) {0,1}) pairs (indexed, may
    be lazy). Returns ``{"threshold", "tta", "crf", "crf_params", "calibration": {"table": [...], ...}}``.
    ``tolerance``: the adaptive search's Dice tolerance (None: full search). ``report``: called with one line
    saying the expected time, after the first batch. ``gate_false_alarm``: the image gate's false-alarm target
    (`inference.gate.calibrate_gate`).
    """
    params = crf_mod.default_crf_params() if crf_params is None else crf_params
    if not samples:
        raise DataError("calibration needs at least one validation image; the validation split is empty.")
    for mode in tta_modes:
        tta_views(mode)  # validates
    crf_variants, crf_note = _measurable_crf_variants(crf_variants, params)
    measured = measure(model, model_config, samples, device, batch_size, tta_modes, crf_variants, params,
                       max_images, crf_max_images, progress, precision, tolerance, margin, report)
    table = tabulate(measured)
    search = measured.search
    chosen_tta, chosen_crf, _ = choose(table, search.get("kept", tta_modes), search.get("crf_kept", crf_variants),
                                       margin)
    gates = {key: calibrate_gate(v.curves, v.scores, margin, gate_false_alarm) for key, v in measured.variants.items()}
    for row in table:
        row.update(table_fields(gates[(row["tta"], row["crf"])]))
    calibration = _calibration_record(table, measured, len(samples), tta_modes, margin, device, precision, crf_note)
    calibration["gate"] = gate = gates[(chosen_tta, chosen_crf)]
    chosen = measured.variants[(chosen_tta, chosen_crf)]
    verdicts = calibrate_verdicts(chosen.scores, gate["dice"])
    # the gate record's threshold: the gate's joint one, or (no gate) the chosen row's best, as `choose` gives
    return {"threshold": gate["threshold"], "gate": gate["gate"],
            "tta": chosen_tta, "crf": chosen_crf, "crf_params": params, "calibration": calibration,
            "verdicts": verdicts}


def _measurable_crf_variants(crf_variants: Sequence[str], params: dict) -> tuple[Sequence[str], str | None]:
    """The CRF variants to measure (none without pydensecrf, with a note saying so); ConfigError for a variant
    without valid parameters."""
    if crf_variants and not crf_mod.crf_available():
        return (), f"pydensecrf is not installed; CRF variants were not measured (`{crf_mod.INSTALL_HINT}`)."
    for name in crf_variants:
        if name not in params:
            raise ConfigError(f"crf_params has no entry for the CRF variant {name!r}; "
                              f"expected keys {sorted(crf_mod.CRF_PRESETS)}.")
        crf_mod.validate_params(params[name], f"crf_params.{name}")
    return crf_variants, None


def _calibration_record(table: list, measured, n_val_images: int, tta_modes: Sequence[str], margin: float,
                        device: str, precision: str, crf_note: str | None) -> dict:
    """The `calibration` record stored in config.json's postprocess: the table and the rules that read it."""
    calibration = {
        "table": table,
        "n_val_images": n_val_images,
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
        "search": _search_record(measured.search, margin),
    }
    if crf_note:
        calibration["note"] = crf_note
    return calibration


def _search_record(search: dict, margin: float) -> dict:
    if search["tolerance"] is None:
        return {"mode": "full", "stopped": search["stopped"]}
    return {"mode": "adaptive", "tolerance": search["tolerance"], "z": sequential.Z, "min_images": MIN_IMAGES,
            "stopped": search["stopped"], "crf_stopped": search.get("crf_stopped", "all CRF images measured"),
            "dropped": search["dropped"],
            # inf with too few images for a standard error: JSON has no inf, and "no bound" is what it means
            "threshold_regret_bound": (search["threshold_regret_bound"]
                                       if math.isfinite(search["threshold_regret_bound"]) else None),
            "rule": (f"images in a fixed random order; after each batch (from {MIN_IMAGES} images) a mode or CRF "
                     f"variant whose gain's upper {sequential.Z}-SE bound is below max(margin {margin}, tolerance) "
                     "stops running; "
                     f"the TTA pass stops when every comparison of the choice rule is {sequential.Z} SE from the "
                     f"margin (or {sequential.Z} SE <= tolerance) and no threshold's Dice gain over the chosen one "
                     "has an upper bound above the tolerance (threshold_regret_bound); CRF runs after the chosen "
                     "mode only")}


def estimate_seconds(samples: Sequence[tuple[np.ndarray, np.ndarray]], forward_rate: float,
                     tta_modes: Sequence[str] = TTA_CHOICES, crf_variants: Sequence[str] = crf_mod.CRF_VARIANTS,
                     crf_params: dict | None = None, max_images: int = 300, crf_max_images: int = 64) -> float:
    """Seconds `calibrate_postprocessing` with these options takes at most: forward passes (one per distinct
    TTA view x scale^2 per image at `forward_rate` full-size images/s, then again for the CRF images), one Dice curve per image and variant, and the CRF refinements, the
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
    n_crf = min(n, crf_max_images) if crf_variants else 0
    jobs, _ = tta_plan(tta_modes)
    passes = sum(scale * scale for scale, _ in jobs)  # shared views run once (full-size pass equivalents)
    cached = n_crf * len(tta_modes) * probs.nbytes <= MAP_CACHE_BYTES  # maps kept from the TTA pass
    crf_forward = max(tta_cost(mode) for mode in tta_modes) if n_crf and not cached else 0.0
    # At most: the adaptive search usually stops earlier; CRF runs after the chosen mode only (on the maps
    # kept from the TTA pass, or re-predicted when they do not fit: bounded by the costliest mode).
    return ((n * passes + n_crf * crf_forward) / forward_rate + len(tta_modes) * n * curve_seconds
            + n_crf * crf_seconds)
