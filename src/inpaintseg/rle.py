"""Run-length encoding of binary masks and the submission CSV (the Aaltoes 2025 convention).

Convention (default, ``order="C"``): pixels are numbered row-major -- left to right, then top to
bottom -- starting at 1. A mask is the space-separated list of ``start length`` pairs of its runs
of 1-pixels, starts strictly increasing; the empty mask is the empty string. Kaggle's older
column-major convention (top to bottom, then left to right) is ``order="F"``.

Example, a 3x4 mask (worked out in tests/test_rle.py)::

    0 1 1 0        order="C": pixels 2,3 | 5 | 10,11,12   -> "2 2 5 1 10 3"
    1 0 0 0        order="F": column by column -> "2 1 4 1 6 2 9 1 12 1"
    0 1 1 1

The submission file is a CSV with the header ``ImageId,EncodedPixels`` and one row per image
(ImageId = the image's file stem), rows sorted by ImageId.
"""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from inpaintseg.errors import DataError, name_list
from inpaintseg.fileio import atomic_path

HEADER = ("ImageId", "EncodedPixels")
ORDERS = ("C", "F")
# Integers of at most 18 digits fit in int64 with room for start + length.
_ENCODE_CHUNK = 1 << 16  # numbers formatted per join in rle_encode (bounds its temporary Python objects)
_MAX_DIGITS = 18


# The CLI's names for the two orders (`--rle-order row|column`) -> numpy's order codes.
RLE_ORDER_NAMES = {"row": "C", "column": "F"}


def rle_order_code(name: str) -> str:
    """"row" -> "C", "column" -> "F" (the codes themselves pass through); ValueError otherwise."""
    if name in ORDERS:
        return name
    if name not in RLE_ORDER_NAMES:
        raise ValueError(f"RLE order must be one of {', '.join(RLE_ORDER_NAMES)}, got {name!r}")
    return RLE_ORDER_NAMES[name]


def _check_order(order: str) -> None:
    if order not in ORDERS:
        raise ValueError(f"order must be 'C' (row-major, the default) or 'F' (column-major), got {order!r}")


def _as_binary_mask(mask: np.ndarray) -> np.ndarray:
    """Return `mask` as a bool array after checking it is 2-D and holds only 0/1 (or bool).

    Shape: (H, W) -> (H, W) bool.
    """
    array = np.asarray(mask)
    if array.ndim != 2:
        raise ValueError(
            f"expected a 2-D (H, W) mask, got shape {array.shape}; squeeze channel axes first"
        )
    if array.dtype == np.bool_:
        return array
    if not (np.issubdtype(array.dtype, np.integer) or np.issubdtype(array.dtype, np.floating)):
        raise ValueError(f"expected a numeric or bool mask, got dtype {array.dtype}")
    binary = array != 0
    if array.size and not np.array_equal(array, binary):
        values = np.unique(array)
        raise ValueError(
            f"expected a binary mask holding only 0 and 1, got values {values[:10].tolist()}"
            f"{' ...' if values.size > 10 else ''}; threshold it first (e.g. probs >= 0.5)"
        )
    return binary


def rle_runs(mask: np.ndarray, order: str = "C") -> np.ndarray:
    """The runs of 1-pixels of a binary mask as an int64 array of (start, length) pairs, 1-based.

    Shape: (H, W) -> (R, 2) for R runs.
    """
    _check_order(order)
    flat = _as_binary_mask(mask).ravel(order=order)
    padded = np.zeros(flat.size + 2, dtype=np.int8)
    padded[1:-1] = flat
    # Positions where the value changes: even entries start a run, odd entries end one.
    changes = np.flatnonzero(padded[1:] != padded[:-1]).astype(np.int64)
    starts = changes[0::2]
    lengths = changes[1::2] - starts
    return np.stack([starts + 1, lengths], axis=1)


