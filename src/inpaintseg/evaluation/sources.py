"""Where `evaluate` reads from: truth and prediction folders, a submission CSV (either RLE order), 8-bit
probability maps and a demo-data meta.json, with the id checks that name every missing or extra file."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from inpaintseg.errors import DataError, InpaintsegError, name_list


def load_meta(path: Path) -> dict[str, dict[str, str]]:
    """{stem: {"method": ..., "family": ..., "mask_kind": ..., "degradation": ...}} from a demo-data meta.json ({"images": {stem: {"method": ...,
    "family": ...}}}) or a plain {stem: {"method": ...}} / {stem: method} mapping ("family" is optional)."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DataError(f"{path}: meta file not found. Pass the demo data's test/meta.json.") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataError(f"{path}: cannot be read as JSON ({exc}). Pass the demo data's test/meta.json.") from None
    images = data.get("images", data) if isinstance(data, dict) else None
    if not isinstance(images, dict):
        raise DataError(f"{path}: expected a JSON object mapping image ids to records with a \"method\" key "
                        "(as in demo-data's meta.json).")
    records = {}
    for stem, info in images.items():
        if isinstance(info, dict) and "method" in info:
            records[str(stem)] = {"method": str(info["method"])}
            if "family" in info:
                records[str(stem)]["family"] = str(info["family"])
            if "mask_kind" in info:
                records[str(stem)]["mask_kind"] = str(info["mask_kind"] or "none")
            if isinstance(info.get("degradations"), list):
                records[str(stem)]["degradation"] = degradation_name(info["degradations"])
        elif isinstance(info, str):
            records[str(stem)] = {"method": info}
    if not records:
        raise DataError(f"{path}: no image has a \"method\" key; cannot break Dice down per method.")
    return records


def degradation_name(steps: list) -> str:
    """A demo-data degradation chain by its operations: "jpeg", "resize+jpeg", or "none"."""
    ops = [str(step.get("op", "?")) if isinstance(step, dict) else str(step) for step in steps]
    return "+".join(ops) or "none"


def folder_files(folder: Path) -> dict[str, Path]:
    """{stem: file} of an image folder; DataError for a missing/empty folder, stray files, duplicates."""
    from inpaintseg.data import pair_files

    return {s.stem: s.image_path for s in pair_files(folder)}


def check_ids(truth: set[str], other: set[str], where: str, role: str, ignore: frozenset = frozenset()) -> list[str]:
    """Problems with the ids of predictions; ids in ``ignore`` (truth images left out by ``stems``) are no extras."""
    other = other - ignore
    problems = []
    missing = sorted(truth - other)
    extra = sorted(other - truth)
    if missing:
        problems.append(f"{len(missing)} truth image(s) have no {role} in {where}: {name_list(missing)}")
    if extra:
        problems.append(f"{len(extra)} {role}(s) in {where} match no truth mask: {name_list(extra)}")
    return problems


def read_probs(path: Path) -> np.ndarray:
    """An 8-bit grey probability PNG -> float32 (H, W) in [0, 1] (value / 255)."""
    from inpaintseg.fileio import read_image

    return read_image(path)[:, :, 0].astype(np.float32) / 255.0


def shape_text(shape) -> str:
    return f"{shape[1]}x{shape[0]}"


def predictions(pred_dir: Path | None, submission: Path | None, truth_ids: set[str], order: str = "C",
                 ignore: frozenset = frozenset()):
    """A function stem, truth_shape -> predicted mask (or a mismatch message), after the id checks;
    for a submission also a function giving the mask read in the other RLE order (else None)."""
    from inpaintseg.fileio import read_mask
    from inpaintseg.rle import read_submission, rle_decode

    if (pred_dir is None) == (submission is None):
        raise InpaintsegError("give exactly one of pred_dir (a masks folder) or submission (a CSV).",
                              params=["pred_dir", "submission"])
    if pred_dir is not None:
        files = folder_files(pred_dir)
        problems = check_ids(truth_ids, set(files), str(pred_dir), "predicted mask", ignore)

        def get(stem: str, shape) -> np.ndarray:
            return read_mask(files[stem])

        other = None
    else:
        rows = read_submission(submission)
        problems = check_ids(truth_ids, set(rows), str(submission), "submission row", ignore)

        def get(stem: str, shape, reading: str = order) -> np.ndarray:
            try:
                return rle_decode(rows[stem], shape, order=reading)
            except DataError as exc:
                return f"{stem}: submission RLE does not fit the truth size {shape_text(shape)} ({exc})"

        def other(stem: str, shape):
            return get(stem, shape, "F" if order == "C" else "C")
    return get, problems, other
