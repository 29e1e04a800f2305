"""The run folder: its file names, metrics.csv, the split record, where new runs go and which runs exist.

    RUN_DIR/config.yaml          the effective TrainConfig (inpaintseg.config)
    RUN_DIR/split.json           {"train": [...], "val": [...], "seed": .., "val_fraction": ..}
    RUN_DIR/precision.json       how the training precision was chosen (PrecisionChoice.as_dict())
    RUN_DIR/metrics.csv          one row per finished epoch (METRIC_COLUMNS), flushed as it is written
    RUN_DIR/checkpoints/         best.ckpt (lowest val_loss), last.ckpt (end of the latest epoch)
    RUN_DIR/model/               weights.safetensors + config.json (inpaintseg.model.io)
    RUN_DIR/report/              report.html and its figures (inpaintseg report)
    RUN_DIR/tensorboard/         only when tensorboard is installed

This module is the one place that knows these names; it imports neither torch nor lightning, so the
report, the demo and `main.py` can read a run cheaply.
"""

from __future__ import annotations

import csv
import json
import os
import zipfile
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from inpaintseg.errors import ConfigError, ModelLoadError
from inpaintseg.fileio import atomic_write_text

CONFIG_FILE = "config.yaml"
SPLIT_FILE = "split.json"
PRECISION_FILE = "precision.json"
METRICS_FILE = "metrics.csv"
CHECKPOINT_DIR = "checkpoints"
BEST_NAME = "best"
LAST_NAME = "last"
MODEL_DIR = "model"
REPORT_DIR = "report"
DEFAULT_RUNS_ROOT = Path("runs")
METRIC_COLUMNS = ("epoch", "step", "train_loss", "val_loss", "val_dice", "val_iou", "val_f1", "lr",
                  "epoch_seconds", "train_images_per_second")


def checkpoint_path(run_dir: str | os.PathLike, name: str) -> Path:
    """RUN_DIR/checkpoints/<name>.ckpt (`name` is BEST_NAME or LAST_NAME)."""
    return Path(run_dir) / CHECKPOINT_DIR / f"{name}.ckpt"


# ----------------------------------------------------------------------------------------- metrics.csv
def read_metric_rows(path: str | os.PathLike) -> list[dict[str, str]]:
    """The rows of a metrics.csv ([] when it does not exist)."""
    path = Path(path)
    if not path.exists():
        return []
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def keep_metric_rows(path: str | os.PathLike, epochs_done: int) -> None:
    """Drop rows of epochs after `epochs_done` (they belong to an epoch that a resume re-runs)."""
    rows = read_metric_rows(path)
    kept = [r for r in rows if r.get("epoch", "").isdigit() and int(r["epoch"]) <= epochs_done]
    if len(kept) != len(rows):
        lines = [",".join(METRIC_COLUMNS)] + [",".join(r.get(c, "") or "" for c in METRIC_COLUMNS) for r in kept]
        atomic_write_text(path, "\n".join(lines) + "\n")


def append_metric_row(path: str | os.PathLike, row: dict[str, Any]) -> None:
    """Append one epoch's row (header first when the file is new), flushed and fsynced."""
    path = Path(path)
    new = not path.exists() or path.stat().st_size == 0
    with open(path, "a", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=METRIC_COLUMNS, lineterminator="\n")
        if new:
            writer.writeheader()
        writer.writerow(row)
        fh.flush()
        os.fsync(fh.fileno())


def best_epoch_metrics(metrics_path: str | os.PathLike, epoch: int | None) -> dict[str, float]:
    """The losses and validation metrics of `epoch` (counted from 1) as floats; {} when absent."""
    rows = read_metric_rows(metrics_path)
    row = next((r for r in rows if epoch is not None and r.get("epoch") == str(epoch)), None)
    if row is None:
        return {}
    out: dict[str, float] = {"epoch": epoch}
    for key in ("train_loss", "val_loss", "val_dice", "val_iou", "val_f1"):
        if row.get(key):
            out[key] = float(row[key])
    return out


# ----------------------------------------------------------------------------------------- split.json
def save_split(path: str | os.PathLike, split: dict, seed: int, val_fraction: float) -> None:
    record = {"train": split["train"], "val": split["val"], "seed": seed, "val_fraction": val_fraction}
    atomic_write_text(path, json.dumps(record, indent=1) + "\n")


