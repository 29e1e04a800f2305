"""Model folder export/import: safetensors + config.json, strict validation, no pickle."""

from __future__ import annotations

import json
import struct

import pytest
import torch

from inpaintseg.errors import ModelLoadError
from inpaintseg.model import build_model
from inpaintseg.model.io import (
    export_state_dict,
    load_model_dir,
    read_model_config,
    save_model_dir,
    unwrap_model,
    update_model_config,
)

ARCH = {"name": "AttentionUNet", "in_channels": 3, "out_channels": 1, "base_channels": 4, "depth": 2,
        "attention": True}


def model_config(**changes) -> dict:
    config = {
        "architecture": dict(ARCH),
        "input": {"mode": "resize", "size": 32, "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]},
        "postprocess": {"threshold": 0.4, "tta": "none", "crf": "off"},
        "metrics": {"val_dice": 0.5},
        "data": {"n_train": 8},
        "training": {"epochs": 1},
    }
    config.update(changes)
    return config


@pytest.fixture
def trained_like_model():
    torch.manual_seed(0)
    model = build_model(ARCH)
    # Make BatchNorm buffers non-trivial so they must round-trip too.
    model.train()
    with torch.no_grad():
        model(torch.randn(2, 3, 32, 32))
    return model.eval()


def test_save_load_gives_identical_predictions(tmp_path, trained_like_model):
    x = torch.randn(2, 3, 32, 32)
    expected = trained_like_model(x)
    save_model_dir(tmp_path / "model", trained_like_model, model_config())
    model, config = load_model_dir(tmp_path / "model")
    assert not model.training
    assert torch.equal(model(x), expected)
    assert config["format_version"] == 1 and config["postprocess"]["threshold"] == 0.4


def test_weights_file_is_safetensors_not_pickle(tmp_path, trained_like_model):
    save_model_dir(tmp_path / "model", trained_like_model, model_config())
    raw = (tmp_path / "model" / "weights.safetensors").read_bytes()
    (header_len,) = struct.unpack("<Q", raw[:8])  # safetensors: u64 header length, then a JSON header
    header = json.loads(raw[8:8 + header_len])
    assert "head.weight" in header or any(k.endswith(".weight") for k in header)
    assert not raw.startswith(b"PK") and raw[:2] != b"\x80\x02"  # not a zip/pickle (torch.save)


def test_wrappers_are_unwrapped(tmp_path, trained_like_model):
    # The real wrappers: DataParallel holds the network as .module (like DDP, which needs a process
    # group), torch.compile's OptimizedModule as ._orig_mod (compilation is lazy: nothing runs here).
    wrapped = torch.nn.DataParallel(torch.compile(trained_like_model))
    assert unwrap_model(wrapped) is trained_like_model
    names = set(export_state_dict(wrapped))
    assert names == set(trained_like_model.state_dict())
    save_model_dir(tmp_path / "model", wrapped, model_config())
    load_model_dir(tmp_path / "model")


def test_a_network_with_its_own_model_attribute_is_not_unwrapped():
    # MONAI's AttentionUnet keeps its layers in `.model`; only wrapper types may be unwrapped.
    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.model = torch.nn.Conv2d(3, 1, 1)
            self.module = torch.nn.Conv2d(1, 1, 1)

    net = Net()
    assert unwrap_model(net) is net


def test_channels_last_model_exports(tmp_path, trained_like_model):
    model = trained_like_model.to(memory_format=torch.channels_last)
    save_model_dir(tmp_path / "model", model, model_config())
    loaded, _ = load_model_dir(tmp_path / "model")
    x = torch.randn(1, 3, 32, 32)
    assert torch.allclose(loaded(x), model(x), atol=1e-5)


def test_architecture_mismatch_lists_the_tensors(tmp_path, trained_like_model):
    save_model_dir(tmp_path / "model", trained_like_model, model_config())
    update_path = tmp_path / "model" / "config.json"
    config = json.loads(update_path.read_text())
    config["architecture"]["base_channels"] = 8  # weights were written for 4
    update_path.write_text(json.dumps(config))
    with pytest.raises(ModelLoadError) as info:
        load_model_dir(tmp_path / "model")
    message = str(info.value)
    assert "does not match the architecture" in message and "shape mismatch" in message
    assert "weights [4, 3, 3, 3], architecture [8, 3, 3, 3]" in message


def test_missing_attention_tensors_are_named(tmp_path):
    plain = build_model({**ARCH, "attention": False})
    save_model_dir(tmp_path / "model", plain, model_config(architecture={**ARCH, "attention": False}))
    path = tmp_path / "model" / "config.json"
    config = json.loads(path.read_text())
    config["architecture"]["attention"] = True
    path.write_text(json.dumps(config))
    with pytest.raises(ModelLoadError, match="missing from the weights"):
        load_model_dir(tmp_path / "model")


def test_save_refuses_a_config_that_does_not_fit_the_model(tmp_path, trained_like_model):
    with pytest.raises(ModelLoadError, match="does not match"):
        save_model_dir(tmp_path / "model", trained_like_model,
                       model_config(architecture={**ARCH, "depth": 3}))
    assert not (tmp_path / "model").exists()


@pytest.mark.parametrize("remove, expected", [
    ("weights.safetensors", "missing weights.safetensors"),
    ("config.json", "missing config.json"),
])
def test_missing_file(tmp_path, trained_like_model, remove, expected):
    save_model_dir(tmp_path / "model", trained_like_model, model_config())
    (tmp_path / "model" / remove).unlink()
    with pytest.raises(ModelLoadError, match=expected):
        load_model_dir(tmp_path / "model")


def test_missing_folder(tmp_path):
    with pytest.raises(ModelLoadError, match="model folder not found"):
        load_model_dir(tmp_path / "nope")


@pytest.mark.parametrize("mutate, expected", [
    (lambda c: c.pop("input"), "missing required key"),
    (lambda c: c.update(format_version=99), "format_version 99 is not supported"),
    (lambda c: c["postprocess"].update(threshold=1.5), "postprocess.threshold"),
    (lambda c: c["input"].update(mode="warp"), "input.mode"),
    (lambda c: c["input"].update(std=[1, 0, 1]), "input.std"),
    (lambda c: c["architecture"].update(name="ResNet"), "unknown architecture name"),
])
def test_bad_config_json(tmp_path, trained_like_model, mutate, expected):
    save_model_dir(tmp_path / "model", trained_like_model, model_config())
    path = tmp_path / "model" / "config.json"
    config = json.loads(path.read_text())
    mutate(config)
    path.write_text(json.dumps(config))
    with pytest.raises(ModelLoadError, match=expected):
        load_model_dir(tmp_path / "model")


def test_invalid_json_and_truncated_weights(tmp_path, trained_like_model):
    save_model_dir(tmp_path / "model", trained_like_model, model_config())
    weights = tmp_path / "model" / "weights.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    with pytest.raises(ModelLoadError, match="cannot be read as safetensors"):
        load_model_dir(tmp_path / "model")
    (tmp_path / "model" / "config.json").write_text("{not json")
    with pytest.raises(ModelLoadError, match="not valid JSON"):
        read_model_config(tmp_path / "model")


def test_update_model_config_merges_sections(tmp_path, trained_like_model):
    save_model_dir(tmp_path / "model", trained_like_model, model_config())
    updated = update_model_config(tmp_path / "model", {"postprocess": {"threshold": 0.7}, "note": "x"})
    assert updated["postprocess"] == {"threshold": 0.7, "tta": "none", "crf": "off"}
    assert read_model_config(tmp_path / "model") == updated
    with pytest.raises(ModelLoadError, match="postprocess.threshold"):
        update_model_config(tmp_path / "model", {"postprocess": {"threshold": -1}})
    assert read_model_config(tmp_path / "model")["postprocess"]["threshold"] == 0.7  # unchanged
