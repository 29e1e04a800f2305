"""Training on PyTorch Lightning: the LightningModule, callbacks, and `train(config)` that fills a run folder.

Structure (as in Lightning's backbone_image_classifier example): the network is built outside and
passed INTO `SegmentationModule(model, loss, lr, epochs, ...)`; the data live in
`inpaintseg.data.InpaintDataModule`; `train` wires them with a `Trainer` and exports the best model.

Run folder (docs/architecture.md, "Run folder"):

    RUN_DIR/config.yaml          the effective TrainConfig
    RUN_DIR/split.json           {"train": [...], "val": [...], "seed": .., "val_fraction": ..}
    RUN_DIR/metrics.csv          one row per finished epoch (METRIC_COLUMNS), flushed as it is written
    RUN_DIR/checkpoints/         best.ckpt (lowest val_loss), last.ckpt (end of the latest epoch)
    RUN_DIR/model/               weights.safetensors + config.json (see inpaintseg.model_io)
    RUN_DIR/tensorboard/         only when tensorboard is installed

Validation metrics (threshold 0.5): `val_dice` and `val_iou` are means over images of per-image
Dice/IoU (an image whose truth and prediction are both empty scores 1, the competition's rule);
`val_f1` is the pixel F1 pooled over all validation pixels. `epoch` in metrics.csv and in messages
counts from 1.

Resuming: `checkpoints/last.ckpt` is written (atomically: temp file + rename) at the end of every
epoch, so `--resume RUN_DIR` after a kill -9 restarts the interrupted epoch with the model,
optimizer, LR-scheduler and callback states of the last finished one. Checkpoints are loaded with
`torch.load(weights_only=True)` (no arbitrary unpickling); they are our own files and only used to
resume. The exported model is safetensors only.
"""

from __future__ import annotations

import csv
import hashlib
import importlib.util
import json
import logging
import os
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback, ModelCheckpoint, TQDMProgressBar
from lightning.pytorch.plugins.io import TorchCheckpointIO

from inpaintseg import __version__
from inpaintseg.config import TrainConfig, save_config
from inpaintseg.errors import ConfigError, InpaintsegError
from inpaintseg.io import atomic_path, atomic_write_text

CONFIG_FILE = "config.yaml"
SPLIT_FILE = "split.json"
METRICS_FILE = "metrics.csv"
CHECKPOINT_DIR = "checkpoints"
BEST_NAME = "best"
LAST_NAME = "last"
MODEL_DIR = "model"
# Lets DDP worker processes (re-launched by Lightning with the same command line) find the run
# folder that the main process chose when --out was not given.
RUN_DIR_ENV = "INPAINTSEG_RUN_DIR"
METRIC_COLUMNS = ("epoch", "step", "train_loss", "val_loss", "val_dice", "val_iou", "val_f1", "lr",
                  "epoch_seconds", "train_images_per_second")
VAL_THRESHOLD = 0.5


class NonFiniteLossError(RuntimeError):
    """Raised inside training when the loss is NaN/Inf; `train` turns it into a user-facing error."""

    def __init__(self, epoch: int, batch: int, value: float) -> None:
        super().__init__(f"loss is {value} at epoch {epoch}, batch {batch}")
        self.epoch, self.batch, self.value = epoch, batch, value


# ----------------------------------------------------------------------------------------------
# LightningModule


