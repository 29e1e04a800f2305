"""config.json "architecture" section -> nn.Module (validated by `inpaintseg.model.spec`)."""

from __future__ import annotations

from collections.abc import Mapping

from inpaintseg.model.attention_unet import AttentionUNet
from inpaintseg.model.spec import check_architecture


def build_model(arch: Mapping, source: str = "architecture", input: Mapping | None = None,
                encoder_weights: str | None = None) -> AttentionUNet:
    """Build a model from a config.json "architecture" section (see docs/architecture.md).

    Missing keys take the defaults in `ARCH_DEFAULTS`; an unknown name, an unknown key or a bad value
    raises `ConfigError` whose message starts with `source` (e.g. the config.json path). `input` is the
    config's "input" section: its mean/std tell an input stem how to un-normalise (default ImageNet's).
    `encoder_weights` ("imagenet" or a state-dict file; timm encoders only) initialises the encoder: training
    uses it, a model folder never does (its weights file holds every tensor).
    """
    normalization = {k: input[k] for k in ("mean", "std") if input and k in input}
    return AttentionUNet(**check_architecture(arch, source), **normalization, encoder_weights=encoder_weights)
