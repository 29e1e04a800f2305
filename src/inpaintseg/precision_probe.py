"""How `auto` measures a machine: the CPU's bf16 capabilities (`cpu_info`), a probe timing fp32 and bf16
steps of the real model (`probe_rates`), and the per-user JSON cache of probe results (`probe_key`,
`read_cache`, `write_cache`; `cache_dir()/precision_probe.json`). The choice itself, and the precision
vocabulary, are in `precision`.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import platform
import time
from dataclasses import dataclass
from pathlib import Path

from inpaintseg.timing import time_rounds

PROBED = ("32", "bf16-mixed")  # the two candidates `auto` measures on CPU
MODES = ("train", "predict")
CACHE_FILE = "precision_probe.json"
# 2: probes are cached only on a quiet machine (`busy_machine`); version-1 files may hold probes taken under
# load (one held "fp32 0.32 img/s, bf16 0.30" for a network that trains 1.25x faster in bf16), so they are dropped.
CACHE_VERSION = 2
CACHE_MAX_ENTRIES = 64
CACHE_MAX_AGE_SECONDS = 30 * 24 * 3600  # re-probe monthly: a probe taken under passing load is not kept forever


# --------------------------------------------------------------------------------------------
# CPU capabilities
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class CpuInfo:
    vendor: str
    model_name: str
    flags: frozenset = frozenset()

    @property
    def bf16_units(self) -> str:
        """'AMX-BF16', 'AVX512-BF16', 'Arm BF16', 'AVX-512 (bf16 emulated)' or 'none'."""
        if "amx_bf16" in self.flags:
            return "AMX-BF16"
        if "avx512_bf16" in self.flags:
            return "AVX512-BF16"
        if "bf16" in self.flags:  # Arm v8.6 BF16 (e.g. Graviton3), listed in `Features`
            return "Arm BF16"
        if "avx512f" in self.flags:
            return "AVX-512 (bf16 emulated)"
        return "none"

    def describe(self) -> str:
        return f"{self.model_name} ({self.vendor}; bf16 units: {self.bf16_units})"


def cpu_info(cpuinfo_path: str | os.PathLike = "/proc/cpuinfo") -> CpuInfo:
    """Vendor, model name and feature flags of the first CPU in /proc/cpuinfo (Linux; x86 `flags` or
    Arm `Features`); elsewhere the `platform` module's names and no flags."""
    fields: dict[str, str] = {}
    try:
        text = Path(cpuinfo_path).read_text(encoding="utf-8", errors="replace")
    except OSError:
        text = ""
    for line in text.splitlines():
        if not line.strip():
            if fields:
                break  # the first processor's block is enough
            continue
        key, _, value = line.partition(":")
        fields.setdefault(key.strip().lower(), value.strip())
    flags = frozenset((fields.get("flags") or fields.get("features") or "").split())
    vendor = fields.get("vendor_id") or fields.get("cpu implementer") or platform.machine() or "unknown"
    model = fields.get("model name") or platform.processor() or platform.machine() or "unknown CPU"
    return CpuInfo(vendor=vendor, model_name=model, flags=flags)


# --------------------------------------------------------------------------------------------
# The probe: timed steps of the real model at fp32 and bf16
# --------------------------------------------------------------------------------------------
class _Stepper:
    """One precision's copy of the model and a fixed random batch; `step()` runs one step, `sync()` waits
    for the device (`timing.time_rounds` times the steps)."""

    def __init__(self, model, precision: str, batch_size: int, size: int, device, mode: str,
                 channels_last: bool, seed: int = 0) -> None:
        import torch  # noqa: PLC0415

        from inpaintseg.losses import BCEDiceLoss  # noqa: PLC0415

        fmt = torch.channels_last if channels_last else torch.contiguous_format
        generator = torch.Generator().manual_seed(seed)
        self.precision, self.device, self.mode = precision, torch.device(device), mode
        self.model = copy.deepcopy(model).to(self.device).to(memory_format=fmt)
        self.model.train(mode == "train")
        x = torch.randn(batch_size, 3, size, size, generator=generator)
        y = (torch.rand(batch_size, 1, size, size, generator=generator) > 0.8).float()
        self.x = x.to(self.device).contiguous(memory_format=fmt)
        self.y = y.to(self.device)
        if mode == "train":
            self.loss_fn = BCEDiceLoss()
            self.optimizer = torch.optim.Adam(self.model.parameters(), lr=1e-4)

    def sync(self) -> None:
        import torch  # noqa: PLC0415

        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def step(self) -> None:
        import torch  # noqa: PLC0415

        from inpaintseg.precision import autocast_context  # noqa: PLC0415 (precision imports this module)

        if self.mode == "train":
            self.optimizer.zero_grad(set_to_none=True)
            with autocast_context(self.device, self.precision):
                loss = self.loss_fn(self.model(self.x), self.y)
            loss.backward()
            self.optimizer.step()
        else:
            with torch.inference_mode(), autocast_context(self.device, self.precision):
                self.model(self.x)