class SegmentationModule(L.LightningModule):
    """Trains a segmentation network that maps (B, 3, H, W) images to (B, 1, H, W) logits.

    `model` and `loss` are passed in (not built here); `architecture` is the dict that rebuilds the
    model (`inpaintseg.model.build_model`), stored in the checkpoint's hyperparameters. Adam with
    CosineAnnealingLR over `epochs` epochs (the seed's schedule).
    """

    def __init__(self, model: torch.nn.Module, loss: torch.nn.Module, lr: float = 1e-3, epochs: int = 50,
                 weight_decay: float = 0.0, architecture: dict | None = None,
                 channels_last: bool = False, val_threshold: float = VAL_THRESHOLD) -> None:
        super().__init__()
        self.save_hyperparameters(ignore=["model", "loss"])
        self.model = model
        self.loss = loss
        self.last_val_epoch = -1  # the epoch whose validation metrics are in callback_metrics
        self._val_sums: list[float] = []

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Shape: (B, 3, H, W) -> logits (B, 1, H, W)."""
        return self.model(images)

    def _inputs(self, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
        images = batch["image"]
        if self.hparams.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        return images, batch["mask"]

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        images, masks = self._inputs(batch)
        loss = self.loss(self.model(images), masks)
        self._stop_if_not_finite(loss, batch_idx)
        self.log("train_loss", loss.detach(), on_step=False, on_epoch=True, prog_bar=True,
                 batch_size=images.shape[0], sync_dist=True)
        return loss

    def _stop_if_not_finite(self, loss: torch.Tensor, batch_idx: int) -> None:
        bad = not bool(torch.isfinite(loss.detach()).item())
        if self.trainer.world_size > 1:  # stop every rank together, or the others hang in all-reduce
            bad = self.trainer.strategy.reduce_boolean_decision(bad, all=False)
        if bad:
            raise NonFiniteLossError(self.current_epoch + 1, batch_idx, float(loss.detach().float().item()))

    def on_validation_epoch_start(self) -> None:
        # loss*n, n, sum of per-image dice, sum of per-image IoU, pooled tp, fp, fn
        self._val_sums = [0.0] * 7

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        from inpaintseg.metrics import confusion_counts, dice_from_counts, iou_from_counts

        images, masks = self._inputs(batch)
        logits = self.model(images)
        loss = self.loss(logits, masks)
        pred = torch.sigmoid(logits.float()) >= self.hparams.val_threshold
        counts = confusion_counts(pred, masks >= 0.5).cpu().numpy()
        tp, fp, fn = counts[:, 0], counts[:, 1], counts[:, 2]
        n = images.shape[0]
        for i, value in enumerate((float(loss) * n, n, dice_from_counts(tp, fp, fn).sum(),
                                   iou_from_counts(tp, fp, fn).sum(), tp.sum(), fp.sum(), fn.sum())):
            self._val_sums[i] += float(value)

    def on_validation_epoch_end(self) -> None:
        from inpaintseg.metrics import precision_recall_f1

        dtype = torch.float32 if self.device.type == "mps" else torch.float64
        sums = torch.tensor(self._val_sums, dtype=dtype, device=self.device)
        if self.trainer.world_size > 1:
            sums = self.trainer.strategy.reduce(sums, reduce_op="sum")
        loss_sum, n, dice_sum, iou_sum, tp, fp, fn = (float(v) for v in sums.cpu())
        if n == 0:
            return
        f1 = float(precision_recall_f1(tp, fp, fn)[2])
        metrics = {"val_loss": loss_sum / n, "val_dice": dice_sum / n, "val_iou": iou_sum / n, "val_f1": f1}
        # Already summed over ranks; sync_dist then averages equal values (and silences Lightning).
        self.log_dict(metrics, prog_bar=True, sync_dist=True)
        if not self.trainer.sanity_checking:
            self.last_val_epoch = self.current_epoch

    def configure_optimizers(self):
        optimizer = torch.optim.Adam(self.model.parameters(), lr=self.hparams.lr,
                                     weight_decay=self.hparams.weight_decay)
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=self.hparams.epochs)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "epoch"}}


# ----------------------------------------------------------------------------------------------
# Callbacks and plugins


class AtomicCheckpointIO(TorchCheckpointIO):
    """torch.save to a temp file beside the target, fsync, then rename: a kill -9 mid-write leaves the
    previous checkpoint intact. (Lightning's fsspec transaction writes to /tmp and then moves, which
    is a copy, not a rename, when /tmp is another filesystem.)"""

    def save_checkpoint(self, checkpoint: dict, path, storage_options: Any | None = None) -> None:
        if storage_options is not None:
            raise TypeError("AtomicCheckpointIO does not take storage_options")
        with atomic_path(path) as tmp:
            torch.save(checkpoint, tmp)

    def load_checkpoint(self, path, map_location: Any | None = None, weights_only: bool | None = None) -> dict:
        return torch.load(path, map_location=map_location or "cpu", weights_only=True)


class EpochMetricsCSV(Callback):
    """Appends one row per finished epoch to RUN_DIR/metrics.csv and flushes it (rank 0 only).

    On resume, rows of epochs after the restored checkpoint are dropped first, so each epoch appears
    once. Validation columns are empty for an epoch whose validation did not run (time budget).
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._epoch_start = 0.0
        self._val_seconds = 0.0
        self._val_start = 0.0
        self._images = 0
        self._lr = float("nan")

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.is_global_zero:
            keep_metric_rows(self.path, trainer.current_epoch)

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._epoch_start = time.perf_counter()
        self._val_seconds = 0.0
        self._images = 0
        self._lr = float(trainer.optimizers[0].param_groups[0]["lr"]) if trainer.optimizers else float("nan")

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self._images += int(batch["image"].shape[0]) * trainer.world_size

    def on_validation_epoch_start(self, trainer, pl_module) -> None:
        self._val_start = time.perf_counter()

    def on_validation_epoch_end(self, trainer, pl_module) -> None:
        if not trainer.sanity_checking:
            self._val_seconds += time.perf_counter() - self._val_start

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.is_global_zero:
            return
        seconds = time.perf_counter() - self._epoch_start
        train_seconds = max(seconds - self._val_seconds, 1e-9)
        metrics = trainer.callback_metrics
        has_val = getattr(pl_module, "last_val_epoch", -1) == trainer.current_epoch

        def value(key: str) -> str:
            if key.startswith("val_") and not has_val or key not in metrics:
                return ""
            return f"{float(metrics[key]):.6g}"

        row = {"epoch": trainer.current_epoch + 1, "step": trainer.global_step,
               "train_loss": value("train_loss"), "val_loss": value("val_loss"), "val_dice": value("val_dice"),
               "val_iou": value("val_iou"), "val_f1": value("val_f1"), "lr": f"{self._lr:.6g}",
               "epoch_seconds": f"{seconds:.3f}", "train_images_per_second": f"{self._images / train_seconds:.2f}"}
        append_metric_row(self.path, row)


