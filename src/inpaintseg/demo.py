"""The whole pipeline on built-in demo data: the README's main command (`inpaintseg demo`).

demo-data -> the shipped `base` detector scored zero-shot -> fine-tune from it (`--init-from base`) on a
wall-clock budget (or, with `from_scratch`, train a CPU-sized network from random init, the seed's path) ->
predict (TTA/CRF/threshold as validation chose) -> submission.csv -> evaluate (next to the all-empty and
all-full baselines) -> report. Every step is the same code the individual commands run.

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
DEMO_FINETUNE_LR = 5e-4  # fine-tuning from base: a quarter of the from-scratch rate keeps the pretrained features
FIT_TIME_LIMIT = 1.25  # training stops at this multiple of its planned time (the schedule is cut, not the demo)
BUDGET_FILE = "budget.json"  # the plan, the seconds used, both precisions and the test Dice of a demo run


def _log(message: str) -> None:
    print(f"demo: {message}", file=sys.stderr, flush=True)


def _predict_and_score(model_dir, data: Path, out: Path, device: str, precision: str,
                       label: str) -> tuple[dict, dict]:
    """Predict the demo test images with `model_dir` into `out`, evaluate them: (evaluation, precision used)."""
    from inpaintseg.api import load_model
    from inpaintseg.evaluation.evaluate import evaluate
    from inpaintseg.inference import predict_folder
    from inpaintseg.inference.pipeline import SUBMISSION_FILE
    from inpaintseg.synth.engine import META_FILE

    model = load_model(model_dir, device=device, precision=precision)
    _log(f"    {label}: predicting with {model.postprocess().describe()}")
    _log(f"    {label}: {model.describe_precision()}")
    files = {"submission": out / SUBMISSION_FILE, "masks": out / "pred_masks", "probs": out / "pred_probs",
             "scores": out / "scores.csv"}
    predicted = predict_folder(model, data / "test" / "images", out=files["submission"], masks_out=files["masks"],
                               probs_out=files["probs"], scores_out=files["scores"])
    if predicted.failures:
        raise InpaintsegError(f"{len(predicted.failures)} demo test images could not be predicted: "
                              + "; ".join(message for _, message in predicted.failures[:5]))
    meta = data / "test" / META_FILE
    evaluation = evaluate(data / "test" / "masks", submission=files["submission"], probs_dir=files["probs"],
                          meta=meta if meta.is_file() else None, score_threshold=model.postprocess().image_threshold)
    return evaluation, model.precision_choice.as_dict()


def _train_config(data: Path, run_dir: Path, seed: int, precision: str, device: str, from_scratch: bool):
    from inpaintseg.config import load_config
    from inpaintseg.model.shipped import DEFAULT_MODEL, resolve_model_dir
    from inpaintseg.training.finetune import inherit_input, resolve_init_from

    overrides = {"data": str(data), "out": str(run_dir), "img_size": DEMO_IMG_SIZE, "batch_size": DEMO_BATCH_SIZE,
                 "seed": seed, "precision": precision, "accelerator": "cuda" if device.startswith("cuda") else "cpu"}
    if from_scratch:
        overrides.update(base_channels=DEMO_BASE_CHANNELS, lr=DEMO_LR)
    else:
        overrides.update(init_from=str(resolve_model_dir(DEFAULT_MODEL)), lr=DEMO_FINETUNE_LR)
    # The base's architecture (and input mode) replace the model settings before the planner builds the network
    # to time it.
    config, _ = inherit_input(resolve_init_from(load_config(overrides=overrides)), given=overrides)
    return config


def run_demo(out: Path, budget_minutes: float = 7.0, n_train: int = 400, n_test: int = 100, seed: int = 0,
             device: str = "auto", precision: str = "auto", from_scratch: bool = False) -> int:
    """The seven stages (the numbered lines it prints): data, the shipped detector zero-shot, a planned
    training run (fine-tuning it, or from scratch), prediction, evaluation next to the baselines, the report,
    the summary. Returns the exit status (0)."""
    from inpaintseg.inference import resolve_device
    from inpaintseg.model.shipped import DEFAULT_MODEL
    from inpaintseg.precision import check_precision
    from inpaintseg.synth import generate_demo_data
    from inpaintseg.inference.verdicts import not_useful_message

    if not budget_minutes > 0:
        raise InpaintsegError(f"budget_minutes must be positive, got {budget_minutes}.", params=["budget_minutes"])
    precision = check_precision(precision, "precision")
    started = time.perf_counter()
    out = Path(out)
    data, run_dir = out / "data", out / "run"
    if (run_dir / MODEL_DIR).exists() or (run_dir / CHECKPOINT_DIR).exists():
        raise InpaintsegError(f"{out} already holds a demo run ({run_dir}). Remove it or pass another out.",
                              params=["out"])
    device = resolve_device(device)

    _log(f"1/7 generating demo data in {data} ({n_train} train, {n_test} test images, 256x256)")
    generate_demo_data(data, n_train=n_train, n_test=n_test, size=DEMO_IMG_SIZE, seed=seed)
    rows = {}
    if not from_scratch:
        _log(f"2/7 scoring the shipped detector '{DEFAULT_MODEL}' zero-shot (no training) on the test images")
        rows[f"{DEFAULT_MODEL} zero-shot"], _ = _predict_and_score(
            DEFAULT_MODEL, data, out / "base_zero_shot", device, precision, f"{DEFAULT_MODEL} zero-shot")
    else:
        _log("2/7 --from-scratch: no shipped detector (training a new network from random init)")
    how = "trained from scratch" if from_scratch else f"fine-tuned from {DEFAULT_MODEL}"
    config = _train_config(data, run_dir, seed, precision, device, from_scratch)
    result, used = _train_on_budget(config, budget_minutes * 60, precision, device, how)
    used["from_scratch"] = from_scratch

    _log("4/7 predicting the test images (TTA, CRF and threshold as validation chose)")
    evaluation, predict_precision = _predict_and_score(result.model_dir, data, out, device, precision, how)
    rows[how] = evaluation
    baselines = _record(out, data, evaluation, rows, {**used, "predict_precision": predict_precision})
    _log("6/7 writing the report (from the predictions above)")
    report = _report(out, data, run_dir, device)
    _log(f"7/7 done in {(time.perf_counter() - started) / 60:.1f} minutes")
    verdict = not_useful_message(result.model_config) or verdict_on_test(how, evaluation, baselines, from_scratch)
    _print_results(evaluation, rows, baselines, verdict)
    _print_outputs(data, run_dir, result.model_dir, out, report)
    return 0


def _train_on_budget(config, budget: float, precision: str, device: str, how: str):
    """Stage 3: plan the epochs from this machine's measured speeds, then train: (TrainResult, budget record)."""
    from inpaintseg.training import train
    from inpaintseg.training.budget import plan_training

    _log(f"3/7 measuring this machine's training speed on the demo data ({precision} precision requested)")
    plan = plan_training(config, budget, predict_precision=precision)
    _log(f"    training {plan.precision_choice.describe()}")
    _log(f"    plan: {plan.describe()}")
    _log(f"    {how}: width {plan.config.base_channels}, {plan.config.input_mode} {DEMO_IMG_SIZE}x{DEMO_IMG_SIZE}, "
         f"lr {plan.config.lr:g} on {device}")
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


