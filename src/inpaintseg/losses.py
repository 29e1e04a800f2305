"""Segmentation losses on logits: BCE + soft Dice (the seed), focal + soft Dice, and the Lovasz hinge.

Functional core (`soft_dice_score`, `sigmoid_focal_loss`, `lovasz_hinge`) and thin modules
(`BCEDiceLoss`, `FocalDiceLoss`, `LovaszHingeLoss`); `build_loss(name, ...)` maps the training config's
`loss` choice (`inpaintseg.config.LOSS_CHOICES`) to a module.

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


def _check_same_shape(where: str, first: torch.Tensor, target: torch.Tensor, first_name: str = "logits") -> None:
    if first.shape != target.shape:
        raise ValueError(f"{where}: {first_name} {tuple(first.shape)} and target {tuple(target.shape)} "
                         "must have the same shape")


def soft_dice_score(probs: torch.Tensor, target: torch.Tensor, smooth: float = 1.0,
                    dims: Sequence[int] | None = None, eps: float = 1e-7) -> torch.Tensor:
    """Soft Dice (2 * sum(p * t) + smooth) / (sum(p) + sum(t) + smooth), summed over `dims`.

    `dims=None` sums over every element (one pooled score); `dims=(1, 2, 3)` gives one score per image.
    The denominator is clamped at `eps` so smooth=0 with two empty tensors gives 0 rather than NaN.

    Shape: probs, target (B, C, H, W) (any equal shapes) -> tensor with `dims` reduced (scalar for None).
    """
    _check_same_shape("soft_dice_score", probs, target, "probs")
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


def _float_pair(name: str, logits: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits in float32 and the target in the same dtype; ValueError naming `name` when the shapes differ."""
    _check_same_shape(name, logits, target)
    logits = logits.float()
    return logits, target.to(logits.dtype)


def _mean_image_dice(logits: torch.Tensor, target: torch.Tensor, smooth: float) -> torch.Tensor:
    """Soft Dice of each image (all dims but the batch), averaged over the batch."""
    return soft_dice_score(torch.sigmoid(logits), target, smooth, dims=tuple(range(1, logits.ndim))).mean()


