"""Output locations, checked before any work: an output is never an input (a folder or file the command reads,
the model folder included) or inside one, never another output of the same run, never an existing path that
is not a regular file or folder (a symbolic link, FIFO or device node: the atomic rename would replace it),
and it can be written (a temporary file is created and removed there). Every command that writes calls these
first (`check_outputs` for all of a run's outputs at once), so a bad --out fails in a second with one message
instead of after the work, and no input file is overwritten.

`input_folders` names what counts as an input of a command that reads an images folder: the folder itself
and, in the dataset layout (``.../images`` beside ``.../masks``), the truth masks beside it.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable
from pathlib import Path

from inpaintseg.errors import OutputError
from inpaintseg.fileio import special_kind, special_output_message, write_error_message


def _error(message: str, *labels: str) -> OutputError:
    """The error about the outputs `labels`; a label that is a Python parameter (``out_dir``, not a flag
    ``--out``) is listed in `params`, so that the CLI prints its flag."""
    return OutputError(message, params=[label for label in labels if not label.startswith("-")])


def _real(path: str | os.PathLike) -> Path:
    return Path(os.path.realpath(os.path.abspath(path)))


def input_folders(*folders: str | os.PathLike | None) -> list[Path]:
    """The given folders, plus the ``masks`` folder beside each one named ``images`` (its truth masks)."""
    out: list[Path] = []
    for folder in folders:
        if folder is None:
            continue
        folder = Path(folder)
        out.append(folder)
        sibling = folder.parent / "masks"
        if folder.name == "images" and sibling.is_dir():
            out.append(sibling)
    return out


def check_outside_inputs(path: str | os.PathLike, flag: str, inputs: Iterable[str | os.PathLike]) -> None:
    """OutputError when `path` is one of the `inputs` folders or lies inside one (symlinks resolved)."""
    target = _real(path)
    for folder in inputs:
        source = _real(folder)
        if target == source and not source.is_dir():
            raise _error(f"{flag} {path}: is the input file {folder}; writing it would overwrite the input. "
                         "Choose another path.", flag)
        if target == source or source in target.parents:
            where = "is" if target == source else "lies inside"
            raise _error(f"{flag} {path}: {where} the input folder {folder}; writing there would mix "
                         "outputs with (or overwrite) the input files. Choose a folder outside it.", flag)


def check_not_above_inputs(path: str | os.PathLike, flag: str, inputs: Iterable[str | os.PathLike]) -> None:
    """OutputError when the output folder `path` holds one of the `inputs` folders (a run folder written over
    a dataset: its files would sit among the data, and the advice for a used folder would be to empty it)."""
    target = _real(path)
    for folder in inputs:
        if target in _real(folder).parents:
            raise _error(f"{flag} {path}: holds the input folder {folder}; the outputs would be written among "
                         "the input files. Choose a folder outside it (e.g. runs/my-run).", flag)


def _probe(folder: Path, flag: str, shown: str | os.PathLike) -> None:
    """Create and remove a temporary file in `folder`, or in its nearest existing parent when it does not
    exist yet (nothing is created: a command that fails later leaves no empty folders behind)."""
    existing = Path(os.path.abspath(folder))
    while not existing.exists() and existing.parent != existing:
        existing = existing.parent
    if not existing.is_dir():
        raise _error(f"{flag} {shown}: cannot write there ({existing} is a file, not a folder); choose "
                     "another path.", flag)
    try:
        fd, name = tempfile.mkstemp(prefix=".inpaintseg-write-check.", dir=existing)
        os.close(fd)
        os.unlink(name)
    except OSError as exc:
        raise _error(f"{flag} {write_error_message(shown, exc)}", flag) from None


def check_output_file(path: str | os.PathLike | None, flag: str, inputs: Iterable[str | os.PathLike] = ()) -> None:
    """A file output: not a folder, not inside an input folder, and its folder is writable."""
    if path is None:
        return
    if str(path) == "-":
        raise _error(f"{flag} -: writing to standard output is not supported (it would create a file "
                     "named '-'). Give a file path, e.g. out.csv.", flag)
    kind = special_kind(path)
    if kind is not None:
        raise _error(f"{flag} {special_output_message(path, kind)}", flag)
    path = Path(path)
    if path.is_dir():
        raise _error(f"{flag} {path}: is a folder; expected a file path (e.g. {path / 'out.csv'}).", flag)
    check_outside_inputs(path, flag, inputs)
    _probe(path.parent, flag, path)


def check_output_dir(path: str | os.PathLike | None, flag: str, inputs: Iterable[str | os.PathLike] = ()) -> None:
    """A folder output: not a file, not an input folder or inside one, and writable (created when missing)."""
    if path is None:
        return
    path = Path(path)
    kind = special_kind(path)
    if kind is not None and not path.is_dir():  # a link to a folder is fine: files are written inside it
        raise _error(f"{flag} {path}: is {kind}, not a folder. Remove it or choose another path.", flag)
    if path.exists() and not path.is_dir():
        raise _error(f"{flag} {path}: is a file; expected a folder. Pass a folder path (it is created "
                     "when missing).", flag)
    check_outside_inputs(path, flag, inputs)
    _probe(path, flag, path)


def check_distinct(outputs: dict[str, str | os.PathLike | None]) -> None:
    """OutputError when two outputs of one run (flag -> path; None = not written) are the same path (symlinks
    resolved): one would silently replace the other."""
    seen: dict[Path, tuple[str, str]] = {}  # target -> (what to show, its label)
    for flag, path in outputs.items():
        if path is None:
            continue
        target = _real(path)
        if target in seen:
            raise _error(f"{flag} {path}: is also {seen[target][0]}; one output would replace the other. "
                         "Give each output its own path.", flag, seen[target][1])
        seen[target] = (f"{flag} {path}", flag)


def check_outputs(files: dict[str, str | os.PathLike | None] | None = None,
                  folders: dict[str, str | os.PathLike | None] | None = None,
                  inputs: Iterable[str | os.PathLike | None] = ()) -> None:
    """Every output of one run at once, before any work: `files` and `folders` map a flag to its path (None =
    not written); `inputs` are the folders and files the run reads (the model folder too). Each output is
    checked by `check_output_file` / `check_output_dir`, then `check_distinct` across all of them."""
    files, folders = files or {}, folders or {}
    inputs = [p for p in inputs if p is not None]
    for flag, path in files.items():
        check_output_file(path, flag, inputs)
    for flag, path in folders.items():
        check_output_dir(path, flag, inputs)
    check_distinct({**files, **folders})
