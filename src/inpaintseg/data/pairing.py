"""Listing and pairing dataset folders: image/mask files paired by stem, every listing problem at once.

Folder layout: ``ROOT/train/images``, ``ROOT/train/masks``, ``ROOT/test/images`` (optionally
``ROOT/test/masks``). Images and masks pair by file stem (``a.jpg`` <-> ``a.png``), sorted by stem.
Problems with a folder's listing (missing or empty folder, image without mask, mask without image,
duplicate stems, zero-byte or non-image files) are all found at once by `scan_pairs` and raised together
by `pair_files`; each `Problem` has a `kind` (see `PROBLEM_KINDS`) that callers branch on.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from inpaintseg.errors import DataError, name_list
from inpaintseg.fileio import IMAGE_EXTENSIONS, is_hidden, is_image_file, special_input_kind


# DATA/train/originals/: the untouched original of each training image, same stems (optional; paired batches)
ORIGINALS_FOLDER = "originals"
# Files that operating systems drop into folders; ignored like hidden files.
SYSTEM_JUNK_NAMES = frozenset({"thumbs.db", "desktop.ini"})
PROBLEM_KINDS = ("missing_folder", "not_a_folder", "empty_folder", "not_image", "empty_file", "duplicate_stem",
                 "image_without_mask", "mask_without_image", "unreadable", "size_mismatch", "broken_link",
                 "too_large", "odd_mask_values", "special_file")


@dataclass(frozen=True)
class Sample:
    """One image and, when masks exist, its mask."""

    stem: str
    image_path: Path
    mask_path: Path | None = None


@dataclass(frozen=True)
class Problem:
    """One kind of problem with a dataset folder and every name it concerns."""

    kind: str  # one of PROBLEM_KINDS: what callers branch on (never the title's wording)
    title: str  # e.g. "images without a mask"
    where: str  # the folder or file the names live in
    names: tuple[str, ...]
    fix: str

    def message(self) -> str:
        count = f" ({len(self.names)})" if self.names else ""
        names = f": {name_list(self.names)}" if self.names else ""
        return f"{self.title}{count} in {self.where}{names}. Fix: {self.fix}"


@dataclass
class PairScan:
    """The outcome of listing an images folder and (optionally) its masks folder."""

    samples: list[Sample] = field(default_factory=list)  # complete, unambiguous pairs (or images)
    problems: list[Problem] = field(default_factory=list)
    images: dict[str, Path] = field(default_factory=dict)  # every image file by stem
    masks: dict[str, Path] = field(default_factory=dict)  # every mask file by stem
    duplicated: set[str] = field(default_factory=set)  # stems with several files in one folder
    broken: list[Path] = field(default_factory=list)  # broken symbolic links / link loops (not in images)


def _is_ignored(path: Path) -> bool:
    return is_hidden(path) or path.name.lower() in SYSTEM_JUNK_NAMES


def _check_folder(folder: Path, role: str) -> Problem | None:
    """A problem if `folder` is missing or not a folder."""
    if not folder.exists():
        return Problem("missing_folder", f"missing {role} folder", str(folder), (),
                       f"create {folder} or point to the folder that holds the {role}")
    if not folder.is_dir():
        return Problem("not_a_folder", f"{role} folder is a file", str(folder), (),
                       f"{folder} must be a folder of {role}")
    return None


def _list_folder(folder: Path, role: str) -> tuple[dict[str, Path], set[str], list[Problem], list[Path]]:
    """Map stem -> file for one folder, the duplicated stems, every listing problem in it, and its broken
    symbolic links (a link whose target is missing, or a link loop)."""
    problem = _check_folder(folder, role)
    if problem:
        return {}, set(), [problem], []
    try:
        entries = sorted(p for p in folder.iterdir() if not _is_ignored(p))
    except OSError as exc:
        return {}, set(), [Problem("unreadable", f"{role} folder cannot be listed ({exc.strerror})", str(folder), (),
                                   "check the folder's permissions")], []
    by_stem: dict[str, list[Path]] = {}
    not_images, empty_files, broken, special = [], [], [], []
    for path in entries:
        if path.is_symlink() and not path.exists():  # exists() follows the link: False when broken or a loop
            broken.append(path)
            continue
        kind = special_input_kind(path)  # a FIFO would hang the reader; never opened, and not "0 bytes"
        if kind is not None:
            special.append(f"{path.name} ({kind.split(' (')[0].removeprefix('a ')})")
            continue
        if path.is_dir() or not is_image_file(path):
            not_images.append(path.name)
            continue
        if path.stat().st_size == 0:
            empty_files.append(path.name)
        by_stem.setdefault(path.stem, []).append(path)
    problems = []
    if not entries:
        problems.append(Problem("empty_folder", f"empty {role} folder", str(folder), (),
                                f"put the {role} files ({', '.join(IMAGE_EXTENSIONS)}) in it"))
    if not_images:
        problems.append(Problem(
            "not_image", "entries that are not image files", str(folder), tuple(not_images),
            f"move them out; {role} must be files ending in {', '.join(IMAGE_EXTENSIONS)}"))
    if empty_files:
        problems.append(Problem("empty_file", "empty (0-byte) files", str(folder), tuple(empty_files),
                                "re-export or remove them"))
    if special:
        problems.append(Problem("special_file", "special files (FIFO, device node or socket; not opened)",
                                str(folder), tuple(special), "remove them or replace them with image files"))
    if broken:
        problems.append(Problem("broken_link", "broken symbolic links (target missing, or a link loop)", str(folder),
                                tuple(p.name for p in broken), "repair the links or remove them"))
    duplicated = {stem for stem, paths in by_stem.items() if len(paths) > 1}
    if duplicated:
        problems.append(Problem(
            "duplicate_stem", "duplicate stems (two files with the same name but different extensions)", str(folder),
            tuple(f"{stem} ({', '.join(p.name for p in by_stem[stem])})" for stem in sorted(duplicated)),
            "keep one file per name"))
    return {stem: paths[0] for stem, paths in by_stem.items()}, duplicated, problems, broken


def scan_pairs(images_dir: str | os.PathLike, masks_dir: str | os.PathLike | None = None) -> PairScan:
    """List and pair files without raising; every listing problem is returned in `.problems`."""
    images_dir = Path(images_dir)
    images, duplicated, problems, broken = _list_folder(images_dir, "images")
    masks: dict[str, Path] = {}
    if masks_dir is not None:
        masks_dir = Path(masks_dir)
        masks, mask_duplicated, mask_problems, mask_broken = _list_folder(masks_dir, "masks")
        problems += mask_problems
        broken += mask_broken
        duplicated |= mask_duplicated
        if images and masks:
            no_mask = sorted(set(images) - set(masks))
            no_image = sorted(set(masks) - set(images))
            if no_mask:
                problems.append(Problem(
                    "image_without_mask", "images without a mask", str(images_dir), tuple(images[s].name for s in no_mask),
                    f"add a mask with the same name to {masks_dir} (an all-black mask if nothing "
                    "was inpainted) or remove the image"))
            if no_image:
                problems.append(Problem(
                    "mask_without_image", "masks without an image", str(masks_dir), tuple(masks[s].name for s in no_image),
                    f"add the image to {images_dir} or remove the mask"))
    samples = [Sample(stem, images[stem], masks.get(stem)) for stem in sorted(images)
               if stem not in duplicated and (masks_dir is None or stem in masks)]
    return PairScan(samples, problems, images, masks, duplicated, broken)


def problems_message(problems: Sequence[Problem]) -> str:
    """One error message for several problems, one line each."""
    if len(problems) == 1:
        return problems[0].message()
    return f"{len(problems)} problems with the dataset:\n" + "\n".join(
        f"  - {p.message()}" for p in problems)


def pair_files(images_dir: str | os.PathLike, masks_dir: str | os.PathLike | None = None) -> list[Sample]:
    """Pair images with masks by stem, sorted by stem; raise one DataError listing every problem."""
    scan = scan_pairs(images_dir, masks_dir)
    if scan.problems:
        raise DataError(problems_message(scan.problems))
    return scan.samples
