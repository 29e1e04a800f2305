"""BCEDiceLoss and soft_dice_score, with values worked out by hand on 2x2 examples."""

from __future__ import annotations

import math

import pytest
import torch

from inpaintseg.losses import BCEDiceLoss, soft_dice_score

LN3 = math.log(3.0)   # sigmoid(ln 3) = 3/4, sigmoid(-ln 3) = 1/4


def t(rows):
    return torch.tensor(rows, dtype=torch.float32).reshape(1, 1, 2, 2)


def test_zero_logits_hand_value():
    # p = 0.5 everywhere: BCE = ln 2 per pixel. Dice (smooth 1): intersection 0.5 + 0.5 = 1,
    # sum p + sum t = 2 + 2 = 4 -> (2*1 + 1) / (4 + 1) = 0.6. Loss = ln 2 + (1 - 0.6).
    loss = BCEDiceLoss()(t([[0, 0], [0, 0]]), t([[1, 0], [0, 1]]))
    assert loss.item() == pytest.approx(math.log(2) + 0.4, abs=1e-6)


def test_known_logits_hand_value_and_weights():
    logits = t([[LN3, -LN3], [LN3, -LN3]])   # probs [[.75, .25], [.75, .25]]
    target = t([[1, 0], [0, 0]])
    # BCE per pixel: -ln .75 (p=.75,t=1), -ln .75 (p=.25,t=0), -ln .25 (p=.75,t=0), -ln .75 (p=.25,t=0)
    bce = (3 * -math.log(0.75) - math.log(0.25)) / 4           # 0.562335
    # Dice: intersection .75; sum p = 2, sum t = 1 -> (1.5 + 1) / (3 + 1) = 0.625
    dice = 0.625
    parts = BCEDiceLoss().components(logits, target)
    assert parts["bce"].item() == pytest.approx(bce, abs=1e-6)
    assert parts["dice"].item() == pytest.approx(dice, abs=1e-6)
    assert BCEDiceLoss()(logits, target).item() == pytest.approx(bce + 1 - dice, abs=1e-6)
    weighted = BCEDiceLoss(bce_weight=0.5, dice_weight=2.0)(logits, target)
    assert weighted.item() == pytest.approx(0.5 * bce + 2.0 * (1 - dice), abs=1e-6)


def test_empty_target_predicted_empty_costs_nothing_and_has_finite_grad():
    logits = torch.full((2, 1, 2, 2), -30.0, requires_grad=True)
    loss = BCEDiceLoss()(logits, torch.zeros(2, 1, 2, 2))
    loss.backward()
    # BCE = log(1 + e^-30) ~ 1e-13; Dice = (0 + 1) / (4 * sigmoid(-30) + 0 + 1) ~ 1.
    assert loss.item() == pytest.approx(0.0, abs=1e-6)
    assert torch.isfinite(logits.grad).all()


def test_dice_is_per_image_then_averaged():
    # Image A: all-ones target, p ~ 1 -> Dice (2*4 + 1) / (8 + 1) = 1.
    # Image B: empty target, p ~ 1 -> Dice (0 + 1) / (4 + 0 + 1) = 0.2.   Mean 0.6 -> loss 0.4.
    # (Batch-pooled would give (2*4 + 1) / (12 + 1) = 0.692 -> loss 0.308.)
    logits = torch.full((2, 1, 2, 2), 30.0)
    target = torch.stack([torch.ones(1, 2, 2), torch.zeros(1, 2, 2)])
    loss = BCEDiceLoss(bce_weight=0.0, dice_weight=1.0)(logits, target)
    assert loss.item() == pytest.approx(0.4, abs=1e-6)


def test_soft_dice_score_dims():
    probs = torch.tensor([[[[0.5, 0.5], [0.0, 0.0]]], [[[1.0, 0.0], [0.0, 0.0]]]])
    target = torch.tensor([[[[1.0, 0.0], [0.0, 0.0]]], [[[1.0, 0.0], [0.0, 0.0]]]])
    # per image: (2*.5 + 1) / (1 + 1 + 1) = 2/3 and (2*1 + 1) / (1 + 1 + 1) = 1
    per_image = soft_dice_score(probs, target, smooth=1.0, dims=(1, 2, 3))
    torch.testing.assert_close(per_image, torch.tensor([2 / 3, 1.0]))
    # pooled: intersection 1.5, cardinality 2 + 2 = 4 -> (3 + 1) / (4 + 1) = 0.8
    assert soft_dice_score(probs, target, smooth=1.0).item() == pytest.approx(0.8)
    # smooth 0 on two empty tensors: clamped denominator, 0 rather than NaN
    assert soft_dice_score(torch.zeros(4), torch.zeros(4), smooth=0.0).item() == 0.0


