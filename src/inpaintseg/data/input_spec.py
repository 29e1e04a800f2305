"""The model's input contract: the `input` section of a model folder's config.json.

One home for the input modes, the normalisation constants and the validator of the section, used by
training (to write it), the model loader (to check it) and the predictor (to honour it):

    {"mode": "resize" | "crop", "size": 256, "mean": [r, g, b], "std": [r, g, b]}

`resize`: the whole image is resized to `size` x `size`; `crop`: the network sees native-resolution
`size` tiles (training: random crops; prediction: overlapping tiles). mean/std are fractions of 255.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

INPUT_MODES = ("resize", "crop")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
SIZE_MULTIPLE = 16  # training sizes: a multiple of 16 keeps every U-Net level even
MAX_INPUT_SIZE = 4096  # one tile / resized side; beyond this a crafted config would exhaust memory
NORMALISATION_BOUNDS = {"mean": (0.0, 1.0), "std": (1e-3, 1.0)}  # fractions of 255


def input_section(mode: str, size: int, mean=IMAGENET_MEAN, std=IMAGENET_STD) -> dict:
    """The config.json `input` section that training writes."""
    return {"mode": mode, "size": int(size), "mean": [float(v) for v in mean], "std": [float(v) for v in std]}


def check_input_section(section: Any, fail: Callable[[str], Any]) -> dict:
    """Validate a config.json `input` section; `fail(problem)` must raise. Returns it normalised."""
    if not isinstance(section, dict):
        fail(f"\"input\" must be an object, got {type(section).__name__}")
    missing = [k for k in ("mode", "size", "mean", "std") if k not in section]
    if missing:
        fail(f"\"input\" is missing {', '.join(missing)}")
    if section["mode"] not in INPUT_MODES:
        fail(f"input.mode must be one of {', '.join(INPUT_MODES)}, got {section['mode']!r}")
    size = section["size"]
    if isinstance(size, bool) or not isinstance(size, int) or not 8 <= size <= MAX_INPUT_SIZE:
        fail(f"input.size must be an integer from 8 to {MAX_INPUT_SIZE}, got {size!r}")
    for key, (low, high) in NORMALISATION_BOUNDS.items():
        values = section[key]
        ok = isinstance(values, list) and len(values) == 3 and all(
            isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and low <= v <= high
            for v in values)
        if not ok:
            fail(f"input.{key} must be a list of 3 numbers from {low:g} to {high:g} (fractions of 255), "
                 f"got {values!r}")
    return input_section(section["mode"], size, section["mean"], section["std"])
