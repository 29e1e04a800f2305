"""inpaintseg: find AI-inpainted regions in images (per-pixel binary segmentation).

The public API (see the README's "Python API" section)::

    import inpaintseg
    model = inpaintseg.load_model("runs/x/model", device="auto")
    pred = model.predict(image)                  # path, PIL image or uint8 HxWx3 RGB array
    inpaintseg.predict_folder(model, "test/images", out="submission.csv")
    result = inpaintseg.train(inpaintseg.load_config(overrides={"data": "DATA"}))

Names are imported on first use, so `import inpaintseg` stays cheap (no torch until needed).
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

_EXPORTS = {
    "load_model": "inpaintseg.api",
    "InpaintModel": "inpaintseg.api",
    "Prediction": "inpaintseg.api",
    "predict_folder": "inpaintseg.inference.pipeline",
    "FolderPrediction": "inpaintseg.inference.pipeline",
    "train": "inpaintseg.training.train",
    "TrainResult": "inpaintseg.training.train",
    "load_config": "inpaintseg.config",
    "TrainConfig": "inpaintseg.config",
    "evaluate": "inpaintseg.evaluation.evaluate",
}
__all__ = ["__version__", *sorted(_EXPORTS)]


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
