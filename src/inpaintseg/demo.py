"""The whole pipeline on built-in demo data: the README's main command (`inpaintseg demo`).

demo-data -> train (a CPU-sized network on a wall-clock budget) -> predict (TTA/CRF/threshold as
validation chose) -> submission.csv -> evaluate (next to the all-empty and all-full baselines) ->
report. Every step is the same code the individual commands run.
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
VAL_SECONDS_SHARE = 0.15  # share of an epoch's time spent on validation, for sizing the schedule


def _log(message: str) -> None:
    print(f"demo: {message}", file=sys.stderr, flush=True)


def measure_train_rate(network, img_size: int, batch_size: int, device: str, steps: int = 3,
                       warmup: int = 2) -> float:
    """Training images/s of `network` (forward + BCE-Dice backward + Adam step) on random data:
    `warmup` untimed steps (the first ones pay allocation and kernel selection), then `steps` timed
    steps. A copy is measured, so `network` itself is untouched."""
    import copy

    import torch

    from inpaintseg.losses import BCEDiceLoss

    model = copy.deepcopy(network).to(device).train()
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-3)
    loss_fn = BCEDiceLoss()
    x = torch.randn(batch_size, 3, img_size, img_size, device=device)
    y = (torch.rand(batch_size, 1, img_size, img_size, device=device) > 0.8).float()
    for i in range(warmup + steps):
        if i == warmup:
            if device.startswith("cuda"):
                torch.cuda.synchronize()
            start = time.perf_counter()
        optimiser.zero_grad(set_to_none=True)
        loss_fn(model(x), y).backward()
        optimiser.step()
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    return steps * batch_size / (time.perf_counter() - start)


def plan_epochs(budget_minutes: float, n_train_images: int, images_per_second: float) -> int:
    """Epochs that fit the budget, so the cosine schedule completes instead of being cut off."""
    seconds_per_epoch = n_train_images / images_per_second * (1 + VAL_SECONDS_SHARE)
    return max(1, int(budget_minutes * 60 / seconds_per_epoch))


def run_demo(out: Path, budget_minutes: float = 7.0, n_train: int = 400, n_test: int = 100, seed: int = 0,
             device: str = "auto") -> int:
    from inpaintseg import io
    from inpaintseg.config import load_config
    from inpaintseg.synth import generate_demo_data
    from inpaintseg.api import load_model
    from inpaintseg.evaluation.evaluate import baseline_submissions, evaluate, format_table
    from inpaintseg.evaluation.report import PredictionFiles, write_report
    from inpaintseg.inference import predict_folder, resolve_device
    from inpaintseg.training import train

    if not budget_minutes > 0:
        raise InpaintsegError(f"--budget-minutes must be positive, got {budget_minutes}.")
    started = time.perf_counter()
    out = Path(out)
    data, run_dir = out / "data", out / "run"
    if (run_dir / MODEL_DIR).exists() or (run_dir / CHECKPOINT_DIR).exists():
        raise InpaintsegError(f"{out} already holds a demo run ({run_dir}). Remove it or pass another --out.")
    device = resolve_device(device)

    _log(f"1/6 generating demo data in {data} ({n_train} train, {n_test} test images, 256x256)")
    generate_demo_data(data, n_train=n_train, n_test=n_test, size=DEMO_IMG_SIZE, seed=seed)

    from inpaintseg.model import AttentionUNet

    rate = measure_train_rate(AttentionUNet(base_channels=DEMO_BASE_CHANNELS), DEMO_IMG_SIZE, DEMO_BATCH_SIZE, device)
    n_fit = round(n_train * 0.9)
    epochs = plan_epochs(budget_minutes, n_fit, rate)
    _log(f"2/6 training width {DEMO_BASE_CHANNELS} at {DEMO_IMG_SIZE}x{DEMO_IMG_SIZE} on {device}: "
         f"{rate:.1f} train images/s measured, so {epochs} epochs fit the {budget_minutes:g}-minute budget")
    config = load_config(overrides={
        "data": str(data), "out": str(run_dir), "base_channels": DEMO_BASE_CHANNELS, "img_size": DEMO_IMG_SIZE,
        "batch_size": DEMO_BATCH_SIZE, "lr": DEMO_LR, "epochs": epochs, "seed": seed,
        "max_time_minutes": budget_minutes * 1.25, "accelerator": "cuda" if device.startswith("cuda") else "cpu",
    })
    result = train(config)
    print(result.summary(), file=sys.stderr)

    submission = out / "submission.csv"
    pred_masks, pred_probs, scores = out / "pred_masks", out / "pred_probs", out / "scores.csv"
    _log("3/6 predicting the test images (TTA, CRF and threshold as validation chose)")
    model = load_model(result.model_dir, device=device)
    _log(f"predicting with {model.postprocess().describe()}")
    predicted = predict_folder(model, data / "test" / "images", out=submission, masks_out=pred_masks,
                               probs_out=pred_probs, scores_out=scores)
    if predicted.failures:
        raise InpaintsegError(f"{len(predicted.failures)} demo test images could not be predicted: "
                              + "; ".join(message for _, message in predicted.failures[:5]))

    _log("4/6 evaluating against the ground truth, next to the trivial baselines")
    truth = data / "test" / "masks"
    meta = data / "test" / "meta.json"
    post = model.postprocess()
    evaluation = evaluate(truth, submission=submission, probs_dir=pred_probs, meta=meta if meta.is_file() else None,
                          score_threshold=post.threshold)
    io.atomic_write_text(out / "evaluation.json", json.dumps(evaluation, indent=2))
    baselines = {name: evaluate(truth, submission=path) for name, path in baseline_submissions(truth, out).items()}

    _log("5/6 writing the report (from the predictions above)")
    report = write_report(run_dir, images_dir=data / "test" / "images", truth_dir=truth, device=device,
                          predictions=PredictionFiles(submission, pred_masks, pred_probs))

    minutes = (time.perf_counter() - started) / 60
    _log(f"6/6 done in {minutes:.1f} minutes")
    print(format_table(evaluation))
    print("\nTest Dice (mean per image / pooled over pixels):")
    print(f"  model      {evaluation['dice_mean']:.4f} / {evaluation['dice_pooled']:.4f}")
    for name, res in baselines.items():
        print(f"  {name:<10} {res['dice_mean']:.4f} / {res['dice_pooled']:.4f}")
    print("\nOutputs:")
    for label, path in [("dataset", data), ("run folder", run_dir), ("model", result.model_dir),
                        ("submission", submission), ("predicted masks", pred_masks), ("probability maps", pred_probs),
                        ("image scores", scores), ("evaluation", out / "evaluation.json"), ("report", report)]:
        print(f"  {label:<17} {path}")
    return 0
