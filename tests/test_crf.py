"""DenseCRF refinement: follows colour edges, presets, parameter checks, missing package, process pool."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from inpaintseg.inference import crf
from inpaintseg.errors import ConfigError, InpaintsegError

pytest.importorskip("pydensecrf.densecrf")


def two_colour_case(seed=0, size=40):
    """Left/right halves in two colours; truth = right half; probs = noisy and shifted edge."""
    rng = np.random.default_rng(seed)
    image = np.zeros((size, size, 3), np.uint8)
    image[:, : size // 2] = (30, 60, 90)
    image[:, size // 2:] = (200, 180, 40)
    truth = np.zeros((size, size), np.uint8)
    truth[:, size // 2:] = 1
    # The network's edge is 4 px too far left, plus pixel noise.
    probs = np.zeros((size, size), np.float32)
    probs[:, size // 2 - 4:] = 0.7
    probs[:, : size // 2 - 4] = 0.3
    probs = np.clip(probs + rng.normal(0, 0.25, size=probs.shape), 0.01, 0.99).astype(np.float32)
    return image, probs, truth


def accuracy(probs, truth):
    return float(((probs >= 0.5) == (truth == 1)).mean())


def test_seed_crf_follows_the_colour_edge_better_than_the_input():
    image, probs, truth = two_colour_case()
    refined = crf.refine(image, probs, crf.CRF_PRESETS["seed"])
    assert refined.shape == probs.shape and refined.dtype == np.float32
    assert np.all((refined >= 0) & (refined <= 1))
    before, after = accuracy(probs, truth), accuracy(refined, truth)
    # Input: noise flips ~21% of pixels (P(N(0, .25) > .2)) and the 4 shifted columns are wrong (10%).
    assert before < 0.85
    assert after > 0.97 > before


def test_gaussian_crf_removes_isolated_noise():
    image, probs, truth = two_colour_case(seed=1)
    refined = crf.refine(image, probs, crf.CRF_PRESETS["gaussian"])
    # Smoothness alone cannot move the edge to the colour boundary but it removes the salt noise,
    # so the accuracy rises to about 90% (only the 4 shifted columns remain wrong).
    assert accuracy(refined, truth) > accuracy(probs, truth) + 0.05


def test_confident_input_is_kept():
    image, _, truth = two_colour_case()
    probs = np.where(truth == 1, 0.99, 0.01).astype(np.float32)
    refined = crf.refine(image, probs, crf.CRF_PRESETS["seed"])
    assert accuracy(refined, truth) == 1.0


@pytest.mark.parametrize("params,match", [
    ({"iterations": 0, "gaussian": {"sxy": 3, "compat": 3}}, "iterations"),
    ({"gaussian": {"sxy": -1, "compat": 3}}, "gaussian.sxy"),
    ({"gaussian": None, "bilateral": None}, "needs a"),
    ({"gaussian": {"sxy": 3}}, "keys"),
    ({"unary": 1, "gaussian": {"sxy": 3, "compat": 3}}, "unknown keys"),
    ({"clip": 0.7, "gaussian": {"sxy": 3, "compat": 3}}, "clip"),
])
def test_bad_params_are_config_errors(params, match):
    with pytest.raises(ConfigError, match=match):
        crf.validate_params(params)


def test_presets_validate_and_copies_are_independent():
    for name in ("seed", "gaussian"):
        assert crf.validate_params(crf.CRF_PRESETS[name])["iterations"] == 5
    copy = crf.default_crf_params()
    copy["seed"]["iterations"] = 1
    assert crf.CRF_PRESETS["seed"]["iterations"] == 5


def test_missing_package_names_the_install_command(monkeypatch):
    monkeypatch.setitem(sys.modules, "pydensecrf", None)
    monkeypatch.setitem(sys.modules, "pydensecrf.densecrf", None)
    with pytest.raises(InpaintsegError, match="pip install pydensecrf2"):
        crf.refine(np.zeros((4, 4, 3), np.uint8), np.zeros((4, 4), np.float32), crf.CRF_PRESETS["gaussian"])
    assert not crf.crf_available()


def test_process_pool_gives_the_inline_result():
    from inpaintseg.inference.crf_pool import CrfRunner

    image, probs, _ = two_colour_case(seed=2, size=24)
    inline = CrfRunner(crf.CRF_PRESETS["seed"], workers=0)
    pooled = CrfRunner(crf.CRF_PRESETS["seed"], workers=1)
    try:
        np.testing.assert_allclose(pooled.submit(image, probs).result(), inline.submit(image, probs).result())
    finally:
        pooled.close()
        inline.close()


def test_dead_worker_is_replaced_and_the_image_retried():
    import os

    from inpaintseg.inference.crf_pool import CrfRunner

    image, probs, _ = two_colour_case(seed=3, size=24)
    runner = CrfRunner(crf.CRF_PRESETS["gaussian"], workers=1)
    try:
        # A worker that exits abruptly (as when the OS kills it for memory) breaks the pool.
        broken = runner.pool.submit(os._exit, 1)
        refined = runner.result(broken, image, probs)
        np.testing.assert_allclose(refined, crf.refine(image, probs, crf.CRF_PRESETS["gaussian"]))
    finally:
        runner.close()
