"""Inference: TTA views (`tta`), tiling (`tiling`), the `Predictor` (`predictor`), post-processing choice
(`postprocess`), validation calibration (`calibration`), DenseCRF (`crf`, `crf_pool`) and the folder pipeline
(`pipeline`: `predict_folder`). The public, documented entry points are `inpaintseg.load_model` and
`inpaintseg.predict_folder`."""

from inpaintseg.inference.calibration import calibrate_postprocessing
from inpaintseg.inference.pipeline import FolderPrediction, ImageResult, list_images, predict_folder, predict_paths
from inpaintseg.inference.postprocess import CRF_OPTIONS, TTA_OPTIONS, PostProcess, resolve_postprocess
from inpaintseg.inference.predictor import Predictor, resolve_device
from inpaintseg.inference.tta import TTA_CHOICES, TTA_SCALES, View, tta_scales, tta_views

__all__ = [
    "CRF_OPTIONS", "TTA_CHOICES", "TTA_OPTIONS", "TTA_SCALES", "FolderPrediction", "ImageResult", "PostProcess", "Predictor",
    "View", "calibrate_postprocessing", "list_images", "predict_folder", "predict_paths", "resolve_device",
    "resolve_postprocess", "tta_scales", "tta_views",
]
