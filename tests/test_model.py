"""AttentionUNet: shapes, parameter count, attention coefficients, build_model, FLOPs, model-info."""

from __future__ import annotations

import argparse

import pytest
import torch

from inpaintseg.errors import ConfigError
from inpaintseg.losses import BCEDiceLoss
from inpaintseg.model import (AttentionGate, AttentionUNet, build_model, count_parameters,
                              model_flops, stage_summary)

# Parameter count for base 8, depth 4 (widths 8, 16, 32, 64, 128), worked out by hand:
#   ConvBlock(i, o) = 9*i*o + 9*o*o + 4*o   (two bias-free 3x3 convs, two BNs with weight+bias)
#   encoders: (3->8) 824 + (8->16) 3520 + (16->32) 13952 + (32->64) 55552 + (64->128) 221696 = 295544
#   UpBlock(cin, c) = up 4*cin*c + c  + gate (W_g c*c/2 + c/2, W_x c*c/2, psi c/2 + 1) = c*c + c + 1
#                     + ConvBlock(2c, c) = 27*c*c + 4*c
#   decoders: c=64: 32832 + 4161 + 110848 = 147841;  c=32: 8224 + 1057 + 27776 = 37057;
#             c=16: 2064 + 273 + 6976 = 9313;        c=8: 520 + 73 + 1760 = 2353   -> 196564
#   head 1x1 conv 8 -> 1 with bias: 9.      Total 295544 + 196564 + 9 = 492117.
#   Without gates: 492117 - (4161 + 1057 + 273 + 73) = 486553.
PARAMS_BASE8 = 492_117
PARAMS_BASE8_PLAIN = 486_553


@pytest.fixture(scope="module")
def small_model():
    torch.manual_seed(0)
    return AttentionUNet(base_channels=8, depth=4).eval()


def test_output_shape_on_odd_sizes_and_batch(small_model):
    with torch.no_grad():
        assert small_model(torch.randn(1, 3, 37, 53)).shape == (1, 1, 37, 53)
        assert small_model(torch.randn(3, 3, 16, 17)).shape == (3, 1, 16, 17)
        assert small_model(torch.randn(2, 3, 1, 1)).shape == (2, 1, 1, 1)


def test_output_does_not_depend_on_batch_mates(small_model):
    x = torch.randn(2, 3, 20, 24)
    with torch.no_grad():
        both = small_model(x)
        first = small_model(x[:1])
    torch.testing.assert_close(both[:1], first, rtol=1e-4, atol=1e-5)


def test_channels_last_input_gives_same_logits(small_model):
    x = torch.randn(2, 3, 32, 48)
    with torch.no_grad():
        ref = small_model(x)
        model_cl = small_model.to(memory_format=torch.channels_last)
        out = model_cl(x.contiguous(memory_format=torch.channels_last))
        out_from_nchw = model_cl(x)   # converted inside forward
        small_model.to(memory_format=torch.contiguous_format)
    torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(out_from_nchw, ref, rtol=1e-4, atol=1e-4)


def test_parameter_count_regression_guard():
    assert count_parameters(AttentionUNet(base_channels=8, depth=4)) == PARAMS_BASE8
    assert count_parameters(AttentionUNet(base_channels=8, depth=4, attention=False)) == PARAMS_BASE8_PLAIN


def test_plain_variant_has_no_gates_and_fewer_params():
    plain = AttentionUNet(base_channels=8, attention=False).eval()
    gated = AttentionUNet(base_channels=8)
    assert not any(isinstance(m, AttentionGate) for m in plain.modules())
    assert sum(isinstance(m, AttentionGate) for m in gated.modules()) == 4   # one per skip
    assert count_parameters(plain) < count_parameters(gated)
    logits, alphas = plain.forward_with_attention(torch.randn(1, 3, 16, 16))
    assert logits.shape == (1, 1, 16, 16) and alphas == []


def test_attention_coefficients_lie_in_unit_interval(small_model):
    with torch.no_grad():
        logits, alphas = small_model.forward_with_attention(torch.randn(2, 3, 37, 53) * 5)
    # Padded to 48 x 64; the gates sit at 1/8, 1/4, 1/2 and full resolution, deepest first.
    assert [tuple(a.shape) for a in alphas] == [(2, 1, 6, 8), (2, 1, 12, 16), (2, 1, 24, 32), (2, 1, 48, 64)]
    for alpha in alphas:
        assert alpha.min() >= 0 and alpha.max() <= 1
    assert logits.shape == (2, 1, 37, 53)


def test_gate_returns_gated_skip():
    gate = AttentionGate(F_g=4, F_l=4, F_int=2)
    g, x = torch.randn(1, 4, 5, 5), torch.randn(1, 4, 5, 5)
    gated, alpha = gate(g, x)
    torch.testing.assert_close(gated, x * alpha)