def rle_encode(mask: np.ndarray, order: str = "C") -> str:
    """Encode a binary (H, W) mask as ``"start length start length ..."`` (1-based); empty -> "".

    Shape: (H, W) with values in {0, 1} (or bool) -> str.
    Raises ValueError for a mask that is not 2-D or not binary.
    """
    numbers = rle_runs(mask, order).ravel()
    # Joined in chunks: a noisy 12-megapixel mask has millions of runs, and one list of every number as a
    # Python int and str costs ~18x the final string (measured 540 MiB for a 30 MB string; chunked: ~60 MiB).
    return " ".join(" ".join(map(str, numbers[i:i + _ENCODE_CHUNK].tolist()))
                    for i in range(0, numbers.size, _ENCODE_CHUNK))


def _token_problem(rle: str) -> str:
    """Describe the first bad token of a string that failed the syntax check."""
    for position, token in enumerate(rle.split(), start=1):
        if not token.isascii() or not token.isdigit():
            return f"token {position} {token!r} is not a non-negative integer"
    return "it is not whitespace-separated integers"


def parse_runs(rle: str, where: str = "RLE string") -> np.ndarray:
    """Parse and validate the syntax of an RLE string; return (start, length) pairs, 1-based.

    Checks: whitespace-separated decimal integers, an even count, starts >= 1, lengths >= 1,
    starts strictly increasing and runs not overlapping (touching runs are allowed). Bounds need
    the image shape and are checked by `rle_decode`. `where` prefixes the error message (e.g.
    "sub.csv: line 3 (ImageId 'img_01')").

    Shape: str -> (R, 2) int64.
    Raises DataError.
    """
    if not isinstance(rle, str):
        raise DataError(f"{where}: expected an RLE string, got {type(rle).__name__}")
    text = rle.strip()
    if not text:
        return np.zeros((0, 2), dtype=np.int64)
    runs = _token_pairs(text, where)
    _check_runs(runs, where)
    return runs


def _token_pairs(text: str, where: str) -> np.ndarray:
    """The syntax: whitespace-separated decimal integers that fit a pixel index, an even count; (R, 2) int64."""
    tokens = text.split()
    digits = "".join(tokens)
    if not (digits.isascii() and digits.isdigit()):
        raise DataError(
            f"{where}: malformed RLE: {_token_problem(text)}. Expected space-separated "
            f"'start length' pairs of positive integers, e.g. '3 2 10 5'."
        )
    if max(map(len, tokens)) > _MAX_DIGITS:
        too_long = [t for t in tokens if len(t.lstrip("0")) > _MAX_DIGITS]
        if too_long:
            raise DataError(
                f"{where}: malformed RLE: number {too_long[0][:30]} is too large for a pixel index."
            )
    if len(tokens) % 2:
        raise DataError(
            f"{where}: malformed RLE: odd number of values ({len(tokens)}); expected "
            f"'start length' pairs. The last start has no length."
        )
    return np.array(tokens, dtype=np.int64).reshape(-1, 2)


def _check_runs(runs: np.ndarray, where: str) -> None:
    """The runs themselves: 1-based starts, lengths >= 1, sorted by start and not overlapping."""
    starts, lengths = runs[:, 0], runs[:, 1]
    if starts.min() < 1:
        pair = int(np.argmin(starts)) + 1
        raise DataError(
            f"{where}: bad RLE: run {pair} starts at 0; starts are 1-based (the first pixel is 1)."
        )
    if lengths.min() < 1:
        pair = int(np.argmin(lengths)) + 1
        raise DataError(
            f"{where}: bad RLE: run {pair} (start {starts[pair - 1]}) has length 0; lengths must be >= 1."
        )
    ends = starts + lengths  # one past the last pixel of each run
    bad = np.flatnonzero(starts[1:] < ends[:-1])
    if bad.size:
        i = int(bad[0])
        kind = "is not after" if starts[i + 1] <= starts[i] else "overlaps"
        raise DataError(
            f"{where}: bad RLE: run {i + 2} (start {starts[i + 1]}) {kind} run {i + 1} "
            f"(pixels {starts[i]}..{ends[i] - 1}); runs must be sorted by start and must not overlap."
        )


