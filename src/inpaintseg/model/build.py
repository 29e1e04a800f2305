"""config.json "architecture" section -> nn.Module (validated by `inpaintseg.model.spec`)."""

from __future__ import annotations

from collections.abc import Mapping

from inpaintseg.model.attention_unet import AttentionUNet
from inpaintseg.model.spec import check_architecture


def build_model(arch: Mapping, source: str = "architecture", encoder_weights: str | None = None) -> AttentionUNet:
    """Build a model from a config.json "architecture" section (see docs/architecture.md).

    Missing keys take the defaults in `ARCH_DEFAULTS`; an unknown name, an unknown key or a bad value
    raises `ConfigError` whose message starts with `source` (e.g. the config.json path). `encoder_weights`
    ("imagenet" or a state-dict file; timm encoders only) initialises the encoder: training uses it, a model
    folder never does (its weights file holds every tensor).
    """
    return AttentionUNet(**check_architecture(arch, source), encoder_weights=encoder_weights)
