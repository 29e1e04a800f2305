"""Degradation-robust training: image-only steps (mask and geometry untouched), placed before
normalisation, off by default, validated, and applied identically to a paired original."""

from __future__ import annotations

import albumentations as A
import cv2
import numpy as np
import pytest

from inpaintseg.config import DEGRADE_PRESET, TrainConfig
from inpaintseg.data.transforms import JpegRGB, degradation_steps, train_transform
from inpaintseg.errors import ConfigError

ALL_ON = {"jpeg_p": 1.0, "rescale_p": 1.0, "blur_p": 1.0, "noise_p": 1.0}


def textured(rng: np.random.Generator, size: int = 48) -> tuple[np.ndarray, np.ndarray]:
    image = rng.integers(0, 256, (size, size, 3), np.uint8)
    mask = np.zeros((size, size), np.uint8)
    mask[8:30, 12:40] = 1
    return image, mask


def test_defaults_add_no_step():
    assert degradation_steps() == []
    names = [type(t).__name__ for t in train_transform(32, "crop", seed=0).transforms]
    assert names == ["PadIfNeeded", "RandomCrop", "HorizontalFlip", "VerticalFlip", "RandomRotate90", "Normalize"]
    assert all(v == 0.0 for k, v in TrainConfig().degradations().items() if k.endswith("_p"))


@pytest.mark.parametrize("mode", ["resize", "crop"])
def test_degradations_sit_after_geometry_and_before_normalisation(mode):
    names = [type(t).__name__ for t in train_transform(32, mode, seed=0, degradations=ALL_ON).transforms]
    assert names[-5:] == ["GaussianBlur", "Downscale", "GaussNoise", "JpegRGB", "Normalize"]


@pytest.mark.parametrize("only", ["jpeg_p", "rescale_p", "blur_p", "noise_p"])
def test_each_degradation_changes_the_image_only(only):
    rng = np.random.default_rng(1)
    image, mask = textured(rng)
    pipeline = A.Compose(degradation_steps(**{only: 1.0}), seed=0)
    out = pipeline(image=image, mask=mask)
    assert out["image"].shape == image.shape and out["image"].dtype == np.uint8
    assert np.array_equal(out["mask"], mask)            # the mask is never touched
    assert np.abs(out["image"].astype(int) - image).mean() > 1.0


def test_jpeg_step_is_a_real_jpeg_round_trip_of_the_rgb_image():
    # Regression: albumentations' ImageCompression compresses the channel-swapped image (BGR order).
    rng = np.random.default_rng(2)
    image, mask = textured(rng)
    pipeline = A.Compose(degradation_steps(jpeg_p=1.0, jpeg_quality_min=40, jpeg_quality_max=40), seed=0)
    out = pipeline(image=image, mask=mask)["image"]
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(image, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 40])
    expected = cv2.cvtColor(cv2.imdecode(buf, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
    assert ok and np.array_equal(out, expected)
    step = JpegRGB(quality_range=(30, 32), p=1.0)
    step.set_random_seed(0)
    assert {step.get_params()["quality"] for _ in range(60)} == {30, 31, 32}   # inclusive range


def test_config_keys_reach_the_steps():
    config = TrainConfig.from_dict({**DEGRADE_PRESET, "degrade_jpeg_quality_min": 55, "degrade_rescale_min": 0.6})
    steps = {type(s).__name__: s for s in degradation_steps(**config.degradations())}
    assert steps["JpegRGB"].p == 0.5 and steps["JpegRGB"].quality_range == (55, 100)
    assert tuple(steps["Downscale"].scale_range) == (0.6, 0.9) and steps["Downscale"].p == 0.3


@pytest.mark.parametrize("kwargs, match", [
    ({"jpeg_p": 1.5}, "degrade_jpeg_p"),
    ({"jpeg_quality_min": 90, "jpeg_quality_max": 80}, "min <= max"),
    ({"rescale_min": 0.95}, "degrade_rescale_min"),
])
def test_bad_degradation_settings_are_config_errors(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        degradation_steps(**kwargs)


def test_config_rejects_inverted_jpeg_range():
    with pytest.raises(ConfigError, match="degrade_jpeg_quality_min: expected at most"):
        TrainConfig.from_dict({"degrade_jpeg_quality_min": 90, "degrade_jpeg_quality_max": 70})


def test_a_paired_original_gets_the_same_geometry_and_degradations():
    rng = np.random.default_rng(3)
    image, mask = textured(rng, 64)
    pipeline = train_transform(32, "resize", seed=5, degradations=ALL_ON, additional_targets={"original": "image"})
    for _ in range(5):
        out = pipeline(image=image, mask=mask, original=image.copy())
        np.testing.assert_array_equal(out["image"], out["original"])