def probe_rates(model, batch_size: int, size: int, device="cpu", mode: str = "train",
                channels_last: bool = False, warmup: int = 2, steps: int = 3,
                max_seconds: float = 30.0) -> dict[str, float]:
    """Images/s of `model` at fp32 and bf16 autocast: `warmup` untimed steps each (oneDNN picks and
    builds its kernels in the first ones), then `steps` timed steps, interleaved (fp32, bf16, fp32, ...)
    so that load from other processes hits both alike; each rate is from the fastest step (`timing.time_rounds`).

    Train mode: forward + BCE-Dice backward + Adam step; predict mode: forward under inference_mode.
    Copies are measured, so `model` is untouched. When the first (warm-up) round says the rest would
    overrun `max_seconds`, extra warm-up rounds and then timed rounds are dropped (at least one of
    each is kept).
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    steppers = {p: _Stepper(model, p, batch_size, size, device, mode, channels_last) for p in PROBED}
    timings = time_rounds({p: s.step for p, s in steppers.items()}, max(warmup, 1), max(steps, 1),
                          max_seconds=max_seconds, sync=steppers[PROBED[0]].sync)
    return {p: batch_size / timings.fastest(p) for p in PROBED}


# --------------------------------------------------------------------------------------------
# The cache (one JSON file per user)
# --------------------------------------------------------------------------------------------
ISA_LIMITS = ("ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA", "ATEN_CPU_CAPABILITY")  # env vars capping the kernels


def _model_shape(model) -> dict:
    arch = getattr(model, "architecture", None)
    if callable(arch):
        return dict(arch())
    return {"class": type(model).__name__, "parameters": sum(p.numel() for p in model.parameters())}


def probe_key(model, batch_size: int, size: int, device, mode: str, channels_last: bool,
              cpu: CpuInfo) -> tuple[str, dict]:
    """(hash, readable fields) identifying a probe: this machine (CPU model, torch version, threads,
    device, and the instruction-set limits oneDNN / ATen were started with, which change its speed) and this
    model shape (architecture dict, batch, size, mode, memory format)."""
    import torch  # noqa: PLC0415

    fields = {"cpu": cpu.model_name, "torch": torch.__version__, "threads": torch.get_num_threads(),
              **{name.lower(): os.environ[name] for name in ISA_LIMITS if os.environ.get(name)},
              "device": str(device), "architecture": _model_shape(model), "batch_size": int(batch_size),
              "size": int(size), "mode": mode, "channels_last": bool(channels_last)}
    digest = hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:32]
    return digest, fields


def read_cache(path: Path) -> dict:
    """The cache's entries; {} when the file is missing, unreadable or not ours (it is rewritten)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict) or data.get("version") != CACHE_VERSION or not isinstance(data.get("entries"), dict):
        return {}
    return data["entries"]


def valid_entry(entry) -> bool:
    """A well-formed entry younger than CACHE_MAX_AGE_SECONDS."""
    try:
        return (entry["precision"] in PROBED and all(float(entry["rates"][p]) > 0 for p in PROBED)
                and isinstance(entry["reason"], str)
                and 0 <= time.time() - float(entry["created"]) < CACHE_MAX_AGE_SECONDS)
    except (KeyError, TypeError, ValueError):
        return False


def busy_machine() -> str | None:
    """Why a probe just taken should not be cached: the 1-minute load average above the CPU count (other jobs
    shared the cores, so both rates are noise and the choice would stick for days); None on a quiet machine."""
    try:
        load = os.getloadavg()[0]
    except (AttributeError, OSError):
        return None
    cpus = os.cpu_count() or 1
    return f"load average {load:.1f} on {cpus} CPUs" if load > cpus else None


def write_cache(path: Path, key: str, entry: dict) -> bool:
    """Add `entry` (keeping the newest CACHE_MAX_ENTRIES); False when the folder is not writable."""
    from inpaintseg.errors import OutputError  # noqa: PLC0415
    from inpaintseg.fileio import atomic_write_text  # noqa: PLC0415

    entries = {k: v for k, v in read_cache(path).items() if valid_entry(v)}
    entries.pop(key, None)
    entries[key] = entry
    entries = dict(sorted(entries.items(), key=lambda kv: kv[1].get("created", 0))[-CACHE_MAX_ENTRIES:])
    try:
        atomic_write_text(path, json.dumps({"version": CACHE_VERSION, "entries": entries}, indent=1) + "\n")
    except (OSError, OutputError):  # atomic writes report OSError as OutputError (a cache is optional)
        return False
    return True
