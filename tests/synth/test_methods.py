"""The method registry and every method, on tiny images (64 and 256 px)."""

from __future__ import annotations

import numpy as np
import pytest

from inpaintseg.errors import InpaintsegError
from inpaintseg.synth.blend import break_shortcuts, feather_alpha, poisson_blend, retouch_whole
from inpaintseg.synth.generators import SPECS
from inpaintseg.synth.registry import FAMILIES, all_methods, select_methods

REGISTRY = all_methods()


def test_registry_has_enough_methods_families_and_learned_upsamplers():
    assert len(REGISTRY) >= 10
    families = {m.family for m in REGISTRY.values()}
    assert families == set(FAMILIES) and len(families) >= 5
    learned = [m for m in REGISTRY.values() if m.family == "learned"]
    upsamplers = {SPECS[m.generators[0]].upsampler for m in learned}
    assert len(learned) >= 3 and len(upsamplers) >= 4
    # Each learned method is its own network: up-sampler, blocks and training (masked L1 or adversarial).
    networks = {(SPECS[m.generators[0]].upsampler, SPECS[m.generators[0]].arch, SPECS[m.generators[0]].adversarial > 0)
                for m in learned}
    assert len(networks) == len(learned)
    assert {"gen_lama_gan", "gen_gated_gan", "ldm_latent", "ldm_whole"} <= set(REGISTRY)
    assert all(m.description for m in REGISTRY.values())


