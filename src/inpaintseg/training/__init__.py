"""Training on PyTorch Lightning: the LightningModule (`module`), callbacks (`callbacks`), hardware choices
(`hardware`) and the thin `train(config)` that fills a run folder (`train`). Run-folder names and
metrics.csv live in `inpaintseg.run_dir`."""

from inpaintseg.training.module import NonFiniteLossError, SegmentationModule
from inpaintseg.training.train import TrainingInterrupted, TrainResult, build_module, train

__all__ = ["NonFiniteLossError", "SegmentationModule", "TrainResult", "TrainingInterrupted", "build_module", "train"]
