"""`inpaintseg check-data DIR`: validate a dataset folder and print a summary.

DIR is a dataset root (``train/`` and/or ``test/``, each with ``images/`` and maybe ``masks/``) or a
single split folder holding ``images/`` (and ``masks/``). Every file is decoded once, one at a time,
with the same rules training uses, so corrupt and truncated files are found here and not mid-training.
Exit status: 0 when no problem was found, 1 when problems were found (each is listed), 2 when DIR
itself cannot be used.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from inpaintseg.commands import add_command, add_max_pixels_argument, add_progress_arguments

# Mask coverage histogram: (label, upper bound inclusive); the first bin is exactly 0.
COVERAGE_BINS = (("0 (empty)", 0.0), ("(0, 1%]", 0.01), ("(1, 5%]", 0.05), ("(5, 10%]", 0.10),
                 ("(10, 25%]", 0.25), ("(25, 50%]", 0.50), ("(50, 100%]", 1.0))
SPLIT_NAMES = ("train", "val", "test")
BAR_WIDTH = 30


def register(subparsers) -> None:
    parser = add_command(
        subparsers,
        "check-data",
        help="validate a dataset folder and summarise it (counts, sizes, mask coverage, problems)",
        description="Validate a dataset folder: pair images with masks by name, decode every file once, "
        "and print counts, image sizes, mask coverage (mean and histogram), the share of empty masks and "
        "every problem found. DIR is a dataset root with train/ and/or test/, or a folder holding images/ "
        "(and masks/). Exit status 0: no problems; 1: problems found; 2: DIR unusable.",
        examples="  inpaintseg check-data data/\n"
        "  inpaintseg check-data data/train\n"
        "  inpaintseg check-data ../shared/realworld/casia2_gt --json casia_summary.json\n",
    )
    parser.add_argument("data_dir", type=Path, metavar="DIR", help="dataset root or split folder")
    parser.add_argument("--json", type=Path, default=None, metavar="PATH",
                        help="also write the summary and problems as JSON to PATH")
    add_max_pixels_argument(parser)

    add_progress_arguments(parser)
    parser.set_defaults(func=run)


@dataclass
class SplitStats:
    """Streaming statistics for one split (one image at a time; nothing held but numbers)."""

    name: str
    images_dir: Path
    masks_dir: Path | None
    n_images: int = 0
    n_masks: int = 0
    n_pairs: int = 0
    sizes: Counter = field(default_factory=Counter)
    extensions: Counter = field(default_factory=Counter)
    coverages: list = field(default_factory=list)
    problems: list = field(default_factory=list)

    def summary(self) -> dict:
        coverage = _coverage_summary(self.coverages)
        return {
            "split": self.name, "images_dir": str(self.images_dir),
            "masks_dir": str(self.masks_dir) if self.masks_dir else None,
            "n_images": self.n_images, "n_masks": self.n_masks, "n_pairs": self.n_pairs,
            "formats": dict(sorted(self.extensions.items())),
            "sizes": _size_summary(self.sizes),
            "coverage": coverage,
            "problems": [p.message() for p in self.problems],
        }


def find_splits(data_dir: Path) -> list[tuple[str, Path, Path | None]]:
    """(name, images_dir, masks_dir or None) for each split in DIR; DataError when there is none."""
    from inpaintseg.errors import DataError

    if not data_dir.exists():
        raise DataError(f"{data_dir}: folder not found. Check the path.")
    if not data_dir.is_dir():
        raise DataError(f"{data_dir}: is a file; expected a dataset folder.")

    def split_of(name: str, folder: Path):
        masks = folder / "masks"
        return name, folder / "images", masks if masks.exists() else None

    if (data_dir / "images").exists():
        return [split_of(data_dir.resolve().name, data_dir)]
    splits = [split_of(name, data_dir / name) for name in SPLIT_NAMES if (data_dir / name).is_dir()]
    if not splits:
        raise DataError(
            f"{data_dir}: no images/ folder and no {'/, '.join(SPLIT_NAMES)}/ split folders in it. Point "
            "check-data at a dataset root (with train/images, train/masks, test/images) or at a folder "
            "holding images/ (and masks/)."
        )
    return splits


def scan_split(name: str, images_dir: Path, masks_dir: Path | None) -> SplitStats:
    """List, pair and decode every file of one split, collecting statistics and problems."""
    from inpaintseg.data import Problem, Sample, scan_pairs

    stats = SplitStats(name, images_dir, masks_dir)
    scan = scan_pairs(images_dir, masks_dir)
    stats.problems.extend(scan.problems)
    if name == "train" and masks_dir is None:
        stats.problems.append(Problem(
            "missing_folder", "missing masks folder", str(images_dir.parent / "masks"), (),
            "training needs a mask per image: add train/masks with one mask per image (same name)"))
    stats.n_images, stats.n_masks = len(scan.images), len(scan.masks)
    stats.extensions.update(p.suffix.lower().lstrip(".") for p in scan.images.values())
    # Every image is decoded (with its mask when it has one); stems with duplicate files are skipped:
    # which file is meant is ambiguous, and they are reported above.
    samples = [Sample(stem, path, scan.masks.get(stem)) for stem, path in sorted(scan.images.items())
               if stem not in scan.duplicated]
    from inpaintseg.data import preflight

    found: dict[str, list[str]] = {"unreadable": [], "size_mismatch": [], "too_large": [], "odd_mask_values": []}
    for sample in _progress(samples, f"checking {name}"):
        _scan_sample(sample, stats, found)
    where = str(images_dir.parent)
    if found["too_large"]:
        stats.problems.append(preflight.too_large_problem(where, found["too_large"]))
    if found["unreadable"]:
        stats.problems.append(preflight.unreadable_problem(where, found["unreadable"]))
    if found["size_mismatch"]:
        stats.problems.append(preflight.size_mismatch_problem(str(masks_dir), found["size_mismatch"]))
    if found["odd_mask_values"]:
        stats.problems.append(Problem(
            "odd_mask_values", "masks whose non-zero values all read as 0 (an empty mask)", str(masks_dir),
            tuple(found["odd_mask_values"]), "store masks as 8-bit 0/255 or 0/1 (a pixel is manipulated at "
            ">= 128 of 255, or at 1 in a 0/1 mask)"))
    return stats


def _scan_sample(sample, stats: SplitStats, found: dict[str, list[str]]) -> None:
    from inpaintseg.data.preflight import mismatch_name
    from inpaintseg.fileio import read_image, read_mask_checked

    image = _decode_or_note(read_image, sample.image_path, found)
    if image is not None:
        stats.sizes[image.shape[:2]] += 1
    if sample.mask_path is None:
        return
    checked = _decode_or_note(read_mask_checked, sample.mask_path, found)
    if checked is None:
        return
    mask, note = checked
    if note:
        found["odd_mask_values"].append(f"{sample.mask_path.name} ({note})")
    if image is None:
        return
    if image.shape[:2] != mask.shape:
        found["size_mismatch"].append(mismatch_name(sample, image.shape[:2], mask.shape))
        return
    stats.n_pairs += 1
    stats.coverages.append(float(mask.mean()))


def _decode_or_note(reader, path: Path, found: dict[str, list[str]]):
    """reader(path), or None after noting `folder/name (reason)` under its problem kind; 0-byte files and
    broken links were listed already."""
    from inpaintseg.data.preflight import file_label
    from inpaintseg.errors import DataError, ImageTooLargeError

    try:
        if path.stat().st_size == 0:
            return None
        return reader(path)
    except OSError:
        return None
    except ImageTooLargeError as exc:
        found["too_large"].append(f"{file_label(path)} ({exc.size[1]}x{exc.size[0]})")
        return None
    except DataError as exc:
        reason = str(exc).removeprefix(f"{path}: ").split(". ")[0]
        found["unreadable"].append(f"{file_label(path)} ({reason})")
        return None


def _progress(items, desc: str):
    """Iterate over ``items`` with progress (a bar on a terminal, else a plain line per 10%)."""
    from inpaintseg.progress import progress_bar

    with progress_bar(len(items), desc, unit="file") as bar:
        for item in items:
            yield item
            bar.update(1)


def _size_summary(sizes: Counter) -> dict:
    if not sizes:
        return {"distinct": 0}
    by_area = sorted(sizes, key=lambda hw: (hw[0] * hw[1], hw))
    return {
        "distinct": len(sizes),
        "smallest_hw": list(by_area[0]), "largest_hw": list(by_area[-1]),
        "most_common_hw": [[h, w, n] for (h, w), n in sizes.most_common(3)],
    }


def _coverage_summary(coverages: list) -> dict:
    if not coverages:
        return {"n": 0}
    counts = [0] * len(COVERAGE_BINS)
    for c in coverages:
        counts[next(i for i, (_, upper) in enumerate(COVERAGE_BINS) if c <= upper)] += 1
    n_empty = counts[0]
    return {
        "n": len(coverages),
        "mean": sum(coverages) / len(coverages),
        "median": sorted(coverages)[len(coverages) // 2],
        "n_empty": n_empty,
        "empty_share": n_empty / len(coverages),
        "histogram": {label: n for (label, _), n in zip(COVERAGE_BINS, counts)},
    }


def format_split(summary: dict, problems: list) -> str:
    """Human-readable summary of one split."""
    lines = [f"[{summary['split']}] {summary['images_dir']}"]
    formats = ", ".join(f"{ext} {n}" for ext, n in summary["formats"].items()) or "-"
    masks = summary["n_masks"] if summary["masks_dir"] else "no masks folder"
    lines.append(f"  images: {summary['n_images']}   masks: {masks}   readable pairs of matching size: "
                 f"{summary['n_pairs']}   image formats: {formats}")
    sizes = summary["sizes"]
    if sizes["distinct"]:
        common = ", ".join(f"{h}x{w} ({n})" for h, w, n in sizes["most_common_hw"])
        lines.append(f"  image sizes (H x W): {sizes['distinct']} distinct; smallest "
                     f"{sizes['smallest_hw'][0]}x{sizes['smallest_hw'][1]}, largest "
                     f"{sizes['largest_hw'][0]}x{sizes['largest_hw'][1]}; most common {common}")
    cov = summary["coverage"]
    if cov["n"]:
        lines.append(f"  mask coverage: mean {cov['mean']:.2%}, median {cov['median']:.2%}; "
                     f"empty masks: {cov['n_empty']} of {cov['n']} ({cov['empty_share']:.1%})")
        peak = max(cov["histogram"].values())
        for label, n in cov["histogram"].items():
            bar = "#" * (round(BAR_WIDTH * n / peak) if peak else 0)
            lines.append(f"    {label:>11} {n:6d} {bar}")
    if problems:
        lines.append(f"  problems ({len(problems)}):")
        lines.extend(f"    - {p.message()}" for p in problems)
    else:
        lines.append("  problems: none")
    return "\n".join(lines)


def _quiet_opencv() -> None:
    """Corrupt files are reported by check-data itself; OpenCV's own log lines would only add noise."""
    import cv2

    logging = getattr(getattr(cv2, "utils", None), "logging", None)
    if logging is not None and hasattr(logging, "LOG_LEVEL_SILENT"):
        logging.setLogLevel(logging.LOG_LEVEL_SILENT)


def run(args) -> int:
    from inpaintseg.fileio import atomic_write_text
    from inpaintseg.outputs import check_output_file

    _quiet_opencv()
    splits = find_splits(args.data_dir)
    check_output_file(args.json, "--json", [d for _, images, masks in splits for d in (images, masks) if d])
    reports, n_problems = [], 0
    for name, images_dir, masks_dir in splits:
        stats = scan_split(name, images_dir, masks_dir)
        summary = stats.summary()
        print(format_split(summary, stats.problems), flush=True)
        reports.append(summary)
        n_problems += len(stats.problems)
    verdict = "OK: no problems found" if not n_problems else \
        f"FAILED: {n_problems} problem(s) found; fix them and run check-data again"
    print(f"check-data {args.data_dir}: {verdict}")
    if args.json is not None:
        payload = {"data_dir": str(args.data_dir), "ok": n_problems == 0, "splits": reports}
        atomic_write_text(args.json, json.dumps(payload, indent=2) + "\n")
    return 0 if n_problems == 0 else 1
