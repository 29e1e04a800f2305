"""Segmentation losses on logits: binary cross-entropy plus soft Dice.

Dice is computed **per image, then averaged over the batch** (not pooled over the batch): the
competition scores the mean of per-image Dice, so an image with a small inpainted region weighs as much
as one with a large region, and an image with an empty mask is rewarded only when the prediction is
(near) empty too. With `smooth` > 0, an empty target predicted empty gives Dice (0 + s) / (0 + s) = 1,
i.e. zero loss and no NaN.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn


def soft_dice_score(probs: torch.Tensor, target: torch.Tensor, smooth: float = 1.0,
                    dims: Sequence[int] | None = None, eps: float = 1e-7) -> torch.Tensor:
    """Soft Dice (2 * sum(p * t) + smooth) / (sum(p) + sum(t) + smooth), summed over `dims`.

    `dims=None` sums over every element (one pooled score); `dims=(1, 2, 3)` gives one score per image.
    The denominator is clamped at `eps` so smooth=0 with two empty tensors gives 0 rather than NaN.

    Shape: probs, target (B, C, H, W) (any equal shapes) -> tensor with `dims` reduced (scalar for None).
    """
    if probs.shape != target.shape:
        raise ValueError(f"soft_dice_score: probs {tuple(probs.shape)} and target "
                         f"{tuple(target.shape)} must have the same shape")
    if dims is None:
        intersection = torch.sum(probs * target)
        cardinality = torch.sum(probs + target)
    else:
        intersection = torch.sum(probs * target, dim=tuple(dims))
        cardinality = torch.sum(probs + target, dim=tuple(dims))
    return (2.0 * intersection + smooth) / (cardinality + smooth).clamp_min(eps)


def _check_weight(name: str, value: float) -> float:
    value = float(value)
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"BCEDiceLoss: {name} must be a finite number >= 0, got {value}")
    return value


class BCEDiceLoss(nn.Module):
    """bce_weight * BCE-with-logits (mean over pixels) + dice_weight * (1 - mean per-image soft Dice).

    Shape: logits, target (B, C, H, W) -> scalar. `target` holds 0/1 (or soft labels in [0, 1]).
    """

    def __init__(self, bce_weight: float = 1.0, dice_weight: float = 1.0, smooth: float = 1.0) -> None:
        super().__init__()
        self.bce_weight = _check_weight("bce_weight", bce_weight)
        self.dice_weight = _check_weight("dice_weight", dice_weight)
        if self.bce_weight == 0 and self.dice_weight == 0:
            raise ValueError("BCEDiceLoss: bce_weight and dice_weight are both 0, so the loss would "
                             "always be 0; give at least one a positive weight")
        self.smooth = _check_weight("smooth", smooth)
        if self.smooth == 0:
            raise ValueError("BCEDiceLoss: smooth must be > 0 so that an empty mask predicted empty "
                             "scores Dice 1 (use e.g. 1.0)")

    def components(self, logits: torch.Tensor, target: torch.Tensor) -> dict[str, torch.Tensor]:
        """The unweighted parts: {"bce": mean BCE, "dice": mean per-image soft Dice score}."""
        if logits.shape != target.shape:
            raise ValueError(f"BCEDiceLoss: logits {tuple(logits.shape)} and target "
                             f"{tuple(target.shape)} must have the same shape")
        logits = logits.float()
        target = target.to(logits.dtype)
        bce = F.binary_cross_entropy_with_logits(logits, target)
        per_image_dims = tuple(range(1, logits.ndim))
        dice = soft_dice_score(torch.sigmoid(logits), target, self.smooth, dims=per_image_dims).mean()
        return {"bce": bce, "dice": dice}

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        parts = self.components(logits, target)
        return self.bce_weight * parts["bce"] + self.dice_weight * (1.0 - parts["dice"])

    def extra_repr(self) -> str:
        return f"bce_weight={self.bce_weight}, dice_weight={self.dice_weight}, smooth={self.smooth}"
