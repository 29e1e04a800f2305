"""Issue 23: the architecture key "norm" (BatchNorm default, GroupNorm option) from config/CLI to the model
folder, predict and ONNX; old folders (no key) load as BatchNorm."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import TINY_ARCH
from torch import nn

from inpaintseg import cli
from inpaintseg.config import TrainConfig, load_config
from inpaintseg.data.input_spec import input_section
from inpaintseg.errors import ConfigError, ModelLoadError
from inpaintseg.model import build_model
from inpaintseg.model.io import load_model_dir, save_model_dir
from inpaintseg.model.spec import group_count

GROUP_ARCH = {**TINY_ARCH, "base_channels": 8, "norm": "group"}


def _save(folder, model, arch=None):
    config = {"architecture": arch or model.architecture(), "input": input_section("resize", 32),
              "postprocess": {"threshold": 0.5}}
    return save_model_dir(folder, model, config)


@pytest.mark.parametrize("channels, groups", [
    (1, 1), (4, 1), (7, 1),         # under 8 channels: one group (LayerNorm over C, H, W)
    (8, 2), (12, 3), (16, 4),       # channels // 4 groups: 4 channels per group
    (24, 6), (96, 24), (128, 32),   # still 4 channels per group up to 32 groups
    (256, 32), (512, 32),           # capped at 32 groups (the GN paper's default)
    (20, 5), (36, 9), (40, 10),     # divisors: 20 // 4 = 5 divides 20; 36 -> 9; 40 -> 10
    (18, 3), (50, 10),              # 18 // 4 = 4 does not divide 18 -> 3; 50 // 4 = 12 -> 10
])
def test_group_count_keeps_at_least_four_channels_per_group_and_at_most_32_groups(channels, groups):
    assert group_count(channels) == groups


def test_group_norm_model_has_group_norms_with_the_rule_and_keeps_the_shape():
    model = build_model(GROUP_ARCH)
    norms = [m for m in model.modules() if isinstance(m, nn.GroupNorm)]
    assert not any(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    # depth 2, widths 8, 16, 32: 2 norms per ConvBlock, 3 encoder + 2 decoder blocks.
    assert len(norms) == 10
    assert {(m.num_channels, m.num_groups) for m in norms} == {(8, 2), (16, 4), (32, 8)}
    assert model.architecture()["norm"] == "group"
    assert model(torch.randn(2, 3, 21, 30)).shape == (2, 1, 21, 30)
    # Same parameter names as the BatchNorm model; GroupNorm just has no running statistics.
    batch = build_model({**GROUP_ARCH, "norm": "batch"})
    assert set(model.state_dict()) == {k for k in batch.state_dict()
                                       if not k.endswith(("running_mean", "running_var", "num_batches_tracked"))}


def test_group_norm_output_does_not_depend_on_the_rest_of_the_batch():
    # The point of GroupNorm at small batch: in training mode an image's output is the same alone or in a batch.
    torch.manual_seed(0)
    x = torch.randn(3, 3, 16, 16)
    group, batch = build_model(GROUP_ARCH).train(), build_model({**GROUP_ARCH, "norm": "batch"}).train()
    torch.testing.assert_close(group(x)[:1], group(x[:1]), atol=1e-5, rtol=0)
    assert not torch.allclose(batch(x)[:1], batch(x[:1]), atol=1e-3)


def test_group_norm_model_round_trips_through_a_model_folder(tmp_path):
    torch.manual_seed(1)
    model = build_model(GROUP_ARCH).eval()
    for m in model.modules():   # non-trivial affine parameters, so a wrong load would show
        if isinstance(m, nn.GroupNorm):
            nn.init.uniform_(m.weight, 0.5, 1.5)
            nn.init.uniform_(m.bias, -0.5, 0.5)
    _save(tmp_path / "model", model)
    assert json.loads((tmp_path / "model" / "config.json").read_text())["architecture"]["norm"] == "group"
    loaded, config = load_model_dir(tmp_path / "model")
    assert config["architecture"]["norm"] == "group" and loaded.architecture() == model.architecture()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))


def test_a_model_folder_without_the_norm_key_loads_as_batch_norm(tmp_path):
    model = build_model(TINY_ARCH).eval()
    _save(tmp_path / "model", model, arch=dict(TINY_ARCH))   # an architecture written before the key existed
    assert "norm" not in json.loads((tmp_path / "model" / "config.json").read_text())["architecture"]
    loaded, _ = load_model_dir(tmp_path / "model")
    assert loaded.architecture()["norm"] == "batch"
    assert any(isinstance(m, nn.BatchNorm2d) for m in loaded.modules())
    x = torch.randn(1, 3, 16, 16)
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))


def test_batch_norm_weights_under_a_group_config_are_a_clear_mismatch(tmp_path):
    _save(tmp_path / "model", build_model(TINY_ARCH))
    path = tmp_path / "model" / "config.json"
    config = json.loads(path.read_text())
    config["architecture"]["norm"] = "group"   # hand-edited: BatchNorm weights, GroupNorm architecture
    path.write_text(json.dumps(config))
    with pytest.raises(ModelLoadError, match="does not match the architecture") as info:
        load_model_dir(tmp_path / "model")
    assert "running_mean" in str(info.value)


def test_an_unknown_norm_is_refused_by_the_config_json_and_by_the_training_config(tmp_path):
    with pytest.raises(ConfigError, match='^model/config.json: "norm" must be one of batch, group, got \'layer\''):
        build_model({**TINY_ARCH, "norm": "layer"}, source="model/config.json")
    with pytest.raises(ConfigError, match="norm: expected one of batch, group, got 'instance'"):
        TrainConfig.from_dict({"norm": "instance"})
    path = tmp_path / "c.yaml"
    path.write_text("norm: group\n")
    config = load_config(path)
    assert config.norm == "group" and config.architecture()["norm"] == "group"
    assert TrainConfig().norm == "batch" and TrainConfig().architecture()["norm"] == "batch"


def test_model_info_prints_a_group_norm_architecture(capsys):
    assert cli.main(["model-info", "--base-channels", "4", "--depth", "2", "--img-size", "32", "--norm", "group"]) == 0
    assert "'norm': 'group'" in capsys.readouterr().out


def test_group_norm_model_exports_to_onnx_within_tolerance(tmp_path):
    pytest.importorskip("onnxruntime", reason="the [onnx] extra is not installed")
    pytest.importorskip("onnx", reason="the [onnx] extra is not installed")
    import numpy as np

    from inpaintseg import load_model
    from inpaintseg.model.onnx_export import export_onnx

    torch.manual_seed(2)
    folder = _save(tmp_path / "model", build_model(GROUP_ARCH))
    result = export_onnx(folder, threads=1)
    assert result.max_diff < 1e-4   # |probability difference| vs PyTorch on the three parity shapes
    image = np.random.default_rng(0).integers(0, 256, (40, 27, 3), np.uint8)
    torch_probs = load_model(folder, device="cpu", engine="torch", precision="32").predict(image).probability
    onnx_probs = load_model(folder, device="cpu", engine="onnx").predict(image).probability
    np.testing.assert_allclose(onnx_probs, torch_probs, atol=1e-4, rtol=0)


@pytest.mark.slow
def test_train_with_norm_group_from_the_cli_exports_reloads_and_predicts(make_dataset, tmp_path):
    data = make_dataset(n_train=8, n_test=2, size=32)
    run = tmp_path / "run"
    assert cli.main(["train", "--data", str(data), "--out", str(run), "--norm", "group", "--epochs", "1",
                     "--batch-size", "4", "--base-channels", "4", "--depth", "2", "--img-size", "32",
                     "--num-workers", "0", "--no-progress-bar", "--accelerator", "cpu", "--precision", "32",
                     "--no-calibrate"]) == 0
    model, config = load_model_dir(run / "model")
    assert config["architecture"]["norm"] == "group" and config["training"]["norm"] == "group"
    assert any(isinstance(m, nn.GroupNorm) for m in model.modules())
    out = tmp_path / "sub.csv"
    assert cli.main(["predict", "--quiet", "--threads", "1", "--model", str(run / "model"),
                     "--images", str(data / "test" / "images"), "--submission", str(out), "--no-crf"]) == 0
    assert out.is_file()
