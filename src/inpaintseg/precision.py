"""Numeric precision: the vocabulary, autocast, and the choice `auto` makes (`choose_precision`; the CPU
detection, the probe and its cache are in `precision_probe`).

`PRECISIONS` is the one list of precision names (config, CLI flags and model folders use it):

- ``32``: fp32 everywhere (Lightning's "32-true");
- ``bf16-mixed``: fp32 weights, matmuls/convolutions under ``torch.autocast(dtype=torch.bfloat16)``;
  fast on CPUs with AMX-BF16 or AVX512-BF16 units and on recent GPUs;
- ``16-mixed``: fp16 autocast (with a grad scaler in training); CUDA only;
- ``auto``: on CPU, time a few fp32 and bf16 steps of the actual model at the actual batch and size
  (`choose_precision`) and take bf16 only when it is faster by `BF16_MARGIN`; the result is cached per
  machine and model shape (`cache_dir()`). On CUDA (and elsewhere) `auto` keeps the caller's default
  without probing.

Probabilities are always fp32: `sigmoid_fp32` casts the logits before the sigmoid, so a bf16 forward
pass feeds thresholds, TTA averaging and CRF the same dtype as an fp32 one.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from inpaintseg.cache import cache_dir
from inpaintseg.errors import ConfigError
from inpaintseg.precision_probe import (CACHE_FILE, MODES, PROBED, CpuInfo, cpu_info, probe_key, probe_rates,
                                        busy_machine, read_cache, valid_entry, write_cache)

PRECISIONS = ("auto", "32", "bf16-mixed", "16-mixed")
BF16_MARGIN = 0.10  # bf16 must be at least 10% faster than fp32 to be chosen
LABELS = {"32": "fp32", "bf16-mixed": "bf16", "16-mixed": "fp16"}

# A probe: (model, batch_size, size, device, mode, channels_last) -> {"32": img/s, "bf16-mixed": img/s}
Probe = Callable[..., Mapping[str, float]]


def check_precision(value: object, source: str = "precision", allow_auto: bool = True) -> str:
    """`value` as a precision name, or a `ConfigError` naming `source`, the value and the choices."""
    choices = PRECISIONS if allow_auto else PRECISIONS[1:]
    text = str(value) if isinstance(value, (str, int)) and not isinstance(value, bool) else None
    if text not in choices:
        raise ConfigError(f"{source}: expected one of {', '.join(choices)}, got {value!r}.")
    return text


def lightning_precision(precision: str) -> str:
    """A resolved precision name as Lightning's Trainer(precision=...) spells it."""
    precision = check_precision(precision, allow_auto=False)
    return "32-true" if precision == "32" else precision


# --------------------------------------------------------------------------------------------
# Autocast and fp32 probabilities
# --------------------------------------------------------------------------------------------
def _device_type(device) -> str:
    import torch  # noqa: PLC0415

    return torch.device(device).type


def check_fp16_device(precision: str, device, runs: str = "the model runs") -> None:
    """``16-mixed`` (fp16 autocast) exists on CUDA only: `ConfigError` on any other `device` (str or
    torch.device), the one wording for predict, train and the API (`runs`: what runs there)."""
    kind = _device_type(device)
    if precision == "16-mixed" and kind != "cuda":
        raise ConfigError(f"precision '16-mixed' needs a CUDA GPU, but {runs} on {kind}. Use precision "
                          "bf16-mixed, 32 or auto.", params=["precision"])


def autocast_context(device, precision: str):
    """A context manager running the forward pass at `precision` on `device` (str or torch.device).

    ``32`` -> no autocast; ``bf16-mixed`` -> bf16 autocast (CPU or GPU); ``16-mixed`` -> fp16 autocast,
    CUDA only (`ConfigError` elsewhere). ``auto`` must be resolved first (`choose_precision`).
    """
    import torch  # noqa: PLC0415

    precision = check_precision(precision)
    kind = _device_type(device)
    if precision == "auto":
        raise ConfigError("precision 'auto' must be resolved (inpaintseg.precision.choose_precision) "
                          "before the model runs.")
    if precision == "32":
        return contextlib.nullcontext()
    check_fp16_device(precision, kind)
    dtype = torch.float16 if precision == "16-mixed" else torch.bfloat16
    return torch.autocast(device_type=kind, dtype=dtype)


def sigmoid_fp32(logits):
    """Foreground probabilities as float32, whatever dtype autocast left the logits in."""
    import torch  # noqa: PLC0415

    return torch.sigmoid(logits.float())


def forward_probs(model, x, precision: str = "32"):
    """fp32 probabilities of `model(x)` run under `autocast_context(x.device, precision)`, no grad.

    Shape: (B, C, H, W) float32 -> (B, 1, H, W) float32 (the model's logits through a sigmoid).
    """
    import torch  # noqa: PLC0415

    with torch.inference_mode(), autocast_context(x.device, precision):
        logits = model(x)
    return sigmoid_fp32(logits)


def decide(rates: Mapping[str, float], margin: float = BF16_MARGIN) -> tuple[str, str]:
    """(precision, reason) from measured rates: bf16 only when >= (1 + margin) x the fp32 rate."""
    fp32, bf16 = float(rates["32"]), float(rates["bf16-mixed"])
    if bf16 >= fp32 * (1.0 + margin):
        return "bf16-mixed", f"bf16 {bf16 / fp32:.2f}x fp32"
    return "32", f"bf16 {bf16 / fp32:.2f}x fp32, needs >= {1 + margin:.2f}x"


