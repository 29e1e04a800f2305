"""Lightning callbacks and plugins of a training run: atomic checkpoints, metrics.csv, the progress bar
(a terminal) or one plain log line per epoch (a log file), and the end-of-training rank consistency check."""

from __future__ import annotations

import hashlib
import time
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback, TQDMProgressBar
from lightning.pytorch.plugins.io import TorchCheckpointIO

from inpaintseg.errors import OutputError
from inpaintseg.fileio import atomic_path
from inpaintseg.progress import format_duration
from inpaintseg.run_dir import append_metric_row, keep_metric_rows


class AtomicCheckpointIO(TorchCheckpointIO):
    """torch.save to a temp file beside the target, fsync, then rename: a kill -9 mid-write leaves the
    previous checkpoint intact. (Lightning's fsspec transaction writes to /tmp and then moves, which
    is a copy, not a rename, when /tmp is another filesystem.)"""

    def save_checkpoint(self, checkpoint: dict, path, storage_options: Any | None = None) -> None:
        if storage_options is not None:
            raise TypeError("AtomicCheckpointIO does not take storage_options")
        with atomic_path(path) as tmp:
            try:
                torch.save(checkpoint, tmp)
            except RuntimeError as exc:
                # torch's zip writer reports a short write (ENOSPC) as "unexpected pos ..."
                raise OutputError(f"{path}: cannot write the checkpoint (the disk is full, or the write failed: "
                                  f"{str(exc).splitlines()[0]}); free space or choose another out.",
                                  params=["out"]) from None

    def load_checkpoint(self, path, map_location: Any | None = None, weights_only: bool | None = None) -> dict:
        return torch.load(path, map_location=map_location or "cpu", weights_only=True)


class EpochTimer(Callback):
    """Times each training epoch without its validation and counts the images it trained on (all ranks);
    `train_seconds()` and `images` serve the callbacks that report an epoch."""

    def __init__(self) -> None:
        self._epoch_start = 0.0
        self._val_start = 0.0
        self._val_seconds = 0.0
        self.images = 0

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._epoch_start = time.perf_counter()
        self._val_seconds = 0.0
        self.images = 0

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.images += int(batch["image"].shape[0]) * trainer.world_size

    def on_validation_epoch_start(self, trainer, pl_module) -> None:
        self._val_start = time.perf_counter()

    def on_validation_epoch_end(self, trainer, pl_module) -> None:
        if not trainer.sanity_checking:
            self._val_seconds += time.perf_counter() - self._val_start

    def epoch_seconds(self) -> float:
        return time.perf_counter() - self._epoch_start

    def train_seconds(self) -> float:
        return max(self.epoch_seconds() - self._val_seconds, 1e-9)


class EpochMetricsCSV(EpochTimer):
    """Appends one row per finished epoch to RUN_DIR/metrics.csv and flushes it (rank 0 only).

    On resume, rows of epochs after the restored checkpoint are dropped first, so each epoch appears
    once. Validation columns are empty for an epoch whose validation did not run (time budget).
    """

    def __init__(self, path: Path) -> None:
        super().__init__()
        self.path = Path(path)
        self._lr = float("nan")

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.is_global_zero:
            keep_metric_rows(self.path, trainer.current_epoch)

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        super().on_train_epoch_start(trainer, pl_module)
        self._lr = float(trainer.optimizers[0].param_groups[0]["lr"]) if trainer.optimizers else float("nan")

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.is_global_zero:
            return
        seconds, train_seconds = self.epoch_seconds(), self.train_seconds()
        metrics = trainer.callback_metrics
        has_val = getattr(pl_module, "last_val_epoch", -1) == trainer.current_epoch

        def value(key: str) -> str:
            if key.startswith("val_") and not has_val or key not in metrics:
                return ""
            return f"{float(metrics[key]):.6g}"

        row = {"epoch": trainer.current_epoch + 1, "step": trainer.global_step,
               "train_loss": value("train_loss"), "val_loss": value("val_loss"), "val_dice": value("val_dice"),
               "val_iou": value("val_iou"), "val_f1": value("val_f1"), "lr": f"{self._lr:.6g}",
               "epoch_seconds": f"{seconds:.3f}", "train_images_per_second": f"{self.images / train_seconds:.2f}"}
        append_metric_row(self.path, row)


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
            items["run_eta"] = format_duration(epochs_left * per_epoch + max(per_epoch - elapsed, 0))
        return items


class EpochLogLine(EpochTimer):
    """One plain line per finished epoch on stderr (rank 0), for logs without a terminal:
    ``epoch 3/20: train_loss 0.51, val_loss 0.49, val_dice 0.41, val_iou 0.28, val_f1 0.41, 85.3 img/s,
    epoch 12 s, ETA 0:03:24``. No carriage return, no escape code."""

    KEYS = ("train_loss", "val_loss", "val_dice", "val_iou", "val_f1")

    def __init__(self, stream=None) -> None:
        super().__init__()
        self.stream = stream
        self._epoch_seconds: list[float] = []

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        import sys

        if not trainer.is_global_zero:
            return
        seconds = self.epoch_seconds()
        self._epoch_seconds.append(seconds)
        metrics = trainer.callback_metrics
        has_val = getattr(pl_module, "last_val_epoch", -1) == trainer.current_epoch
        parts = [f"{key} {float(metrics[key]):.4f}" for key in self.KEYS
                 if key in metrics and (has_val or not key.startswith("val_"))]
        rate = self.images / self.train_seconds()
        parts.append(f"{rate:.1f} img/s")
        parts.append(f"epoch {seconds:.0f} s")
        epochs_left = max(trainer.max_epochs - trainer.current_epoch - 1, 0) if trainer.max_epochs else 0
        recent = self._epoch_seconds[-3:]
        parts.append(f"ETA {format_duration(epochs_left * sum(recent) / len(recent))}")
        total = f"/{trainer.max_epochs}" if trainer.max_epochs and trainer.max_epochs > 0 else ""
        print(f"epoch {trainer.current_epoch + 1}{total}: " + ", ".join(parts), file=self.stream or sys.stderr,
              flush=True)


class RankConsistency(Callback):
    """At the end of training, makes every rank hold rank 0's buffers (BatchNorm running statistics are
    not synchronised by DDP on CPU) and records a SHA-256 of each rank's weights in
    `pl_module.rank_weight_sha256` (gathered on every rank), so a run can prove its ranks agree."""

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        from inpaintseg.model.io import unwrap_model

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
    from inpaintseg.model.io import export_state_dict

    digest = hashlib.sha256()
    for name, tensor in sorted(export_state_dict(model).items()):
        digest.update(name.encode())
        digest.update(tensor.numpy().tobytes())
    return digest.hexdigest()
