"""Global degradations: levels, exact masks after a kept resize, determinism of the chain."""

from __future__ import annotations

import numpy as np
import pytest

from inpaintseg.errors import InpaintsegError
from inpaintseg.synth.degrade import (apply_degradations, camera_noise, check_level, jpeg, sample_camera_noise,
                                     sample_degradations, sample_pre_jpeg)


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


def _noise(level: int, **record) -> np.ndarray:
    flat = np.full((256, 256, 3), level, np.uint8)
    return camera_noise(flat, {"sigma": 4.0, "shot": 0.0, "chroma": 0.3, "demosaic": False, "seed": 5, **record}
                        ).astype(np.float64) - level


def test_camera_noise_has_the_recorded_level_channel_and_pixel_correlation():
    plain = _noise(128)
    assert abs(plain.std() - 4.0) < 0.1 and abs(plain.mean()) < 0.05
    # luma share sqrt(1 - 0.3^2) common to the channels: their correlation is 1 - 0.3^2 = 0.91
    assert abs(np.corrcoef(plain[..., 0].ravel(), plain[..., 1].ravel())[0, 1] - 0.91) < 0.02
    assert abs(np.corrcoef(plain[:, :-1, 0].ravel(), plain[:, 1:, 0].ravel())[0, 1]) < 0.02  # white in space
    # demosaicing: the 3-tap Gaussian (sigma 0.7) weights 0.209, 0.581, 0.209 correlate neighbours by
    # 2 * 0.209 * 0.581 / (2 * 0.209^2 + 0.581^2) = 0.572, and the rescaling keeps the level
    mosaic = _noise(128, demosaic=True)
    assert abs(mosaic.std() - 4.0) < 0.15
    assert abs(np.corrcoef(mosaic[:, :-1, 0].ravel(), mosaic[:, 1:, 0].ravel())[0, 1] - 0.572) < 0.03
    # shot noise: variance sigma^2 (I / 128) when it is all shot noise, 16 x 32/128 = 4 -> std 2 at grey 32
    assert abs(_noise(32, shot=1.0).std() - 2.0) < 0.08 and abs(_noise(32, shot=0.0).std() - 4.0) < 0.1


def test_camera_noise_is_deterministic_and_off_draws_nothing():
    record = sample_camera_noise(np.random.default_rng(3), 1.0)
    image = np.random.default_rng(0).integers(0, 256, (32, 48, 3), dtype=np.uint8)
    np.testing.assert_array_equal(camera_noise(image, record), camera_noise(image, record))
    assert set(record) == {"sigma", "shot", "chroma", "demosaic", "seed"} and 1.0 <= record["sigma"] <= 8.0
    rng = np.random.default_rng(7)
    assert sample_camera_noise(rng, 0.0) is None
    assert rng.random() == np.random.default_rng(7).random()  # no draw: runs without the option keep their bytes
    drawn = sum(sample_camera_noise(np.random.default_rng(s), 0.3) is not None for s in range(1000))
    assert 250 < drawn < 350