# --------------------------------------------------------------------------------------------
# The choice
# --------------------------------------------------------------------------------------------
@dataclass
class PrecisionChoice:
    precision: str  # resolved: "32" | "bf16-mixed" | "16-mixed"
    rates: dict = field(default_factory=dict)  # img/s per probed precision; {} when not probed
    reason: str = ""
    cached: bool = False
    requested: str = "auto"

    def describe(self) -> str:
        """One line for printing, e.g. 'precision bf16-mixed (auto: 74.1 img/s vs 29.0 img/s fp32, cached)'."""
        if self.requested != "auto":
            return f"precision {self.precision} (as requested)"
        if not self.rates:
            return f"precision {self.precision} (auto: {self.reason})"
        other = "32" if self.precision == "bf16-mixed" else "bf16-mixed"
        line = (f"precision {self.precision} (auto: {self.rates[self.precision]:.1f} img/s vs "
                f"{self.rates[other]:.1f} img/s {LABELS[other]}")
        return line + (", cached)" if self.cached else ")")

    def as_dict(self) -> dict:
        """For the run folder and config.json: {"precision", "requested", "rates", "reason", "cached"}."""
        return {"precision": self.precision, "requested": self.requested,
                "rates": {k: round(float(v), 3) for k, v in self.rates.items()},
                "reason": self.reason, "cached": self.cached}

    @classmethod
    def from_dict(cls, record: Mapping, source: str = "precision record") -> PrecisionChoice:
        """The inverse of `as_dict` (a run folder's precision.json, config.json's training.precision_choice);
        `ConfigError` naming `source` when the precision is missing or unknown. Rates other than the two
        probed ones, and non-positive rates, are dropped."""
        if not isinstance(record, Mapping):
            raise ConfigError(f"{source}: expected an object with a 'precision' key, got {type(record).__name__}.")
        precision = check_precision(record.get("precision"), f"{source}: precision", allow_auto=False)
        requested = record.get("requested", precision)
        requested = requested if requested in PRECISIONS else precision
        rates = {}
        raw = record.get("rates")
        if isinstance(raw, Mapping) and all(p in raw for p in PROBED):
            try:
                rates = {p: float(raw[p]) for p in PROBED}
            except (TypeError, ValueError):
                rates = {}
            if not all(r > 0 for r in rates.values()):
                rates = {}
        return cls(precision, rates, str(record.get("reason", "")), bool(record.get("cached", False)), requested)


def choose_precision(model, batch_size: int, size: int, device="cpu", mode: str = "train", *,
                     requested: str = "auto", cache: bool = True, probe: Probe | None = None,
                     channels_last: bool | None = None, default: str = "32",
                     cpu: CpuInfo | None = None, margin: float = BF16_MARGIN) -> PrecisionChoice:
    """Resolve `requested` for running `model` at `batch_size` x `size` x `size` on `device`.

    A forced precision is checked and returned as is. `auto` on a non-CPU device returns `default`
    (today's behaviour, no probe). `auto` on a CPU without AVX-512 or bf16 units (`CpuInfo.bf16_units`
    'none') returns fp32 without probing: bf16 has no fast kernels there. Otherwise `probe` (default `probe_rates`) measures both precisions
    for `mode` ("train": a training step; "predict": a forward pass), `decide` picks, and the result
    is cached per machine and model shape in `cache_dir()` (unless `cache` is False).
    `channels_last` defaults to the callers' defaults: True for predict, False for train.
    """
    requested = check_precision(requested)
    default = check_precision(default, source="default precision", allow_auto=False)
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    kind = _device_type(device)
    if requested != "auto":
        check_fp16_device(requested, kind, "this runs")
        return PrecisionChoice(requested, reason="requested", requested=requested)
    if kind != "cpu":
        return PrecisionChoice(default, reason=f"{kind} keeps the default, not probed")
    cpu = cpu or cpu_info()
    if cpu.bf16_units == "none":
        return PrecisionChoice("32", reason=f"{cpu.model_name} has no AVX-512 or bf16 units, not probed")
    channels_last = (mode == "predict") if channels_last is None else bool(channels_last)
    key, fields = probe_key(model, batch_size, size, device, mode, channels_last, cpu)
    path = cache_dir() / CACHE_FILE
    if cache:
        entry = read_cache(path).get(key)
        if valid_entry(entry):  # the cached rates, decided with today's margin
            rates = {p: float(entry["rates"][p]) for p in PROBED}
            precision, reason = decide(rates, margin)
            return PrecisionChoice(precision, rates, reason, cached=True)
    measured = (probe or probe_rates)(model, batch_size, size, device, mode, channels_last)
    rates = {p: float(measured[p]) for p in PROBED}
    if not all(r > 0 for r in rates.values()):
        raise ValueError(f"the precision probe returned non-positive rates: {rates}")
    precision, reason = decide(rates, margin)
    busy = busy_machine()
    if cache and busy is None:
        write_cache(path, key, {"precision": precision, "rates": rates, "reason": reason,
                                 "created": time.time(), "key": fields})
    elif cache:
        reason += f"; not cached ({busy}: the next run probes again)"
    return PrecisionChoice(precision, rates, reason, cached=False)
