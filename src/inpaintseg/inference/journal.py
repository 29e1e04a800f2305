"""Part files: a folder prediction's rows appended as images finish, so a killed run can continue.

While `predict_folder` runs, every finished image appends one row to ``<out>.part`` (``<out>.part<R>`` for
rank R > 0 of a sharded run; ``<out>`` is the submission, or the scores file when there is none):

    # inpaintseg part file v1 {"model": ..., "threshold": ..., "tta": ..., "crf": ..., ...}
    ImageId,EncodedPixels,score,manipulated_fraction,predicted_label,error

A row is appended (and flushed to the operating system) only after that image's mask/probability PNGs were
written, so a row means "this image is done". A failed image gets a row with its error: it is named at the
end and tried again on resume. At the end the rows of every part file are merged into the sorted
submission and scores files (atomic writes) and the part files are removed.

``resume=True`` skips ImageIds that already have a successful row in any part file whose header matches
this run's settings (a mismatch is an error that names the differing settings); a row cut short by a kill
is dropped. Without ``resume`` old part files are discarded. Scores are stored as the scores file writes
them (6 decimals), so the merged files are byte-identical to an uninterrupted run's.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from inpaintseg import fileio, rle
from inpaintseg.errors import DataError, InpaintsegError, OutputError, name_list

PART_SUFFIX = ".part"
MAGIC = "# inpaintseg part file v1 "
COLUMNS = ("ImageId", "EncodedPixels", "score", "manipulated_fraction", "predicted_label", "error")
FSYNC_SECONDS = 2.0  # flush on every row; fsync at most this often (a power cut loses at most that much)


@dataclass(frozen=True)
class Row:
    """One finished image: its RLE and score fields as written, or the error that stopped it."""

    image_id: str
    rle: str = ""
    score: str = ""
    fraction: str = ""
    label: str = ""
    error: str = ""

    def fields(self) -> tuple[str, ...]:
        return (self.image_id, self.rle, self.score, self.fraction, self.label, self.error)


def result_row(image_id: str, encoded: str, score: float, fraction: float, label: int) -> Row:
    return Row(image_id, encoded, f"{score:.6f}", f"{fraction:.6f}", str(int(label)))


def part_target(out, scores_out) -> Path | None:
    """The file the part files sit beside: the submission, else the scores file, else None (no resume)."""
    target = out if out is not None else scores_out
    return Path(target) if target is not None else None


def part_path(target: Path, rank: int = 0) -> Path:
    return target.with_name(target.name + PART_SUFFIX + (str(rank) if rank else ""))


def part_files(target: Path) -> list[Path]:
    """Every part file of `target` (any rank), sorted."""
    pattern = re.compile(re.escape(target.name + PART_SUFFIX) + r"(\d*)$")
    if not target.parent.is_dir():
        return []
    return sorted(p for p in target.parent.iterdir() if pattern.match(p.name) and p.is_file())


def resumed_precision(target: Path | None, precision: str) -> str:
    """The precision a `--resume` runs at: `auto` means "as the interrupted run chose" (the resolved value in
    its part file header), so a re-probe that decides otherwise under other load does not refuse the resume
    (as `train --resume`); an explicit precision, or nothing to resume, is returned unchanged."""
    if precision != "auto" or target is None:
        return precision
    for path in part_files(target):
        try:
            recorded = read_header(path).get("precision")
        except DataError:
            continue  # load_parts names the damaged file
        if isinstance(recorded, str) and recorded != "auto":
            return recorded
    return precision


def _parse_header(path: Path, first_line: bytes) -> dict:
    """The settings of a part file's first line (without its line break); DataError names the file."""
    header = first_line.decode("utf-8", "replace")
    if not header.startswith(MAGIC):
        raise DataError(f"{path}: not an inpaintseg part file (first line {header[:60]!r}). Remove it, or "
                        "run without resume to start over.", params=["resume"])
    try:
        return json.loads(header[len(MAGIC):])
    except json.JSONDecodeError:
        raise DataError(f"{path}: its header is damaged. Run without resume to start over.",
                        params=["resume"]) from None


def read_header(path: Path) -> dict:
    """The header settings of a part file, reading its first line only."""
    try:
        with open(path, "rb") as handle:
            first_line = handle.readline()
    except OSError as exc:
        raise DataError(f"{path}: cannot read this part file ({exc.strerror}).") from None
    return _parse_header(path, first_line.rstrip(b"\n") if first_line.endswith(b"\n") else b"")