def load_split(path: str | os.PathLike) -> dict | None:
    """{"train": [...], "val": [...]} from split.json; None when the file does not exist."""
    path = Path(path)
    if not path.exists():
        return None
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError(f"{path}: not valid JSON ({exc}). Delete it to make a new split.") from None
    if not isinstance(record, dict):
        raise ConfigError(f"{path}: expected an object with train and val lists. Delete it to make a new split.")
    return {"train": record.get("train"), "val": record.get("val")}


# ----------------------------------------------------------------------------------------- precision.json
def save_precision_record(path: str | os.PathLike, record: dict) -> None:
    """The training precision choice ({"precision", "requested", "rates", "reason", "cached"})."""
    atomic_write_text(path, json.dumps(record, indent=1) + "\n")


def load_precision_record(path: str | os.PathLike) -> dict | None:
    """The saved precision choice; None when the file is missing or unreadable (runs before issue 16)."""
    try:
        record = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    return record if isinstance(record, dict) and isinstance(record.get("precision"), str) else None


# ----------------------------------------------------------------------------------------- folders
def default_run_dir(now: datetime | None = None, root: Path = DEFAULT_RUNS_ROOT) -> Path:
    """runs/<YYYYmmdd-HHMMSS>, with -2, -3 ... when that folder already exists."""
    base = Path(root) / (now or datetime.now()).strftime("%Y%m%d-%H%M%S")
    candidate, n = base, 1
    while candidate.exists():
        n += 1
        candidate = base.with_name(f"{base.name}-{n}")
    return candidate


# What a run leaves before its first epoch finished (config, split, an empty or partial metrics.csv, an empty
# checkpoints folder, tensorboard's folder): nothing worth keeping, so --out may reuse such a folder.
UNSTARTED_RUN_NAMES = frozenset({CONFIG_FILE, SPLIT_FILE, METRICS_FILE, PRECISION_FILE, CHECKPOINT_DIR, "tensorboard"})


def has_checkpoint(run_dir: str | os.PathLike) -> bool:
    return any((Path(run_dir) / CHECKPOINT_DIR).glob("*.ckpt"))


def is_unstarted_run(run_dir: str | os.PathLike) -> bool:
    """A run folder whose run stopped before its first checkpoint: config.yaml, no checkpoint, no model."""
    run_dir = Path(run_dir)
    if not (run_dir / CONFIG_FILE).is_file() or has_checkpoint(run_dir):
        return False
    return {p.name for p in run_dir.iterdir() if not p.name.startswith(".")} <= UNSTARTED_RUN_NAMES


def check_new_run_dir(run_dir: Path) -> None:
    """A new run must not overwrite an earlier one (a run that never finished an epoch may be reused)."""
    if run_dir.exists() and not run_dir.is_dir():
        raise ConfigError(f"out: {run_dir} is a file; expected a run folder path. Choose another out.",
                          params=["out"])
    if run_dir.is_dir() and is_unstarted_run(run_dir):
        return
    if run_dir.is_dir() and any(run_dir.iterdir()):
        if (run_dir / CONFIG_FILE).exists():
            raise ConfigError(f"out: {run_dir} already holds files; continue it with `resume {run_dir}`, or "
                              "choose another out for a new run.", params=["out", "resume"])
        # Not "empty it": the folder may hold anything (a dataset, a home folder); a run wants its own folder.
        raise ConfigError(f"out: {run_dir} already holds files that are not a run's; choose a new (or empty) "
                          "folder as out for a new run, e.g. runs/my-run.", params=["out"])


@dataclass(frozen=True)
class ResumePoint:
    """Where `--resume` continues: a checkpoint, or None to start the run again in place (no epoch had
    finished); `note` says what was chosen when it is not simply last.ckpt."""

    checkpoint: Path | None
    note: str | None = None


def checkpoint_problem(path: Path) -> str | None:
    """Why a checkpoint cannot be loaded (truncated or corrupt), from its zip directory; None when it looks whole."""
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
    except (zipfile.BadZipFile, OSError, EOFError) as exc:
        return str(exc) or type(exc).__name__
    if not any(n.endswith("data.pkl") for n in names):
        return "no data.pkl record in it"
    return None


