"""The post-processing of a fine-tuning run that kept its starting weights (`finetune.keeps_starting_point`).

Such a run exports the start's network unchanged, and its own calibration re-chooses TTA, CRF, threshold and
gate on its validation split -- often a few dozen images (the demo's: 40, 4 of them untouched), where the choice
is noisy, while the start's were chosen on hundreds of held-out images. So the start's stored post-processing is
one more candidate, as its weights were: `keep_start_postprocess` scores both on the same validation images
(at most ``max_images``, evenly spaced) and keeps this run's calibration only when its per-image Dice gain over
the start's exceeds ``margin`` by 1.96 standard errors of the paired differences: the run chose its settings on
these very images, so a small gain is what chance alone gives (the demo measured +0.006 on 40 validation images
for settings that scored 0.04 less on its test images). When the start wins, its threshold, gate, TTA,
CRF, verdict levels and gate record are taken over; either way the comparison is recorded as
``calibration.start_comparison``. Before the comparison, `inherit_gate` gives this run's calibration the start's
image gate when its split has too few untouched images to choose one.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from inpaintseg.inference.sequential import Z

START_KEYS = ("threshold", "gate", "tta", "crf", "crf_params", "verdicts")  # what a winning start passes on


def inherit_gate(postprocess: dict, init_from) -> dict:
    """`postprocess` with the image gate of the `init_from` model folder when its own calibration could not
    choose a gate for lack of untouched images (`inference.gate.MIN_UNTOUCHED`); otherwise unchanged."""
    from inpaintseg.inference.gate import MIN_UNTOUCHED
    from inpaintseg.model.io import read_model_config

    record = (postprocess.get("calibration") or {}).get("gate") or {}
    if postprocess.get("gate") is not None or record.get("n_untouched", MIN_UNTOUCHED) >= MIN_UNTOUCHED:
        return postprocess
    gate = read_model_config(init_from).postprocess.gate
    if gate is None:
        return postprocess
    inherited = (f"from init_from {Path(init_from).name}: the starting weights were kept and this validation split "
                 f"has {record.get('n_untouched')} untouched images, fewer than the {MIN_UNTOUCHED} a gate needs")
    calibration = {**postprocess["calibration"], "gate": {**record, "gate": gate, "inherited": inherited}}
    return {**postprocess, "gate": gate, "calibration": calibration}


def validation_dice(network, model_config: dict, samples: Sequence, section: dict, device: str, batch_size: int,
                    precision: str) -> np.ndarray:
    """Per-image Dice of the masks `section` (a postprocess section) makes on (image, mask) ``samples``."""
    from inpaintseg.inference import crf as crf_mod
    from inpaintseg.inference.postprocess import resolve_postprocess
    from inpaintseg.inference.predictor import Predictor
    from inpaintseg.metrics import mask_dice

    post = resolve_postprocess({"postprocess": section})
    predictor = Predictor(network, model_config, device=device, tta=post.tta, batch_size=batch_size,
                          precision=precision)
    dices = []
    for start in range(0, len(samples), batch_size):
        batch = [samples[i] for i in range(start, min(start + batch_size, len(samples)))]
        for (image, truth), probs in zip(batch, predictor.predict_proba_batch([image for image, _ in batch])):
            if post.crf != "off":
                probs = crf_mod.refine(image, probs, post.crf_params)
            dices.append(mask_dice(post.binarize(probs), truth))
    return np.asarray(dices, dtype=np.float64)


def keep_start_postprocess(network, model_config: dict, samples: Sequence, postprocess: dict, init_from,
                           device: str, batch_size: int, precision: str, margin: float,
                           max_images: int = 300) -> dict:
    """This run's `postprocess` (after `inherit_gate`), or the start's where this one does not beat it on the
    same validation images by more than `margin` (module docstring)."""
    from inpaintseg.data.split import even_subset
    from inpaintseg.model.io import read_model_config
    from inpaintseg.model.model_config import thawed

    postprocess = inherit_gate(postprocess, init_from)
    start = thawed(read_model_config(init_from).postprocess.to_dict())
    if not samples or "threshold" not in start:
        return postprocess
    subset = [samples[i] for i in even_subset(len(samples), max_images)]
    new, old = (validation_dice(network, model_config, subset, section, device, batch_size, precision)
                for section in (postprocess, start))
    gain = new - old                                                         # (N,) paired per-image differences
    se = float(gain.std(ddof=1) / np.sqrt(gain.size)) if gain.size > 1 else math.inf
    kept = not float(gain.mean()) - Z * se > margin
    record = {"start_dice": round(float(old.mean()), 5), "this_run_dice": round(float(new.mean()), 5),
              "gain_se": round(se, 5) if math.isfinite(se) else None, "n_images": len(subset), "margin": margin,
              "kept_start": kept,
              "rule": (f"the run kept its starting weights: its calibration replaces the start's stored "
                       f"post-processing only when its mean per-image Dice gain minus {Z} standard errors exceeds "
                       f"the margin on these images")}
    calibration = {**postprocess["calibration"], "start_comparison": record}
    if not kept:
        return {**postprocess, "calibration": calibration}
    if (start.get("calibration") or {}).get("gate"):
        calibration["gate"] = start["calibration"]["gate"]
    return {**postprocess, **{k: start[k] for k in START_KEYS if k in start}, "calibration": calibration}
