"""Curriculum sampling (TrainConfig `curriculum_epochs`): easy training images first, ramping to the full mix.

An image's difficulty is read from the engine's DATA/train/meta.json (`inpaintseg demo-data` / the synth
engine): one point each for test-time-like degradations, shortcut breakers applied after the fill
(`post_fill`), a pre-fill JPEG and a hard-negative retouch. In epoch e < N an image is drawn with weight
exp(-STRENGTH x (1 - e / N) x difficulty) (with replacement, one epoch's worth of draws); from epoch N on the
sampler is a plain shuffle of every image, as without a curriculum.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from inpaintseg.errors import DataError

STRENGTH = 1.5  # epoch 0: an image with 2 difficulty points is drawn e^-3 = 5% as often as an easy one


def difficulty(info: dict) -> int:
    """Difficulty points of one meta.json image record."""
    return (bool(info.get("degradations")) + bool(info.get("post_fill")) + bool(info.get("pre_jpeg"))
            + bool(info.get("hard_negative")))


def read_difficulties(meta_file: Path, stems: Sequence[str]) -> np.ndarray:
    """Difficulty of each stem from `meta_file`; DataError when the file or a stem is missing."""
    try:
        images = json.loads(Path(meta_file).read_text(encoding="utf-8"))["images"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise DataError(f"{meta_file}: curriculum_epochs needs the engine's meta.json with an \"images\" record "
                        f"per training image ({exc}). Generate the data with `inpaintseg demo-data` or set "
                        "--curriculum-epochs 0.") from None
    missing = [s for s in stems if s not in images]
    if missing:
        raise DataError(f"{meta_file}: no record for {len(missing)} training images (e.g. {missing[0]}); "
                        "curriculum_epochs needs one per image. Set --curriculum-epochs 0 for this data.")
    return np.array([difficulty(images[s]) for s in stems], dtype=np.float64)


def curriculum_weights(difficulties: np.ndarray, epoch: int, epochs: int) -> np.ndarray:
    """Sampling probabilities of each image in `epoch` (uniform once epoch >= epochs)."""
    ramp = max(0.0, 1.0 - epoch / epochs) if epochs else 0.0
    weights = np.exp(-STRENGTH * ramp * difficulties)
    return weights / weights.sum()


class CurriculumSampler:
    """A torch Sampler over range(n): weighted draws with replacement while the curriculum runs, then a
    plain permutation; Lightning calls `set_epoch` at the start of every epoch."""

    def __init__(self, difficulties: np.ndarray, epochs: int, seed: int = 0) -> None:
        self.difficulties = np.asarray(difficulties, dtype=np.float64)
        self.epochs = int(epochs)
        self.seed = int(seed)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.difficulties)

    def __iter__(self):
        rng = np.random.default_rng([self.seed, self.epoch])
        n = len(self.difficulties)
        if self.epoch >= self.epochs:
            return iter(rng.permutation(n).tolist())
        p = curriculum_weights(self.difficulties, self.epoch, self.epochs)
        return iter(rng.choice(n, size=n, replace=True, p=p).tolist())

    def easy_share(self) -> float:
        """Expected share of draws with difficulty 0 in the current epoch (for the log)."""
        p = curriculum_weights(self.difficulties, self.epoch, self.epochs)
        return float(p[self.difficulties == 0].sum()) if not math.isnan(p.sum()) else 0.0
