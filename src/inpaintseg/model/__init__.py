"""The network: Attention U-Net (`attention_unet`) on a choice of encoders (`encoders`), its optional forensic
input stems (`stems`), the architecture section's names, bounds and validator (`spec`, torch-free), construction
from a config dict (`build`), size and cost (`summary`) and the model
folder on disk (`io`). Attributes are imported lazily, so `inpaintseg.model.spec` does not import torch."""

from __future__ import annotations

import importlib

_EXPORTS = {
    "ARCH_DEFAULTS": "spec", "ARCH_NAME": "spec", "INPUT_STEMS": "spec", "MAX_DEPTH": "spec",
    "check_architecture": "spec", "InputStem": "stems", "build_stem": "stems",
    "check_encoder": "spec", "UNetEncoder": "encoders", "TimmEncoder": "encoders", "build_encoder": "encoders",
    "AttentionGate": "attention_unet", "AttentionUNet": "attention_unet", "build_model": "build",
    "count_parameters": "summary", "model_flops": "summary", "stage_summary": "summary",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"inpaintseg.model.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
