"""Models shipped inside the package: the name `base` wherever a model folder is accepted.

`resolve_model_dir("base")` is the package's `weights/base/` folder (weights.safetensors + config.json, installed
with the package); any other value is a path and is returned as a `Path` unchanged. A local folder that happens to
be called `base` is reached as `./base`.
"""

from __future__ import annotations

import os
from pathlib import Path

from inpaintseg.errors import ModelLoadError

SHIPPED_ROOT = Path(__file__).resolve().parents[1] / "weights"
SHIPPED_MODELS = ("base",)
DEFAULT_MODEL = "base"


def is_shipped_name(value: str | os.PathLike) -> bool:
    return isinstance(value, str) and value in SHIPPED_MODELS


def shipped_dir(name: str) -> Path:
    """The package folder of shipped model `name`; ModelLoadError when this install lacks it."""
    folder = SHIPPED_ROOT / name
    if not (folder / "config.json").is_file() or not (folder / "weights.safetensors").is_file():
        raise ModelLoadError(f"the shipped model '{name}' is not in this installation ({folder} is missing or "
                             "incomplete). Reinstall inpaintseg (pip install .) or pass a model folder.")
    return folder


def resolve_model_dir(value: str | os.PathLike) -> Path:
    """`value` as a model folder path: a shipped model's name becomes its package folder."""
    if is_shipped_name(value):
        return shipped_dir(str(value))
    return Path(value)