def resume_point(run_dir: str | os.PathLike) -> ResumePoint:
    """Where `--resume RUN_DIR` continues from; ConfigError when every checkpoint there is damaged.

    last.ckpt when whole; best.ckpt (an earlier or the same epoch) when last.ckpt is truncated or corrupt; None
    when no checkpoint was ever written (the run stopped before its first epoch finished: it starts again in
    place with its saved config and split).
    """
    run_dir = Path(run_dir)
    last, best = checkpoint_path(run_dir, LAST_NAME), checkpoint_path(run_dir, BEST_NAME)
    if not last.is_file() and not best.is_file():
        return ResumePoint(None, f"no epoch had finished in {run_dir} before it stopped (no checkpoint): "
                                 "starting the run again in place with its saved config and split")
    last_problem = checkpoint_problem(last) if last.is_file() else "missing"
    if last_problem is None:
        return ResumePoint(last)
    best_problem = checkpoint_problem(best) if best.is_file() else "missing"
    if best_problem is None:
        why = "is missing" if last_problem == "missing" else f"is truncated or corrupt ({last_problem})"
        return ResumePoint(best, f"{CHECKPOINT_DIR}/{LAST_NAME}.ckpt {why}; resuming falls back to "
                                 f"{BEST_NAME}.ckpt (the best epoch so far): the epochs after it run again")
    raise ConfigError(f"resume {run_dir}: {CHECKPOINT_DIR}/{LAST_NAME}.ckpt is truncated or corrupt "
                      f"({last_problem}) and so is {CHECKPOINT_DIR}/{BEST_NAME}.ckpt ({best_problem}). Nothing can "
                      f"be resumed: delete {run_dir / CHECKPOINT_DIR} and run `resume {run_dir}` again to start "
                      "the run over in place, or start a new run with out.", params=["resume", "out"])


def newest_model_dir(runs_dir: str | os.PathLike = DEFAULT_RUNS_ROOT) -> Path:
    """The `model/` folder of the run whose `model/config.json` was written last."""
    from inpaintseg.model.io import CONFIG_FILE as MODEL_CONFIG_FILE

    configs = [p for p in Path(runs_dir).glob(f"*/{MODEL_DIR}/{MODEL_CONFIG_FILE}") if p.is_file()]
    if not configs:
        raise ModelLoadError(
            f"no trained model found: {runs_dir}/*/{MODEL_DIR}/{MODEL_CONFIG_FILE} does not exist. Train one "
            f"first (`inpaintseg train --data DATA_DIR`, or `make demo`), or pass --model MODEL_DIR.")
    return max(configs, key=lambda p: (p.stat().st_mtime, str(p))).parent


# ----------------------------------------------------------------------------------------- resuming a run
# Settings that may change when a run is resumed: where the data are, hardware and run control.
# Everything else (model, optimiser, schedule, split) is fixed by the checkpoint.
RESUME_OVERRIDABLE = ("data", "num_workers", "accelerator", "devices", "num_nodes", "max_time_minutes",
                      "limit_train_batches", "calibrate", "progress_bar", "logger")


def resume_config(run_dir: str | os.PathLike, overrides: dict[str, Any] | None = None):
    """The saved config (`config.TrainConfig`) of `run_dir` with allowed `overrides` applied and `out` set to
    `run_dir`."""
    from inpaintseg.config import load_config

    run_dir = Path(run_dir)
    path = run_dir / CONFIG_FILE
    if not run_dir.is_dir():
        raise ConfigError(f"resume {run_dir}: folder not found. Pass the RUN_DIR of an earlier "
                          "`inpaintseg train` run.", params=["resume"])
    if not path.is_file():
        raise ConfigError(f"resume {run_dir}: not a run folder (no config.yaml). Pass the RUN_DIR of an "
                          "earlier `inpaintseg train` run.", params=["resume"])
    saved = load_config(path)
    # precision `auto` on resume means "as the run chose" (config.yaml holds the resolved value).
    changed = {k: v for k, v in (overrides or {}).items()
               if k != "out" and getattr(saved, k) != v and not (k == "precision" and v == "auto")}
    fixed = [k for k in changed if k not in RESUME_OVERRIDABLE]
    if fixed:
        details = ", ".join(f"{k} (run: {getattr(saved, k)!r}, given: {changed[k]!r})" for k in fixed)
        raise ConfigError(f"resume {run_dir}: these settings are fixed by the run and cannot change: "
                          f"{details}. Only {', '.join(RESUME_OVERRIDABLE)} may change when resuming; start a "
                          "new run (another out) to change the others.", params=["resume"])
    return saved.replace(**changed, out=str(run_dir))
