"""Checks of a training set's files from their headers only, before training starts: every image and mask is
within the pixel limit, has a readable header, and each mask has its image's size. Reading a header costs
about as much as listing the file, so a size mismatch or a 65535x65535 "image" is named in seconds instead of
when its batch comes up (or never, in a dropped last batch).

The Problem builders here are the one home of these problems' wording; `check-data` uses them too.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from inpaintseg import fileio
from inpaintseg.data.pairing import Problem, Sample, pair_files, problems_message
from inpaintseg.errors import DataError, ImageTooLargeError


def too_large_problem(where: str, names: Sequence[str], max_pixels: int | None = None) -> Problem:
    limit = fileio.pixel_limit() if max_pixels is None else max_pixels
    return Problem("too_large", f"files over the pixel limit of {limit:,} pixels", where, tuple(names),
                   "downscale them, or raise the limit with --max-pixels if the machine has the memory")


def size_mismatch_problem(where: str, names: Sequence[str]) -> Problem:
    return Problem("size_mismatch", "masks whose size differs from their image (W x H)", where, tuple(names),
                   "re-export each mask at its image's exact size")


def unreadable_problem(where: str, names: Sequence[str]) -> Problem:
    return Problem("unreadable", "files that cannot be read", where, tuple(names), "re-export or remove them")


def mismatch_name(sample: Sample, image_hw: tuple[int, int], mask_hw: tuple[int, int]) -> str:
    return f"{sample.mask_path.name} (image {image_hw[1]}x{image_hw[0]}, mask {mask_hw[1]}x{mask_hw[0]})"


def file_label(path: Path) -> str:
    """How a file is named in a problem list: its folder's name and its own, e.g. ``images/a.png``."""
    return f"{path.parent.name}/{path.name}"


def _size(path: Path, max_pixels: int | None) -> tuple[int, int]:
    """(H, W) from the header (a full decode only for a format PIL cannot read); raises DataError."""
    size = fileio.image_size(path)
    if size is None:
        return fileio.read_image(path, max_pixels).shape[:2]
    fileio.check_pixels(path, *size, max_pixels=max_pixels)
    return size


def header_problems(samples: Sequence[Sample], where: str, max_pixels: int | None = None) -> list[Problem]:
    """Pixel-limit, unreadable-header and mask-size problems of `samples`, from headers only."""
    too_large, unreadable, mismatched = [], [], []
    for sample in samples:
        sizes = []
        for path in (sample.image_path, sample.mask_path):
            if path is None:
                continue
            try:
                sizes.append(_size(path, max_pixels))
            except ImageTooLargeError as exc:
                height, width = exc.size
                too_large.append(f"{file_label(path)} ({width}x{height})")
            except DataError as exc:
                unreadable.append(f"{file_label(path)} ({str(exc).removeprefix(f'{path}: ').split('. ')[0]})")
        if len(sizes) == 2 and sizes[0] != sizes[1]:
            mismatched.append(mismatch_name(sample, sizes[0], sizes[1]))
    problems = []
    if too_large:
        problems.append(too_large_problem(where, too_large, max_pixels))
    if unreadable:
        problems.append(unreadable_problem(where, unreadable))
    if mismatched:
        problems.append(size_mismatch_problem(where, mismatched))
    return problems


def check_training_files(images_dir: str | os.PathLike, masks_dir: str | os.PathLike,
                         max_pixels: int | None = None) -> list[Sample]:
    """Pair the training files and check every header; one DataError listing every problem, with the hint
    to run check-data (which also decodes every file)."""
    samples = pair_files(images_dir, masks_dir)
    problems = header_problems(samples, str(Path(images_dir).parent), max_pixels)
    if problems:
        raise DataError(problems_message(problems) + f"\nNothing was trained. `inpaintseg check-data "
                        f"{Path(images_dir).parent}` lists every problem of the dataset.")
    return samples