def read_metric_rows(path: Path) -> list[dict[str, str]]:
    """The rows of a metrics.csv ([] when it does not exist)."""
    path = Path(path)
    if not path.exists():
        return []
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def keep_metric_rows(path: Path, epochs_done: int) -> None:
    """Drop rows of epochs after `epochs_done` (they belong to an epoch that a resume re-runs)."""
    rows = read_metric_rows(path)
    kept = [r for r in rows if r.get("epoch", "").isdigit() and int(r["epoch"]) <= epochs_done]
    if len(kept) != len(rows):
        lines = [",".join(METRIC_COLUMNS)] + [",".join(r.get(c, "") or "" for c in METRIC_COLUMNS) for r in kept]
        atomic_write_text(path, "\n".join(lines) + "\n")


def append_metric_row(path: Path, row: dict[str, Any]) -> None:
    path = Path(path)
    new = not path.exists() or path.stat().st_size == 0
    with open(path, "a", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=METRIC_COLUMNS, lineterminator="\n")
        if new:
            writer.writeheader()
        writer.writerow(row)
        fh.flush()
        os.fsync(fh.fileno())


class ThroughputProgressBar(TQDMProgressBar):
    """Lightning's tqdm bar (batches, it/s, epoch ETA) plus images/s and an ETA for the whole run."""

    def __init__(self) -> None:
        super().__init__()
        self._images = 0
        self._epoch_start = time.perf_counter()
        self._epoch_seconds: list[float] = []

    def on_train_epoch_start(self, trainer, *args) -> None:
        super().on_train_epoch_start(trainer, *args)
        self.train_progress_bar.set_description(f"Epoch {trainer.current_epoch + 1}/{trainer.max_epochs}")
        self._images = 0
        self._epoch_start = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self._images += int(batch["image"].shape[0]) * trainer.world_size
        super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        self._epoch_seconds.append(time.perf_counter() - self._epoch_start)
        super().on_train_epoch_end(trainer, pl_module)

    def get_metrics(self, trainer, pl_module) -> dict:
        items = super().get_metrics(trainer, pl_module)
        items.pop("v_num", None)
        elapsed = max(time.perf_counter() - self._epoch_start, 1e-9)
        if self._images:
            items["img/s"] = f"{self._images / elapsed:.1f}"
        epochs_left = max(trainer.max_epochs - trainer.current_epoch - 1, 0) if trainer.max_epochs else 0
        if self._epoch_seconds and epochs_left:
            per_epoch = sum(self._epoch_seconds[-3:]) / len(self._epoch_seconds[-3:])
            items["run_eta"] = _format_seconds(epochs_left * per_epoch + max(per_epoch - elapsed, 0))
        return items


