"""The one timing harness: interleaved rounds of timed steps, after warm-up, within an optional budget.

Used by the precision probe (`precision_probe.probe_rates`), the training planner
(`training.planning.measure_train_rate` / `measure_eval_rate`) and the speed benchmarks
(`benchmarks/train_speed.py`, `benchmarks/stem_speed.py`).

- Interleaving: each round runs every candidate's step once, in a fixed order (fp32, bf16, fp32, bf16, ...),
  so load from other processes on a shared machine hits all candidates alike.
- Warm-up: `warmup` untimed rounds first (oneDNN picks and builds kernels, DataLoader workers start, memory
  is allocated in the first steps).
- Timing: each step alone, between two `sync()` calls when given (`torch.cuda.synchronize`), so queued GPU
  work is inside the step it belongs to. `Timings` gives each candidate's fastest step (the least disturbed,
  as `timeit` reports), its median and its total.
- Budget: with `max_seconds`, the first round's cost decides how many more rounds fit: timed rounds first,
  then extra warm-up rounds. At least one warm-up round (when `warmup` > 0) and one timed round always run,
  so a slow or loaded machine measures fewer steps instead of eating the budget it is measuring for.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Timings:
    """Seconds of each timed step per candidate, and what each timed step returned (e.g. its images)."""

    seconds: dict[str, list[float]] = field(default_factory=dict)
    values: dict[str, list[Any]] = field(default_factory=dict)

    def fastest(self, name: str) -> float:
        return min(self.seconds[name])

    def median(self, name: str) -> float:
        return statistics.median(self.seconds[name])

    def total(self, name: str) -> float:
        return sum(self.seconds[name])


def _round(steps: Mapping[str, Callable[[], Any]], sync: Callable[[], None] | None,
           timings: Timings | None) -> float:
    """Run every step once; the round's seconds. With `timings`, record each step's seconds and value."""
    spent = 0.0
    for name, step in steps.items():
        if sync is not None:
            sync()
        start = time.perf_counter()
        value = step()
        if sync is not None:
            sync()
        seconds = time.perf_counter() - start
        spent += seconds
        if timings is not None:
            timings.seconds.setdefault(name, []).append(seconds)
            timings.values.setdefault(name, []).append(value)
    return spent


def time_rounds(steps: Mapping[str, Callable[[], Any]], warmup: int = 1, rounds: int = 3, *,
                max_seconds: float | None = None, sync: Callable[[], None] | None = None) -> Timings:
    """`warmup` untimed rounds, then `rounds` timed rounds of `steps` (name -> callable), interleaved; see the
    module docstring for the budget rule of `max_seconds`."""
    if rounds < 1 or warmup < 0:
        raise ValueError(f"need rounds >= 1 and warmup >= 0, got rounds={rounds}, warmup={warmup}")
    timings = Timings()
    started = time.perf_counter()
    first = _round(steps, sync, None if warmup else timings)
    warmup, rounds = (warmup - 1, rounds) if warmup else (0, rounds - 1)  # what is left after the first round
    if max_seconds is not None:
        left = max_seconds - (time.perf_counter() - started)
        affordable = int(left / max(first, 1e-9)) if left > 0 else 0
        if timings.seconds:  # the first round was timed: it already is the one timed round kept
            rounds, warmup = min(rounds, affordable), 0
        else:  # at least one timed round; extra warm-up rounds only with budget left after the timed ones
            rounds = min(rounds, max(1, affordable))
            warmup = max(0, min(warmup, affordable - rounds))
    for _ in range(warmup):
        _round(steps, sync, None)
    for _ in range(rounds):
        _round(steps, sync, timings)
    return timings
