"""Hardware choices of a training run: accelerator, processes, loader workers, strategy, precision."""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch

from inpaintseg.config import TrainConfig
from inpaintseg.errors import ConfigError
from inpaintseg.precision import check_fp16_device, lightning_precision


@dataclass
class Hardware:
    accelerator: str  # "cpu" | "cuda" | "mps"
    processes_per_node: int
    num_workers: int
    strategy: str
    precision: str  # Lightning's name ("32-true", "bf16-mixed", ...), or "auto" until train() resolves it

    @property
    def lightning_accelerator(self) -> str:
        """The Trainer's name for the accelerator (Lightning calls CUDA "gpu")."""
        return "gpu" if self.accelerator == "cuda" else self.accelerator


def is_primary_process() -> bool:
    """False in the DDP worker processes that Lightning launches (LOCAL_RANK/NODE_RANK > 0)."""
    return all(os.environ.get(key, "0") in ("", "0") for key in ("LOCAL_RANK", "NODE_RANK", "RANK"))


def check_training_limits(config: TrainConfig, accelerator: str) -> None:
    """The counts and img_size against this machine (`runtime.check_count`, `check_image_side`)."""
    from inpaintseg.runtime import FORWARD_BYTES_PER_PIXEL_CHANNEL, check_count, check_image_side

    if accelerator == "cpu":  # each DDP process on a CPU is a full torch process (CUDA: the GPU count decides)
        check_count("devices", config.devices, processes=True)
        check_image_side("img_size", config.img_size,
                         config.batch_size * config.base_channels * FORWARD_BYTES_PER_PIXEL_CHANNEL,
                         f"a training batch of {config.batch_size} (its forward pass alone)")
    check_count("num_workers", config.num_workers, processes=True)


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
                              "Set accelerator to cpu (or auto).", params=["accelerator"])
        accelerator = "cuda"
    elif wanted == "mps" and not mps:
        raise ConfigError("accelerator: 'mps' is not available here. Set accelerator to cpu (or auto).",
                          params=["accelerator"])
    else:
        accelerator = wanted
    if accelerator == "cuda" and config.devices > torch.cuda.device_count():
        raise ConfigError(f"devices: expected at most the {torch.cuda.device_count()} CUDA GPU(s) of this node, "
                          f"got {config.devices}. Lower devices.", params=["devices"])
    check_fp16_device(config.precision, accelerator, "training runs")  # accelerator: cpu, cuda or mps
    check_training_limits(config, accelerator)
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
        raise ConfigError("out: multi-node training needs an explicit out (a run folder) on a filesystem shared "
                          "by all nodes (each node runs the same command).", params=["out"])
    precision = "auto" if config.precision == "auto" else lightning_precision(config.precision)
    return Hardware(accelerator, processes, workers, "ddp" if multi else "auto", precision)


def tune_cpu(hardware: Hardware) -> None:
    """CPU training: tuned malloc and one torch thread per available core (split between DDP processes)."""
    if hardware.accelerator != "cpu":
        return
    from inpaintseg.runtime import available_cpus, tune_cpu_runtime

    tune_cpu_runtime(threads=max(available_cpus() // hardware.processes_per_node, 1))