def _format_seconds(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


class RankConsistency(Callback):
    """At the end of training, makes every rank hold rank 0's buffers (BatchNorm running statistics are
    not synchronised by DDP on CPU) and records a SHA-256 of each rank's weights in
    `pl_module.rank_weight_sha256` (gathered on every rank), so a run can prove its ranks agree."""

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        from inpaintseg.model_io import unwrap_model

        network = unwrap_model(pl_module.model)
        if trainer.world_size > 1 and torch.distributed.is_available() and torch.distributed.is_initialized():
            for buffer in network.buffers():
                torch.distributed.broadcast(buffer.data, src=0)
        digest = weights_sha256(network)
        mine = torch.tensor(list(bytes.fromhex(digest)), dtype=torch.int64, device=pl_module.device)
        if trainer.world_size > 1:
            gathered = trainer.strategy.all_gather(mine).reshape(trainer.world_size, -1)
            pl_module.rank_weight_sha256 = [bytes(row.tolist()).hex() for row in gathered.cpu()]
        else:
            pl_module.rank_weight_sha256 = [digest]


def weights_sha256(model: torch.nn.Module) -> str:
    """SHA-256 over the names and float32 bytes of a model's state_dict (order of names sorted)."""
    from inpaintseg.model_io import export_state_dict

    digest = hashlib.sha256()
    for name, tensor in sorted(export_state_dict(model).items()):
        digest.update(name.encode())
        digest.update(tensor.numpy().tobytes())
    return digest.hexdigest()


# ----------------------------------------------------------------------------------------------
# Hardware choices


@dataclass
class Hardware:
    accelerator: str  # "cpu" | "cuda" | "mps"
    processes_per_node: int
    num_workers: int
    strategy: str
    precision: str


def _is_primary_process() -> bool:
    """False in the DDP worker processes that Lightning launches (LOCAL_RANK/NODE_RANK > 0)."""
    return all(os.environ.get(key, "0") in ("", "0") for key in ("LOCAL_RANK", "NODE_RANK", "RANK"))


def resolve_hardware(config: TrainConfig) -> Hardware:
    """Turn accelerator/devices/precision/num_workers into concrete choices, or raise ConfigError."""
    from inpaintseg.runtime import available_cpus

    cuda = torch.cuda.is_available()
    mps = bool(getattr(torch.backends, "mps", None) and torch.backends.mps.is_available())
    wanted = config.accelerator
    if wanted == "auto":
        accelerator = "cuda" if cuda else ("mps" if mps and config.devices == 1 else "cpu")
    elif wanted in ("gpu", "cuda"):
        if not cuda:
            raise ConfigError(f"accelerator: expected a CUDA GPU for {wanted!r}, but none is available here. "
                              "Use --accelerator cpu (or auto).")
        accelerator = "cuda"
    elif wanted == "mps" and not mps:
        raise ConfigError("accelerator: 'mps' is not available here. Use --accelerator cpu (or auto).")
    else:
        accelerator = wanted
    if accelerator == "cuda" and config.devices > torch.cuda.device_count():
        raise ConfigError(f"devices: expected at most the {torch.cuda.device_count()} CUDA GPU(s) of this node, "
                          f"got {config.devices}. Lower --devices.")
    if config.precision == "16-mixed" and accelerator != "cuda":
        raise ConfigError(f"precision: '16-mixed' needs a CUDA GPU, but training runs on {accelerator}. "
                          "Use --precision bf16-mixed or 32.")
    processes = config.devices
    if config.num_workers is not None:
        workers = config.num_workers
    else:
        per_process = max(available_cpus() // processes, 1)
        # CPU training: the model uses every core, so extra loader processes only compete with it
        # (2-core machine: 0 workers was fastest); with a GPU, the CPU's only job is loading data.
        workers = (0 if per_process <= 2 else min(4, per_process // 2)) if accelerator == "cpu" \
            else max(0, min(8, per_process - 1))
    multi = processes * config.num_nodes > 1
    if config.num_nodes > 1 and not config.out:
        raise ConfigError("out: multi-node training needs an explicit --out RUN_DIR on a filesystem shared "
                          "by all nodes (each node runs the same command).")
    precision = "32-true" if config.precision == "32" else config.precision
    return Hardware(accelerator, processes, workers, "ddp" if multi else "auto", precision)


def tune_cpu(hardware: Hardware) -> None:
    """CPU training: tuned malloc and one torch thread per available core (split between DDP processes)."""
    if hardware.accelerator != "cpu":
        return
    from inpaintseg.runtime import available_cpus, tune_cpu_runtime

    tune_cpu_runtime(threads=max(available_cpus() // hardware.processes_per_node, 1))


# ----------------------------------------------------------------------------------------------
# Run folder


def default_run_dir(now: datetime | None = None, root: Path = Path("runs")) -> Path:
    """runs/<YYYYmmdd-HHMMSS>, with -2, -3 ... when that folder already exists."""
    base = root / (now or datetime.now()).strftime("%Y%m%d-%H%M%S")
    candidate, n = base, 1
    while candidate.exists():
        n += 1
        candidate = base.with_name(f"{base.name}-{n}")
    return candidate


def resolve_run_dir(config: TrainConfig) -> Path:
    if config.out:
        return Path(config.out)
    inherited = os.environ.get(RUN_DIR_ENV)
    if inherited and not _is_primary_process():
        return Path(inherited)
    return default_run_dir()


def check_new_run_dir(run_dir: Path) -> None:
    """A new run must not overwrite an earlier one."""
    if run_dir.exists() and not run_dir.is_dir():
        raise ConfigError(f"out: {run_dir} is a file; expected a run folder path. Choose another --out.")
    if run_dir.is_dir() and any(run_dir.iterdir()):
        hint = (f"continue it with `--resume {run_dir}`" if (run_dir / CONFIG_FILE).exists()
                else "empty it")
        raise ConfigError(f"out: {run_dir} already holds files; {hint}, or choose another --out for a new run.")


def check_resumable(run_dir: Path) -> Path:
    last = run_dir / CHECKPOINT_DIR / f"{LAST_NAME}.ckpt"
    if not last.is_file():
        raise ConfigError(f"--resume {run_dir}: no {CHECKPOINT_DIR}/{LAST_NAME}.ckpt there (the run stopped "
                          "before its first epoch finished). Start it again with --out.")
    return last


def save_split(path: Path, split: dict, config: TrainConfig) -> None:
    record = {"train": split["train"], "val": split["val"], "seed": config.seed,
              "val_fraction": config.val_fraction}
    atomic_write_text(path, json.dumps(record, indent=1) + "\n")


def load_split(path: Path) -> dict | None:
    if not path.exists():
        return None
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError(f"{path}: not valid JSON ({exc}). Delete it to make a new split.") from None
    if not isinstance(record, dict):
        raise ConfigError(f"{path}: expected an object with train and val lists. Delete it to make a new split.")
    return {"train": record.get("train"), "val": record.get("val")}


# ----------------------------------------------------------------------------------------------
# Building blocks


def build_datamodule(config: TrainConfig, hardware: Hardware, split: dict | None = None):
    from inpaintseg.data import InpaintDataModule

    datamodule = InpaintDataModule(config.data, img_size=config.img_size, input_mode=config.input_mode,
                                   batch_size=config.batch_size, val_fraction=config.val_fraction,
                                   seed=config.seed, num_workers=hardware.num_workers, split=split)
    datamodule.setup("fit")
    n_train = len(datamodule.train_set)
    if config.batch_size > n_train:
        raise ConfigError(f"batch_size: expected at most the number of training images ({n_train} after "
                          f"holding out {len(datamodule.val_set)} for validation), got {config.batch_size}. "
                          "Lower --batch-size or add images.")
    return datamodule


def build_module(config: TrainConfig, model: torch.nn.Module | None = None) -> SegmentationModule:
    """The LightningModule for `config`; `model` (any (B,3,H,W) -> (B,1,H,W) logits network, e.g. a
    peer model in the quality benchmark) replaces the AttentionUNet the config describes."""
    from inpaintseg.losses import BCEDiceLoss
    from inpaintseg.model import build_model

    architecture = config.architecture()
    if model is None:
        model = build_model(architecture, source="config")
    else:
        own = getattr(model, "architecture", None)
        architecture = own() if callable(own) else None  # None: a foreign network, not exportable
    if config.channels_last:
        model = model.to(memory_format=torch.channels_last)
    if config.compile:
        model = torch.compile(model)
    loss = BCEDiceLoss(bce_weight=config.bce_weight, dice_weight=config.dice_weight)
    return SegmentationModule(model, loss, lr=config.lr, epochs=config.epochs,
                              weight_decay=config.weight_decay, architecture=architecture,
                              channels_last=config.channels_last)


def build_trainer(config: TrainConfig, hardware: Hardware, run_dir: Path, n_train_batches: int,
                  callbacks: Sequence[Callback] = ()) -> L.Trainer:
    # Two callbacks: ModelCheckpoint(save_last=True) only refreshes last.ckpt when best.ckpt changes.
    best = ModelCheckpoint(dirpath=run_dir / CHECKPOINT_DIR, filename=BEST_NAME, monitor="val_loss",
                           mode="min", save_top_k=1, auto_insert_metric_name=False, enable_version_counter=False)
    last = ModelCheckpoint(dirpath=run_dir / CHECKPOINT_DIR, filename=LAST_NAME, monitor=None, save_top_k=1,
                           auto_insert_metric_name=False, enable_version_counter=False)
    all_callbacks: list[Callback] = [best, last, EpochMetricsCSV(run_dir / METRICS_FILE), RankConsistency()]
    if config.progress_bar:
        all_callbacks.append(ThroughputProgressBar())
    all_callbacks.extend(callbacks)
    logger: Any = False
    if importlib.util.find_spec("tensorboard") or importlib.util.find_spec("tensorboardX"):
        from lightning.pytorch.loggers import TensorBoardLogger

        logger = TensorBoardLogger(save_dir=str(run_dir), name="tensorboard", version="")
    deterministic: Any = False
    if config.deterministic:
        deterministic = True if hardware.accelerator == "cpu" else "warn"
    batches = n_train_batches if config.limit_train_batches is None else min(n_train_batches,
                                                                             config.limit_train_batches)
    return L.Trainer(
        accelerator="gpu" if hardware.accelerator == "cuda" else hardware.accelerator,
        devices=config.devices, num_nodes=config.num_nodes, strategy=hardware.strategy,
        precision=hardware.precision, max_epochs=config.epochs,
        max_time={"minutes": config.max_time_minutes} if config.max_time_minutes else None,
        limit_train_batches=config.limit_train_batches,
        deterministic=deterministic, benchmark=hardware.accelerator == "cuda" and not config.deterministic,
        sync_batchnorm=hardware.accelerator == "cuda" and hardware.strategy == "ddp",
        callbacks=all_callbacks, logger=logger, default_root_dir=str(run_dir),
        enable_progress_bar=config.progress_bar, enable_model_summary=config.progress_bar,
        log_every_n_steps=max(1, min(50, batches)), num_sanity_val_steps=1,
        plugins=[AtomicCheckpointIO()],
    )


# ----------------------------------------------------------------------------------------------
# After training: best weights, calibration, export


def load_best_weights(module: SegmentationModule, checkpoint_path: Path) -> int:
    """Load the network weights of a Lightning checkpoint (weights_only) into `module.model`'s plain
    network; returns the checkpoint's epoch counted from 1."""
    from inpaintseg.model_io import unwrap_model

    checkpoint = torch.load(checkpoint_path, map_location="cpu", weights_only=True)
    state = {}
    for name, tensor in checkpoint["state_dict"].items():
        if name.startswith("model."):
            name = name[len("model."):]
            state[name[len("_orig_mod."):] if name.startswith("_orig_mod.") else name] = tensor
    unwrap_model(module.model).load_state_dict(state, strict=True)
    return int(checkpoint["epoch"]) + 1


class LazyValidationSamples(Sequence):
    """(image uint8 RGB, mask uint8 {0,1}) at original size, read from disk when indexed."""

    def __init__(self, samples: Sequence) -> None:
        self.samples = list(samples)

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index):
        from inpaintseg.data import load_sample

        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        image, mask = load_sample(self.samples[index])
        return image, mask


def calibrate(network: torch.nn.Module, model_config: dict, datamodule, config: TrainConfig,
              device: str) -> dict:
    """The `postprocess` section: threshold (always; maximises mean per-image validation Dice at the
    original image size), and with `config.calibrate` also TTA and CRF (inference.calibrate_postprocessing)."""
    from inpaintseg.inference import calibrate_postprocessing

    samples = LazyValidationSamples(datamodule.val_set.samples)
    options: dict[str, Any] = {} if config.calibrate else {"tta_modes": ("none",), "crf_variants": ()}
    batch_size = max(1, min(config.batch_size, 16))
    return calibrate_postprocessing(network, model_config, samples, device=device, batch_size=batch_size,
                                    progress=config.progress_bar, **options)


def best_epoch_metrics(metrics_path: Path, epoch: int | None) -> dict[str, float]:
    rows = read_metric_rows(metrics_path)
    row = next((r for r in rows if epoch is not None and r.get("epoch") == str(epoch)), None)
    if row is None:
        return {}
    out: dict[str, float] = {"epoch": epoch}
    for key in ("train_loss", "val_loss", "val_dice", "val_iou", "val_f1"):
        if row.get(key):
            out[key] = float(row[key])
    return out


@dataclass
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

    def summary(self) -> str:
        lines = [f"run folder: {self.run_dir}  ({self.epochs_completed} epochs, {self.seconds:.0f} s)"]
        if self.model_dir is not None:
            m = self.metrics
            scores = ", ".join(f"{k} {m[k]:.4f}" for k in ("val_loss", "val_dice", "val_iou", "val_f1") if k in m)
            lines.append(f"model: {self.model_dir}  (best epoch {self.best_epoch}: {scores})")
            lines.append(f"threshold {self.postprocess.get('threshold')}, tta {self.postprocess.get('tta')}, "
                         f"crf {self.postprocess.get('crf')}")
        return "\n".join(lines)


def _model_config(config: TrainConfig, datamodule, postprocess: dict, metrics: dict,
                  training: dict) -> dict:
    from inpaintseg.transforms import IMAGENET_MEAN, IMAGENET_STD

    data = {**datamodule.summary, "data_dir": str(Path(config.data).resolve()), "split_file": SPLIT_FILE}
    return {
        "architecture": config.architecture(),
        "input": {"mode": config.input_mode, "size": config.img_size, "mean": list(IMAGENET_MEAN),
                  "std": list(IMAGENET_STD)},
        "postprocess": postprocess,
        "metrics": metrics,
        "data": data,
        "training": training,
    }


def _quiet_lightning_warnings() -> None:
    """Within a `warnings.catch_warnings()` block: drop Lightning hints that do not apply here."""
    # We choose num_workers deliberately (0 is fastest on small CPUs); Lightning's hint is noise.
    warnings.filterwarnings("ignore", message=r".*does not have many workers.*")
    warnings.filterwarnings("ignore", message=r".*is smaller than the logging interval.*")
    warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\)` is deprecated.*")
    # Resuming writes into the run's own checkpoints folder on purpose.
    warnings.filterwarnings("ignore", message=r"Checkpoint directory .* exists and is not empty.*")


class _DropAdverts(logging.Filter):
    """Drops Lightning's "Tip: try installing ..." advert lines from its info log."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("\N{ELECTRIC LIGHT BULB} Tip")


def _quiet_lightning_log() -> None:
    logger = logging.getLogger("lightning.pytorch.utilities.rank_zero")
    if not any(isinstance(f, _DropAdverts) for f in logger.filters):
        logger.addFilter(_DropAdverts())


# ----------------------------------------------------------------------------------------------
# The entry point


def train(config: TrainConfig, resume: bool = False, callbacks: Sequence[Callback] = (),
          model: torch.nn.Module | None = None) -> TrainResult:
    """Train with `config` and fill the run folder; returns what was written (see module docstring).

    `resume=True` continues the run in `config.out` from checkpoints/last.ckpt. Extra Lightning
    `callbacks` are for tests and tools. `model` replaces the network the config describes (the
    quality benchmark trains peer networks this way); a network that is not an AttentionUNet is
    calibrated and returned in `TrainResult.network` but not exported to `model/`. In DDP, every
    process runs this; only rank 0 exports (`TrainResult.is_primary`).
    """
    started = time.perf_counter()
    hardware = resolve_hardware(config)
    run_dir = resolve_run_dir(config)
    config = config.replace(out=str(run_dir))
    primary = _is_primary_process()
    ckpt_path = check_resumable(run_dir) if resume else None
    if primary and not resume:
        check_new_run_dir(run_dir)
    if hardware.strategy == "ddp":
        os.environ[RUN_DIR_ENV] = str(run_dir)  # DDP workers re-run this command without --out

    L.seed_everything(config.seed, workers=True, verbose=False)
    tune_cpu(hardware)
    if hardware.accelerator == "cuda":
        torch.set_float32_matmul_precision("high")
    split = load_split(run_dir / SPLIT_FILE) if resume else None
    datamodule = build_datamodule(config, hardware, split)  # data and batch-size errors before any write
    module = build_module(config, model)

    if primary:
        run_dir.mkdir(parents=True, exist_ok=True)
        save_config(config, run_dir / CONFIG_FILE)
        save_split(run_dir / SPLIT_FILE, datamodule.split, config)
    n_batches = max(1, len(datamodule.train_set) // config.batch_size)
    _quiet_lightning_log()
    trainer = build_trainer(config, hardware, run_dir, n_batches, callbacks)
    with warnings.catch_warnings():
        _quiet_lightning_warnings()
        try:
            trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt_path, weights_only=True)
        except NonFiniteLossError as exc:
            raise _non_finite_message(exc, run_dir, config) from None

    result = TrainResult(run_dir=run_dir, is_primary=trainer.is_global_zero,
                         epochs_completed=trainer.current_epoch)
    if not trainer.is_global_zero:
        return result
    best = run_dir / CHECKPOINT_DIR / f"{BEST_NAME}.ckpt"
    if best.is_file():
        result.best_epoch = load_best_weights(module, best)
    result.metrics = best_epoch_metrics(run_dir / METRICS_FILE, result.best_epoch)
    network = _export_network(module)
    device = "cuda" if hardware.accelerator == "cuda" else "cpu"
    training = {**{k: v for k, v in config.to_dict().items() if k not in ("data", "out")},
                "epochs_completed": result.epochs_completed, "best_epoch": result.best_epoch,
                "world_size": trainer.world_size, "accelerator": hardware.accelerator,
                "rank_weight_sha256": getattr(module, "rank_weight_sha256", []),
                "seconds": round(time.perf_counter() - started, 1), "inpaintseg": __version__,
                "torch": torch.__version__, "lightning": L.__version__}
    model_config = _model_config(config, datamodule, {"threshold": VAL_THRESHOLD}, result.metrics, training)
    model_config["architecture"] = module.hparams.architecture or {"name": f"external:{type(network).__name__}"}
    result.postprocess = calibrate(network, model_config, datamodule, config, device)
    model_config["postprocess"] = result.postprocess
    result.metrics["threshold_val_dice"] = _chosen_dice(result.postprocess)
    result.network, result.model_config = network, model_config
    if module.hparams.architecture is not None:
        from inpaintseg.model_io import save_model_dir

        result.model_dir = save_model_dir(run_dir / MODEL_DIR, network, model_config)
    result.seconds = time.perf_counter() - started
    return result


def _export_network(module: SegmentationModule) -> torch.nn.Module:
    from inpaintseg.model_io import unwrap_model

    network = unwrap_model(module.model)
    network = network.to("cpu").to(memory_format=torch.contiguous_format).float()
    return network.eval()


def _chosen_dice(postprocess: dict) -> float | None:
    table = postprocess.get("calibration", {}).get("table", [])
    for row in table:
        if row.get("tta") == postprocess.get("tta") and row.get("crf") == postprocess.get("crf"):
            return row.get("dice")
    return None


def _non_finite_message(exc: NonFiniteLossError, run_dir: Path, config: TrainConfig) -> InpaintsegError:
    last = run_dir / CHECKPOINT_DIR / f"{LAST_NAME}.ckpt"
    kept = (f"The last good checkpoint stays at {last} (resume with `--resume {run_dir}` after a fix)"
            if last.exists() else "No epoch had finished, so there is no checkpoint to resume from")
    return InpaintsegError(
        f"training stopped: the loss became {exc.value} (not finite) at epoch {exc.epoch}, batch {exc.batch}. "
        f"{kept}. Likely fixes: a lower --lr (now {config.lr:g}), --precision 32 (now {config.precision}), "
        "or check that batch's images for corrupt values.")
