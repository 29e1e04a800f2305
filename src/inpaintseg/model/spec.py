"""The config.json "architecture" section: names, defaults, bounds and the one validator (no torch here,
so the CLI and the training config can use the bounds without importing the network)."""

from __future__ import annotations

import re
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
    "encoder": "unet",
    "norm": "batch",
}
# The input stems (`inpaintseg.model.stems`): the image alone, or the image next to forensic residuals.
# "rgb" builds no stem at all, so an rgb model has exactly the state-dict names of a model saved before
# stems existed (whose config.json has no "input_stem" key: it defaults to "rgb").
INPUT_STEMS = ("rgb", "rgb+srm", "rgb+bayar", "rgb+npr", "rgb+srm+bayar+npr")
# The encoders (`inpaintseg.model.encoders`): "unet" is the Attention U-Net's own (conv blocks + max pooling;
# a config.json without the key means it, with the state-dict names of before encoders were a choice);
# "timm:<model name>" is a timm feature backbone (the optional `[encoders]` extra), e.g. "timm:resnet18" or
# "timm:convnext_tiny.fb_in1k" (a pretrained tag after the dot only chooses what --encoder-weights imagenet loads).
# An input stem works in front of any encoder.
UNET_ENCODER = "unet"
# The normalisation after each 3x3 convolution of the U-Net's ConvBlocks (encoder, timm full-resolution branch
# and decoder; a timm backbone keeps its own): "batch" (BatchNorm, the default; a config.json without the key
# means it) or "group" (GroupNorm, batch-size independent: `group_count` gives the groups per layer).
NORMS = ("batch", "group")
TIMM_PREFIX = "timm:"
TIMM_NAME_PATTERN = r"[A-Za-z0-9][A-Za-z0-9_.\-]{0,127}"
MAX_DEPTH = 8
MAX_BASE_CHANNELS = 512  # 512 at depth 4 is already ~2 G parameters: beyond this a config is a mistake
MAX_IO_CHANNELS = 64
MAX_WIDEST_CHANNELS = MAX_BASE_CHANNELS * 2**4  # base x 2^depth at the bottom: 512 at depth 4 at most
# key -> (minimum, maximum) for the integer keys
ARCH_BOUNDS = {"in_channels": (1, MAX_IO_CHANNELS), "out_channels": (1, MAX_IO_CHANNELS),
               "base_channels": (1, MAX_BASE_CHANNELS), "depth": (1, MAX_DEPTH)}


def architecture_section(*, in_channels: int, out_channels: int, base_channels: int, depth: int | None,
                         attention: bool, input_stem: str, encoder: str, norm: str = "batch") -> dict[str, Any]:
    """The config.json `architecture` section (the one place its keys and their order are written); `depth`
    None leaves the key out (a timm encoder's depth is its backbone's, `timm_model_name`)."""
    arch = {"name": ARCH_NAME, "in_channels": in_channels, "out_channels": out_channels,
            "base_channels": base_channels, "depth": depth, "attention": attention, "input_stem": input_stem,
            "encoder": encoder, "norm": norm}
    if depth is None:
        del arch["depth"]
    return arch


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
    encoder = check_encoder(values["encoder"], source)
    if encoder != UNET_ENCODER and "depth" not in arch:
        values["depth"] = None  # a timm encoder's depth is its feature pyramid's (filled in when built)
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
        if key == "norm":
            if value not in NORMS:
                raise ConfigError(f"{source}: \"norm\" must be one of {', '.join(NORMS)}, got {value!r}.")
            continue
        if key == "encoder" or (key == "depth" and value is None):
            continue
        low, high = ARCH_BOUNDS[key]
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise ConfigError(f"{source}: \"{key}\" must be an integer from {low} to {high}, got {value!r}.")
    widest = values["base_channels"] * 2 ** (values["depth"] or 0)
    if encoder == UNET_ENCODER and widest > MAX_WIDEST_CHANNELS:
        raise ConfigError(f"{source}: the widest layer (base_channels x 2^depth = {values['base_channels']} x "
                          f"2^{values['depth']} = {widest}) exceeds {MAX_WIDEST_CHANNELS} channels, billions of "
                          "parameters; lower base_channels or depth.")

    if values["input_stem"] != "rgb" and values["in_channels"] != 3:
        raise ConfigError(f"{source}: input_stem {values['input_stem']!r} works on RGB images and needs "
                          f"\"in_channels\": 3, got {values['in_channels']}. Use input_stem \"rgb\" or 3 channels.")
    return values


def check_encoder(value: Any, source: str = "encoder") -> str:
    """Validate an encoder name ("unet" or "timm:<model name>"); returns it or raises `ConfigError`."""
    if value == UNET_ENCODER:
        return value
    if isinstance(value, str) and value.startswith(TIMM_PREFIX) \
            and re.fullmatch(TIMM_NAME_PATTERN, value[len(TIMM_PREFIX):]):
        return value
    raise ConfigError(f"{source}: \"encoder\" must be \"{UNET_ENCODER}\" or \"{TIMM_PREFIX}<model name>\" "
                      f"(a timm model with a feature pyramid, e.g. {TIMM_PREFIX}resnet18 or {TIMM_PREFIX}convnext_tiny), "
                      f"got {value!r}.")


def group_count(channels: int) -> int:
    """GroupNorm groups for a layer of `channels`: the largest divisor of `channels` that is at most
    min(32, channels // 4), and at least 1.

    32 is the GN paper's default (Wu & He 2018, also torchvision's / detectron2's); the cap of channels // 4
    keeps >= 4 channels per group: in the paper's ImageNet table 1 channel per group (InstanceNorm) cost ~4
    points of error and 2 channels ~1.4, while 4 to 64 channels per group were within ~0.6 of each other. The demo's width-8 U-Net (8..128 channels) gets
    2, 4, 8, 16, 32 groups of 4 channels; a layer of under 8 channels gets one group (LayerNorm over C, H, W).
    """
    limit = max(1, min(32, channels // 4))
    return next(g for g in range(limit, 0, -1) if channels % g == 0)


def timm_model_name(encoder: str) -> str | None:
    """"timm:resnet18" -> "resnet18"; None for the U-Net encoder."""
    return encoder[len(TIMM_PREFIX):] if encoder.startswith(TIMM_PREFIX) else None
