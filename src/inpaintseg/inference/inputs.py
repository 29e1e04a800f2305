"""What `predict --images` may name, and the ImageId rule.

- a folder: its image files (`pipeline.list_images`: hidden files skipped, stray entries named), ImageId =
  file stem, as always;
- a folder with ``recursive=True``: image files in it and in every sub-folder (hidden folders and folders
  reached through symbolic links are not entered), ImageId = the path relative to the folder, without the
  extension, with ``/`` between parts (``cats/a.jpg`` -> ``cats/a``); mask/probability PNGs mirror the
  sub-folders;
- one image file: ImageId = its stem;
- a glob pattern (``*``, ``?``, ``[``; ``**`` crosses folders with ``recursive=True``): the matching image
  files, ImageId = file stem.

ImageIds must be unique: two files that map to one ImageId (``a.png`` and ``a.jpg``, or ``x/a.png`` and
``y/a.png`` in one glob) are a DataError naming both files. Rows are sorted by ImageId.
"""

from __future__ import annotations

import glob
import os
from dataclasses import dataclass, field
from pathlib import Path

from inpaintseg import fileio
from inpaintseg.data.pairing import SYSTEM_JUNK_NAMES
from inpaintseg.errors import DataError, name_list

GLOB_CHARACTERS = "*?["
ID_SEPARATOR = "/"


@dataclass
class ImageInputs:
    """The images to predict, their ImageIds (same order, sorted by id) and notes on skipped entries."""

    paths: list[Path]
    ids: list[str]
    notes: list[str] = field(default_factory=list)
    folders: list[Path] = field(default_factory=list)  # folders read (outputs may not lie inside them)
    kind: str = "folder"  # "folder" | "recursive" | "file" | "glob" | "list"


def is_glob(spec: str) -> bool:
    return any(c in spec for c in GLOB_CHARACTERS)


def _ignored(path: Path) -> bool:
    return fileio.is_hidden(path) or path.name.lower() in SYSTEM_JUNK_NAMES


def unique_ids(paths: list[Path], ids: list[str]) -> ImageInputs:
    """Sort by id; DataError naming every pair of files that share an id."""
    first: dict[str, Path] = {}
    clashes = []
    for path, image_id in zip(paths, ids):
        if image_id in first:
            clashes.append(f"{image_id!r}: {first[image_id]} and {path}")
        else:
            first[image_id] = path
    if clashes:
        raise DataError(f"{len(clashes)} ImageId(s) would name two files (ImageId = file stem"
                        f"{', or the relative path with --recursive' if ID_SEPARATOR in ''.join(ids) else ''}): "
                        f"{name_list(clashes)}. Rename or move one file of each pair, or predict them separately.")
    order = sorted(range(len(ids)), key=lambda i: ids[i])
    return ImageInputs([paths[i] for i in order], [ids[i] for i in order])


def _walk(root: Path) -> tuple[list[Path], list[str], list[str], list[Path]]:
    """Image files under `root` (not following folder links), their ids, notes on skipped entries, folders."""
    paths, ids, skipped, folders, linked, special = [], [], [], [root], [], []
    pending = [root]
    while pending:
        folder = pending.pop()
        try:
            entries = sorted(os.scandir(folder), key=lambda e: e.name)
        except OSError as exc:
            raise DataError(f"{folder}: cannot be listed ({exc.strerror}); check its permissions.") from None
        for entry in entries:
            path = Path(entry.path)
            if _ignored(path):
                continue
            if entry.is_dir(follow_symlinks=False):
                pending.append(path)
                folders.append(path)
            elif entry.is_dir():  # a link to a folder: not entered (loops, and files counted twice)
                linked.append(str(path.relative_to(root)))
            elif fileio.special_input_kind(path) is not None:  # a FIFO would hang the reader: never opened
                special.append(str(path.relative_to(root)))
            elif fileio.is_image_file(path):  # broken links and 0-byte files are kept: named as failures when read
                relative = path.relative_to(root)
                ids.append(ID_SEPARATOR.join((*relative.parent.parts, path.stem)))
                paths.append(path)
            else:
                skipped.append(str(path.relative_to(root)))
    notes = []
    if skipped:
        notes.append(f"entries that are not image files ({len(skipped)}) under {root}: {name_list(skipped)}")
    if special:
        notes.append(f"special files (FIFO, device node or socket; not opened) ({len(special)}) under {root}: "
                     f"{name_list(special)}")
    if linked:
        notes.append(f"links to folders, not entered ({len(linked)}) under {root}: {name_list(linked)}")
    return paths, ids, notes, folders


