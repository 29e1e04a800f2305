"""Forensic input stems: hand-worked residuals, the Bayar constraint (also through Lightning training),
un-normalisation, state-dict compatibility of rgb models and model-folder round trips of every stem."""

from __future__ import annotations

import json

import lightning as L
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings, strategies as st

from inpaintseg.errors import ModelLoadError
from inpaintseg.losses import BCEDiceLoss
from inpaintseg.model import INPUT_STEMS, build_model
from inpaintseg.model.io import load_model_dir, save_model_dir
from inpaintseg.model.stems import BayarConv, InputStem, NPRResidual, SRMFilters, grey, srm_kernels, stem_branches
from inpaintseg.training import SegmentationModule

TINY = {"name": "AttentionUNet", "base_channels": 2, "depth": 1}
INPUT = {"mode": "resize", "size": 16, "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]}
# The state-dict names of a depth-1, width-2 model before input stems existed (commit 9a2f19d): an rgb
# model must keep exactly these, or model folders written then stop loading.
PRE_STEM_NAMES = sorted(
    [f"encoders.{i}.{j}.weight" for i in (0, 1) for j in (0, 3)]
    + [f"encoders.{i}.{j}.{k}" for i in (0, 1) for j in (1, 4)
       for k in ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")]
    + ["decoders.0.conv.0.weight", "decoders.0.conv.3.weight"]
    + [f"decoders.0.conv.{j}.{k}" for j in (1, 4)
       for k in ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")]
    + ["decoders.0.gate.W_g.bias", "decoders.0.gate.W_g.weight", "decoders.0.gate.W_x.weight",
       "decoders.0.gate.psi.bias", "decoders.0.gate.psi.weight", "decoders.0.up.bias", "decoders.0.up.weight",
       "head.bias", "head.weight"])


def bayar_ok(weight: torch.Tensor, atol: float = 1e-5) -> bool:
    """Centre -1 and the other 24 weights summing to 1, for every (out, in) slice."""
    centre = weight[:, :, 2, 2]
    rest = weight.sum(dim=(2, 3)) - centre
    return bool(torch.allclose(centre, torch.full_like(centre, -1.0), atol=atol)
                and torch.allclose(rest, torch.ones_like(rest), atol=atol))


# ------------------------------------------------------------------------------------------- SRM
def test_srm_impulse_response_by_hand():
    # A grey impulse of height 2 at (4, 4): the response at the impulse is 2 x the centre of each kernel
    # (-4/4, -12/12, -2/2 -> -2), at its right neighbour 2 x the kernel's (2, 1) entry
    # (2/4, 8/12, 1/2 -> 1, 4/3, 1); an impulse of 9 saturates at -3 (the truncation).
    image = torch.zeros(1, 1, 9, 9)
    image[..., 4, 4] = 2.0
    out = SRMFilters()(image)
    torch.testing.assert_close(out[0, :, 4, 4], torch.tensor([-2.0, -2.0, -2.0]))
    torch.testing.assert_close(out[0, :, 4, 5], torch.tensor([1.0, 4.0 / 3.0, 1.0]))
    image[..., 4, 4] = 9.0
    assert torch.equal(SRMFilters()(image)[0, :, 4, 4], torch.tensor([-3.0, -3.0, -3.0]))


def test_srm_kernels_are_high_pass_and_grey_is_bt601_luma():
    kernels = srm_kernels()
    assert kernels.shape == (3, 1, 5, 5)
    torch.testing.assert_close(kernels.sum(dim=(1, 2, 3)), torch.zeros(3))  # a flat image gives 0
    pixels = torch.tensor([100.0, 200.0, 50.0]).view(1, 3, 1, 1)
    torch.testing.assert_close(grey(pixels), torch.tensor(0.299 * 100 + 0.587 * 200 + 0.114 * 50).view(1, 1, 1, 1))


@settings(max_examples=25, deadline=None)
@given(a=st.floats(-3, 3), b=st.floats(-3, 3), c=st.floats(0, 200))
def test_property_srm_is_zero_on_any_plane(a, b, c):
    # Second-order kernels vanish on affine images (away from the replicated border).
    ys, xs = torch.meshgrid(torch.arange(12.0), torch.arange(12.0), indexing="ij")
    image = (a * ys + b * xs + c).expand(1, 1, 12, 12)
    out = SRMFilters()(image)[..., 2:-2, 2:-2]
    assert out.abs().max() < 1e-3


# ------------------------------------------------------------------------------------------- NPR
def test_npr_by_hand_and_equal_to_the_reference_interpolation():
    image = torch.arange(16.0).view(1, 1, 4, 4)
    expected = torch.tensor([[0, 1, 0, 1], [4, 5, 4, 5], [0, 1, 0, 1], [4, 5, 4, 5]], dtype=torch.float32)
    assert torch.equal(NPRResidual()(image)[0, 0], expected)
    # NPR's code: x - interpolate(interpolate(x, 0.5, nearest), 2, nearest)
    x = torch.rand(2, 3, 10, 14) * 255
    reference = x - F.interpolate(F.interpolate(x, scale_factor=0.5, mode="nearest"), scale_factor=2.0,
                                  mode="nearest")
    torch.testing.assert_close(NPRResidual()(x), reference)
    with pytest.raises(ValueError, match="even height and width"):
        NPRResidual()(torch.zeros(1, 3, 5, 4))


# ----------------------------------------------------------------------------------------- Bayar
def test_bayar_projection_by_hand_and_degenerate_slices():
    conv = BayarConv(in_channels=1, out_channels=2)
    with torch.no_grad():
        conv.weight.fill_(2.0)              # slice 0: 24 off-centre weights of 2 -> 2/48 each
        conv.weight[1].zero_()              # slice 1: sums to 0 -> restarts as the mean predictor
        conv.weight[1, 0, 0, 0] = 1e-9
    conv.constrain_()
    assert bayar_ok(conv.weight)
    torch.testing.assert_close(conv.weight[0, 0, 0, 0], torch.tensor(1.0 / 24.0))
    torch.testing.assert_close(conv.weight[1, 0, 4, 4], torch.tensor(1.0 / 24.0))
    # A flat image has zero prediction error whatever the (constrained) weights.
    assert conv(torch.full((1, 1, 8, 8), 77.0)).abs().max() < 1e-4


def test_adam_breaks_the_bayar_constraint_and_constrain_restores_it():
    torch.manual_seed(0)
    conv = BayarConv()
    assert bayar_ok(conv.weight)
    optimizer = torch.optim.Adam(conv.parameters(), lr=1e-2)
    conv(torch.rand(2, 1, 12, 12) * 255).square().mean().backward()
    optimizer.step()
    assert not bayar_ok(conv.weight)
    conv.constrain_()
    assert bayar_ok(conv.weight)


def test_bayar_constraint_holds_after_lightning_training_steps():
    # The LightningModule re-projects after every optimiser step (optimizer_step override).
    L.seed_everything(0, verbose=False)
    model = build_model({**TINY, "input_stem": "rgb+bayar"})
    before = model.stem.bayar.weight.detach().clone()
    module = SegmentationModule(model, BCEDiceLoss(), lr=1e-2, epochs=1)
    images = torch.randn(8, 3, 16, 16)
    masks = (torch.rand(8, 1, 16, 16) > 0.5).float()
    loader = torch.utils.data.DataLoader([{"image": i, "mask": m} for i, m in zip(images, masks)], batch_size=4)
    trainer = L.Trainer(max_steps=3, accelerator="cpu", logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0)
    trainer.fit(module, train_dataloaders=loader)
    assert trainer.global_step == 3
    weight = model.stem.bayar.weight.detach()
    assert not torch.allclose(weight, before)       # it did learn
    assert bayar_ok(weight)


# ------------------------------------------------------------------------------------- InputStem
def test_stem_un_normalises_with_the_input_sections_statistics():
    mean, std = (0.5, 0.25, 0.0), (0.5, 0.1, 1.0)
    stem = InputStem("rgb+npr", mean, std).eval()   # fresh BatchNorm in eval: y = x / sqrt(1 + eps)
    pixels = torch.randint(0, 256, (1, 3, 6, 8)).float()
    x = (pixels / 255.0 - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)
    out = stem(x)
    assert out.shape == (1, 6, 6, 8)
    assert torch.equal(out[:, :3], x)
    expected = NPRResidual()(pixels) / (1 + stem.norm.eps) ** 0.5
    torch.testing.assert_close(out[:, 3:], expected, atol=2e-3, rtol=1e-4)


@pytest.mark.parametrize("name", INPUT_STEMS)
def test_every_stem_builds_runs_and_round_trips_through_a_model_folder(name, tmp_path):
    torch.manual_seed(0)
    model = build_model({**TINY, "input_stem": name})
    assert model.architecture()["input_stem"] == name
    with torch.no_grad():
        model.train()(torch.randn(2, 3, 16, 16))    # non-trivial BatchNorm statistics
    model.eval()
    x = torch.randn(1, 3, 13, 11)                   # odd size: padded before the stem (NPR needs even)
    expected = model(x)
    assert expected.shape == (1, 1, 13, 11)
    branches = stem_branches(name)
    names = set(model.state_dict())
    assert ("stem.bayar.weight" in names) == ("bayar" in branches)
    assert any(n.startswith("stem.") for n in names) == bool(branches)
    assert model.encoders[0][0].weight.shape[1] == 3 + 3 * len(branches)
    save_model_dir(tmp_path / "model", model, {"architecture": model.architecture(), "input": INPUT,
                                              "postprocess": {"threshold": 0.5}})
    loaded, config = load_model_dir(tmp_path / "model")
    assert config["architecture"]["input_stem"] == name
    assert torch.equal(loaded(x), expected)


def test_rgb_model_keeps_the_pre_stem_state_dict_and_old_folders_load(tmp_path):
    model = build_model(TINY).eval()
    assert sorted(model.state_dict()) == PRE_STEM_NAMES
    # A model folder written before stems existed: no "input_stem" in its architecture.
    old_arch = {"name": "AttentionUNet", "in_channels": 3, "out_channels": 1, "base_channels": 2, "depth": 1,
                "attention": True}
    save_model_dir(tmp_path / "model", model, {"architecture": old_arch, "input": INPUT,
                                              "postprocess": {"threshold": 0.5}})
    assert "input_stem" not in json.loads((tmp_path / "model" / "config.json").read_text())["architecture"]
    loaded, _ = load_model_dir(tmp_path / "model")
    assert loaded.stem is None and loaded.architecture()["input_stem"] == "rgb"
    x = torch.randn(1, 3, 16, 16)
    assert torch.equal(loaded(x), model(x))


def test_stem_weights_under_an_rgb_config_are_a_clear_mismatch(tmp_path):
    model = build_model({**TINY, "input_stem": "rgb+bayar"})
    save_model_dir(tmp_path / "model", model, {"architecture": model.architecture(), "input": INPUT,
                                              "postprocess": {"threshold": 0.5}})
    path = tmp_path / "model" / "config.json"
    config = json.loads(path.read_text())
    config["architecture"]["input_stem"] = "rgb"
    path.write_text(json.dumps(config))
    with pytest.raises(ModelLoadError, match="does not match the architecture") as info:
        load_model_dir(tmp_path / "model")
    assert "stem.bayar.weight" in str(info.value)


def test_loaded_stem_uses_the_stored_normalisation(tmp_path):
    model = build_model({**TINY, "input_stem": "rgb+srm"})
    input_section = {**INPUT, "mean": [0.1, 0.2, 0.3], "std": [0.3, 0.2, 0.1]}
    save_model_dir(tmp_path / "model", model, {"architecture": model.architecture(), "input": input_section,
                                              "postprocess": {"threshold": 0.5}})
    loaded, _ = load_model_dir(tmp_path / "model")
    np.testing.assert_allclose(loaded.stem.pixel_mean.flatten().numpy(), [25.5, 51.0, 76.5], rtol=1e-6)
    np.testing.assert_allclose(loaded.stem.pixel_std.flatten().numpy(), [76.5, 51.0, 25.5], rtol=1e-6)


def test_model_info_shows_the_stem_stage(capsys):
    import argparse

    from inpaintseg.commands import model_info

    parser = argparse.ArgumentParser()
    model_info.register(parser.add_subparsers())
    args = parser.parse_args(["model-info", "--base-channels", "4", "--depth", "2", "--size", "32",
                              "--input-stem", "rgb+srm+bayar+npr"])
    assert args.func(args) == 0
    out = capsys.readouterr().out
    assert "'input_stem': 'rgb+srm+bayar+npr'" in out
    stem_row = next(line for line in out.splitlines() if line.startswith("stem "))
    # the stem's only parameters: Bayar, 3 filters of 1 x 5 x 5 (the BatchNorm has no affine part)
    assert int(stem_row.split()[1].replace(",", "")) == 75


def test_residuals_are_computed_in_float32_under_mixed_precision():
    # Regression: under bf16 autocast, pixels near 200 are stored in steps of 1 grey level, so a stem
    # computing there loses its +-2-level residuals. The stem turns autocast off for its branches.
    torch.manual_seed(0)
    stem = InputStem("rgb+srm+bayar+npr").eval()
    pixels = 200.0 + torch.randn(1, 3, 16, 16) * 1.5
    x = (pixels / 255.0 - torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)) / \
        torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    expected = stem(x)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        mixed = stem(x)
    assert mixed.dtype == torch.float32
    torch.testing.assert_close(mixed, expected, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("name", INPUT_STEMS[1:])
def test_fused_residuals_equal_the_branches_on_un_normalised_pixels(name):
    # The stem folds the un-normalisation into its filters; the result must be the branches' output on
    # the explicitly un-normalised pixels (grey for SRM/Bayar, colour for NPR), including the replicate
    # border and the SRM truncation.
    torch.manual_seed(1)
    stem = InputStem(name, mean=(0.4, 0.5, 0.6), std=(0.2, 0.3, 0.25))
    pixels = torch.randint(0, 256, (2, 3, 10, 12)).float()
    x = (pixels / 255.0 - torch.tensor([0.4, 0.5, 0.6]).view(1, 3, 1, 1)) / torch.tensor([0.2, 0.3, 0.25]).view(1, 3, 1, 1)
    torch.testing.assert_close(stem.pixels(x), pixels, atol=1e-3, rtol=0)
    parts = []
    if stem.srm is not None:
        parts.append(stem.srm(grey(pixels)))
    if stem.bayar is not None:
        parts.append(stem.bayar(grey(pixels)))
    if stem.npr is not None:
        parts.append(stem.npr(pixels))
    torch.testing.assert_close(stem.residuals(x), torch.cat(parts, dim=1), atol=2e-3, rtol=1e-4)
