"""`train(config)`: wires the network, the LightningModule, the DataModule and a Trainer, fills the run
folder (`inpaintseg.run_dir`) and exports the best model after calibrating its post-processing.

Resuming: `checkpoints/last.ckpt` is written (atomically: temp file + rename) at the end of every epoch,
so `--resume RUN_DIR` after a kill -9 restarts the interrupted epoch with the model, optimizer,
LR-scheduler and callback states of the last finished one. Checkpoints are loaded with
`torch.load(weights_only=True)` (no arbitrary unpickling); they are our own files and only used to
resume. The exported model is safetensors only.
"""

from __future__ import annotations

import importlib.util
import os
import signal
import sys
import threading
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback, ModelCheckpoint

from inpaintseg import __version__
from inpaintseg.config import TrainConfig, save_config
from inpaintseg.errors import ConfigError, InpaintsegError, OutputError
from inpaintseg.metrics import DEFAULT_THRESHOLD
from inpaintseg.precision import PrecisionChoice, lightning_precision
from inpaintseg.progress import use_bars
from inpaintseg.run_dir import (BEST_NAME, CHECKPOINT_DIR, CONFIG_FILE, LAST_NAME, METRICS_FILE, MODEL_DIR,
                                PRECISION_FILE, SPLIT_FILE, best_epoch_metrics, check_new_run_dir, checkpoint_path,
                                default_run_dir, has_checkpoint, load_split, resume_point, save_precision_record,
                                save_split)
from inpaintseg.training.callbacks import (AtomicCheckpointIO, EpochLogLine, EpochMetricsCSV, RankConsistency,
                                           ThroughputProgressBar)
from inpaintseg.training.hardware import Hardware, is_primary_process, resolve_hardware, tune_cpu
from inpaintseg.training.console import describe_run, quiet_lightning_log, quiet_lightning_warnings
from inpaintseg.training.finalize import build_model_config, calibrate, chosen_dice, export_network, load_best_weights
from inpaintseg.training.module import NonFiniteLossError, SegmentationModule
from inpaintseg.training.precision_choice import PRECISION_ENV, resolve_training_precision

