"""The engine: untouched spread, sampling, the edit invariant, selection for leave-one-family-out."""

from __future__ import annotations

from collections import Counter

import cv2
import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from inpaintseg.synth.engine import choose_method, is_untouched, make_sample, sample_rng
from inpaintseg.synth.photos import PhotoCache, find_photos
from inpaintseg.synth.registry import all_methods


@settings(max_examples=40, deadline=None)
@given(fraction=st.floats(0.0, 1.0), seed=st.integers(0, 1000), start=st.integers(0, 500), n=st.integers(1, 60))
def test_untouched_share_holds_in_every_window(fraction, seed, start, n):
    count = sum(is_untouched(seed, "train", i, fraction) for i in range(start, start + n))
    assert np.floor(n * fraction) <= count <= np.ceil(n * fraction)


def test_untouched_extremes_and_default():
    assert not any(is_untouched(0, "test", i, 0.0) for i in range(50))
    assert all(is_untouched(0, "test", i, 1.0) for i in range(50))
    assert sum(is_untouched(3, "train", i) for i in range(100)) == 10


def test_families_are_drawn_uniformly():
    names = list(all_methods())
    families = Counter(all_methods()[choose_method(np.random.default_rng(s), names)].family for s in range(1000))
    assert len(families) == 5 and min(families.values()) > 150  # 200 expected each


def test_sample_changes_only_the_masked_pixels(tiny_bank):
    photos = PhotoCache(find_photos())
    for index in range(30):
        image, mask, info, original = make_sample(sample_rng(0, "train", index), photos, 64, False,
                                                  list(all_methods()), "none", tiny_bank)
        assert info["degradations"] == [] and info["pre_jpeg"] is None
        if not info["fill"].get("whole_frame"):  # ldm_whole keeps its whole decoded crop (next test)
            np.testing.assert_array_equal(image[mask == 0], original[mask == 0])
        assert mask.any() and info["coverage"] == round(float(mask.mean()), 6)


def test_whole_frame_fills_replace_the_known_pixels_too(tiny_bank):
    photos = PhotoCache(find_photos())
    image, mask, info, original = make_sample(sample_rng(0, "train", 3), photos, 64, False, ["ldm_whole"], "none",
                                              tiny_bank)
    assert info["method"] == "ldm_whole" and info["fill"]["whole_frame"] is True
    assert np.abs(image.astype(int) - original)[mask == 0].mean() > 1.0


def test_degraded_samples_keep_image_and_mask_aligned(tiny_bank):
    photos = PhotoCache(find_photos())
    sizes, kept = set(), 0
    for index in range(40):
        image, mask, info, original = make_sample(sample_rng(1, "train", index), photos, 64, index % 5 == 0,
                                                  ["telea", "splice"], "strong")
        assert image.shape[:2] == mask.shape == original.shape[:2] == tuple(info["shape"])
        assert set(np.unique(mask)) <= {0, 1}
        sizes.add(mask.shape)
        kept += any(op["op"] == "resize" and not op["back"] for op in info["degradations"])
    assert kept > 0 and len(sizes) > 1  # a kept resize changes the output size


def test_tool_resave_is_recorded_and_applied_to_image_and_original_alike(tiny_bank):
    """A JPEG re-save touches the original exactly as the edited image away from the fill (JPEG works on
    16x16 macro-blocks with 4:2:0 chroma): only the blocks near the mask may differ."""
    photos = PhotoCache(find_photos())
    seen, checked = set(), 0
    for index in range(60):
        image, mask, info, original = make_sample(sample_rng(2, "train", index), photos, 64, False,
                                                  ["telea"], "default", tiny_bank)
        resave = info["resave"]
        seen.add(resave["format"])
        if resave["format"] == "jpeg" and not info["degradations"]:
            far = cv2.dilate(mask, np.ones((49, 49), np.uint8)) == 0
            checked += int(far.sum())
            np.testing.assert_array_equal(image[far], original[far])
            assert 75 <= resave["quality"] <= 95
    assert seen == {"png", "jpeg"} and checked > 0


def test_camera_noise_reaches_the_authentic_pixels_and_the_original_alike(tiny_bank):
    photos = PhotoCache(find_photos())
    for untouched in (True, False):
        clean = make_sample(sample_rng(4, "train", 1), photos, 64, untouched, ["telea"], "none", tiny_bank)
        noisy = make_sample(sample_rng(4, "train", 1), photos, 64, untouched, ["telea"], "none", tiny_bank, 1.0)
        assert "camera_noise" not in clean[2] and noisy[2]["camera_noise"]["sigma"] >= 1.0
        if untouched:
            np.testing.assert_array_equal(noisy[0], noisy[3])  # untouched: the noisy photo is the image
        outside = noisy[1] == 0
        np.testing.assert_array_equal(noisy[0][outside], noisy[3][outside])
        assert np.abs(noisy[3].astype(int) - clean[3]).mean() > 0.3  # the original carries the noise