@pytest.mark.parametrize("kwargs", [
    {"bce_weight": -1.0}, {"dice_weight": -0.1}, {"bce_weight": 0.0, "dice_weight": 0.0},
    {"bce_weight": float("nan")}, {"dice_weight": float("inf")}, {"smooth": 0.0}, {"smooth": -1.0},
])
def test_bad_weights_raise_value_error(kwargs):
    with pytest.raises(ValueError, match="BCEDiceLoss"):
        BCEDiceLoss(**kwargs)


def test_shape_mismatch_is_reported():
    with pytest.raises(ValueError, match=r"\(1, 1, 2, 2\).*\(1, 1, 3, 3\)"):
        BCEDiceLoss()(torch.zeros(1, 1, 2, 2), torch.zeros(1, 1, 3, 3))


# ------------------------------------------------------------------------------ focal + Dice, Lovasz
def test_focal_hand_value_and_gamma_zero_is_bce():
    from inpaintseg.losses import FocalDiceLoss, sigmoid_focal_loss

    logits = t([[LN3, -LN3], [LN3, -LN3]])   # probs [[.75, .25], [.75, .25]]
    target = t([[1, 0], [0, 0]])
    # p_t = .75, .75, .25, .75 -> BCE -ln p_t times (1 - p_t)^2 = 1/16, 1/16, 9/16, 1/16
    focal = (3 * -math.log(0.75) / 16 - math.log(0.25) * 9 / 16) / 4
    parts = FocalDiceLoss().components(logits, target)
    assert parts["focal"].item() == pytest.approx(focal, abs=1e-6)
    assert parts["dice"].item() == pytest.approx(0.625, abs=1e-6)
    assert FocalDiceLoss()(logits, target).item() == pytest.approx(focal + 0.375, abs=1e-6)
    bce = BCEDiceLoss().components(logits, target)["bce"]
    assert sigmoid_focal_loss(logits, target, gamma=0.0).mean().item() == pytest.approx(bce.item(), abs=1e-6)
    # alpha weighs manipulated pixels by alpha and the others by 1 - alpha
    weighted = sigmoid_focal_loss(logits, target, alpha=0.25).flatten()
    plain = sigmoid_focal_loss(logits, target).flatten()
    assert torch.allclose(weighted, plain * torch.tensor([0.25, 0.75, 0.75, 0.75]))


def test_lovasz_hinge_hand_values_with_and_without_foreground():
    from inpaintseg.losses import LovaszHingeLoss, lovasz_hinge

    # Foreground pixel 0. Hinge errors 1 - logit * sign: [-1, 1, -1, 2] -> sorted [2, 1, -1, -1] with
    # labels [0, 0, ...]; Jaccard steps 1 - 1/2 = .5 then 1 - 1/3 -> grad [.5, 1/6, ...]
    # -> loss 2 * .5 + 1 * 1/6 = 7/6.
    with_fg = lovasz_hinge(t([[2, 0], [-2, 1]]), t([[1, 0], [0, 0]]))
    assert with_fg.item() == pytest.approx(7 / 6, abs=1e-6)
    # Empty mask: only the most confident false positive counts: relu(1 + 0.5) = 1.5 ...
    empty = lovasz_hinge(t([[-2, 0.5], [-1, -3]]), t([[0, 0], [0, 0]]))
    assert empty.item() == pytest.approx(1.5, abs=1e-6)
    # ... and an image predicted empty with margin costs nothing.
    assert lovasz_hinge(t([[-2, -1], [-1.5, -3]]), t([[0, 0], [0, 0]])).item() == 0.0
    # Per image, then averaged over the batch.
    batch_logits = torch.cat([t([[2, 0], [-2, 1]]), t([[-2, 0.5], [-1, -3]])])
    batch_target = torch.cat([t([[1, 0], [0, 0]]), t([[0, 0], [0, 0]])])
    assert LovaszHingeLoss()(batch_logits, batch_target).item() == pytest.approx((7 / 6 + 1.5) / 2, abs=1e-6)


def test_new_losses_have_finite_gradients_on_empty_masks():
    from inpaintseg.losses import build_loss

    for name in ("focal-dice", "lovasz"):
        logits = torch.zeros(2, 1, 4, 4, requires_grad=True)
        build_loss(name)(logits, torch.zeros(2, 1, 4, 4)).backward()
        assert torch.isfinite(logits.grad).all() and logits.grad.abs().sum() > 0


def test_every_loss_choice_builds():
    from inpaintseg.config import LOSS_CHOICES
    from inpaintseg.losses import FocalDiceLoss, LovaszHingeLoss, build_loss

    losses = {name: build_loss(name, bce_weight=0.5, dice_weight=2.0) for name in LOSS_CHOICES}
    assert isinstance(losses["bce-dice"], BCEDiceLoss) and losses["bce-dice"].bce_weight == 0.5
    assert isinstance(losses["focal-dice"], FocalDiceLoss) and losses["focal-dice"].focal_weight == 0.5
    assert isinstance(losses["lovasz"], LovaszHingeLoss)
    with pytest.raises(ValueError, match="unknown loss"):
        build_loss("dice")