def test_architecture_roundtrips_through_build_model():
    model = AttentionUNet(in_channels=3, out_channels=1, base_channels=8, depth=3, attention=False)
    arch = model.architecture()
    assert arch == {"name": "AttentionUNet", "in_channels": 3, "out_channels": 1, "base_channels": 8,
                    "depth": 3, "attention": False, "input_stem": "rgb", "encoder": "unet", "norm": "batch"}
    rebuilt = build_model(arch)
    assert rebuilt.architecture() == arch
    rebuilt.load_state_dict(model.state_dict())   # same parameter names and shapes


@pytest.mark.parametrize("arch, fragment", [
    ({"name": "UNetPlusPlus"}, "unknown architecture name"),
    ({"name": "AttentionUNet", "width": 16}, "unknown architecture key(s) 'width'"),
    ({"name": "AttentionUNet", "depth": 0}, '"depth" must be an integer from 1 to 8'),
    ({"name": "AttentionUNet", "base_channels": "16"}, '"base_channels" must be an integer from 1 to 512'),
    # A crafted config.json must not make the loader allocate hundreds of GB (regression: no upper bound).
    ({"name": "AttentionUNet", "base_channels": 100000}, '"base_channels" must be an integer from 1 to 512'),
    ({"name": "AttentionUNet", "attention": "yes"}, '"attention" must be true or false'),
    ({"name": "AttentionUNet", "input_stem": "srm"}, '"input_stem" must be one of rgb, rgb+srm'),
    ({"name": "AttentionUNet", "input_stem": "rgb+npr", "in_channels": 4}, "needs \"in_channels\": 3"),
    (["AttentionUNet"], "expected a mapping"),
])
def test_build_model_rejects_bad_architecture(arch, fragment):
    with pytest.raises(ConfigError, match="^model/config.json") as info:
        build_model(arch, source="model/config.json")
    assert fragment in str(info.value)


def test_model_flops_counts_two_per_multiply_add():
    # One 3x3 conv 3 -> 8 on 4x4 with padding 1: 3*8*9 multiply-adds per pixel * 16 pixels = 3456 MACs.
    conv = torch.nn.Conv2d(3, 8, 3, padding=1, bias=False)
    assert model_flops(conv, 4) == 2 * 3456


def test_stage_summary_adds_up():
    model = AttentionUNet(base_channels=8, depth=2)
    rows = stage_summary(model, 32)
    assert [r[0] for r in rows] == ["encoder0", "encoder1", "encoder2", "decoder1", "decoder0", "head"]
    assert sum(r[1] for r in rows) == count_parameters(model)
    assert sum(r[2] for r in rows) == model_flops(model, 32)


@pytest.mark.slow
def test_a_few_adam_steps_lower_the_loss():
    torch.manual_seed(0)
    model = AttentionUNet(base_channels=4, depth=2)
    x = torch.randn(4, 3, 16, 16)
    y = torch.zeros(4, 1, 16, 16)
    y[:, :, 4:12, 4:12] = 1
    x[:, :, 4:12, 4:12] += 2.0   # a visible cue inside the square
    loss_fn = BCEDiceLoss()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(8):
        optimizer.zero_grad()
        loss = loss_fn(model(x), y)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.7 * losses[0]


def test_model_info_command_prints_params_and_gflops(capsys):
    from inpaintseg.commands import model_info

    parser = argparse.ArgumentParser()
    model_info.register(parser.add_subparsers())
    args = parser.parse_args(["model-info", "--base-channels", "8", "--img-size", "64"])
    assert args.func(args) == 0
    out = capsys.readouterr().out
    assert "parameters: 492,117" in out
    gflops = model_flops(AttentionUNet(base_channels=8), 64) / 1e9
    assert f"forward GFLOPs per 64x64 image: {gflops:.3f}" in out
    plain = parser.parse_args(["model-info", "--base-channels", "8", "--no-attention", "--size", "32"])
    plain.func(plain)
    assert "parameters: 486,553" in capsys.readouterr().out


def test_model_info_rejects_bad_width():
    from inpaintseg.commands import model_info

    parser = argparse.ArgumentParser()
    model_info.register(parser.add_subparsers())
    with pytest.raises(SystemExit):
        parser.parse_args(["model-info", "--base-channels", "0"])


def test_tune_cpu_runtime_is_idempotent_and_sets_threads():
    import os
    import sys

    from inpaintseg.runtime import tune_cpu_runtime

    before = torch.get_num_threads()
    try:
        first = tune_cpu_runtime(threads=1)
        assert first["threads"] == 1 and torch.get_num_threads() == 1
        assert tune_cpu_runtime(threads=1) == first          # calling again changes nothing
        glibc = sys.platform.startswith("linux") and bool(os.confstr("CS_GNU_LIBC_VERSION"))
        assert first["malloc"] is glibc                      # mallopt only where glibc is loaded
        assert tune_cpu_runtime(threads=1, malloc=False)["malloc"] is False
    finally:
        torch.set_num_threads(before)