@pytest.mark.parametrize("size", [64, 256])
@pytest.mark.parametrize("name", list(REGISTRY))
def test_every_method_fills_the_region(name, size, make_ctx, textured):
    image = textured(size, seed=1)
    image[size // 4: size // 2, size // 4: size // 2] = (255, 0, 0)  # content to be replaced
    mask = np.zeros((size, size), np.uint8)
    mask[size // 4: size // 2, size // 4: size // 2] = 1
    fill = REGISTRY[name].fn(make_ctx(3, size), image, mask)
    assert fill.image.shape == image.shape and fill.image.dtype == np.uint8
    assert fill.mask.shape == mask.shape and set(np.unique(fill.mask)) <= {0, 1} and fill.mask.any()
    inside = fill.mask.astype(bool)
    changed = np.abs(fill.image.astype(int) - image)[inside].mean()
    assert changed > 1.0, f"{name} left the region (nearly) as it was"
    assert isinstance(fill.info, dict)
    if REGISTRY[name].family != "selfblend":  # self-blends keep the content (their mask is deformed)
        assert np.array_equal(fill.mask, mask)
        if name != "ae_pass":  # the autoencoder pass without pre-fill reconstructs the content
            red = np.abs(fill.image[mask == 1].astype(int) - (255, 0, 0)).sum(1)
            assert np.median(red) > 60, f"{name} kept the removed red content"


def test_select_methods_by_family_name_and_exclusion():
    assert select_methods() == list(REGISTRY)
    assert select_methods(families="classical") == ["telea", "ns"]
    assert select_methods(methods="all", exclude_families="learned,autoencoder,selfblend,copy") == ["telea", "ns"]
    assert select_methods(families=["classical", "copy"], exclude_methods="patch,patchmatch") == \
        ["telea", "ns", "copy_move", "splice"]
    with pytest.raises(InpaintsegError, match="^families: unknown family.*lama.*Known: classical") as error:
        select_methods(families="lama")
    assert error.value.params == ("families",)
    with pytest.raises(InpaintsegError, match="^test_methods: unknown method") as error:
        select_methods(methods="nope", prefix="test_")
    assert error.value.params == ("test_methods",)
    with pytest.raises(InpaintsegError, match=r"selection is empty \(after methods, families") as error:
        select_methods(families="classical", exclude_methods="telea,ns")
    assert error.value.params == ("methods", "families")


def test_feather_alpha_by_hand():
    mask = np.zeros((9, 9), np.uint8)
    mask[2:7, 2:7] = 1
    alpha = feather_alpha(mask, 2.0)[:, :, 0]
    # distance to the background: 1 on the block's border, 2 one step in, 3 at the centre.
    assert alpha[0, 0] == 0 and alpha[2, 2] == pytest.approx(0.5) and alpha[2, 4] == pytest.approx(0.5)
    assert alpha[3, 4] == pytest.approx(1.0) and alpha[4, 4] == 1.0


def test_poisson_blend_by_hand():
    # One unknown pixel: h = mean of (base - top) over its 4 neighbours = (10 + 20 + 30 + 40) / 4.
    base = np.zeros((5, 5, 3), np.uint8)
    base[1, 2], base[3, 2], base[2, 1], base[2, 3] = 10, 20, 30, 40
    top = np.zeros((5, 5, 3), np.uint8)
    mask = np.zeros((5, 5), np.uint8)
    mask[2, 2] = 1
    out = poisson_blend(base, top, mask)
    assert out[2, 2].tolist() == [25, 25, 25]
    np.testing.assert_array_equal(out[mask == 0], base[mask == 0])
    # A flat top in a flat base: the region takes the surrounding colour (harmonic), whatever was there.
    base = np.full((40, 40, 3), 128, np.uint8)
    base[10:30, 10:30] = (255, 0, 0)
    mask = np.zeros((40, 40), np.uint8)
    mask[8:32, 8:32] = 1
    assert np.abs(poisson_blend(base, np.full_like(base, 7), mask).astype(int) - 128).max() <= 1


def test_poisson_blend_touching_the_border_and_shortcut_breakers_stay_inside(textured):
    base, top = textured(64, 0), textured(64, 5)[::-1].copy()
    mask = np.zeros((64, 64), np.uint8)
    mask[0:20, 40:64] = 1  # touches two borders
    out = poisson_blend(base, top, mask)
    assert out.shape == base.shape
    assert np.abs(out[mask == 1].astype(int) - base[mask == 1]).mean() > 5
    steps_seen = set()
    for seed in range(30):
        filled, steps = break_shortcuts(np.random.default_rng(seed), base, top, mask, "classical")
        steps_seen |= {s["op"] for s in steps}
        np.testing.assert_array_equal(filled[mask == 0], top[mask == 0])  # noise only inside the mask
    assert {"matched_noise", "sharpen", "blur"} <= steps_seen


def test_fill_noise_scale_moves_only_the_noise_outcome(textured):
    base, top = textured(64, 0), textured(64, 5)
    mask = np.zeros((64, 64), np.uint8)
    mask[16:48, 16:48] = 1
    counts = {}
    for scale in (0.0, 1.0, 2.5):
        runs = [break_shortcuts(np.random.default_rng(seed), base, top, mask, "learned", scale)[1]
                for seed in range(200)]
        counts[scale] = sum(any(s["op"] == "matched_noise" for s in steps) for steps in runs)
        others = [[s for s in steps if s["op"] != "matched_noise"] for steps in runs]
        if scale == 0.0:
            reference = others
        # the same draws at every scale: a fill without noise keeps its sharpen / blur step
        assert [o for o, steps in zip(others, runs) if not any(s["op"] == "matched_noise" for s in steps)] == \
            [r for r, steps in zip(reference, runs) if not any(s["op"] == "matched_noise" for s in steps)]
    assert counts[0.0] == 0 and counts[2.5] == 200 and 50 < counts[1.0] < 110  # 0.4 x 200 = 80 expected


def test_hard_negatives_process_the_whole_image(textured):
    image = textured(64)
    kinds = set()
    for seed in range(40):
        out, record = retouch_whole(np.random.default_rng(seed), image)
        if record is None:
            assert out is image
        else:
            kinds.add(record["op"])
            assert out.shape == image.shape and not np.array_equal(out, image)
    assert kinds == {"blur", "denoise", "sharpen", "resample"}


@pytest.mark.parametrize("name", list(REGISTRY))
def test_every_method_is_deterministic_at_64_px(name, make_ctx, textured):
    image = textured(64, seed=2)
    mask = np.zeros((64, 64), np.uint8)
    mask[20:40, 12:44] = 1
    first = REGISTRY[name].fn(make_ctx(5, 64), image, mask)
    again = REGISTRY[name].fn(make_ctx(5, 64), image, mask)
    np.testing.assert_array_equal(first.image, again.image)
    np.testing.assert_array_equal(first.mask, again.mask)
    assert first.info == again.info


def test_patchmatch_copies_texture_of_the_same_photo(make_ctx):
    """Content-aware fill re-arranges known pixels: on an image of two flat colours with the hole inside the
    blue half, every filled pixel is a colour of the photo (no invented, blurred or averaged one)."""
    pytest.importorskip("patchmatch_cython")
    image = np.zeros((64, 64, 3), np.uint8)
    image[:, :32] = (200, 30, 30)
    image[:, 32:] = (20, 40, 220)
    image[24:40, 44:56] = (0, 255, 0)                   # the object to remove
    mask = np.zeros((64, 64), np.uint8)
    mask[22:42, 42:58] = 1
    fill = REGISTRY["patchmatch"].fn(make_ctx(1, 64), image, mask)
    inside = fill.image[mask == 1].astype(int)
    assert np.abs(inside - (20, 40, 220)).max() <= 2, "the hole in the blue half is not filled with blue"
    np.testing.assert_array_equal(fill.image[mask == 0], image[mask == 0])
    assert fill.info["patch_size"] in (5, 7, 9) and isinstance(fill.info["seed"], int)


def test_a_method_without_its_optional_package_is_named_or_left_out(monkeypatch):
    import dataclasses

    from inpaintseg.synth import registry

    fake = dataclasses.replace(REGISTRY["patchmatch"], requires=("no_such_module_xyz", "patchmatch"))
    monkeypatch.setitem(registry.METHODS, "patchmatch", fake)
    assert "patchmatch" not in select_methods() and "patchmatch" not in select_methods(families="copy")
    with pytest.raises(InpaintsegError, match=r"needs the optional package.*inpaintseg\[patchmatch\].*"
                                              r"add patchmatch to exclude_methods"):
        select_methods(methods="telea,patchmatch")
    from inpaintseg.synth.engine import method_table

    assert "[not installed: pip install 'inpaintseg[patchmatch]']" in method_table()


def test_latent_paths_keep_or_replace_the_known_pixels(make_ctx, textured):
    """ldm_latent: the engine composites the hole (the decoded crop's outside is ignored); ldm_whole: the whole
    decoded crop is the result, so the pixels outside the hole carry the decoder's traces too."""
    image = textured(64, seed=4)
    mask = np.zeros((64, 64), np.uint8)
    mask[16:40, 16:40] = 1
    kept = REGISTRY["ldm_latent"].fn(make_ctx(2, 64), image, mask)
    whole = REGISTRY["ldm_whole"].fn(make_ctx(2, 64), image, mask)
    assert not kept.whole_frame and whole.whole_frame and whole.info["whole_frame"] is True
    np.testing.assert_array_equal(kept.image, whole.image)     # the same decode; only the compositing differs
    outside = np.abs(whole.image.astype(int) - image)[mask == 0].mean()
    assert outside > 1.0                                       # the decoder changed the known pixels
