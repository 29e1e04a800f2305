"""Inference: TTA inverses, original-size outputs, tiling, image score, calibration, post-process choice."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from inpaintseg import inference, metrics
from inpaintseg.inference import tiling
from inpaintseg.commands import flag_message
from inpaintseg.errors import ConfigError, DataError
from inpaintseg.inference import Predictor, View, tta_views


def config(mode="resize", size=32):
    return {"input": {"mode": mode, "size": size, "mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25]},
            "postprocess": {"threshold": 0.5}}


class FixedMap(nn.Module):
    """Position-dependent stand-in: ignores the pixels and returns a fixed, non-symmetric logit map
    cropped to the input size, so any wrong inverse view shows up as a moved value."""

    def __init__(self, logits: np.ndarray):
        super().__init__()
        self.register_buffer("logits", torch.from_numpy(logits.astype(np.float32)))

    def forward(self, x):
        h, w = x.shape[2:]
        return self.logits[:h, :w].expand(x.shape[0], 1, h, w).clone()


def conv_model(kernel: int, seed: int = 0) -> nn.Module:
    """Fully convolutional stand-in (1x1: equivariant to flips/rotations; 3x3: has a receptive field)."""
    torch.manual_seed(seed)
    return nn.Conv2d(3, 1, kernel, padding=kernel // 2)


def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def random_image(rng, h, w):
    return rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8)


# ---------------------------------------------------------------------------------- TTA views
@pytest.mark.parametrize("mode,count", [("none", 1), ("flip", 4), ("d4", 8)])
def test_view_counts_and_distinct(mode, count):
    views = tta_views(mode)
    assert len(views) == count
    x = torch.arange(12.0).view(1, 1, 3, 4)
    seen = {tuple(v.apply(x).flatten().tolist()) + tuple(v.apply(x).shape) for v in views}
    assert len(seen) == count  # every view is a different transform of a non-symmetric input


@pytest.mark.parametrize("view", tta_views("d4"), ids=str)
def test_each_view_is_inverted_exactly_on_non_square(view):
    x = torch.randn(2, 3, 5, 7)
    assert torch.equal(view.invert(view.apply(x)), x)


def test_views_match_numpy_dihedral_ops():
    # Independent reference: numpy's fliplr / flipud / rot90 on the (H, W) plane.
    a = np.arange(20.0).reshape(4, 5)
    t = torch.from_numpy(a).view(1, 1, 4, 5)
    np.testing.assert_array_equal(View(flip=(3,)).apply(t)[0, 0].numpy(), np.fliplr(a))
    np.testing.assert_array_equal(View(flip=(2,)).apply(t)[0, 0].numpy(), np.flipud(a))
    np.testing.assert_array_equal(View(rot=1).apply(t)[0, 0].numpy(), np.rot90(a, 1))
    np.testing.assert_array_equal(View(flip=(3,), rot=3).apply(t)[0, 0].numpy(), np.rot90(np.fliplr(a), 3))


def test_flip_tta_maps_fixed_map_back_exactly():
    # Each view sees the same fixed map M (the model ignores pixels); mapping view k's output back
    # gives inverse_k(M), so flip TTA must return mean(M, fliplr M, flipud M, flipud fliplr M).
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(16, 16)) * 3
    predictor = Predictor(FixedMap(logits), config("resize", 16), tta="flip", channels_last=False)
    probs = predictor.predict_proba(random_image(rng, 16, 16))
    m = sigmoid(logits)
    expected = (m + np.fliplr(m) + np.flipud(m) + np.flipud(np.fliplr(m))) / 4
    np.testing.assert_allclose(probs, expected, atol=1e-6)


def test_d4_tta_maps_fixed_map_back_exactly():
    rng = np.random.default_rng(1)
    logits = rng.normal(size=(16, 16)) * 3
    predictor = Predictor(FixedMap(logits), config("resize", 16), tta="d4", channels_last=False)
    probs = predictor.predict_proba(random_image(rng, 16, 16))
    m = sigmoid(logits)
    # view = flip then rotate by k: the output M is rotated back by -k, then flipped back.
    expected = np.mean([np.rot90(m, -k) for k in range(4)] + [np.fliplr(np.rot90(m, -k)) for k in range(4)], axis=0)
    np.testing.assert_allclose(probs, expected, atol=1e-6)


@pytest.mark.parametrize("tta", ["flip", "d4"])
@pytest.mark.parametrize("mode", ["resize", "crop"])
def test_equivariant_model_gives_same_map_with_and_without_tta(tta, mode):
    rng = np.random.default_rng(2)
    image = random_image(rng, 24, 40)  # non-square: crop mode rotates non-square canvases too
    model = conv_model(1)
    plain = Predictor(model, config(mode, 32), tta="none").predict_proba(image)
    augmented = Predictor(model, config(mode, 32), tta=tta).predict_proba(image)
    np.testing.assert_allclose(augmented, plain, atol=1e-5)


# ---------------------------------------------------------------------------- original size
@pytest.mark.parametrize("mode", ["resize", "crop"])
@pytest.mark.parametrize("shape", [(17, 23), (45, 9), (1, 1), (70, 33)])
def test_probabilities_come_back_at_original_size(mode, shape):
    rng = np.random.default_rng(3)
    image = random_image(rng, *shape)
    predictor = Predictor(conv_model(3), config(mode, 32), tta="d4", batch_size=3)
    probs = predictor.predict_proba(image)
    assert probs.shape == shape and probs.dtype == np.float32
    assert np.all((probs >= 0) & (probs <= 1))


def test_batch_of_mixed_sizes_matches_one_by_one():
    rng = np.random.default_rng(4)
    images = [random_image(rng, 20, 30), random_image(rng, 50, 41), random_image(rng, 32, 32)]
    for mode in ("resize", "crop"):
        predictor = Predictor(conv_model(3), config(mode, 32), tta="flip", batch_size=2)
        together = predictor.predict_proba_batch(images)
        for image, probs in zip(images, together):
            np.testing.assert_allclose(probs, predictor.predict_proba(image), atol=1e-5)


def test_resize_mode_resizes_map_back_before_threshold():
    # A 1x1 conv with zero weight and bias b gives sigmoid(b) everywhere: resized back it must still
    # be the constant at the original (odd) size.
    model = nn.Conv2d(3, 1, 1)
    nn.init.zeros_(model.weight)
    nn.init.constant_(model.bias, 0.7)
    probs = Predictor(model, config("resize", 16)).predict_proba(np.zeros((37, 11, 3), np.uint8))
    assert probs.shape == (37, 11)
    np.testing.assert_allclose(probs, sigmoid(0.7), atol=1e-6)


# ----------------------------------------------------------------------------------- tiling
def test_tile_starts_cover_with_overlap():
    # 600 px, tile 256, overlap >= 64: stride <= 192 -> ceil((600-256)/192)+1 = 3 tiles, evenly spread.
    assert tiling.tile_starts(600, 256, 64) == [0, 172, 344]
    assert tiling.tile_starts(256, 256, 64) == [0]
    for length in range(257, 900, 37):
        starts = tiling.tile_starts(length, 256, 64)
        assert starts[0] == 0 and starts[-1] + 256 == length
        assert all(b - a <= 192 for a, b in zip(starts, starts[1:]))


def test_taper_is_one_on_image_sides_and_ramps_between_tiles():
    w = tiling.taper(8, 3, left=True, right=False)
    # sin^2(pi/2 * i/3) for i = 0, 1, 2 -> 0, 0.25, 0.75; then 1.
    np.testing.assert_allclose(w, [0, 0.25, 0.75, 1, 1, 1, 1, 1], atol=1e-6)
    np.testing.assert_array_equal(tiling.taper(8, 3, left=False, right=False), np.ones(8))


def test_tiled_inference_matches_whole_image_for_a_conv():
    rng = np.random.default_rng(5)
    image = random_image(rng, 70, 90)
    model = conv_model(3)
    cfg = config("crop", 32)
    tiled = Predictor(model, cfg, tta="none", batch_size=4, tile_overlap=0.25).predict_proba(image)
    # Whole-image reference: the same normalisation, one forward pass on the full image.
    x = (torch.from_numpy(image).permute(2, 0, 1).float()[None] / 255 - 0.5) / 0.25
    with torch.no_grad():
        whole = torch.sigmoid(model(x))[0, 0].numpy()
    # A 3x3 conv is wrong only on each tile's outermost pixel, where the taper weight is exactly 0
    # (image-border sides are not tapered, and there both see the same zero padding), so the blend
    # matches everywhere, borders included.
    np.testing.assert_allclose(tiled, whole, atol=1e-5)


def test_small_image_in_crop_mode_is_reflect_padded_and_cropped_back():
    rng = np.random.default_rng(6)
    image = random_image(rng, 10, 20)
    model = conv_model(1)  # pointwise: padding must not change the visible pixels
    probs = Predictor(model, config("crop", 32)).predict_proba(image)
    x = (torch.from_numpy(image).permute(2, 0, 1).float()[None] / 255 - 0.5) / 0.25
    with torch.no_grad():
        expected = torch.sigmoid(model(x))[0, 0].numpy()
    np.testing.assert_allclose(probs, expected, atol=1e-5)


# ------------------------------------------------------------------------------ image score
def test_image_score_is_mean_of_top_one_percent():
    probs = np.zeros((20, 10), np.float32)  # 200 pixels -> top 1% = ceil(2) = 2 pixels
    probs[0, 0], probs[5, 5], probs[9, 9] = 0.9, 0.7, 0.3
    assert metrics.image_score(probs) == pytest.approx((0.9 + 0.7) / 2)
    assert metrics.image_score(np.zeros((3, 3))) == 0.0


def test_image_score_separates_small_region_from_noise():
    rng = np.random.default_rng(7)
    clean = rng.uniform(0, 0.2, size=(100, 100))
    manipulated = clean.copy()
    manipulated[:20, :20] = 0.9  # 4% of the image
    assert metrics.image_score(manipulated) > 0.85 > 0.2 >= metrics.image_score(clean)


# ------------------------------------------------------------------------------ calibration
def test_dice_curve_by_hand():
    # truth: 2 pixels; probs 0.8 on one truth pixel, 0.3 on the other, 0.6 on one background pixel.
    truth = np.array([[1, 1, 0, 0]], np.uint8)
    probs = np.array([[0.8, 0.3, 0.6, 0.0]], np.float32)
    curve = metrics.dice_curve(probs, truth, np.array([0.2, 0.5, 0.7, 0.9]))
    # t=0.2: tp=2 fp=1 fn=0 -> 4/5; t=0.5: tp=1 fp=1 fn=1 -> 2/4; t=0.7: tp=1 fp=0 fn=1 -> 2/3; t=0.9: 0.
    np.testing.assert_allclose(curve, [0.8, 0.5, 2 / 3, 0.0])
    # Empty truth and empty prediction count 1.0 (competition rule).
    assert metrics.dice_curve(np.zeros((2, 2)), np.zeros((2, 2)), np.array([0.5]))[0] == 1.0


class RedDetector(nn.Module):
    """Logit = 8 * (normalised red - normalised green): positive exactly on red pixels."""

    def forward(self, x):
        return 8 * (x[:, :1] - x[:, 1:2])


def red_samples(n, rng):
    samples = []
    for i in range(n):
        image = np.full((24, 24, 3), 40, np.uint8)
        mask = np.zeros((24, 24), np.uint8)
        if i % 3:
            y, x = rng.integers(0, 12, size=2)
            mask[y:y + 8, x:x + 10] = 1
            image[mask == 1] = (220, 40, 40)
        samples.append((image, mask))
    return samples


def test_calibration_records_table_and_keeps_cheap_choice_when_nothing_helps():
    samples = red_samples(6, np.random.default_rng(8))
    post = inference.calibrate_postprocessing(RedDetector(), config("resize", 24), samples,
                                              batch_size=4, crf_max_images=3)
    assert set(post) == {"threshold", "gate", "tta", "crf", "crf_params", "calibration", "verdicts"}
    # a perfect detector raises no false alarm, so an image gate cannot gain anything
    assert post["gate"] is None and post["calibration"]["gate"]["without_gate"]["false_alarm_rate"] == 0.0
    # each table row carries its own gate columns (none here: 2 untouched images are fewer than the minimum)
    assert all(r["gate"] is None and r["gate_threshold"] is None and r["false_alarm_gate"] is None
               for r in post["calibration"]["table"])
    # the verdict record (issue 25): images 0 and 3 of 6 are untouched; a perfect detector separates them
    from inpaintseg.inference.verdicts import quality_warning, verdict_for

    verdicts = post["verdicts"]
    assert (verdicts["n_untouched"], verdicts["n_manipulated"]) == (2, 4)
    assert verdict_for(0.999, verdicts, 0.5).level == "likely manipulated"
    assert verdict_for(0.0, verdicts, 0.5).level == "likely untouched"
    assert verdicts["model_dice"] == pytest.approx(1.0) and quality_warning({"postprocess": post}) is None
    table = post["calibration"]["table"]
    combos = {(row["tta"], row["crf"]) for row in table}
    assert {("none", "off"), ("flip", "off"), ("d4", "off")} <= combos
    # The detector is perfect and equivariant: TTA gains nothing, so the cheapest mode is kept.
    assert post["tta"] == "none"
    assert post["crf"] in ("off", "gaussian", "seed")
    none_off = next(r for r in table if (r["tta"], r["crf"]) == ("none", "off"))
    assert none_off["dice"] == pytest.approx(1.0) and none_off["n_images"] == 6
    if post["calibration"]["n_crf_images"]:
        crf_row = next(r for r in table if r["crf"] == "seed")
        assert crf_row["n_images"] == 3 and "crf_gain" in crf_row
        assert post["crf"] == "off"  # nothing to gain over Dice 1.0
    assert 0 < post["threshold"] < 1


def test_calibration_needs_samples():
    with pytest.raises(DataError, match="validation"):
        inference.calibrate_postprocessing(RedDetector(), config(), [])


# ------------------------------------------------------------------------- post-process choice
def test_resolve_postprocess_follows_record_and_flags():
    cfg = {"input": config()["input"],
           "postprocess": {"threshold": 0.42, "tta": "flip", "crf": "off", "calibration": {}}}
    auto = inference.resolve_postprocess(cfg)
    assert (auto.tta, auto.crf, auto.threshold) == ("flip", "off", 0.42)
    assert "calibration" in auto.describe()
    bare = inference.resolve_postprocess(cfg, crf="on")  # bare --crf with calibration off -> gaussian
    assert bare.crf == "gaussian" and bare.crf_params["bilateral"] is None
    cfg["postprocess"]["crf"] = "seed"
    assert inference.resolve_postprocess(cfg, crf="on").crf == "seed"
    explicit = inference.resolve_postprocess(cfg, tta="d4", crf="off", threshold=0.3)
    assert (explicit.tta, explicit.crf, explicit.threshold) == ("d4", "off", 0.3)


def test_resolve_postprocess_without_record_uses_defaults_and_says_so():
    post = inference.resolve_postprocess({"input": config()["input"], "postprocess": {}})
    assert (post.tta, post.crf, post.threshold) == ("none", "off", 0.5)
    assert "no calibration record" in post.describe()


def test_bad_stored_choices_are_config_errors():
    with pytest.raises(ConfigError, match="stored TTA mode .*'rot45'") as info:
        inference.resolve_postprocess({"postprocess": {"tta": "rot45"}})
    assert "Pass --tta explicitly" in flag_message(info.value)  # the CLI names the flag, the library the parameter
    with pytest.raises(ConfigError, match="^tta must be one of") as info:
        inference.resolve_postprocess({"postprocess": {}}, tta="rot45")
    assert flag_message(info.value).startswith("--tta must be one of")
    with pytest.raises(ConfigError, match="^crf must be one of") as info:
        inference.resolve_postprocess({"postprocess": {}}, crf="dense")
    assert flag_message(info.value).startswith("--crf must be one of")
    with pytest.raises(ConfigError, match="threshold"):
        inference.resolve_postprocess({"postprocess": {"threshold": 1.5}})
    with pytest.raises(ConfigError, match="TTA"):
        Predictor(conv_model(1), config(), tta="bogus")


# --------------------------------------------------------------------------- property tests
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402


@settings(max_examples=40, deadline=None)
@given(h=st.integers(1, 9), w=st.integers(1, 9), index=st.integers(0, 7))
def test_property_every_d4_view_inverts_exactly(h, w, index):
    view = tta_views("d4")[index]
    x = torch.arange(h * w * 2, dtype=torch.float32).view(1, 2, h, w)
    assert torch.equal(view.invert(view.apply(x)), x)


@settings(max_examples=60, deadline=None)
@given(length=st.integers(1, 2000), tile=st.integers(8, 300), frac=st.floats(0.0, 0.45))
def test_property_tiles_cover_the_canvas_with_positive_weight(length, tile, frac):
    overlap = int(round(tile * frac))
    length = max(length, tile)  # the canvas is padded to at least one tile
    starts = tiling.tile_starts(length, tile, overlap)
    total = np.zeros(length)
    for i, s in enumerate(starts):
        total[s:s + tile] += tiling.taper(tile, overlap, left=i > 0, right=i < len(starts) - 1)
    assert starts[0] == 0 and starts[-1] + tile == length
    assert total.min() > 0  # every pixel gets a positive blending weight
