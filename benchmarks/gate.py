"""The image gate (inference.gate) held out: chosen on one engine set, scored on another.

    python benchmarks/gate.py --model base --calibrate WORK/verdict_data/test --test WORK/fresh/test
                              [--tta none] [--crf off] [--json FILE]

Predicts both folders once (gate off; the model's stored TTA and CRF unless overridden), keeps every image's
Dice curve over the thresholds 0.01..0.99, its image score and whether its truth is empty, then:
- on ``--calibrate``: `calibrate_gate` (the rule training and the base recipe use: the lowest gate meeting the
  10 % false-alarm target if it beats plain thresholding's Dice by > 0.005, else the best-Dice gate, else none);
- on ``--test``, with each of its three rows' (gate, threshold) -- no gate, best-Dice gate, false-alarm-target
  gate -- the mean per-image Dice, the false-alarm rate on the untouched images (a non-empty mask) and the
  detection rate of the edited ones (score >= the gate).
Nothing is chosen on the test folder. Both folders should be engine sets of the same version with different
seeds (recipes/base.py writes them: verdict_data = data seed 3033, fresh = 2022).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", required=True, help="model folder, or base")
    p.add_argument("--calibrate", type=Path, required=True, help="engine folder (images/, masks/) to choose on")
    p.add_argument("--test", type=Path, required=True, help="engine folder (images/, masks/) to score on")
    p.add_argument("--tta", default=None, help="override the stored TTA (none, flip, d4, flip+scales, d4+scales)")
    p.add_argument("--crf", default=None, help="override the stored CRF (off, gaussian, seed)")
    p.add_argument("--batch-size", type=int, default=16, help="images per predict call (default 16)")
    p.add_argument("--json", type=Path, default=None, help="also write the results here")
    return p.parse_args(argv)


def score_row(curves: np.ndarray, scored: list, gate: float, threshold: float) -> dict:
    """Mean per-image Dice, false-alarm rate (untouched with a non-empty mask) and detection rate at (gate,
    threshold) on one folder's curves."""
    from inpaintseg.inference.gate import gated_mean_curves
    from inpaintseg.metrics import THRESHOLD_GRID

    scores = np.asarray([s for s, _ in scored])
    empty = np.asarray([a == 0 for _, a in scored])
    column = int(np.argmin(np.abs(np.asarray(THRESHOLD_GRID) - threshold)))
    dice = float(gated_mean_curves(curves, scores, empty, gates=(gate,))[0, column])
    flagged = (curves[empty, column] < 0.5) & (scores[empty] >= gate)
    return {"gate": gate, "threshold": threshold, "dice": round(dice, 4),
            "false_alarm_rate": round(float(flagged.mean()), 4) if empty.any() else None,
            "detection_rate": round(float((scores[~empty] >= gate).mean()), 4) if (~empty).any() else None,
            "n": len(scored), "n_untouched": int(empty.sum())}


def main(argv=None) -> int:
    args = parse_args(argv)
    from inpaintseg.api import load_model
    from inpaintseg.inference.calibration import DEFAULT_MARGIN
    from inpaintseg.inference.gate import calibrate_gate, folder_curves

    started = time.perf_counter()
    model = load_model(args.model, device="cpu")
    post = model.postprocess(tta=args.tta, crf=args.crf, gate="off")
    cal_curves, cal_scored = folder_curves(model, args.calibrate, post.tta, post.crf, args.batch_size)
    test_curves, test_scored = folder_curves(model, args.test, post.tta, post.crf, args.batch_size)
    record = calibrate_gate(cal_curves, cal_scored, DEFAULT_MARGIN)
    result = {"model": str(args.model), "tta": post.tta, "crf": post.crf, "chosen_gate": record["gate"],
              "rows": {}}
    for name in ("without_gate", "best_dice_gate", "false_alarm_target_gate"):
        chosen = record[name]
        if chosen is None:
            continue
        result["rows"][name] = {"calibration": chosen,
                                "test": score_row(test_curves, test_scored, chosen["gate"], chosen["threshold"])}
        test = result["rows"][name]["test"]
        print(f"{name:24s} gate {chosen['gate']:.2f} threshold {chosen['threshold']:.2f} | calibration Dice "
              f"{chosen['dice']:.4f} FA {chosen['false_alarm_rate']} | test Dice {test['dice']:.4f} FA "
              f"{test['false_alarm_rate']} detection {test['detection_rate']}", flush=True)
    result["seconds"] = round(time.perf_counter() - started, 1)
    print(f"chosen gate: {record['gate']} ({result['seconds']} s; tta {post.tta}, crf {post.crf})")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