def _decode_runs(runs: np.ndarray, shape: tuple[int, int], order: str, where: str) -> np.ndarray:
    """Paint validated runs into a uint8 mask, checking they fit in `shape`.

    Shape: (R, 2) -> (H, W) uint8 in {0, 1}.
    """
    height, width = shape
    n_pixels = height * width
    if runs.shape[0]:
        last_end = int(runs[-1, 0] + runs[-1, 1] - 1)  # runs are sorted, so the last ends last
        if last_end > n_pixels:
            raise DataError(
                f"{where}: RLE out of range: the last run ends at pixel {last_end} but a "
                f"{height}x{width} image has {n_pixels} pixels. Check the image size and the "
                f"pixel order (row-major 'C' vs column-major 'F')."
            )
    # Alternate 0-runs and 1-runs between boundaries 0, s1, e1, s2, e2, ..., n (0-based, end
    # exclusive) and expand them with np.repeat; touching runs just give a 0-run of length 0.
    bounds = np.empty(2 * runs.shape[0] + 2, dtype=np.int64)
    bounds[0], bounds[-1] = 0, n_pixels
    bounds[1:-1:2] = runs[:, 0] - 1
    bounds[2:-1:2] = runs[:, 0] - 1 + runs[:, 1]
    values = np.zeros(bounds.size - 1, dtype=np.uint8)
    values[1::2] = 1
    flat = np.repeat(values, np.diff(bounds))
    return flat.reshape((height, width), order=order)


def _check_shape(shape) -> tuple[int, int]:
    try:
        height, width = (int(v) for v in shape)
    except (TypeError, ValueError):
        raise ValueError(f"expected shape (H, W), got {shape!r}") from None
    if height < 0 or width < 0:
        raise ValueError(f"expected a non-negative shape (H, W), got {shape!r}")
    return height, width


def rle_decode(rle: str, shape: tuple[int, int], order: str = "C") -> np.ndarray:
    """Decode an RLE string into a uint8 {0, 1} mask of `shape` = (H, W).

    Shape: str -> (H, W) uint8.
    Raises DataError for malformed, overlapping or out-of-range runs.
    """
    _check_order(order)
    return _decode_runs(parse_runs(rle), _check_shape(shape), order, "RLE string")


# --------------------------------------------------------------------------- submission files


def _image_id(key) -> str:
    """ImageId for a mapping key: a path-like key becomes its file stem, a str is used as given."""
    if isinstance(key, os.PathLike):
        return Path(key).stem
    if not isinstance(key, str):
        raise ValueError(f"ImageId must be a str (the file stem) or a path, got {type(key).__name__}")
    if not key:
        raise ValueError("ImageId is empty; use the file stem")
    # Any other stem is legal: leading/trailing spaces, commas, quotes and line breaks are written as
    # csv quotes them and read back exactly (ImageIds are never stripped), so every file name round-trips.
    return key


def write_submission(path: str | os.PathLike, masks: Mapping, order: str = "C", validate: bool = True) -> Path:
    """Write ``ImageId,EncodedPixels`` rows sorted by ImageId, atomically; return the path.

    `masks` maps ImageId (the file stem; a Path key is reduced to its stem) to a binary (H, W)
    mask, or to an already encoded RLE string (validated, written as-is; ``validate=False`` only checks
    that it holds digits and spaces: for strings `rle_encode` wrote, whose full check costs ~6 ms for a
    noisy 256x256 mask).
    Raises ValueError for a mask that is not 2-D/binary, a bad id or two keys with the same id.
    """
    _check_order(order)
    rows: dict[str, str] = {}
    for key, value in masks.items():
        image_id = _image_id(key)
        if image_id in rows:
            raise ValueError(f"two entries map to ImageId {image_id!r}; ImageIds must be unique")
        if isinstance(value, str):
            if validate:
                parse_runs(value, where=f"ImageId {image_id!r}")
            elif not (value.replace(" ", "").isascii() and value.replace(" ", "").isdigit()) and value:
                raise ValueError(f"ImageId {image_id!r}: RLE holds characters other than digits and spaces")
            rows[image_id] = " ".join(value.split()) if validate else value
        else:
            try:
                rows[image_id] = rle_encode(value, order)
            except ValueError as exc:
                raise ValueError(f"ImageId {image_id!r}: {exc}") from None
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(HEADER)
    for image_id in sorted(rows):
        writer.writerow((image_id, rows[image_id]))
    path = Path(path)
    with atomic_path(path) as tmp:
        tmp.write_text(buffer.getvalue(), encoding="utf-8")
    return path


