"""Global degradations: levels, exact masks after a kept resize, determinism of the chain."""

from __future__ import annotations

import numpy as np
import pytest

from inpaintseg.errors import InpaintsegError
from inpaintseg.synth.degrade import apply_degradations, check_level, jpeg, sample_degradations, sample_pre_jpeg


def test_levels_draw_more_ops_when_stronger():
    counts = {level: sum(len(sample_degradations(np.random.default_rng(s), level)) for s in range(300))
              for level in ("none", "default", "strong")}
    assert counts["none"] == 0 and 0 < counts["default"] < counts["strong"]
    assert all(sample_pre_jpeg(np.random.default_rng(s), "none") is None for s in range(50))
    with pytest.raises(InpaintsegError, match="degrade_level must be one of none, default, strong"):
        check_level("heavy")


def test_kept_resize_resizes_the_mask_exactly(textured):
    image = textured(4)
    mask = np.zeros((4, 4), np.uint8)
    mask[:2, :2] = 1
    out, out_mask, applied = apply_degradations(image, mask, [{"op": "resize", "scale": 0.5, "back": False}])
    # The smallest side is 16 px: a 4 px image becomes 16 px (x4), the 2x2 block an 8x8 block.
    assert out.shape == (16, 16, 3) and out_mask.shape == (16, 16)
    expected = np.zeros((16, 16), np.uint8)
    expected[:8, :8] = 1
    np.testing.assert_array_equal(out_mask, expected)
    image, mask = textured(64), np.zeros((64, 64), np.uint8)
    mask[10:30, 20:50] = 1
    out, out_mask, _ = apply_degradations(image, mask, [{"op": "resize", "scale": 0.5, "back": False}])
    assert out.shape == (32, 32, 3) and set(np.unique(out_mask)) == {0, 1}
    np.testing.assert_array_equal(out_mask[5:15, 10:25], 1)
    assert out_mask.sum() == 10 * 15


def test_resize_back_keeps_the_size_and_a_vanishing_mask_forces_back(textured):
    image, mask = textured(64), np.zeros((64, 64), np.uint8)
    out, out_mask, _ = apply_degradations(image, mask, [{"op": "resize", "scale": 1.37, "back": True}])
    assert out.shape == image.shape and out_mask is mask
    mask[0, 0] = 1  # a single pixel: at 0.5x nearest-exact samples (1, 1) and loses it
    out, out_mask, applied = apply_degradations(image, mask, [{"op": "resize", "scale": 0.5, "back": False}])
    assert out.shape == image.shape and out_mask.sum() == 1 and applied[0]["back"] is True


def test_chain_is_deterministic_and_changes_the_image(textured):
    image = textured(64)
    ops = [{"op": "blur", "sigma": 0.8}, {"op": "noise", "sigma": 3.0, "seed": 5}, {"op": "jpeg", "quality": 40}]
    a, _, _ = apply_degradations(image, None, ops)
    b, _, _ = apply_degradations(image, None, ops)
    assert np.array_equal(a, b) and not np.array_equal(a, image)
    assert np.abs(jpeg(image, 30).astype(int) - image).mean() > np.abs(jpeg(image, 95).astype(int) - image).mean()


def test_camera_jpeg_and_tool_resave_use_realistic_qualities():
    from inpaintseg.synth.degrade import PROBABILITIES, sample_resave

    pre = [sample_pre_jpeg(np.random.default_rng(s), "default") for s in range(400)]
    qualities = [q for q in pre if q is not None]
    assert min(qualities) >= 75 and max(qualities) <= 95
    assert abs(len(qualities) / 400 - PROBABILITIES["default"]["pre_jpeg"]) < 0.08
    saves = [sample_resave(np.random.default_rng(s), "default") for s in range(400)]
    jpegs = [r["quality"] for r in saves if r["format"] == "jpeg"]
    assert {r["format"] for r in saves} == {"png", "jpeg"} and 75 <= min(jpegs) and max(jpegs) <= 95
    assert all(sample_resave(np.random.default_rng(s), "none") == {"format": "png"} for s in range(50))
    assert sample_resave(np.random.default_rng(3), "strong") == sample_resave(np.random.default_rng(3), "strong")


def test_resave_png_is_lossless_and_jpeg_matches_an_encoder_round_trip(textured):
    from inpaintseg.synth.degrade import apply_resave

    image = textured(32)
    assert apply_resave(image, {"format": "png"}) is image
    np.testing.assert_array_equal(apply_resave(image, {"format": "jpeg", "quality": 80}), jpeg(image, 80))
    with pytest.raises(ValueError, match="gif"):
        apply_resave(image, {"format": "gif"})
