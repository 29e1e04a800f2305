"""What a training run prints: the "what is used" lines, and the Lightning log noise it holds back or drops."""

from __future__ import annotations

import logging
import warnings
from pathlib import Path


from inpaintseg.config import TrainConfig
from inpaintseg.training.hardware import Hardware


def quiet_lightning_warnings() -> None:
    """Within a `warnings.catch_warnings()` block: drop Lightning hints that do not apply here."""
    # We choose num_workers deliberately (0 is fastest on small CPUs); Lightning's hint is noise.
    warnings.filterwarnings("ignore", message=r".*does not have many workers.*")
    warnings.filterwarnings("ignore", message=r".*is smaller than the logging interval.*")
    warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\)` is deprecated.*")
    # Resuming writes into the run's own checkpoints folder on purpose.
    warnings.filterwarnings("ignore", message=r"Checkpoint directory .* exists and is not empty.*")


class _DropAdverts(logging.Filter):
    """Filters Lightning's info log: drops the "Tip: try installing ..." adverts and the "GPU/TPU/HPU
    available" lines (`train` prints what it uses itself), and holds back the "`Trainer.fit` stopped" and
    "Time limit reached" notes, which would land glued to a progress bar; `train` prints them after fit
    on a line of their own (`held`)."""

    DROP = ("\N{ELECTRIC LIGHT BULB} Tip", "GPU available", "TPU available", "HPU available", "IPU available")
    HOLD = ("`Trainer.fit` stopped", "Time limit reached")

    def __init__(self) -> None:
        super().__init__()
        self.held: list[str] = []

    def filter(self, record: logging.LogRecord) -> bool:
        message = str(record.msg)
        if message.startswith(self.HOLD):
            self.held.append(record.getMessage())
            return False
        return not message.startswith(self.DROP)


def quiet_lightning_log() -> _DropAdverts:
    logger = logging.getLogger("lightning.pytorch.utilities.rank_zero")
    for f in logger.filters:
        if isinstance(f, _DropAdverts):
            f.held.clear()
            return f
    noise = _DropAdverts()
    logger.addFilter(noise)
    return noise


def describe_run(config: TrainConfig, hardware: Hardware, module, datamodule, run_dir: Path) -> str:
    """The "what is used" lines printed at the start of training (two, so a log line stays short)."""
    from inpaintseg.model.io import unwrap_model

    network = unwrap_model(module.model)
    params = sum(p.numel() for p in network.parameters())
    arch = module.hparams.architecture or {"name": type(network).__name__}
    shape = ", ".join(f"{k}={arch[k]}" for k in ("encoder", "base_channels", "depth", "attention") if k in arch)
    devices = f"{hardware.accelerator} x{config.devices * config.num_nodes}" if config.devices * config.num_nodes > 1 \
        else hardware.accelerator
    return (f"train: {len(datamodule.train_set)} train / {len(datamodule.val_set)} validation images from "
            f"{config.data}; run folder {run_dir}\n"
            f"train: {arch.get('name')} ({shape}; {params:,} parameters); {config.input_mode} {config.img_size}; "
            f"{config.epochs} epochs of batch {config.batch_size}, lr {config.lr:g}; device {devices}, precision "
            f"{hardware.precision}")


# ----------------------------------------------------------------------------------------------
# The entry point