def check_utf8_ids(found: ImageInputs) -> ImageInputs:
    """`found`, or a DataError naming every file whose ImageId is not valid UTF-8 (a file name in another
    encoding, e.g. Latin-1 bytes): the submission, part and scores files are UTF-8 CSVs, and writing such a name
    there would either crash or produce a CSV that no reader accepts. Checked before any work."""
    bad = []
    for path, image_id in zip(found.paths, found.ids):
        try:
            image_id.encode("utf-8")
        except UnicodeEncodeError:
            bad.append(os.fsencode(path).decode("utf-8", "backslashreplace"))
    if bad:
        raise DataError(f"{len(bad)} file name(s) are not valid UTF-8, so their ImageIds cannot be written to the "
                        f"UTF-8 submission CSV: {name_list(bad)}. Rename them to UTF-8 names (e.g. `convmv -f "
                        "latin1 -t utf-8 --notest FILE`) or move them out of the input, then run again.")
    return found


def resolve_images(spec: str | os.PathLike, recursive: bool = False) -> ImageInputs:
    """The images `spec` names (a folder, one image file or a glob pattern), sorted by ImageId; file names that
    are not valid UTF-8 are refused (`check_utf8_ids`)."""
    return check_utf8_ids(_resolve(spec, recursive))


def _resolve(spec: str | os.PathLike, recursive: bool) -> ImageInputs:
    from inpaintseg.inference.pipeline import list_images

    path = Path(spec)
    if path.is_dir():
        if not recursive:
            paths, notes = list_images(path)
            return ImageInputs(paths, [p.stem for p in paths], notes, [path], "folder")
        paths, ids, notes, folders = _walk(path)
        if not paths:
            raise DataError(f"{path}: no image files in it or its sub-folders (supported: "
                            f"{', '.join(fileio.IMAGE_EXTENSIONS)}). Point --images at the folder that holds them.")
        found = unique_ids(paths, ids)
        return ImageInputs(found.paths, found.ids, notes, folders, "recursive")
    kind = fileio.special_input_kind(path)
    if kind is not None:
        raise DataError(f"{path}: is {kind}, not an image file; it was not opened. Pass an image, a folder of "
                        "images or a glob pattern.")
    if path.is_file() or (path.is_symlink() and not is_glob(str(spec))):
        if not fileio.is_image_file(path):
            raise DataError(f"{path}: not an image file (supported: {', '.join(fileio.IMAGE_EXTENSIONS)}). Pass an "
                            "image, a folder of images or a glob pattern such as 'photos/*.jpg'.")
        return ImageInputs([path], [path.stem], [], [path.parent], "file")
    if is_glob(str(spec)):
        matches = sorted(Path(m) for m in glob.glob(str(spec), recursive=recursive))
        images = [m for m in matches if not _ignored(m) and fileio.is_image_file(m) and not m.is_dir()
                  and fileio.special_input_kind(m) is None]
        if not images:
            raise DataError(f"{spec}: the pattern matches no image files ({len(matches)} matches in all; supported: "
                            f"{', '.join(fileio.IMAGE_EXTENSIONS)}). Quote the pattern so the shell passes it unexpanded"
                            f"{'' if recursive else '; ** crosses folders only with --recursive'}.")
        found = unique_ids(images, [m.stem for m in images])
        skipped = len(matches) - len(images)
        notes = [f"{skipped} match(es) of {spec} that are not image files"] if skipped else []
        return ImageInputs(found.paths, found.ids, notes, sorted({p.parent for p in images}), "glob")
    raise DataError(f"{spec}: no such file or folder. Pass a folder of images, one image file or a glob pattern "
                    "such as 'photos/*.jpg' (quoted).")


def from_paths(paths) -> ImageInputs:
    """A caller's list of image paths: ImageId = file stem, unique."""
    paths = [Path(p) for p in paths]
    found = unique_ids(paths, [p.stem for p in paths])
    return check_utf8_ids(ImageInputs(found.paths, found.ids, [], sorted({p.parent for p in paths}), "list"))
