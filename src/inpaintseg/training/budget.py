"""Sizing a run to a wall-clock budget: `plan_training(config, budget_seconds)`.

The demo and the quality benchmark train "as many epochs as fit in N minutes" with a cosine schedule that
must complete. The plan is made from measurements of this run on this machine, not from guesses:

1. the training precision is resolved as `train` would (`resolve_training_precision`: `auto` probes);
2. training images/s: warm-up, then timed steps of the REAL training DataLoader (decoding, augmentation,
   collation included) at that precision (`planning.measure_train_rate`);
3. validation images/s: forward passes on the real validation DataLoader (`planning.measure_eval_rate`);
4. a reserve for what is not epochs: start-up (Trainer, sanity check, checkpoints) and the post-training
   calibration, estimated from its forward passes (validation batches timed at predict's precision and
   memory format), one timed Dice curve and one timed DenseCRF per variant
   (`inference.calibration.estimate_seconds`);
5. epochs = floor((budget - reserve) / (train + validation + overhead seconds per epoch))
   (`planning.plan_epochs`).

`train(plan.config, precision_choice=plan.precision_choice)` then trains exactly what was planned.
"""

from __future__ import annotations

from dataclasses import dataclass

from inpaintseg.config import TrainConfig
from inpaintseg.training.planning import EpochPlan, measure_eval_rate, measure_train_rate, plan_epochs
from inpaintseg.precision import PrecisionChoice

MEASURE_SHARE = 0.05  # each speed measurement may take this share of the budget (at least MEASURE_MIN_SECONDS)
MEASURE_MIN_SECONDS = 2.0
STARTUP_SECONDS = 5.0  # Trainer set-up, the sanity validation batch, model export (measured 3-6 s on 2 cores)
EPOCH_OVERHEAD_SECONDS = 0.5  # per epoch: two atomic checkpoints, metrics.csv, Lightning's loop


@dataclass
class BudgetPlan:
    config: TrainConfig  # the input config with `epochs` and the resolved `precision` filled in
    precision_choice: PrecisionChoice
    train_rate: float  # training images/s on the real loader at the chosen precision
    eval_rate: float  # validation images/s
    calibration_seconds: float  # estimated
    reserve_seconds: float  # start-up + calibration (the per-epoch overhead is in epochs.seconds_per_epoch)
    n_train: int
    n_val: int
    epochs: EpochPlan

    @property
    def planned_seconds(self) -> float:
        """What the whole `train()` call is expected to take."""
        return self.epochs.planned_seconds + self.reserve_seconds

    def describe(self) -> str:
        return (f"{self.config.epochs} epochs of {self.n_train} images at {self.train_rate:.1f} img/s "
                f"({self.precision_choice.precision}) + {self.n_val} validation images at {self.eval_rate:.1f} "
                f"img/s = {self.epochs.seconds_per_epoch:.1f} s per epoch, + {self.reserve_seconds:.0f} s "
                f"start-up/calibration: {self.planned_seconds:.0f} s planned of the "
                f"{self.epochs.budget_seconds:.0f} s budget")

    def as_dict(self) -> dict:
        return {"epochs": self.config.epochs, "precision": self.precision_choice.as_dict(),
                "train_images_per_second": round(self.train_rate, 3),
                "eval_images_per_second": round(self.eval_rate, 3), "n_train": self.n_train, "n_val": self.n_val,
                "seconds_per_epoch": round(self.epochs.seconds_per_epoch, 2),
                "calibration_seconds": round(self.calibration_seconds, 1),
                "reserve_seconds": round(self.reserve_seconds, 1), "planned_seconds": round(self.planned_seconds, 1),
                "budget_seconds": self.epochs.budget_seconds}


def plan_training(config: TrainConfig, budget_seconds: float, model=None, predict_precision: str = "auto",
                  warmup: int = 3, steps: int = 8) -> BudgetPlan:
    """Measure this run's speeds on this machine and size `epochs` so `train()` fits `budget_seconds`.

    `model` and `predict_precision` are what `train(config, model=..., predict_precision=...)` will get
    (default: the network the config describes; predict's `auto`); `model` is not changed (copies are
    measured).
    """
    from inpaintseg.data import LazySamples
    from inpaintseg.inference.calibration import estimate_seconds
    from inpaintseg.model.io import unwrap_model
    from inpaintseg.training.hardware import resolve_hardware, tune_cpu
    from inpaintseg.training.precision_choice import resolve_training_precision, training_device
    from inpaintseg.training.finalize import calibration_options, predict_precision_choice
    from inpaintseg.training.train import build_datamodule, build_module

    hardware = resolve_hardware(config)
    tune_cpu(hardware)  # the same threads and allocator as training, so the probe and rates carry over
    device = training_device(hardware)
    datamodule = build_datamodule(config, hardware)
    module = build_module(config, model)
    network = unwrap_model(module.model)
    choice = resolve_training_precision(config, hardware, network, run_dir=None)
    cap = max(MEASURE_MIN_SECONDS, MEASURE_SHARE * budget_seconds)
    train_rate = measure_train_rate(module, datamodule.train_dataloader(), choice.precision, device,
                                    warmup=warmup, steps=steps, channels_last=config.channels_last, max_seconds=cap)
    eval_rate = measure_eval_rate(network, datamodule.val_dataloader(), choice.precision, device, warmup=1,
                                  steps=max(2, steps // 2), channels_last=config.channels_last, max_seconds=cap / 2)
    n_train, n_val = len(datamodule.train_set), len(datamodule.val_set)
    if config.limit_train_batches is not None:
        n_train = min(n_train, config.limit_train_batches * config.batch_size)

    predict_device = "cuda" if device == "cuda" else "cpu"
    predict = predict_precision_choice(network, config, predict_device, predict_precision)
    # Calibration's Predictor runs channels_last on CPU: a new memory format, so two warm-up steps.
    forward_rate = measure_eval_rate(network, datamodule.val_dataloader(), predict.precision, predict_device,
                                     warmup=2, steps=max(2, steps // 2), channels_last=predict_device == "cpu",
                                     max_seconds=cap)
    calibration = estimate_seconds(LazySamples(datamodule.val_set.samples), forward_rate,
                                   **calibration_options(config))
    reserve = STARTUP_SECONDS + calibration
    plan = plan_epochs(budget_seconds, n_train, train_rate, n_val, eval_rate, reserve_seconds=reserve,
                       epoch_overhead_seconds=EPOCH_OVERHEAD_SECONDS)
    return BudgetPlan(config.replace(epochs=plan.epochs, precision=choice.precision), choice, train_rate,
                      eval_rate, calibration, reserve, n_train, n_val, plan)
