"""Progress reporting for every long command (training, prediction, calibration, evaluation, check-data):
one switch, one place.

Two ways to show progress:
- ``bar``: tqdm bars on stderr, for a person at a terminal;
- ``lines``: one plain line per ~10% of a run (and one per training epoch, `training.callbacks.EpochLogLine`),
  with no carriage return and no escape code, so a log file (`make demo > log 2>&1`, CI, nohup) stays readable.

The mode is ``auto`` unless the CLI sets it (`set_progress_mode`) from ``--quiet`` (lines) or ``--progress``
(bars): bars when stderr is a terminal and ``TQDM_DISABLE`` is not set, else lines. The lines saying what a
command uses (model, device, post-processing) print in every mode.
"""

from __future__ import annotations

import os
import sys
import time

PROGRESS_MODES = ("auto", "bar", "lines")
LINE_STEPS = 10  # lines mode: one line per 1/LINE_STEPS of the run
_mode = "auto"


def set_progress_mode(mode: str) -> None:
    """Set how progress is shown in this process: "auto", "bar" or "lines"."""
    global _mode
    if mode not in PROGRESS_MODES:
        raise ValueError(f"progress mode must be one of {', '.join(PROGRESS_MODES)}, got {mode!r}")
    _mode = mode


def get_progress_mode() -> str:
    """This process's progress mode (handed to spawned processes, which start with the default)."""
    return _mode


def _tqdm_disabled_by_env() -> bool:
    return os.environ.get("TQDM_DISABLE", "").strip().lower() not in ("", "0", "false", "no")


def use_bars() -> bool:
    """True when progress shows as bars (see the module docstring), False for plain lines."""
    if _mode != "auto":
        return _mode == "bar"
    stream = sys.stderr
    return bool(getattr(stream, "isatty", lambda: False)()) and not _tqdm_disabled_by_env()


def format_duration(seconds: float) -> str:
    """H:MM:SS."""
    seconds = max(0, int(round(seconds)))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


class LineProgress:
    """The ``lines`` mode's counterpart of a tqdm bar (``update``, ``close``, context manager): prints
    ``desc: done/total unit (pct%), rate unit/s, elapsed H:MM:SS, ETA H:MM:SS`` each time another 10% is done."""

    def __init__(self, total: int, desc: str, unit: str = "img", stream=None, steps: int = LINE_STEPS) -> None:
        self.total, self.desc, self.unit, self.steps = int(total), desc, unit, max(1, int(steps))
        self.stream = stream
        self.done = 0
        self._printed_step = 0
        self._start = time.perf_counter()

    def update(self, n: int = 1) -> None:
        self.done += int(n)
        if self.total <= 0:
            return
        step = min(self.steps, self.done * self.steps // self.total)
        if step > self._printed_step:
            self._printed_step = step
            self._print()

    def _print(self) -> None:
        elapsed = time.perf_counter() - self._start
        rate = self.done / elapsed if elapsed > 0 else 0.0
        left = (self.total - self.done) / rate if rate > 0 else 0.0
        line = (f"{self.desc}: {self.done}/{self.total} {self.unit} ({100 * self.done // self.total}%), "
                f"{rate:.2f} {self.unit}/s, elapsed {format_duration(elapsed)}, ETA {format_duration(left)}")
        stream = self.stream or sys.stderr
        print(line, file=stream, flush=True)

    def close(self) -> None:
        pass

    def __enter__(self) -> LineProgress:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def progress_bar(total: int, desc: str, enabled: bool = True, unit: str = "img"):
    """Progress of a run of ``total`` items: a tqdm bar on stderr or a `LineProgress`, by the mode; a silent
    object when ``enabled`` is False. Every form has ``update(n)``, ``close()`` and works in ``with``."""
    from tqdm import tqdm

    if not enabled:
        return tqdm(total=total, disable=True)
    if use_bars():
        return tqdm(total=total, desc=desc, unit=unit, dynamic_ncols=True, file=sys.stderr)
    return LineProgress(total, desc, unit)
