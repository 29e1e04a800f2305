"""The config.json "architecture" section: names, defaults, bounds and the one validator (no torch here,
so the CLI and the training config can use the bounds without importing the network)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from inpaintseg.errors import ConfigError

ARCH_NAME = "AttentionUNet"
# Keys of the "architecture" section of a model folder's config.json, with their defaults.
ARCH_DEFAULTS: dict[str, object] = {
    "in_channels": 3,
    "out_channels": 1,
    "base_channels": 16,
    "depth": 4,
    "attention": True,
    "input_stem": "rgb",
}
# The input stems (`inpaintseg.model.stems`): the image alone, or the image next to forensic residuals.
# "rgb" builds no stem at all, so an rgb model has exactly the state-dict names of a model saved before
# stems existed (whose config.json has no "input_stem" key: it defaults to "rgb").
INPUT_STEMS = ("rgb", "rgb+srm", "rgb+bayar", "rgb+npr", "rgb+srm+bayar+npr")
MAX_DEPTH = 8
MAX_BASE_CHANNELS = 512  # 512 at depth 4 is already ~2 G parameters: beyond this a config is a mistake
MAX_IO_CHANNELS = 64
MAX_WIDEST_CHANNELS = MAX_BASE_CHANNELS * 2**4  # base x 2^depth at the bottom: 512 at depth 4 at most
# key -> (minimum, maximum) for the integer keys
ARCH_BOUNDS = {"in_channels": (1, MAX_IO_CHANNELS), "out_channels": (1, MAX_IO_CHANNELS),
               "base_channels": (1, MAX_BASE_CHANNELS), "depth": (1, MAX_DEPTH)}


def check_architecture(arch: Any, source: str = "architecture") -> dict[str, Any]:
    """Validate an "architecture" section; returns the constructor keywords (defaults filled in).

    Missing keys take the defaults in `ARCH_DEFAULTS`; an unknown name, an unknown key or a value that is
    not an integer within `ARCH_BOUNDS` raises `ConfigError` whose message starts with `source`.
    """
    if not isinstance(arch, Mapping):
        raise ConfigError(f"{source}: expected a mapping like {{'name': '{ARCH_NAME}', ...}}, "
                          f"got {type(arch).__name__}. Fix the \"architecture\" section.")
    name = arch.get("name")
    if name != ARCH_NAME:
        raise ConfigError(f"{source}: unknown architecture name {name!r}; the only one is "
                          f"{ARCH_NAME!r}. Set \"name\": \"{ARCH_NAME}\".")
    unknown = sorted(set(arch) - set(ARCH_DEFAULTS) - {"name"})
    if unknown:
        raise ConfigError(f"{source}: unknown architecture key(s) {', '.join(map(repr, unknown))}; "
                          f"allowed: name, {', '.join(ARCH_DEFAULTS)}. Remove or rename them.")
    values = {**ARCH_DEFAULTS, **{k: v for k, v in arch.items() if k != "name"}}
    for key, value in values.items():
        if key == "attention":
            if not isinstance(value, bool):
                raise ConfigError(f"{source}: \"attention\" must be true or false, got {value!r}.")
            continue
        if key == "input_stem":
            if value not in INPUT_STEMS:
                raise ConfigError(f"{source}: \"input_stem\" must be one of {', '.join(INPUT_STEMS)}, "
                                  f"got {value!r}.")
            continue
        low, high = ARCH_BOUNDS[key]
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise ConfigError(f"{source}: \"{key}\" must be an integer from {low} to {high}, got {value!r}.")
    widest = values["base_channels"] * 2 ** values["depth"]
    if widest > MAX_WIDEST_CHANNELS:
        raise ConfigError(f"{source}: the widest layer (base_channels x 2^depth = {values['base_channels']} x "
                          f"2^{values['depth']} = {widest}) exceeds {MAX_WIDEST_CHANNELS} channels, billions of "
                          "parameters; lower base_channels or depth.")

    if values["input_stem"] != "rgb" and values["in_channels"] != 3:
        raise ConfigError(f"{source}: input_stem {values['input_stem']!r} works on RGB images and needs "
                          f"\"in_channels\": 3, got {values['in_channels']}. Use input_stem \"rgb\" or 3 channels.")
    return values
