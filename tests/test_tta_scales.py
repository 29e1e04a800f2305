"""Multi-scale TTA: the "+scales" modes run the dihedral views at 0.75 / 1 / 1.25 and resize each map back;
calibration takes them only when they gain more than the margin."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from inpaintseg.inference import TTA_CHOICES, Predictor, resolve_postprocess, tta_scales, tta_views
from inpaintseg.inference.calibration import choose

CONFIG = {"input": {"mode": "resize", "size": 32, "mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25]},
          "postprocess": {"threshold": 0.5}}


class Recorder(nn.Module):
    """A 1x1 convolution (equivariant to flips and rotations) that records the input sizes it sees."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(3, 1, 1)
        self.sizes: list[tuple[int, int]] = []

    def forward(self, x):
        self.sizes.append(tuple(x.shape[2:]))
        return self.conv(x)


def test_scale_modes_keep_the_dihedral_views():
    assert TTA_CHOICES == ("none", "flip", "d4", "flip+scales", "d4+scales")
    assert tta_views("flip+scales") == tta_views("flip") and tta_views("d4+scales") == tta_views("d4")
    assert tta_scales("d4+scales") == (0.75, 1.0, 1.25) and tta_scales("d4") == (1.0,)


@pytest.mark.parametrize("mode, calls", [("flip+scales", 12), ("d4+scales", 24)])
def test_each_view_runs_at_each_scale(mode, calls):
    model = Recorder()
    predictor = Predictor(model, CONFIG, tta=mode, channels_last=False)
    probs = predictor.forward_proba(torch.zeros(2, 3, 32, 40))
    assert probs.shape == (2, 32, 40)
    assert len(model.sizes) == calls
    assert {tuple(sorted(s)) for s in model.sizes} == {(24, 30), (32, 40), (40, 50)}


def test_constant_image_gives_the_same_map_with_and_without_scales():
    model = Recorder()
    x = torch.full((1, 3, 32, 32), 0.3)
    plain = Predictor(model, CONFIG, tta="none", channels_last=False).forward_proba(x)
    scaled = Predictor(model, CONFIG, tta="d4+scales", channels_last=False).forward_proba(x)
    torch.testing.assert_close(scaled, plain)


def test_scaled_views_of_a_smooth_image_map_back_to_the_right_place():
    # A pixel-wise model on a linear ramp: resizing the ramp and resizing the map back reproduces the
    # single-scale map away from the border (bilinear resampling is exact on linear functions there).
    model = Recorder()
    ys, xs = torch.meshgrid(torch.linspace(-1, 1, 48), torch.linspace(-2, 2, 64), indexing="ij")
    x = torch.stack([ys, xs, ys - xs])[None]
    plain = Predictor(model, CONFIG, tta="none", channels_last=False).forward_proba(x)
    scaled = Predictor(model, CONFIG, tta="flip+scales", channels_last=False).forward_proba(x)
    inner = (slice(None), slice(4, -4), slice(4, -4))
    assert (scaled[inner] - plain[inner]).abs().max() < 5e-3
    assert (scaled - plain).abs().max() < 0.1


def test_predict_proba_with_scales_keeps_the_original_size():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (45, 27, 3), np.uint8)
    for mode in ("resize", "crop"):
        config = {**CONFIG, "input": {**CONFIG["input"], "mode": mode}}
        probs = Predictor(Recorder(), config, tta="flip+scales").predict_proba(image)
        assert probs.shape == (45, 27) and 0.0 <= probs.min() and probs.max() <= 1.0


def rows(dice: dict) -> list[dict]:
    return [{"tta": mode, "crf": "off", "dice": value, "threshold": 0.4} for mode, value in dice.items()]


@pytest.mark.parametrize("dice, expected", [
    ({"none": 0.50, "flip": 0.52, "d4": 0.523, "flip+scales": 0.530, "d4+scales": 0.531}, "flip+scales"),
    ({"none": 0.50, "flip": 0.52, "d4": 0.523, "flip+scales": 0.524, "d4+scales": 0.5245}, "flip"),
    ({"none": 0.50, "flip": 0.50, "d4": 0.50, "flip+scales": 0.50, "d4+scales": 0.52}, "d4+scales"),
])
def test_calibration_takes_scales_only_for_a_gain_above_the_margin(dice, expected):
    # margin 0.005 over the current (cheaper) choice, cheapest first
    assert choose(rows(dice), TTA_CHOICES, (), margin=0.005)[0] == expected


def test_stored_scale_mode_is_followed():
    post = resolve_postprocess({**CONFIG, "postprocess": {"threshold": 0.4, "tta": "d4+scales", "crf": "off",
                                                          "calibration": {}}})
    assert post.tta == "d4+scales" and post.sources["tta"] == "stored by validation calibration"


def test_shared_plan_runs_each_distinct_view_once():
    from inpaintseg.inference.tta import tta_cost, tta_plan

    jobs, members = tta_plan(TTA_CHOICES)
    # flip's 4 views are d4 views (vertical flip = horizontal flip + half turn), so all 5 modes need
    # the 8 dihedral views at 3 scales: 24 passes instead of 1 + 4 + 8 + 12 + 24 = 49.
    assert len(jobs) == 24
    assert [len(m) for m in members] == [1, 4, 8, 12, 24]
    assert members[0] <= members[1] <= members[2] and members[3] <= members[4]
    assert [tta_cost(m) for m in TTA_CHOICES] == [1.0, 4.0, 8.0, 12.5, 25.0]


@pytest.mark.parametrize("input_mode", ["resize", "crop"])
def test_all_modes_at_once_equal_each_mode_alone(input_mode):
    torch.manual_seed(3)
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 1, 3, padding=1))
    config = {**CONFIG, "input": {**CONFIG["input"], "mode": input_mode}}
    rng = np.random.default_rng(4)
    images = [rng.integers(0, 256, (40, 52, 3), np.uint8), rng.integers(0, 256, (40, 52, 3), np.uint8)]
    together = Predictor(model, config, batch_size=3).predict_proba_modes(images, TTA_CHOICES)
    for mode in TTA_CHOICES:
        alone = Predictor(model, config, tta=mode, batch_size=3).predict_proba_batch(images)
        for a, b in zip(together[mode], alone):
            np.testing.assert_allclose(a, b, atol=1e-5)


def test_calibration_of_all_modes_costs_the_d4_scales_passes_only():
    from inpaintseg.inference import calibrate_postprocessing

    model = Recorder()
    rng = np.random.default_rng(6)
    samples = [(rng.integers(0, 256, (32, 32, 3), np.uint8), np.zeros((32, 32), np.uint8)) for _ in range(3)]
    post = calibrate_postprocessing(model, CONFIG, samples, batch_size=4, crf_variants=())
    assert len(model.sizes) == 24            # one batch of 3 images: 24 passes, not 49
    seconds = {r["tta"]: r["seconds_per_image"] for r in post["calibration"]["table"]}
    assert seconds["d4+scales"] > seconds["d4"] > seconds["none"]