# Lets DDP worker processes (re-launched by Lightning with the same command line) find the run
# folder that the main process chose when --out was not given.
RUN_DIR_ENV = "INPAINTSEG_RUN_DIR"


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C during training; the message says how `--resume` goes on (the CLI exits 130 with it)."""


def resume_hint(run_dir: Path) -> str:
    """How to go on with an interrupted run."""
    if has_checkpoint(run_dir):
        return (f"training stopped; `inpaintseg train --resume {run_dir}` continues from the last finished epoch "
                "(the epoch in progress runs again)")
    return (f"training stopped before its first epoch finished; `inpaintseg train --resume {run_dir}` starts it "
            "again in place")


def training_folders(config: TrainConfig) -> list[Path]:
    """The folders training reads (InpaintDataModule's images_dir and masks_dir): --out may not be in them."""
    return [Path(config.data) / "train" / "images", Path(config.data) / "train" / "masks"]


def resolve_run_dir(config: TrainConfig) -> Path:
    if config.out:
        return Path(config.out)
    inherited = os.environ.get(RUN_DIR_ENV)
    if inherited and not is_primary_process():
        return Path(inherited)
    return default_run_dir()


# ----------------------------------------------------------------------------------------------
# Building blocks


def build_datamodule(config: TrainConfig, hardware: Hardware, split: dict | None = None):
    from inpaintseg.data import InpaintDataModule
    from inpaintseg.data.preflight import check_training_files

    datamodule = InpaintDataModule(config.data, img_size=config.img_size, input_mode=config.input_mode,
                                   batch_size=config.batch_size, val_fraction=config.val_fraction,
                                   seed=config.seed, num_workers=hardware.num_workers, split=split,
                                   degradations=config.degradations(), paired_batches=config.paired_batches,
                                   curriculum_epochs=config.curriculum_epochs)
    check_training_files(datamodule.images_dir, datamodule.masks_dir)  # headers: pixel limit, mask sizes
    datamodule.setup("fit")
    n_train = len(datamodule.train_set)
    if config.batch_size > n_train:
        raise ConfigError(f"batch_size: expected at most the number of training images ({n_train} after "
                          f"holding out {len(datamodule.val_set)} for validation), got {config.batch_size}. "
                          "Lower --batch-size or add images.")
    return datamodule


def build_module(config: TrainConfig, model: torch.nn.Module | None = None,
                 load_weights: bool = True) -> SegmentationModule:
    """The LightningModule for `config`; `model` (any (B,3,H,W) -> (B,1,H,W) logits network, e.g. a
    peer model in the quality benchmark) replaces the AttentionUNet the config describes. The config's
    network starts from `init_from` / `encoder_weights` unless `load_weights=False` (resume)."""
    from inpaintseg.losses import build_loss
    from inpaintseg.training.finetune import build_network

    if model is None:
        model = build_network(config, load_weights)
        architecture = model.architecture()
    else:
        own = getattr(model, "architecture", None)
        architecture = own() if callable(own) else None  # None: a foreign network, not exportable
    if config.channels_last:
        model = model.to(memory_format=torch.channels_last)
    if config.compile:
        model = torch.compile(model)
    loss = build_loss(config.loss, bce_weight=config.bce_weight, dice_weight=config.dice_weight,
                      small_mask_power=config.small_mask_power)
    return SegmentationModule(model, loss, lr=config.lr, epochs=config.epochs,
                              weight_decay=config.weight_decay, architecture=architecture,
                              channels_last=config.channels_last, encoder_lr_mult=config.encoder_lr_mult,
                              lr_schedule=config.lr_schedule, warmup_fraction=config.warmup_fraction,
                              deep_supervision=config.deep_supervision)


def check_logger(config: TrainConfig) -> None:
    """ConfigError when ``logger: tensorboard`` is asked for but TensorBoard is not installed."""
    if config.logger == "tensorboard" and not (importlib.util.find_spec("tensorboard")
                                               or importlib.util.find_spec("tensorboardX")):
        raise ConfigError("logger: tensorboard needs the TensorBoard package, which is not installed. "
                          "Install it with `pip install 'inpaintseg[tensorboard]'` or use --logger csv.")


def build_trainer(config: TrainConfig, hardware: Hardware, run_dir: Path, n_train_batches: int,
                  callbacks: Sequence[Callback] = ()) -> L.Trainer:
    # Two callbacks: ModelCheckpoint(save_last=True) only refreshes last.ckpt when best.ckpt changes.
    best = ModelCheckpoint(dirpath=run_dir / CHECKPOINT_DIR, filename=BEST_NAME, monitor="val_loss",
                           mode="min", save_top_k=1, auto_insert_metric_name=False, enable_version_counter=False)
    last = ModelCheckpoint(dirpath=run_dir / CHECKPOINT_DIR, filename=LAST_NAME, monitor=None, save_top_k=1,
                           auto_insert_metric_name=False, enable_version_counter=False)
    all_callbacks: list[Callback] = [best, last, EpochMetricsCSV(run_dir / METRICS_FILE), RankConsistency()]
    strategy: Any = hardware.strategy
    if config.freeze_encoder_epochs:
        from inpaintseg.training.finetune import FreezeEncoder

        all_callbacks.append(FreezeEncoder(config.freeze_encoder_epochs))
        if strategy == "ddp":   # frozen parameters get no gradient: DDP must not wait for them
            from lightning.pytorch.strategies import DDPStrategy

            strategy = DDPStrategy(find_unused_parameters=True)
    bars = config.progress_bar and use_bars()
    all_callbacks.append(ThroughputProgressBar() if bars else EpochLogLine())
    all_callbacks.extend(callbacks)
    logger: Any = False  # metrics.csv is written by EpochMetricsCSV in every case
    if config.logger == "tensorboard":
        check_logger(config)
        from lightning.pytorch.loggers import TensorBoardLogger

        logger = TensorBoardLogger(save_dir=str(run_dir), name="tensorboard", version="")
    deterministic: Any = False
    if config.deterministic:
        deterministic = True if hardware.accelerator == "cpu" else "warn"
    batches = n_train_batches if config.limit_train_batches is None else min(n_train_batches,
                                                                             config.limit_train_batches)
    return L.Trainer(
        accelerator=hardware.lightning_accelerator,
        devices=config.devices, num_nodes=config.num_nodes, strategy=strategy,
        precision=hardware.precision, max_epochs=config.epochs,
        max_time={"minutes": config.max_time_minutes} if config.max_time_minutes else None,
        limit_train_batches=config.limit_train_batches,
        deterministic=deterministic, benchmark=hardware.accelerator == "cuda" and not config.deterministic,
        sync_batchnorm=hardware.accelerator == "cuda" and hardware.strategy == "ddp",
        callbacks=all_callbacks, logger=logger, default_root_dir=str(run_dir),
        enable_progress_bar=bars, enable_model_summary=False,  # `train` prints its own one-line summary
        log_every_n_steps=max(1, min(50, batches)), num_sanity_val_steps=1,
        plugins=[AtomicCheckpointIO()],
    )


# ----------------------------------------------------------------------------------------------
# After training: best weights, calibration, export


@dataclass(repr=False)
class TrainResult:
    run_dir: Path
    is_primary: bool
    model_dir: Path | None = None
    epochs_completed: int = 0
    best_epoch: int | None = None
    metrics: dict = field(default_factory=dict)
    postprocess: dict = field(default_factory=dict)
    seconds: float = 0.0
    network: torch.nn.Module | None = None  # the exported (best) network, on the CPU, eval mode
    model_config: dict = field(default_factory=dict)  # what model/config.json holds
    precision_choice: dict = field(default_factory=dict)  # PrecisionChoice.as_dict() of the training precision
    timings: dict = field(default_factory=dict)  # seconds: "setup" (to fit), "fit", "calibration", "export"

    def __repr__(self) -> str:  # short: the network and the config are attributes, not text
        dice = self.metrics.get("val_dice")
        return (f"TrainResult({self.run_dir}, {self.epochs_completed} epochs, best epoch {self.best_epoch}"
                + (f", val Dice {dice:.4f}" if isinstance(dice, float) else "")
                + f", model {self.model_dir}, {self.seconds:.0f} s)")

    def summary(self) -> str:
        lines = [f"run folder: {self.run_dir}  ({self.epochs_completed} epochs, {self.seconds:.0f} s)"]
        if self.precision_choice:
            lines.append(f"training {PrecisionChoice.from_dict(self.precision_choice).describe()}")
        if self.model_dir is not None:
            m = self.metrics
            scores = ", ".join(f"{k} {m[k]:.4f}" for k in ("val_loss", "val_dice", "val_iou", "val_f1") if k in m)
            lines.append(f"model: {self.model_dir}  (best epoch {self.best_epoch}: {scores})")
            lines.append(f"threshold {self.postprocess.get('threshold')}, tta {self.postprocess.get('tta')}, "
                         f"crf {self.postprocess.get('crf')}")
            from inpaintseg.inference.verdicts import not_useful_message

            verdict = not_useful_message(self.model_config)
            if verdict:
                lines.append(verdict)
        return "\n".join(lines)


def train(config: TrainConfig, resume: bool = False, callbacks: Sequence[Callback] = (),
          model: torch.nn.Module | None = None, precision_choice: PrecisionChoice | None = None,
          predict_precision: str = "auto") -> TrainResult:
    """Train with `config` and fill the run folder; returns what was written (see module docstring).

    `resume=True` continues the run in `config.out` from checkpoints/last.ckpt. Extra Lightning
    `callbacks` are for tests and tools. `model` replaces the network the config describes (the
    quality benchmark trains peer networks this way); a network that is not an AttentionUNet is
    calibrated and returned in `TrainResult.network` but not exported to `model/`. In DDP, every
    process runs this; only rank 0 exports (`TrainResult.is_primary`).

    `config.precision` "auto" is resolved before the Trainer exists (`resolve_training_precision`; a
    planner's `precision_choice` is used as is); config.yaml gets the resolved value, precision.json and
    config.json's `training.precision_choice` the choice. Calibration runs at the precision that
    `predict --precision PREDICT_PRECISION` will use on this machine (`postprocess.calibration.precision`).
    """
    started = time.perf_counter()
    if not resume:
        from inpaintseg.training.finetune import resolve_init_from

        config = resolve_init_from(config)
    hardware = resolve_hardware(config)
    check_logger(config)
    run_dir = resolve_run_dir(config)
    config = config.replace(out=str(run_dir))
    primary = is_primary_process()
    ckpt_path = resume_point(run_dir).checkpoint if resume else None
    if primary:  # where it goes first: "--out DATA/train" is about the dataset, not "a folder with files"
        from inpaintseg.outputs import check_not_above_inputs, check_output_dir

        flag = "--resume" if resume else "--out"
        check_output_dir(run_dir, flag, training_folders(config))
        check_not_above_inputs(run_dir, flag, training_folders(config))
    if primary and not resume:
        check_new_run_dir(run_dir)
    try:
        return _train(config, run_dir, hardware, ckpt_path, resume, callbacks, model, started, precision_choice,
                      predict_precision)
    except TrainingInterrupted:
        raise
    except KeyboardInterrupt:
        raise TrainingInterrupted(resume_hint(run_dir)) from None


def _train(config: TrainConfig, run_dir: Path, hardware: Hardware, ckpt_path: Path | None, resume: bool,
           callbacks: Sequence[Callback], model: torch.nn.Module | None, started: float,
           precision_choice: PrecisionChoice | None = None, predict_precision: str = "auto") -> TrainResult:
    """Set up, fit, and (on the primary process) finalise: the run's three stages."""
    config, datamodule, module, choice = _setup(config, run_dir, hardware, resume, model, precision_choice)
    n_batches = max(1, len(datamodule.train_set) // datamodule.train_items_per_batch)
    noise = quiet_lightning_log()
    trainer = build_trainer(config, hardware, run_dir, n_batches, callbacks)
    if is_primary_process():
        print(describe_run(config, hardware, module, datamodule, run_dir), file=sys.stderr, flush=True)
        print(f"train: {choice.describe()}", file=sys.stderr, flush=True)
    start = None
    if config.init_from is not None and config.keep_start and not resume and hardware.strategy != "ddp":
        from inpaintseg.training.finetune import measure_starting_point

        start = measure_starting_point(module, datamodule, hardware)
    fit_started = time.perf_counter()
    _fit(trainer, module, datamodule, ckpt_path, run_dir, config)
    if trainer.is_global_zero:
        for message in noise.held:
            print(f"train: {message}", file=sys.stderr, flush=True)

    result = TrainResult(run_dir=run_dir, is_primary=trainer.is_global_zero,
                         epochs_completed=trainer.current_epoch, precision_choice=choice.as_dict(),
                         timings={"setup": round(fit_started - started, 2),
                                  "fit": round(time.perf_counter() - fit_started, 2)})
    if trainer.is_global_zero:
        _finalize(result, config, hardware, trainer, module, datamodule, choice, started, predict_precision, start)
    return result


def _setup(config: TrainConfig, run_dir: Path, hardware: Hardware, resume: bool, model: torch.nn.Module | None,
           precision_choice: PrecisionChoice | None):
    """Seeds, data, module and the resolved precision; the run folder's records written (primary process).
    Returns (config with the resolved precision, datamodule, module, PrecisionChoice)."""
    if hardware.strategy == "ddp":
        os.environ[RUN_DIR_ENV] = str(run_dir)  # DDP workers re-run this command without --out

    L.seed_everything(config.seed, workers=True, verbose=False)
    tune_cpu(hardware)
    if hardware.accelerator == "cuda":
        torch.set_float32_matmul_precision("high")
    split = load_split(run_dir / SPLIT_FILE) if resume else None
    datamodule = build_datamodule(config, hardware, split)  # data and batch-size errors before any write
    module = build_module(config, model, load_weights=not resume)
    from inpaintseg.model.io import unwrap_model

    choice = resolve_training_precision(config, hardware, unwrap_model(module.model), run_dir, resume,
                                        precision_choice)
    config = config.replace(precision=choice.precision)
    hardware.precision = lightning_precision(choice.precision)
    if hardware.strategy == "ddp":
        os.environ[PRECISION_ENV] = choice.precision  # DDP workers train at rank 0's precision

    if is_primary_process():
        run_dir.mkdir(parents=True, exist_ok=True)
        save_config(config, run_dir / CONFIG_FILE)
        save_split(run_dir / SPLIT_FILE, datamodule.split, config.seed, config.val_fraction)
        if not (resume and (run_dir / PRECISION_FILE).is_file()):
            save_precision_record(run_dir / PRECISION_FILE, choice.as_dict())
    return config, datamodule, module, choice


def _fit(trainer, module, datamodule, ckpt_path: Path | None, run_dir: Path, config: TrainConfig) -> None:
    """trainer.fit, with its failures as the user's errors: a non-finite loss, a failed write, Ctrl-C."""
    sigint = signal.getsignal(signal.SIGINT)
    with warnings.catch_warnings():
        quiet_lightning_warnings()
        try:
            trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt_path, weights_only=True)
        except NonFiniteLossError as exc:
            raise _non_finite_message(exc, run_dir, config) from None
        except OutputError as exc:  # e.g. the disk filled up while a checkpoint was written
            raise OutputError(f"{exc} Training stopped; {resume_hint(run_dir).split('; ', 1)[1]} once "
                              "that is fixed.") from None
        except SystemExit:
            # Lightning turns Ctrl-C into sys.exit(1) after ignoring further Ctrl-C: undo both.
            if not trainer.interrupted:
                raise
            if threading.current_thread() is threading.main_thread():
                signal.signal(signal.SIGINT, sigint)
            raise TrainingInterrupted(resume_hint(run_dir)) from None


def _finalize(result: TrainResult, config: TrainConfig, hardware: Hardware, trainer, module, datamodule,
              choice: PrecisionChoice, started: float, predict_precision: str, start=None) -> None:
    """After the fit, on the primary process: the best weights (the starting weights of a fine-tuning run
    when no epoch beat them), the model config, validation calibration and the model folder
    (`training.finalize` holds the steps), recorded in `result`."""
    from inpaintseg.training.finetune import keeps_starting_point

    best = checkpoint_path(result.run_dir, BEST_NAME)
    if best.is_file():
        result.best_epoch = load_best_weights(module, best)
    result.metrics = best_epoch_metrics(result.run_dir / METRICS_FILE, result.best_epoch)
    kept_start = keeps_starting_point(start, result.metrics)
    if kept_start:
        from inpaintseg.model.io import unwrap_model

        print(f"train: no epoch beat the starting weights (init_from) on validation loss "
              f"({start.metrics['val_loss']:.4f} vs {result.metrics.get('val_loss', float('nan')):.4f}): "
              "keeping them", file=sys.stderr, flush=True)
        unwrap_model(module.model).load_state_dict(start.state)
        result.best_epoch, result.metrics = 0, {"epoch": 0, **start.metrics}
    network = export_network(module)
    device = "cuda" if hardware.accelerator == "cuda" else "cpu"
    training = {**{k: v for k, v in config.to_dict().items() if k not in ("data", "out")},
                "epochs_completed": result.epochs_completed, "best_epoch": result.best_epoch,
                "world_size": trainer.world_size, "accelerator": hardware.accelerator,
                "rank_weight_sha256": getattr(module, "rank_weight_sha256", []),
                "precision_choice": choice.as_dict(),
                "seconds": round(time.perf_counter() - started, 1), "inpaintseg": __version__,
                "torch": torch.__version__, "lightning": L.__version__}
    model_config = build_model_config(config, datamodule, {"threshold": DEFAULT_THRESHOLD}, result.metrics, training)
    model_config["architecture"] = module.hparams.architecture or {"name": f"external:{type(network).__name__}"}
    calibration_started = time.perf_counter()
    result.postprocess = calibrate(network, model_config, datamodule, config, device, predict_precision,
                                   start_dir=config.init_from if kept_start else None)
    result.timings["calibration"] = round(time.perf_counter() - calibration_started, 2)
    model_config["postprocess"] = result.postprocess
    result.metrics["threshold_val_dice"] = chosen_dice(result.postprocess)
    result.network, result.model_config = network, model_config
    if module.hparams.architecture is not None:
        from inpaintseg.model.io import save_model_dir

        result.model_dir = save_model_dir(result.run_dir / MODEL_DIR, network, model_config)
    result.seconds = time.perf_counter() - started
    result.timings["export"] = round(result.seconds - sum(result.timings.values()), 2)


def _non_finite_message(exc: NonFiniteLossError, run_dir: Path, config: TrainConfig) -> InpaintsegError:
    last = checkpoint_path(run_dir, LAST_NAME)
    kept = (f"The last good checkpoint stays at {last} (resume with `--resume {run_dir}` after a fix)"
            if last.exists() else "No epoch had finished, so there is no checkpoint to resume from")
    return InpaintsegError(
        f"training stopped: the loss became {exc.value} (not finite) at epoch {exc.epoch}, batch {exc.batch}. "
        f"{kept}. Likely fixes: a lower --lr (now {config.lr:g}), --precision 32 (now {config.precision}), "
        "or check that batch's images for corrupt values.")
