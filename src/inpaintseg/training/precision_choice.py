"""The training precision of a run: `auto` resolved once, before the Trainer exists, and kept.

- A new run: `inpaintseg.precision.choose_precision` on the run's network in "train" mode at the run's
  batch size, input size and memory format (on a CPU with bf16 units a short fp32-vs-bf16 probe, cached
  per machine and model shape); a forced precision passes through.
- A planner that already chose (the demo's `plan_training`) passes its choice in; it is used as is.
- DDP: rank 0 resolves and exports `PRECISION_ENV`; the worker processes Lightning launches inherit it,
  so every rank trains at the same precision even when the probe cache is not writable.
- Resume: config.yaml holds the resolved precision (never `auto`) and precision.json the choice, so a
  resumed run keeps its precision whatever the cache says today.
"""

from __future__ import annotations

import os
from pathlib import Path

from inpaintseg.config import TrainConfig
from inpaintseg.errors import ConfigError
from inpaintseg.precision import PrecisionChoice, check_precision, choose_precision
from inpaintseg.run_dir import PRECISION_FILE, load_precision_record
from inpaintseg.training.hardware import Hardware, is_primary_process

PRECISION_ENV = "INPAINTSEG_PRECISION"


def training_device(hardware: Hardware) -> str:
    """The torch device type a run trains on ("cpu", "cuda", "mps")."""
    return hardware.accelerator


def resolve_training_precision(config: TrainConfig, hardware: Hardware, network, run_dir: Path,
                               resume: bool = False, choice: PrecisionChoice | None = None) -> PrecisionChoice:
    """The `PrecisionChoice` this run trains at (see the module docstring for the order of the rules).

    `network` is the plain network (not compiled, not wrapped); the probe trains copies of it.
    """
    if choice is not None:
        if config.precision not in ("auto", choice.precision):
            raise ConfigError(f"precision: the planned precision {choice.precision!r} differs from the "
                              f"configured {config.precision!r}; plan with the same config.")
        return choice
    if resume:
        record = load_precision_record(Path(run_dir) / PRECISION_FILE)
        if record is not None and record["precision"] == config.precision:
            return PrecisionChoice.from_dict(record, source=str(Path(run_dir) / PRECISION_FILE))
    inherited = os.environ.get(PRECISION_ENV)
    if config.precision == "auto" and inherited and not is_primary_process():
        precision = check_precision(inherited, PRECISION_ENV, allow_auto=False)
        return PrecisionChoice(precision, reason="rank 0's choice")
    return choose_precision(network, config.batch_size, config.img_size, device=training_device(hardware),
                            mode="train", requested=config.precision, channels_last=config.channels_last)
