"""A fine-tuning run that kept its starting weights: the start's stored post-processing competes with the run's
own calibration on the same validation images (training.start_post); worked out on a detector whose masks are
perfect at threshold 0.6 and flag every pixel at 0.5."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import export_tiny_model
from inpaintseg.training.start_post import keep_start_postprocess, validation_dice
from test_inference import RedDetector, config, red_samples

SAMPLES = red_samples(6, np.random.default_rng(8))  # images 0 and 3 untouched, the others a red 8x10 box


def section(threshold, **extra):
    return {"threshold": threshold, "tta": "none", "crf": "off", "calibration": {"table": []}, **extra}


def dice(threshold):
    return validation_dice(RedDetector(), config("resize", 24), SAMPLES, section(threshold), "cpu", 4, "32").mean()


def test_validation_dice_by_hand():
    assert dice(0.6) == pytest.approx(1.0)
    # at 0.5 every pixel is marked (non-red pixels sit exactly at p = 0.5): untouched images 0, boxes
    # 2 x 80 / (80 + 576) each
    assert dice(0.5) == pytest.approx(4 * (160 / 656) / 6)


def test_the_start_wins_unless_beaten_by_the_margin(tmp_path):
    start = export_tiny_model(tmp_path / "start", postprocess=section(0.6, gate=None, verdicts={"n_untouched": 60}))
    post = keep_start_postprocess(RedDetector(), config("resize", 24), SAMPLES, section(0.5), start, "cpu", 4,
                                  "32", margin=0.005)
    comparison = post["calibration"]["start_comparison"]
    assert comparison["kept_start"] and comparison["start_dice"] == pytest.approx(1.0)
    assert post["threshold"] == 0.6 and post["verdicts"] == {"n_untouched": 60}


def test_a_better_calibration_replaces_the_start(tmp_path):
    start = export_tiny_model(tmp_path / "start", postprocess=section(0.5))
    post = keep_start_postprocess(RedDetector(), config("resize", 24), SAMPLES, section(0.6), start, "cpu", 4,
                                  "32", margin=0.005)
    comparison = post["calibration"]["start_comparison"]
    assert not comparison["kept_start"] and comparison["this_run_dice"] == pytest.approx(1.0)
    assert post["threshold"] == 0.6 and comparison["n_images"] == 6


def test_a_gain_within_its_noise_keeps_the_start(tmp_path, monkeypatch):
    # per-image gains +0.1 and -0.05 alternating: mean 0.025 > margin 0.005, but SE 0.0335 -> lower bound < 0
    import inpaintseg.training.start_post as start_post

    start = export_tiny_model(tmp_path / "start", postprocess=section(0.6))
    values = iter([np.array([0.6, 0.5] * 3), np.array([0.5, 0.55] * 3)])  # this run's, then the start's
    monkeypatch.setattr(start_post, "validation_dice", lambda *args: next(values))
    post = keep_start_postprocess(None, {}, SAMPLES, section(0.5), start, "cpu", 4, "32", margin=0.005)
    comparison = post["calibration"]["start_comparison"]
    assert comparison["this_run_dice"] - comparison["start_dice"] == pytest.approx(0.025)
    assert comparison["gain_se"] == pytest.approx(np.std([0.1, -0.05] * 3, ddof=1) / np.sqrt(6), abs=1e-5)
    assert comparison["kept_start"] and post["threshold"] == 0.6
