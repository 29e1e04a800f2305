"""The per-user cache folder (precision probe results, trained data-engine generators).

$INPAINTSEG_CACHE_DIR, else $XDG_CACHE_HOME/inpaintseg, else ~/.cache/inpaintseg. Everything kept there
can be rebuilt: deleting the folder only costs time.
"""

from __future__ import annotations

import os
from pathlib import Path

CACHE_ENV = "INPAINTSEG_CACHE_DIR"


def cache_dir() -> Path:
    """$INPAINTSEG_CACHE_DIR, else $XDG_CACHE_HOME/inpaintseg, else ~/.cache/inpaintseg (~ expanded)."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base).expanduser() / "inpaintseg"