def read_part(path: Path) -> tuple[dict, list[Row], int]:
    """(header settings, rows, byte length of the valid prefix); a last row cut short is left out."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise DataError(f"{path}: cannot read this part file ({exc.strerror}).") from None
    first_end = data.find(b"\n")
    settings = _parse_header(path, data[:first_end] if first_end >= 0 else b"")
    valid_end = data.rfind(b"\n") + 1  # anything after the last line break is a row cut short
    text = data[first_end + 1:valid_end].decode("utf-8", "replace")
    csv.field_size_limit(max(csv.field_size_limit(), len(text) + 1))  # a noisy large mask's RLE is long
    records = list(csv.reader(io.StringIO(text, newline="")))
    rows = []
    for index, record in enumerate(records[1:], start=1):  # records[0] is the column header
        if len(record) != len(COLUMNS):
            if index == len(records) - 1:
                valid_end = first_end + 1 + len(_rows_text(records[:index]).encode("utf-8"))
                break
            raise DataError(f"{path}: row {index} is damaged ({len(record)} fields, expected {len(COLUMNS)}). "
                            "Run without resume to start over.", params=["resume"])
        rows.append(Row(*record))
    return settings, rows, valid_end


def _rows_text(records) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerows(records)
    return buffer.getvalue()


def _differences(old: Mapping, new: Mapping) -> list[str]:
    return [f"{k}: {old.get(k)!r} then, {new.get(k)!r} now" for k in sorted(set(old) | set(new))
            if old.get(k) != new.get(k)]


def load_parts(target: Path, settings: dict) -> tuple[dict[str, Row], dict[str, Row]]:
    """Rows of every part file of `target`: (done: id -> successful row, failed: id -> error row of ids
    with no successful row). DataError when a part file was written with other settings."""
    done: dict[str, Row] = {}
    failed: dict[str, Row] = {}
    for path in part_files(target):
        old, rows, _ = read_part(path)
        diff = _differences(old, settings)
        if diff:
            raise DataError(f"{path}: written by a run with other settings ({'; '.join(diff)}); resume would mix "
                            "the two. Run with the same settings, or without resume to start over.", params=["resume"])
        for row in rows:
            if row.error:
                failed[row.image_id] = row
            else:
                done[row.image_id] = row
    return done, {k: v for k, v in failed.items() if k not in done}


# `fileio.atomic_path`'s temporary files (".<name>.<8 random characters>.tmp"): a kill -9 during a write leaves one.
STALE_TEMP = re.compile(r"^\..+\.[a-z0-9_]{8}\.tmp$")


def remove_stale_temps(*folders) -> int:
    """Remove the temporary files a killed run left in its output folders (and their sub-folders)."""
    removed = 0
    for folder in folders:
        if folder is None or not Path(folder).is_dir():
            continue
        for root, _, names in os.walk(folder):
            for name in names:
                if STALE_TEMP.match(name):
                    Path(root, name).unlink(missing_ok=True)
                    removed += 1
    return removed


def discard_parts(target: Path | None) -> list[Path]:
    """Remove every part file of `target`; returns what was removed."""
    if target is None:
        return []
    removed = part_files(target)
    for path in removed:
        path.unlink(missing_ok=True)
    return removed


class PartWriter:
    """Appends rows to one part file (created with its header when missing; a row cut short is cut off)."""

    def __init__(self, path: Path, settings: dict):
        self.path = path
        if path.is_file():
            old, _, valid_end = read_part(path)
            if _differences(old, settings):
                raise InpaintsegError(f"{path}: written with other settings; remove it first.")
            os.truncate(path, valid_end)
        else:
            fileio.atomic_write_text(path, MAGIC + json.dumps(settings, sort_keys=True) + "\n" + _rows_text([COLUMNS]))
        try:
            self._fh = open(path, "a", encoding="utf-8", newline="")
        except OSError as exc:
            raise InpaintsegError(fileio.write_error_message(path, exc)) from None
        self._writer = csv.writer(self._fh, lineterminator="\n")
        self._synced = time.monotonic()
        self._lock = threading.Lock()  # several writer threads append

    def append(self, row: Row) -> None:
        with self._lock:
            try:
                self._writer.writerow(row.fields())
                self._fh.flush()
                if time.monotonic() - self._synced > FSYNC_SECONDS:
                    os.fsync(self._fh.fileno())
                    self._synced = time.monotonic()
            except OSError as exc:  # disk full, quota: one message naming the part file, not a traceback
                raise OutputError(self._failed(exc)) from None

    def close(self) -> None:
        if self._fh.closed:
            return
        try:
            self._fh.flush()
            os.fsync(self._fh.fileno())
            self._fh.close()
        except OSError as exc:
            try:
                self._fh.close()
            except OSError:
                pass  # the buffered rows cannot be written either; the message below says why
            raise OutputError(self._failed(exc)) from None

    def _failed(self, exc: OSError) -> str:
        return (f"{fileio.write_error_message(self.path, exc)} The rows written so far are kept: after freeing space, "
                "run the same command with --resume to continue.")


def write_final(out, scores_out, rows: Mapping[str, Row], scores_text=None) -> None:
    """The sorted submission and scores files from finished rows (atomic writes); ``scores_text()`` gives the
    scores file's text (`FolderPrediction.to_csv`: with the verdict columns), else it is built from the rows."""
    from inpaintseg.inference.pipeline import scores_csv

    if out is not None:
        # The RLEs are rle_encode's own (from this run or a part file it wrote): a syntax check is enough.
        rle.write_submission(out, {image_id: row.rle for image_id, row in rows.items()}, validate=False)
    if scores_out is not None:
        text = scores_text() if scores_text is not None else scores_csv(
            [(k, float(r.score), float(r.fraction), int(r.label)) for k, r in rows.items()])
        fileio.atomic_write_text(scores_out, text)


def describe_resume(target: Path, done: int, failed: int, total: int) -> str:
    if not part_files(target):
        return f"--resume: no part file of {target} (nothing was interrupted), predicting all {total} images"
    extra = f", {failed} failed before and tried again" if failed else ""
    return f"resuming from {name_list([str(p) for p in part_files(target)], 4)}: {done} of {total} images done{extra}"
