"""The whole pipeline on built-in demo data: the README's main command (`inpaintseg demo`).

demo-data -> train (a CPU-sized network on a wall-clock budget) -> predict (TTA/CRF/threshold as
validation chose) -> submission.csv -> evaluate (next to the all-empty and all-full baselines) ->
report. Every step is the same code the individual commands run.

The training budget covers the whole `train()` call (epochs, validation, start-up, calibration, export).
`inpaintseg.training.budget.plan_training` sizes the epochs from this machine's measured speeds on the real
data at the chosen precision; the demo prints the planned and the used seconds.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from inpaintseg.errors import InpaintsegError
from inpaintseg.run_dir import CHECKPOINT_DIR, MODEL_DIR

# CPU-sized defaults, chosen by measurement on a 2-core machine (see README "Demo").
DEMO_BASE_CHANNELS = 8
DEMO_IMG_SIZE = 256
DEMO_BATCH_SIZE = 8
DEMO_LR = 2e-3
FIT_TIME_LIMIT = 1.25  # training stops at this multiple of its planned time (the schedule is cut, not the demo)
BUDGET_FILE = "budget.json"  # the plan, the seconds used, both precisions and the test Dice of a demo run


def _log(message: str) -> None:
    print(f"demo: {message}", file=sys.stderr, flush=True)




def run_demo(out: Path, budget_minutes: float = 7.0, n_train: int = 400, n_test: int = 100, seed: int = 0,
             device: str = "auto", precision: str = "auto") -> int:
    """The six stages (the numbered lines it prints): data, a planned training run, prediction, evaluation
    next to the baselines, the report, the summary. Returns the exit status (0)."""
    from inpaintseg.inference import resolve_device
    from inpaintseg.precision import check_precision
    from inpaintseg.synth import generate_demo_data

    if not budget_minutes > 0:
        raise InpaintsegError(f"budget_minutes must be positive, got {budget_minutes}.", params=["budget_minutes"])
    precision = check_precision(precision, "--precision")
    started = time.perf_counter()
    out = Path(out)
    data, run_dir = out / "data", out / "run"
    if (run_dir / MODEL_DIR).exists() or (run_dir / CHECKPOINT_DIR).exists():
        raise InpaintsegError(f"{out} already holds a demo run ({run_dir}). Remove it or pass another --out.")
    device = resolve_device(device)

    _log(f"1/6 generating demo data in {data} ({n_train} train, {n_test} test images, 256x256)")
    generate_demo_data(data, n_train=n_train, n_test=n_test, size=DEMO_IMG_SIZE, seed=seed)
    result, used = _train_on_budget(data, run_dir, budget_minutes * 60, seed, device, precision)
    evaluation, baselines, report = _predict_and_evaluate(out, data, run_dir, result.model_dir, used, device,
                                                          precision)
    _summary(out, data, run_dir, result.model_dir, evaluation, baselines, report, started)
    return 0


def _train_on_budget(data: Path, run_dir: Path, budget: float, seed: int, device: str, precision: str):
    """Stage 2: plan the epochs from this machine's measured speeds, then train. Returns (TrainResult, the
    budget record)."""
    from inpaintseg.config import load_config
    from inpaintseg.training import train
    from inpaintseg.training.budget import plan_training

    config = load_config(overrides={
        "data": str(data), "out": str(run_dir), "base_channels": DEMO_BASE_CHANNELS, "img_size": DEMO_IMG_SIZE,
        "batch_size": DEMO_BATCH_SIZE, "lr": DEMO_LR, "seed": seed, "precision": precision,
        "accelerator": "cuda" if device.startswith("cuda") else "cpu",
    })
    _log(f"2/6 measuring this machine's training speed on the demo data ({precision} precision requested)")
    plan = plan_training(config, budget, predict_precision=precision)
    _log(f"    training {plan.precision_choice.describe()}")
    _log(f"    plan: {plan.describe()}")
    _log(f"    training width {DEMO_BASE_CHANNELS} at {DEMO_IMG_SIZE}x{DEMO_IMG_SIZE} on {device}")
    # A safety net if the machine slows down after planning: fit stops at 1.25 x its planned time.
    config = plan.config.replace(max_time_minutes=FIT_TIME_LIMIT * plan.epochs.planned_seconds / 60)
    result = train(config, precision_choice=plan.precision_choice, predict_precision=precision)
    used = {"planned_seconds": round(plan.planned_seconds, 1), "used_seconds": round(result.seconds, 1),
            "budget_seconds": budget, "used_fraction": round(result.seconds / budget, 4),
            "epochs_planned": plan.config.epochs, "epochs_completed": result.epochs_completed,
            "timings": result.timings, "plan": plan.as_dict()}
    _log(f"    budget: planned {plan.planned_seconds:.0f} s, used {result.seconds:.0f} s of {budget:.0f} s "
         f"({100 * result.seconds / budget:.0f}%; fit {result.timings.get('fit', 0):.0f} s, calibration "
         f"{result.timings.get('calibration', 0):.0f} s, estimated {plan.calibration_seconds:.0f} s); "
         f"{result.epochs_completed} of {plan.config.epochs} epochs")
    print(result.summary(), file=sys.stderr)
    return result, used


def _predict_and_evaluate(out: Path, data: Path, run_dir: Path, model_dir: Path, used: dict, device: str,
                          precision: str):
    """Stages 3-5: predict the test images, evaluate them next to the baselines (evaluation.json and the
    budget record written), write the report. Returns (evaluation, baselines, report path)."""
    from inpaintseg import fileio
    from inpaintseg.api import load_model
    from inpaintseg.evaluation.evaluate import baseline_submissions, evaluate
    from inpaintseg.evaluation.report import PredictionFiles, write_report
    from inpaintseg.inference import predict_folder
    from inpaintseg.inference.pipeline import SUBMISSION_FILE
    from inpaintseg.synth.engine import META_FILE

    submission = out / SUBMISSION_FILE
    pred_masks, pred_probs, scores = out / "pred_masks", out / "pred_probs", out / "scores.csv"
    _log("3/6 predicting the test images (TTA, CRF and threshold as validation chose)")
    model = load_model(model_dir, device=device, precision=precision)
    _log(f"predicting with {model.postprocess().describe()}; {model.describe_precision()}")
    predicted = predict_folder(model, data / "test" / "images", out=submission, masks_out=pred_masks,
                               probs_out=pred_probs, scores_out=scores)
    if predicted.failures:
        raise InpaintsegError(f"{len(predicted.failures)} demo test images could not be predicted: "
                              + "; ".join(message for _, message in predicted.failures[:5]))

    _log("4/6 evaluating against the ground truth, next to the trivial baselines")
    truth = data / "test" / "masks"
    meta = data / "test" / META_FILE
    post = model.postprocess()
    evaluation = evaluate(truth, submission=submission, probs_dir=pred_probs, meta=meta if meta.is_file() else None,
                          score_threshold=post.threshold)
    fileio.atomic_write_text(out / "evaluation.json", json.dumps(evaluation, indent=2))
    fileio.atomic_write_text(out / BUDGET_FILE, json.dumps({**used, "predict_precision": model.precision_choice.as_dict(),
                                                        "dice_mean": evaluation["dice_mean"],
                                                        "dice_pooled": evaluation["dice_pooled"]}, indent=2))
    baselines = {name: evaluate(truth, submission=path) for name, path in baseline_submissions(truth, out).items()}

    _log("5/6 writing the report (from the predictions above)")
    report = write_report(run_dir, images_dir=data / "test" / "images", truth_dir=truth, device=device,
                          predictions=PredictionFiles(submission, pred_masks, pred_probs))
    return evaluation, baselines, report


def _summary(out: Path, data: Path, run_dir: Path, model_dir: Path, evaluation: dict, baselines: dict,
             report: Path, started: float) -> None:
    """Stage 6: the evaluation table, the Dice next to the baselines and where every output is."""
    from inpaintseg.evaluation.evaluate import format_table
    from inpaintseg.inference.pipeline import SUBMISSION_FILE

    minutes = (time.perf_counter() - started) / 60
    _log(f"6/6 done in {minutes:.1f} minutes")
    print(format_table(evaluation))
    print("\nTest Dice (mean per image / pooled over pixels):")
    print(f"  model      {evaluation['dice_mean']:.4f} / {evaluation['dice_pooled']:.4f}")
    for name, res in baselines.items():
        print(f"  {name:<10} {res['dice_mean']:.4f} / {res['dice_pooled']:.4f}")
    print("\nOutputs:")
    for label, path in [("dataset", data), ("run folder", run_dir), ("model", model_dir),
                        ("submission", out / SUBMISSION_FILE), ("predicted masks", out / "pred_masks"),
                        ("probability maps", out / "pred_probs"), ("image scores", out / "scores.csv"),
                        ("evaluation", out / "evaluation.json"), ("budget and timing", out / BUDGET_FILE),
                        ("report", report)]:
        print(f"  {label:<17} {path}")