class BCEDiceLoss(nn.Module):
    """bce_weight * BCE-with-logits (mean over pixels) + dice_weight * (1 - mean per-image soft Dice).

    Shape: logits, target (B, C, H, W) -> scalar. `target` holds 0/1 (or soft labels in [0, 1]).
    """

    def __init__(self, bce_weight: float = 1.0, dice_weight: float = 1.0, smooth: float = 1.0,
                 small_mask_power: float = 0.0) -> None:
        super().__init__()
        self.small_mask_power = _check_weight("small_mask_power", small_mask_power)
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
        logits, target = _float_pair("BCEDiceLoss", logits, target)
        bce = F.binary_cross_entropy_with_logits(logits, target)
        return {"bce": bce, "dice": _mean_image_dice(logits, target, self.smooth)}

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if self.small_mask_power:
            return self._weighted(logits, target)
        parts = self.components(logits, target)
        return self.bce_weight * parts["bce"] + self.dice_weight * (1.0 - parts["dice"])

    def _weighted(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Per-image BCE and 1 - soft Dice, averaged with `small_mask_weights` (equal weights: `forward`)."""
        logits, target = _float_pair("BCEDiceLoss", logits, target)
        dims = tuple(range(1, logits.ndim))
        bce = F.binary_cross_entropy_with_logits(logits, target, reduction="none").mean(dim=dims)
        dice = soft_dice_score(torch.sigmoid(logits), target, self.smooth, dims=dims)
        weights = small_mask_weights(target, self.small_mask_power)
        return (weights * (self.bce_weight * bce + self.dice_weight * (1.0 - dice))).mean()

    def extra_repr(self) -> str:
        return (f"bce_weight={self.bce_weight}, dice_weight={self.dice_weight}, smooth={self.smooth}, "
                f"small_mask_power={self.small_mask_power}")


SMALL_MASK_REFERENCE = 0.25  # coverage that weighs 1 (about the demo data's median mask)
SMALL_MASK_FLOOR = 0.04  # smaller masks weigh as this coverage: at most (0.25 / 0.04)^power


def small_mask_weights(target: torch.Tensor, power: float) -> torch.Tensor:
    """Per-image loss weights that favour small masks: (coverage / 0.25)^-power with the coverage clipped to
    [0.04, 1], empty masks 1, scaled so the batch's weights average 1 (the loss keeps its scale).

    Shape: target (B, C, H, W) in [0, 1] -> (B,)
    """
    coverage = target.detach().float().mean(dim=tuple(range(1, target.ndim)))
    weights = (coverage.clamp(SMALL_MASK_FLOOR, 1.0) / SMALL_MASK_REFERENCE) ** -power
    weights = torch.where(coverage > 0, weights, torch.ones_like(weights))
    return weights / weights.mean()


# ----------------------------------------------------------------------------------------------
# Focal + Dice

FOCAL_GAMMA = 2.0


def sigmoid_focal_loss(logits: torch.Tensor, target: torch.Tensor, gamma: float = FOCAL_GAMMA,
                       alpha: float | None = None) -> torch.Tensor:
    """Focal loss (Lin et al. 2017) per element: BCE(p, t) * (1 - p_t)^gamma, p_t = p if t = 1 else 1 - p,
    optionally weighted by alpha (t = 1) / 1 - alpha (t = 0). gamma = 0 and alpha None give plain BCE.

    Shape: logits, target (any equal shapes) -> the same shape (not reduced).
    """
    _check_same_shape("sigmoid_focal_loss", logits, target)
    probs = torch.sigmoid(logits)
    ce = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
    p_t = probs * target + (1.0 - probs) * (1.0 - target)
    loss = ce * (1.0 - p_t).pow(gamma)
    if alpha is not None:
        loss = loss * (alpha * target + (1.0 - alpha) * (1.0 - target))
    return loss


class FocalDiceLoss(nn.Module):
    """focal_weight * focal loss (mean over pixels) + dice_weight * (1 - mean per-image soft Dice).

    The focal term down-weights pixels the network already gets right (most of the background), so the
    hard pixels near region borders and in faint regions dominate. No alpha by default (alpha = 0.25,
    RetinaNet's, would down-weight the manipulated minority further). Empty masks: as in BCEDiceLoss.

    Shape: logits, target (B, C, H, W) -> scalar.
    """

    def __init__(self, focal_weight: float = 1.0, dice_weight: float = 1.0, gamma: float = FOCAL_GAMMA,
                 alpha: float | None = None, smooth: float = 1.0) -> None:
        super().__init__()
        self.focal_weight = _check_weight("focal_weight", focal_weight)
        self.dice_weight = _check_weight("dice_weight", dice_weight)
        if self.focal_weight == 0 and self.dice_weight == 0:
            raise ValueError("FocalDiceLoss: focal_weight and dice_weight are both 0; give one a positive weight")
        self.gamma = _check_weight("gamma", gamma)
        if alpha is not None and not 0.0 <= alpha <= 1.0:
            raise ValueError(f"FocalDiceLoss: alpha must lie in [0, 1] or be None, got {alpha}")
        self.alpha = alpha
        self.smooth = _check_weight("smooth", smooth)
        if self.smooth == 0:
            raise ValueError("FocalDiceLoss: smooth must be > 0 so that an empty mask predicted empty scores Dice 1")

    def components(self, logits: torch.Tensor, target: torch.Tensor) -> dict[str, torch.Tensor]:
        """The unweighted parts: {"focal": mean focal loss, "dice": mean per-image soft Dice score}."""
        logits, target = _float_pair("FocalDiceLoss", logits, target)
        focal = sigmoid_focal_loss(logits, target, self.gamma, self.alpha).mean()
        return {"focal": focal, "dice": _mean_image_dice(logits, target, self.smooth)}

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        parts = self.components(logits, target)
        return self.focal_weight * parts["focal"] + self.dice_weight * (1.0 - parts["dice"])

    def extra_repr(self) -> str:
        return (f"focal_weight={self.focal_weight}, dice_weight={self.dice_weight}, gamma={self.gamma}, "
                f"alpha={self.alpha}, smooth={self.smooth}")


# ----------------------------------------------------------------------------------------------
# Lovasz hinge (Berman et al. 2018, "The Lovasz-Softmax loss"; follows the authors' lovasz_losses.py)


def lovasz_grad(gt_sorted: torch.Tensor) -> torch.Tensor:
    """Gradient of the Lovasz extension of the Jaccard loss w.r.t. errors sorted in decreasing order.

    Shape: (P,) {0, 1} labels in the order of decreasing error -> (P,) float.
    """
    gts = gt_sorted.sum()
    intersection = gts - gt_sorted.cumsum(0)
    union = gts + (1.0 - gt_sorted).cumsum(0)
    jaccard = 1.0 - intersection / union
    if gt_sorted.numel() > 1:
        jaccard = torch.cat([jaccard[:1], jaccard[1:] - jaccard[:-1]])
    return jaccard


def lovasz_hinge(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per-image Lovasz hinge, averaged over the batch: a convex surrogate of 1 - IoU of the foreground.

    Hinge errors e = 1 - logit * sign (sign +1 on manipulated pixels, -1 elsewhere), sorted in decreasing
    order, dotted with `lovasz_grad`. An empty mask, on purpose as in the reference: its IoU is 1 only
    when nothing is predicted, and the extension reduces to relu(1 + the largest logit): only the most
    confident false positive is penalised, and an image predicted empty with margin (all logits <= -1)
    costs 0. A fine-tuning loss (the paper fine-tunes a BCE-trained network with it).

    Shape: logits, target (B, C, H, W) -> scalar.
    """
    _check_same_shape("lovasz_hinge", logits, target)
    logits = logits.float().flatten(1)
    labels = (target.flatten(1) >= 0.5).to(logits.dtype)
    losses = []
    for image_logits, image_labels in zip(logits, labels):
        errors = 1.0 - image_logits * (2.0 * image_labels - 1.0)
        errors_sorted, order = torch.sort(errors, descending=True)
        losses.append(torch.dot(F.relu(errors_sorted), lovasz_grad(image_labels[order])))
    return torch.stack(losses).mean()


class LovaszHingeLoss(nn.Module):
    """Mean per-image Lovasz hinge (see `lovasz_hinge`). Shape: logits, target (B, C, H, W) -> scalar."""

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return lovasz_hinge(logits, target)


def build_loss(name: str, bce_weight: float = 1.0, dice_weight: float = 1.0,
               small_mask_power: float = 0.0) -> nn.Module:
    """The loss module of a `loss` choice: "bce-dice", "focal-dice" (bce_weight weighs the focal term)
    or "lovasz" (the weights do not apply)."""
    if name == "bce-dice":
        return BCEDiceLoss(bce_weight=bce_weight, dice_weight=dice_weight, small_mask_power=small_mask_power)
    if name == "focal-dice":
        return FocalDiceLoss(focal_weight=bce_weight, dice_weight=dice_weight)
    if name == "lovasz":
        return LovaszHingeLoss()
    raise ValueError(f"unknown loss {name!r}; expected bce-dice, focal-dice or lovasz")
