"""The dataset layer: pairing files (`pairing`), reading samples and the torch Dataset (`dataset`), the
seeded split (`split`), the Lightning DataModule (`datamodule`, created lazily), the albumentations
pipelines (`transforms`) and the model's input contract (`input_spec`).

Importing this package does not import torch, albumentations or lightning.
"""

from inpaintseg.data.dataset import InpaintDataset, LazySamples, check_mask_size, load_sample, seed_worker, select_stems
from inpaintseg.data.pairing import (PROBLEM_KINDS, SYSTEM_JUNK_NAMES, PairScan, Problem, Sample, pair_files,
                                     problems_message, scan_pairs)
from inpaintseg.data.split import mask_has_pixels, split_stems

__all__ = [
    "PROBLEM_KINDS", "SYSTEM_JUNK_NAMES", "InpaintDataModule", "InpaintDataset", "LazySamples", "PairScan",
    "Problem", "Sample", "check_mask_size", "load_sample", "mask_has_pixels", "pair_files", "problems_message",
    "scan_pairs", "seed_worker", "select_stems", "split_stems",
]


def __getattr__(name: str):
    """Lazy attribute `InpaintDataModule` (PEP 562): building it imports lightning."""
    if name == "InpaintDataModule":
        from inpaintseg.data.datamodule import datamodule_class

        return datamodule_class()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
