"""The image gate: a mask is left empty when the image's score says the image is probably untouched.

A pixel threshold alone flags an untouched photo as soon as one patch of it looks edited; the detector's
image score (`metrics.image_score`, the mean of its top 1% probabilities) sees the whole map and separates
untouched from edited images better than any single pixel (TruFor and MVSS-Net report a detection score next
to the localisation map for the same reason). With a gate ``g``, an image whose score is < ``g`` gets an
empty mask; its probability map and score are unchanged.

`calibrate_gate` chooses the gate and the pixel threshold together on the validation images calibration
already predicted: from each image's Dice curve over the thresholds (``metrics.THRESHOLD_GRID``), its score
and whether its truth is empty, the mean per-image Dice of every (threshold, gate) pair follows without
predicting again -- a gated image scores 1.0 when its truth is empty and 0.0 otherwise. Two users want
different gates: mean Dice weighs untouched images by their share of the data (10 % in the engine's mix), an
analyst wants few false alarms. So the rule prefers the lowest gate that brings the false-alarm rate on the
untouched validation images to ``false_alarm_target`` (10 %) when that gate still beats plain thresholding's
Dice by more than ``margin``; otherwise the best-Dice gate when it beats it by more than ``margin``; otherwise
no gate, so a model whose scores do not separate untouched images keeps plain thresholding -- and no gate
with fewer than ``MIN_UNTOUCHED`` untouched images, where a rate of 0 of 4 says little. The record
(``postprocess.calibration.gate``) keeps the three rows (no gate, best-Dice gate, false-alarm-target gate)
with their Dice and false-alarm rates, so the effect is visible, not assumed.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from inpaintseg.metrics import THRESHOLD_GRID, best_of_curve

# 0.00 = no image is gated; stops at 0.99: a gate is a threshold in (0, 1), and 1.0 would empty every mask
GATE_GRID = tuple(round(i / 100, 2) for i in range(100))
FALSE_ALARM_TARGET = 0.10  # share of untouched images with a non-empty mask the gate aims for
MIN_UNTOUCHED = 10  # fewer untouched images than this: no gate (a rate of 0 of 4 says little about the next)


def gated_mean_curves(curves: np.ndarray, scores: np.ndarray, empty_truth: np.ndarray,
                      gates: Sequence[float] = GATE_GRID) -> np.ndarray:
    """Mean per-image Dice for every (gate, threshold): an image scoring below the gate counts 1.0 when its
    truth is empty, else 0.0; otherwise its Dice at the threshold.

    Shapes: curves (N, T), scores (N,), empty_truth (N,) -> (G, T)"""
    curves = np.asarray(curves, dtype=np.float64)
    scores = np.asarray(scores, dtype=np.float64)
    gated_value = np.asarray(empty_truth, dtype=np.float64)
    out = np.empty((len(gates), curves.shape[1]))
    for i, gate in enumerate(gates):
        kept = scores >= gate                                                # (N,)
        out[i] = np.where(kept[:, None], curves, gated_value[:, None]).mean(axis=0)
    return out


def _false_alarm_rate(curves: np.ndarray, scores: np.ndarray, empty_truth: np.ndarray, threshold_index: int,
                      gate: float) -> float | None:
    """Share of the empty-truth images whose mask is not empty (Dice 0 at the threshold, and not gated)."""
    untouched = np.flatnonzero(empty_truth)
    if untouched.size == 0:
        return None
    flagged = (curves[untouched, threshold_index] < 0.5) & (scores[untouched] >= gate)
    return round(float(flagged.mean()), 4)


def calibrate_gate(curves: Sequence, scored: Sequence[tuple[float, float]], margin: float,
                   false_alarm_target: float | None = FALSE_ALARM_TARGET,
                   thresholds: Sequence[float] = THRESHOLD_GRID) -> dict:
    """The gate record: ``gate`` (None = no gate) and ``threshold`` to use, and the rows it chose from.

    ``curves``: per-image Dice over ``thresholds`` (both empty = 1.0); ``scored``: (image score, truth area
    fraction) per image, in the same order. Rule: the lowest gate whose false-alarm rate on the untouched images
    is <= ``false_alarm_target`` (at its best threshold), if its Dice beats the ungated Dice by > ``margin``;
    else the gate with the best Dice, if that beats it by > ``margin``; else no gate. No gate either with fewer
    than `MIN_UNTOUCHED` untouched images (the rows are still measured and recorded)."""
    curves = np.asarray(curves, dtype=np.float64)
    if curves.ndim != 2 or len(scored) != curves.shape[0] or curves.shape[1] != len(thresholds):
        raise ValueError("calibrate_gate: needs one curve (one value per threshold) and one score per image")
    scores = np.asarray([s for s, _ in scored], dtype=np.float64)
    empty_truth = np.asarray([area == 0 for _, area in scored])
    table = gated_mean_curves(curves, scores, empty_truth)                   # (G, T)
    index = {round(float(t), 6): i for i, t in enumerate(thresholds)}
    rows = []
    for gate, curve in zip(GATE_GRID, table):
        threshold, dice = best_of_curve(curve, thresholds)
        rate = _false_alarm_rate(curves, scores, empty_truth, index[round(threshold, 6)], gate)
        rows.append({"gate": gate, "threshold": threshold, "dice": round(dice, 5), "false_alarm_rate": rate})
    plain = rows[0]
    best = max(rows, key=lambda r: (r["dice"], -r["gate"]))                 # ties: the lowest gate
    target = None
    if false_alarm_target is not None and plain["false_alarm_rate"] is not None:
        target = next((r for r in rows if r["false_alarm_rate"] <= false_alarm_target), None)
    enough = int(empty_truth.sum()) >= MIN_UNTOUCHED
    chosen = next((r for r in (target, best) if enough and r is not None and r["gate"] > 0
                   and r["dice"] > plain["dice"] + margin), None)
    return {"gate": None if chosen is None else chosen["gate"],
            "threshold": (plain if chosen is None else chosen)["threshold"],
            "dice": (plain if chosen is None else chosen)["dice"],
            "n_images": int(curves.shape[0]), "n_untouched": int(empty_truth.sum()),
            "false_alarm_target": false_alarm_target,
            "without_gate": plain, "best_dice_gate": best, "false_alarm_target_gate": target,
            "rule": (f"an image scoring below the gate gets an empty mask (1.0 on an untouched image, 0.0 on an "
                     f"edited one); each gate with its best threshold; chosen: the lowest gate whose false-alarm "
                     f"rate on the untouched images is <= {false_alarm_target} if it beats the ungated Dice by "
                     f"> {margin}, else the best-Dice gate if it does, else none; none with fewer than "
                     f"{MIN_UNTOUCHED} untouched images")}


def table_fields(record: dict) -> dict:
    """What a calibration-table row keeps of its `calibrate_gate` record, so that predict with that TTA x CRF
    finds its own gate: the chosen gate and the threshold chosen with it, and the false-alarm-target gate and
    its threshold (None where calibration had fewer than `MIN_UNTOUCHED` untouched images)."""
    gated = record["gate"] is not None
    target = record.get("false_alarm_target_gate") if record.get("n_untouched", 0) >= MIN_UNTOUCHED else None
    return {"gate": record["gate"], "gate_threshold": record["threshold"] if gated else None,
            "false_alarm_gate": target["gate"] if target else None,
            "false_alarm_threshold": target["threshold"] if target else None}


def folder_curves(model, folder, tta=None, crf=None, batch_size: int = 16) -> tuple[np.ndarray, list]:
    """Per image of a folder with images/ and masks/ (PNG, same names), predicted by ``model`` (an
    `InpaintModel`; ``tta``/``crf`` None = its stored ones) with the gate off: the Dice curve over
    THRESHOLD_GRID and (image score, truth area fraction) -- what `calibrate_gate` and the verdicts read."""
    return next(iter(folder_curves_many(model, folder, [(tta, crf)], batch_size).values()))


def folder_curves_many(model, folder, pairs: Sequence[tuple], batch_size: int = 16) -> dict[tuple, tuple]:
    """`folder_curves` for several (tta, crf) pairs in one pass: the views the TTA modes share run once
    (`Predictor.predict_proba_modes`, as validation calibration does) and CRF refines its pair's map.
    Returns {(tta, crf) as resolved: (curves, scored)} in the order of ``pairs``."""
    from pathlib import Path

    from inpaintseg.fileio import read_image, read_mask
    from inpaintseg.inference import crf as crf_mod
    from inpaintseg.metrics import dice_curve, image_score

    posts = {}
    for tta, crf in pairs:
        post = model.postprocess(tta=tta, crf=crf)
        posts.setdefault((post.tta, post.crf), post)
    modes = list(dict.fromkeys(tta for tta, _ in posts))
    predictor = model.predictor(modes[0])
    folder = Path(folder)
    paths = sorted(p for p in (folder / "images").iterdir() if p.suffix == ".png")
    out = {pair: ([], []) for pair in posts}
    for start in range(0, len(paths), batch_size):
        batch = paths[start:start + batch_size]
        arrays = [read_image(path) for path in batch]
        maps = predictor.predict_proba_modes(arrays, modes)
        for j, path in enumerate(batch):
            truth = read_mask(folder / "masks" / path.name)
            for (tta, crf), post in posts.items():
                p = maps[tta][j] if crf == "off" else crf_mod.refine(arrays[j], maps[tta][j], post.crf_params)
                out[(tta, crf)][0].append(dice_curve(p, truth))
                out[(tta, crf)][1].append((image_score(p), float(truth.mean())))
    return {pair: (np.asarray(curves), scored) for pair, (curves, scored) in out.items()}