def _record(out: Path, data: Path, evaluation: dict, rows: dict, used: dict) -> dict:
    """Stage 5: evaluation.json, budget.json (with every row) and the baselines' evaluations."""
    from inpaintseg import fileio
    from inpaintseg.evaluation.evaluate import baseline_submissions, evaluate

    _log("5/7 evaluating against the ground truth, next to the trivial baselines")
    truth = data / "test" / "masks"
    fileio.atomic_write_text(out / "evaluation.json", json.dumps(evaluation, indent=2))
    fileio.atomic_write_text(out / BUDGET_FILE, json.dumps(
        {**used, "dice_mean": evaluation["dice_mean"], "dice_pooled": evaluation["dice_pooled"],
         "rows": {name: {"dice_mean": r["dice_mean"], "dice_pooled": r["dice_pooled"]} for name, r in rows.items()}},
        indent=2))
    return {name: evaluate(truth, submission=path) for name, path in baseline_submissions(truth, out).items()}


def _report(out: Path, data: Path, run_dir: Path, device: str) -> Path:
    from inpaintseg.evaluation.report import PredictionFiles, write_report
    from inpaintseg.inference.pipeline import SUBMISSION_FILE

    return write_report(run_dir, images_dir=data / "test" / "images", truth_dir=data / "test" / "masks",
                        device=device,
                        predictions=PredictionFiles(out / SUBMISSION_FILE, out / "pred_masks", out / "pred_probs"))


def verdict_on_test(name: str, evaluation: dict, baselines: dict, from_scratch: bool) -> str | None:
    """The plain line when the trained row's mean test Dice does not beat a trivial answer's on the same test
    images (validation can pass where the test does not: its threshold, TTA and CRF were chosen on it)."""
    from inpaintseg.inference.verdicts import strongest_unbeaten
    from inpaintseg.model.shipped import DEFAULT_MODEL

    unbeaten = strongest_unbeaten(evaluation["dice_mean"], {base: res["dice_mean"] for base, res in baselines.items()})
    if unbeaten is None:
        return None
    base, value = unbeaten
    return (f"The model is not useful yet: on the test images, {name} scores mean Dice {evaluation['dice_mean']:.3f}, "
            f"not above the trivial '{base}' answer ({value:.3f}). "
            + (f"Run the demo without --from-scratch (it fine-tunes '{DEFAULT_MODEL}') or give it a larger "
               "--budget-minutes." if from_scratch else
               f"Use '{DEFAULT_MODEL}' as it is, or train on more images for longer."))


def _print_results(evaluation: dict, rows: dict, baselines: dict, verdict: str | None) -> None:
    from inpaintseg.evaluation.evaluate import format_table

    print(format_table(evaluation))
    print("\nTest Dice (mean per image / pooled over pixels):")
    for name, res in {**rows, **baselines}.items():
        print(f"  {name:<24} {res['dice_mean']:.4f} / {res['dice_pooled']:.4f}")
    if verdict:
        print(f"\n{verdict}")


def _print_outputs(data: Path, run_dir: Path, model_dir: Path, out: Path, report: Path) -> None:
    from inpaintseg.inference.pipeline import SUBMISSION_FILE

    print("\nOutputs:")
    for label, path in [("dataset", data), ("run folder", run_dir), ("model", model_dir),
                        ("submission", out / SUBMISSION_FILE), ("predicted masks", out / "pred_masks"),
                        ("probability maps", out / "pred_probs"), ("image scores", out / "scores.csv"),
                        ("evaluation", out / "evaluation.json"), ("budget and timing", out / BUDGET_FILE),
                        ("report", report)]:
        print(f"  {label:<17} {path}")
