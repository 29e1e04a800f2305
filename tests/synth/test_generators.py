"""The learned generators: architectures, deterministic training, the safetensors cache."""

from __future__ import annotations

import dataclasses
import os

import numpy as np
import pytest
import torch

from inpaintseg.synth import generators as g
from inpaintseg.synth.generator_bank import TRAINED, GeneratorBank
from inpaintseg.synth.photos import load_photo, packaged_photos


@pytest.fixture(scope="module")
def photos():
    return [load_photo(p) for p in packaged_photos()[:4]]


@pytest.mark.parametrize("name", list(g.SPECS))
def test_each_generator_runs_at_any_size(name):
    spec, _ = g.spec_for(name, "tiny")
    model = g.build_generator(spec).eval()
    image = np.random.default_rng(0).integers(0, 256, (37, 50, 3), dtype=np.uint8)
    mask = np.zeros((37, 50), np.uint8)
    mask[10:20, 10:30] = 1
    out = g.run_generator(model, image, mask)
    assert out.shape == (37, 50, 3) and out.dtype == np.uint8


def test_upsamplers_really_differ():
    kinds = {}
    for name in ("transposed", "nearest", "bilinear", "shuffle"):
        model = g.build_generator(g.spec_for(name, "tiny")[0])
        kinds[name] = {type(m).__name__ for m in model.modules()}
        modes = {m.mode for m in model.modules() if isinstance(m, torch.nn.Upsample)}
        kinds[name] |= modes
    assert "ConvTranspose2d" in kinds["transposed"] and "Upsample" not in kinds["transposed"]
    assert "nearest" in kinds["nearest"] and "GatedConv" in kinds["nearest"]
    assert "bilinear" in kinds["bilinear"] and "ConvTranspose2d" not in kinds["bilinear"]
    assert "PixelShuffle" in kinds["shuffle"]


def test_training_is_bitwise_deterministic_and_learns(photos):
    spec, budget = g.spec_for("bilinear", "tiny")
    budget = dataclasses.replace(budget, steps=40)
    a = g.train_generator(spec, budget, photos)
    b = g.train_generator(spec, budget, photos)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    c = g.train_generator(spec, budget, photos, seed=7)
    assert not all(torch.equal(a[k], c[k]) for k in a)
    # The trained net fills holes of held-out crops better than the untrained one.
    rng = np.random.default_rng(99)
    images, masks = g._batch(rng, photos, dataclasses.replace(budget, batch=16), "inpaint")

    def hole_l1(state) -> float:
        model = g.build_generator(spec)
        if state is not None:
            model.load_state_dict(state)
        model.eval()
        errors = [np.abs(g.run_generator(model, im, m).astype(float) - im)[m == 1].mean() for im, m in zip(images, masks)]
        return float(np.mean(errors))

    torch.manual_seed(0)
    assert hole_l1(a) < 0.8 * hole_l1(None)


def test_cache_trains_once_rebuild_retrains_same_bytes(monkeypatch, tmp_path):
    monkeypatch.setenv("INPAINTSEG_CACHE_DIR", str(tmp_path))
    messages = []
    bank = GeneratorBank("tiny", workers=1, log=messages.append)
    before = len(TRAINED)
    bank.prepare(["shuffle"])
    path = bank.path("shuffle")
    assert TRAINED[before:] == ["shuffle"] and path.is_file()
    assert path.parent == tmp_path / "generators" and path.name.startswith("shuffle-")
    data = path.read_bytes()
    header = int.from_bytes(data[:8], "little")
    assert data[8:9] == b"{" and bank.key("shuffle") in data[8:8 + header].decode()  # safetensors, key recorded
    os.utime(path, (1_000_000, 1_000_000))
    again = GeneratorBank("tiny", workers=1)
    again.prepare(["shuffle"])
    assert len(TRAINED) == before + 1 and path.stat().st_mtime == 1_000_000  # loaded, not retrained
    rebuilt = GeneratorBank("tiny", rebuild=True, workers=1)
    rebuilt.prepare(["shuffle"])
    assert len(TRAINED) == before + 2 and path.read_bytes() == data  # retrained: the same bytes
    # The key depends on the settings: another set gets another file.
    assert GeneratorBank("demo").path("shuffle") != path
    # A damaged cache file is retrained, with a message.
    path.write_bytes(b"not safetensors")
    damaged = GeneratorBank("tiny", workers=1, log=messages.append)
    damaged.prepare(["shuffle"])
    assert path.read_bytes() == data and any("unusable" in m for m in messages)


