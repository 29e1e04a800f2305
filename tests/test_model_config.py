"""`ModelConfig` (issue 21 item 5): every committed config.json round-trips to the same dict and the same text,
unknown keys survive a load/save at every level, an old model folder's config reads with absent keys as None,
and each structural error names the file and the key."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from inpaintseg.errors import ModelLoadError
from inpaintseg.inference.postprocess import resolve_postprocess
from inpaintseg.model import build_model
from inpaintseg.model.io import CONFIG_FILE, load_model_dir, read_model_config, save_model_dir, update_model_config
from inpaintseg.model.model_config import InputConfig, ModelConfig, PostprocessConfig

REPO = Path(__file__).resolve().parents[1]
COMMITTED = [REPO / "src" / "inpaintseg" / "weights" / "base" / CONFIG_FILE]
ARCH = {"name": "AttentionUNet", "in_channels": 3, "out_channels": 1, "base_channels": 2, "depth": 1,
        "attention": False}
INPUT = {"mode": "resize", "size": 16, "mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25]}


def minimal(**changes) -> dict:
    """A config.json as a model folder from before calibration, stems and encoders has it."""
    return {"format_version": 1, "architecture": dict(ARCH), "input": dict(INPUT), "postprocess": {"threshold": 0.5},
            **changes}


@pytest.mark.parametrize("path", COMMITTED, ids=lambda p: p.parent.name)
def test_committed_configs_round_trip_to_the_same_text(path):
    text = path.read_text(encoding="utf-8")
    config = ModelConfig.from_dict(json.loads(text), path)
    assert config.to_dict() == json.loads(text)
    assert json.dumps(config.to_dict(), indent=2) + "\n" == text  # same keys in the same order: same bytes
    assert (config.input.mode, config.input.size) == ("crop", 256)
    assert config.postprocess.tta in ("none", "flip", "d4", "flip+scales", "d4+scales")
    assert config.postprocess.calibrated and config["recipe"]["engine"]  # raw sections, read for display
    assert ModelConfig.from_dict(config.to_dict(), path) == config


def test_an_old_config_reads_with_absent_keys_as_none_and_default_choices():
    config = ModelConfig.from_dict(minimal())
    post = config.postprocess
    assert (post.threshold, post.tta, post.crf, post.calibration, post.verdicts) == (0.5, None, None, None, None)
    assert not post.calibrated and config.to_dict() == minimal()  # nothing is filled in on the way back
    resolved = resolve_postprocess(config)
    assert (resolved.tta, resolved.crf, resolved.threshold) == ("none", "off", 0.5)
    assert config.get("metrics") is None and "metrics" not in config
    assert list(config) == ["format_version", "architecture", "input", "postprocess"] and dict(config) == minimal()


def test_unknown_keys_survive_a_save_and_an_update_of_a_model_folder(tmp_path):
    config = minimal(future_section={"a": [1, 2]}, input={**INPUT, "colour_space": "rgb"},
                     postprocess={"threshold": 0.5, "crf_params": None, "ensemble": {"n": 3}})
    save_model_dir(tmp_path / "m", build_model(ARCH), config)
    update_model_config(tmp_path / "m", {"postprocess": {"threshold": 0.3}})
    written = json.loads((tmp_path / "m" / CONFIG_FILE).read_text())
    assert written == {**config, "postprocess": {**config["postprocess"], "threshold": 0.3}}
    assert list(written["postprocess"]) == ["threshold", "crf_params", "ensemble"]  # a stored null is kept
    _, loaded = load_model_dir(tmp_path / "m")
    assert loaded.input.extra["colour_space"] == "rgb" and loaded.postprocess.extra["ensemble"]["n"] == 3
    assert loaded == read_model_config(tmp_path / "m") and loaded.to_dict() == written


def test_the_config_cannot_be_changed_in_place():
    config = ModelConfig.from_dict(minimal(metrics={"val_dice": 0.4}))
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.postprocess = PostprocessConfig(threshold=0.2)
    with pytest.raises(TypeError):
        config.architecture["depth"] = 3
    copy = config["metrics"]
    copy["val_dice"] = 1.0  # a copy: the config keeps its value
    assert config["metrics"] == {"val_dice": 0.4}
    changed = config.updated({"postprocess": {"tta": "flip"}, "metrics": {"val_iou": 0.2}})
    assert changed.postprocess.tta == "flip" and changed.postprocess.threshold == 0.5
    assert changed["metrics"] == {"val_dice": 0.4, "val_iou": 0.2} and config.postprocess.tta is None


@pytest.mark.parametrize("mutate, expected", [
    (lambda c: c.pop("postprocess"), "missing required key(s) postprocess"),
    (lambda c: c.update(format_version="1"), "format_version must be an integer"),
    (lambda c: c.update(architecture=[1]), "\"architecture\" must be an object"),
    (lambda c: c["input"].update(size=7), "input.size must be an integer from 8"),
    (lambda c: c["postprocess"].pop("threshold"), "\"postprocess\" must be an object with a \"threshold\""),
    (lambda c: c["postprocess"].update(threshold=True), "postprocess.threshold must be a number in [0, 1]"),
    (lambda c: c["postprocess"].update(threshold=float("nan")), "postprocess.threshold must be a number"),
    (lambda c: c["postprocess"].update(tta=3), "postprocess.tta must be a string"),
    (lambda c: c["postprocess"].update(calibration=[]), "postprocess.calibration must be an object"),
])
def test_errors_name_the_file_and_the_key(mutate, expected):
    config = minimal()
    mutate(config)
    with pytest.raises(ModelLoadError) as info:
        ModelConfig.from_dict(config, "/models/x/config.json")
    message = str(info.value)
    assert message.startswith("/models/x/config.json: ") and expected in message
    assert message.endswith("re-export the model.") or "not supported" in message


def test_typed_sections_are_read_by_the_predictor_and_the_postprocess():
    from inpaintseg.inference.predictor import Predictor

    config = ModelConfig.from_dict(minimal(postprocess={"threshold": 0.3, "tta": "flip", "crf": "off",
                                                        "calibration": {"table": []}}))
    predictor = Predictor(torch.nn.Conv2d(3, 1, 1), config, channels_last=False)
    assert predictor.input == InputConfig("resize", 16, (0.5, 0.5, 0.5), (0.25, 0.25, 0.25))
    post = resolve_postprocess(config)
    assert (post.tta, post.threshold, post.sources["tta"]) == ("flip", 0.3, "stored by validation calibration")


JSON_LEAF = st.none() | st.booleans() | st.integers(-5, 5) | st.floats(-2, 2) | st.text(max_size=4)
JSON = st.recursive(JSON_LEAF, lambda inner: st.lists(inner, max_size=3)
                    | st.dictionaries(st.text(max_size=4), inner, max_size=3), max_leaves=8)
UNKNOWN = st.dictionaries(st.text(min_size=1, max_size=6).filter(lambda k: not k.startswith("_")), JSON, max_size=3)


@settings(max_examples=60, deadline=None)
@given(top=UNKNOWN, inp=UNKNOWN, post=UNKNOWN, threshold=st.floats(0, 1), order=st.randoms())
def test_any_unknown_keys_round_trip_in_their_order(top, inp, post, threshold, order):
    config = minimal()
    config["input"].update({k: v for k, v in inp.items() if k not in config["input"]})
    config["postprocess"] = {**{k: v for k, v in post.items() if k not in PostprocessConfig.__dataclass_fields__},
                             "threshold": threshold}
    config.update({k: v for k, v in top.items() if k not in config})
    items = list(config.items())
    order.shuffle(items)
    config = dict(items)
    back = ModelConfig.from_dict(config).to_dict()
    assert back == config and list(back) == list(config)
    assert json.dumps(back) == json.dumps(config)
