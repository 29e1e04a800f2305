"""The seeded, stratified train/validation split."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from inpaintseg.data.pairing import Sample
from inpaintseg.errors import ConfigError, DataError
from inpaintseg.fileio import read_mask


def split_stems(stems: Sequence[str], has_mask_pixels: Sequence[bool], val_fraction: float = 0.1,
                seed: int = 0) -> tuple[list[str], list[str]]:
    """Seeded train/validation split, stratified on empty vs non-empty masks.

    The validation part has round(n * val_fraction) stems, at least 1 and at most n - 1. When both
    groups (empty and non-empty masks) have >= 2 members, each group appears in both parts (so the
    validation part then has between 2 and n - 2 stems), in proportion to the group sizes. The
    result depends only on the set of stems, the flags, `val_fraction` and `seed` (not on input
    order); both lists are sorted.
    """
    stems = list(stems)
    flags = [bool(f) for f in has_mask_pixels]
    if len(stems) != len(flags):
        raise ValueError(f"split_stems: {len(stems)} stems but {len(flags)} mask flags")
    if len(set(stems)) != len(stems):
        raise ValueError("split_stems: stems must be unique")
    if not 0.0 < float(val_fraction) < 1.0:
        raise ConfigError(
            f"val_fraction {val_fraction!r} is out of range; expected a number between 0 and 1 "
            "(exclusive), e.g. 0.1."
        )
    if len(stems) < 2:
        raise DataError(
            f"a train/validation split needs at least 2 training images; found {len(stems)}. "
            "Add training images."
        )
    order = sorted(range(len(stems)), key=lambda i: stems[i])
    positives = [stems[i] for i in order if flags[i]]
    negatives = [stems[i] for i in order if not flags[i]]
    n = len(stems)
    n_val = min(max(1, round(n * val_fraction)), n - 1)
    rng = np.random.default_rng(seed)
    if len(positives) >= 2 and len(negatives) >= 2:
        # Both groups in both parts: 2 <= n_val <= n - 2; n_pos proportional, clipped so that each
        # group keeps >= 1 member on each side.
        n_val = min(max(n_val, 2), n - 2)
        low = max(1, n_val - (len(negatives) - 1))
        high = min(len(positives) - 1, n_val - 1)
        n_pos = int(np.clip(round(n_val * len(positives) / n), low, high))
        n_neg = n_val - n_pos
        val = [positives[i] for i in rng.permutation(len(positives))[:n_pos]]
        val += [negatives[i] for i in rng.permutation(len(negatives))[:n_neg]]
    else:
        ordered = [stems[i] for i in order]
        val = [ordered[i] for i in rng.permutation(n)[:n_val]]
    val_set = set(val)
    return sorted(s for s in stems if s not in val_set), sorted(val_set)


def mask_has_pixels(samples: Sequence[Sample]) -> list[bool]:
    """For each sample, whether its mask has any manipulated pixel (reads masks one at a time)."""
    return [bool(read_mask(s.mask_path).any()) for s in samples]


def even_subset(n: int, limit: int) -> list[int]:
    """``limit`` indices spread evenly over range(n), sorted (all of them when n <= limit)."""
    if n <= limit:
        return list(range(n))
    return sorted({int(v) for v in np.linspace(0, n - 1, limit).round()})
