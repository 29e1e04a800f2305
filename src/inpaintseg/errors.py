"""User-facing errors.

Every error a user can cause (bad data, bad config, a wrong model folder) is raised as an
`InpaintsegError` whose message says what was expected, what came, and how to fix it. The CLI
prints the message without a traceback and exits with status 2.
"""

from __future__ import annotations

from collections.abc import Iterable


class InpaintsegError(Exception):
    """An error caused by the user's input; the message is shown as-is.

    A message about an argument names the Python parameter (``n_train must be ...``) and lists it in
    `params`; the CLI prints the same message with each listed parameter written as its flag
    (``--n-train must be ...``, `inpaintseg.commands.flag_message`).
    """

    def __init__(self, *args, params: Iterable[str] = ()):
        super().__init__(*args)
        self.params = tuple(params)


class DataError(InpaintsegError):
    """A dataset folder or image/mask file is missing, malformed or inconsistent."""


class ConfigError(InpaintsegError):
    """A configuration key or value is invalid."""


class ModelLoadError(InpaintsegError):
    """A model folder is missing, incomplete, or does not match its weights."""


def name_list(names: Iterable[object], limit: int = 20) -> str:
    """Format names for an error message: the first `limit`, then a count of the rest.

    >>> name_list(["a", "b", "c"], limit=2)
    'a, b ... and 1 more (3 in all)'
    """
    items = [str(n) for n in names]
    shown = ", ".join(items[:limit])
    if len(items) > limit:
        return f"{shown} ... and {len(items) - limit} more ({len(items)} in all)"
    return shown


class ImageTooLargeError(DataError):
    """An image or mask whose header claims more pixels than the pixel limit (checked before decoding)."""


class OutputError(InpaintsegError):
    """An output location that cannot be written (checked up front) or a write that failed."""