def _read_rows(path: Path) -> list[tuple[int, str, str, np.ndarray]]:
    """Read and validate a submission: (line number, ImageId, raw RLE, runs) per row."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise DataError(f"{path}: submission file not found. Check the path.") from None
    except IsADirectoryError:
        raise DataError(f"{path}: is a folder, expected a submission CSV file.") from None
    except UnicodeDecodeError:
        raise DataError(
            f"{path}: not a UTF-8 text file; expected a CSV with header ImageId,EncodedPixels."
        ) from None
    except OSError as exc:
        raise DataError(f"{path}: cannot be read ({exc.strerror}). Check its permissions.") from None
    # A noisy mask of a large image has an RLE field far above csv's default limit (131072 chars).
    csv.field_size_limit(max(csv.field_size_limit(), len(text) + 1))
    reader = csv.reader(io.StringIO(text, newline=""))
    header = next(reader, None)
    if header is None:
        raise DataError(f"{path}: the file is empty; expected the header line 'ImageId,EncodedPixels'.")
    if tuple(h.strip() for h in header) != HEADER:
        raise DataError(
            f"{path}: line 1: expected the header 'ImageId,EncodedPixels', found {','.join(header)!r}. "
            f"Fix the first line of the file."
        )
    rows: list[tuple[int, str, str, np.ndarray]] = []
    first_line: dict[str, int] = {}
    try:
        for record in reader:
            line = reader.line_num
            if not record or (len(record) == 1 and not record[0].strip()):
                continue  # blank line
            if len(record) != 2:
                raise DataError(
                    f"{path}: line {line}: expected 2 fields 'ImageId,EncodedPixels', got {len(record)}: "
                    f"{','.join(record)[:80]!r}."
                )
            image_id, rle = record[0], record[1]  # exact: a file stem may begin or end with a space
            if not image_id:
                raise DataError(f"{path}: line {line}: empty ImageId. Every row needs the image's file stem.")
            if image_id in first_line:
                raise DataError(
                    f"{path}: line {line}: duplicate ImageId {image_id!r} (first on line "
                    f"{first_line[image_id]}). Keep one row per image."
                )
            first_line[image_id] = line
            runs = parse_runs(rle, where=f"{path}: line {line} (ImageId {image_id!r})")
            rows.append((line, image_id, " ".join(rle.split()), runs))
    except csv.Error as exc:
        raise DataError(f"{path}: line {reader.line_num}: not valid CSV ({exc}).") from None
    return rows


def read_submission(path: str | os.PathLike) -> dict[str, str]:
    """Read a submission CSV into {ImageId: RLE string}, validating header and RLE syntax.

    Rejects a bad header, rows without exactly two fields, empty or duplicate ImageIds and
    malformed or overlapping runs (DataError naming the file, line and ImageId). Bounds need the
    image sizes: use `decode_submission` or `rle_decode`.
    """
    return {image_id: rle for _, image_id, rle, _ in _read_rows(Path(path))}


def decode_submission(
    path: str | os.PathLike, shapes: Mapping[str, tuple[int, int]], order: str = "C"
) -> dict[str, np.ndarray]:
    """Read a submission and decode every row with its image's (H, W) from `shapes`.

    The submission must hold exactly the ImageIds in `shapes`. Returns {ImageId: uint8 mask}.
    Raises DataError for any problem, naming the file, line and ImageId.
    """
    _check_order(order)
    path = Path(path)
    rows = _read_rows(path)
    found = {image_id for _, image_id, _, _ in rows}
    unknown = sorted(found - set(shapes))
    missing = sorted(set(shapes) - found)
    if unknown:
        raise DataError(
            f"{path}: {len(unknown)} ImageId(s) match no image: {name_list(unknown)}. "
            f"ImageId must be the image file stem (without extension)."
        )
    if missing:
        raise DataError(
            f"{path}: no row for {len(missing)} image(s): {name_list(missing)}. "
            f"Write one row per image (an empty EncodedPixels for an empty mask)."
        )
    masks = {}
    for line, image_id, _, runs in rows:
        where = f"{path}: line {line} (ImageId {image_id!r})"
        masks[image_id] = _decode_runs(runs, _check_shape(shapes[image_id]), order, where)
    return masks
