"""Issue 11, model folders: non-finite weights, crafted config.json bounds (no huge allocation), file modes."""

from __future__ import annotations

import json
import re
import stat

import pytest

from conftest import TINY_ARCH, export_tiny_model
from inpaintseg import load_model
from inpaintseg.errors import ConfigError, ModelLoadError
from inpaintseg.model.io import load_model_dir
from inpaintseg.model.spec import check_architecture


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_non_finite_weights_are_named(tmp_path, value):
    from safetensors.torch import load_file, save_file

    model = export_tiny_model(tmp_path / "model")
    state = load_file(str(model / "weights.safetensors"))
    name = sorted(state)[3]
    state[name].view(-1)[0] = value
    save_file(state, str(model / "weights.safetensors"))
    with pytest.raises(ModelLoadError, match="not finite.*" + re.escape(name)):
        load_model_dir(model)


def _edit(model, section: str, **values):
    config = json.loads((model / "config.json").read_text())
    config[section] = {**config[section], **values}
    (model / "config.json").write_text(json.dumps(config))


def test_the_widest_layer_is_bounded():
    # base 512 at depth 4 (8192 channels at the bottom) is the documented maximum; deeper is a mistake.
    assert check_architecture({**TINY_ARCH, "base_channels": 512, "depth": 4})["base_channels"] == 512
    with pytest.raises(ConfigError, match="widest layer"):
        check_architecture({**TINY_ARCH, "base_channels": 512, "depth": 6})


def test_a_config_that_does_not_match_its_weights_allocates_nothing(tmp_path, monkeypatch):
    # config.json claims a 77 M-parameter network beside tiny weights: the mismatch is found from the
    # weights file's header and a network built on the meta device, never by allocating the big one.
    import inpaintseg.model as model_pkg

    built = []
    real_build = model_pkg.build_model

    def recording_build(*args, **kwargs):
        network = real_build(*args, **kwargs)
        built.append({p.device.type for p in network.parameters()})
        return network

    monkeypatch.setattr(model_pkg, "build_model", recording_build)
    model = export_tiny_model(tmp_path / "model")
    built.clear()
    _edit(model, "architecture", base_channels=128, depth=4)
    with pytest.raises(ModelLoadError, match="does not match"):
        load_model_dir(model)
    assert built and all(devices == {"meta"} for devices in built)


@pytest.mark.parametrize("section, values, expected", [
    ("input", {"std": [1e-30, 0.2, 0.2]}, "input.std"),
    ("input", {"mean": [1e30, 0.4, 0.4]}, "input.mean"),
    ("postprocess", {"tta": "bogus"}, "postprocess.tta"),
    ("postprocess", {"crf": "bogus"}, "postprocess.crf"),
    ("postprocess", {"crf": "gaussian", "crf_params": {"gaussian": {"iterations": 10**9, "clip": 1e-5,
                     "gaussian": {"sxy": 3, "compat": 3}, "bilateral": None}}}, "iterations"),
    ("postprocess", {"crf_params": {"seed": {"iterations": 5, "clip": 1e-5, "gaussian": {"sxy": 1e300, "compat": 3},
                                              "bilateral": None}}}, "sxy"),
])
def test_crafted_config_fields_are_refused_at_load(tmp_path, section, values, expected):
    model = export_tiny_model(tmp_path / "model")
    _edit(model, section, **values)
    with pytest.raises(ModelLoadError, match=expected):
        load_model(model, device="cpu")


def test_weights_get_the_same_permissions_as_config(tmp_path):
    model = export_tiny_model(tmp_path / "model")
    mode = {p.name: stat.S_IMODE(p.stat().st_mode) for p in model.iterdir()}
    assert mode["weights.safetensors"] == mode["config.json"]