def test_unknown_generator_set_is_a_user_error(monkeypatch):
    with pytest.raises(g.InpaintsegError, match="^generator_set must be one of tiny, demo, full, got 'huge'"):
        GeneratorBank("huge")
    monkeypatch.setenv(g.GENERATOR_SET_ENV, "huge")  # the default set comes from the variable: it is named
    with pytest.raises(g.InpaintsegError, match=r"^\$INPAINTSEG_GENERATORS must be one of tiny, demo, full"):
        GeneratorBank()


def test_texture_generators_are_built_as_the_real_methods(photos):
    lama = g.build_generator(g.spec_for("lama_gan", "tiny")[0])
    kinds = {type(m).__name__ for m in lama.modules()}
    assert {"FFCResBlock", "FourierUnit", "ConvTranspose2d"} <= kinds and "Upsample" not in kinds
    gated = {type(m).__name__ for m in g.build_generator(g.spec_for("gated_gan", "tiny")[0]).modules()}
    assert "GatedConv" in gated
    vae = g.build_generator(g.spec_for("kl_vae", "tiny")[0]).eval()
    mean, logvar = vae.encode(torch.rand(1, 3, 32, 32))
    assert mean.shape == logvar.shape == (1, 4, 8, 8)           # 4x down (KL-f4), 4 latent channels
    assert vae.decode(mean).shape == (1, 3, 32, 32)
    assert all(g.SPECS[n].adversarial > 0 for n in ("lama_gan", "gated_gan", "kl_vae"))


@pytest.mark.parametrize("name", ["lama_gan", "kl_vae"])
def test_adversarial_training_is_bitwise_deterministic(name, photos):
    spec, budget = g.spec_for(name, "tiny")                  # >= 12 steps: the discriminator joins after 1/3
    a = g.train_generator(spec, budget, photos)
    b = g.train_generator(spec, budget, photos)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert not any(k.startswith("disc") for k in a)          # the discriminator is not part of the generator


def test_cache_keys_of_the_original_generators_did_not_change():
    """Issue 24 added spec fields; at their defaults they are left out of the hashed record, so generators
    cached before keep their keys (no retraining)."""
    from inpaintseg.synth.generator_bank import _spec_record

    record = _spec_record(g.spec_for("transposed", "demo")[0])
    assert record == {"upsampler": "transposed", "depth": 3, "width": 12, "gated": False, "blocks": 2,
                      "task": "inpaint"}
    assert _spec_record(g.spec_for("lama_gan", "demo")[0])["arch"] == "ffc"


def test_latent_fill_resamples_only_the_hole_latents_and_is_seeded(photos):
    from inpaintseg.synth.texture_generators import latent_fill

    model = g.build_generator(g.spec_for("kl_vae", "tiny")[0]).eval()
    image = photos[0][:96, :96].copy()
    mask = np.zeros((96, 96), np.uint8)
    mask[8:16, 8:16] = 1                                     # exactly 2x2 latent cells of 4x4 pixels
    a = latent_fill(model, image, mask, np.random.default_rng(0), 1.0)
    b = latent_fill(model, image, mask, np.random.default_rng(0), 1.0)
    c = latent_fill(model, image, mask, np.random.default_rng(1), 1.0)
    clean = latent_fill(model, image, mask, np.random.default_rng(1), 0.0)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    far = np.ones((96, 96), bool)
    far[:64, :64] = False                                    # beyond the decoder's reach from that cell
    np.testing.assert_array_equal(c[far], clean[far])
