"""TrainConfig: defaults == configs/default.yaml, YAML + CLI precedence, validation naming the key."""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from inpaintseg import cli
from inpaintseg.config import TrainConfig, add_config_arguments, load_config, overrides_from_args, save_config
from inpaintseg.errors import ConfigError
from inpaintseg.run_dir import RESUME_OVERRIDABLE, resume_config

REPO = Path(__file__).resolve().parents[1]


def parse_flags(argv: list[str]) -> dict:
    parser = argparse.ArgumentParser()
    add_config_arguments(parser)
    return overrides_from_args(parser.parse_args(argv))


def test_dataclass_defaults_equal_default_yaml():
    # configs/default.yaml is where the seed's hyperparameters are written down; the dataclass must agree.
    raw = yaml.safe_load((REPO / "configs" / "default.yaml").read_text())
    assert set(raw) == {f.name for f in dataclasses.fields(TrainConfig)}
    assert load_config(REPO / "configs" / "default.yaml") == TrainConfig()


def test_seed_hyperparameters():
    c = TrainConfig()
    assert (c.lr, c.epochs, c.batch_size, c.img_size, c.val_fraction, c.input_mode) == \
        (0.001, 50, 16, 256, 0.1, "resize")


def test_cli_flags_override_yaml_which_overrides_defaults(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("epochs: 3\nlr: 1e-2\nbatch_size: 4\n")  # `1e-2` is a string to PyYAML; accepted
    config = load_config(path, parse_flags(["--epochs", "5", "--no-attention"]))
    assert config.epochs == 5            # flag wins over YAML
    assert config.lr == 0.01             # YAML wins over default
    assert config.batch_size == 4
    assert config.attention is False     # bool flag
    assert config.seed == 0              # default


def test_only_given_flags_are_overrides():
    assert parse_flags([]) == {}
    assert parse_flags(["--num-workers", "none", "--input-mode", "crop"]) == \
        {"num_workers": None, "input_mode": "crop"}


def test_shared_vocabulary_flags_and_their_old_spellings():
    # --device / --num-devices are the names every command uses; the config keys stay accelerator/devices,
    # and the old flags are still accepted for one release.
    assert parse_flags(["--device", "cpu", "--num-devices", "2"]) == {"accelerator": "cpu", "devices": 2}
    assert parse_flags(["--accelerator", "cpu", "--devices", "2"]) == {"accelerator": "cpu", "devices": 2}
    assert parse_flags(["--no-progress-bar", "--logger", "tensorboard"]) == {"progress_bar": False,
                                                                             "logger": "tensorboard"}


def test_every_field_has_a_flag():
    parser = argparse.ArgumentParser()
    add_config_arguments(parser)
    flags = {opt for action in parser._actions for opt in action.option_strings}
    for f in dataclasses.fields(TrainConfig):
        assert "--" + f.name.replace("_", "-") in flags


@pytest.mark.parametrize("values, key, expected", [
    ({"epochz": 3}, "epochz", "did you mean 'epochs'"),
    ({"epochs": "ten"}, "epochs", "expected an integer"),
    ({"epochs": True}, "epochs", "expected an integer"),
    ({"lr": -0.1}, "lr", "expected a value in (0.0, 10.0]"),
    ({"lr": "fast"}, "lr", "expected a number"),
    ({"batch_size": 0}, "batch_size", "expected a value in [1"),
    ({"val_fraction": 1.5}, "val_fraction", "(0.0, 1.0)"),
    ({"input_mode": "warp"}, "input_mode", "expected one of resize, crop"),
    ({"precision": "8"}, "precision", "expected one of auto, 32, bf16-mixed, 16-mixed"),
    ({"img_size": 40}, "img_size", "multiple of 16"),
    ({"attention": "yes"}, "attention", "expected true or false"),
    ({"bce_weight": 0, "dice_weight": 0}, "bce_weight", "at least one > 0"),
])
def test_bad_values_are_rejected_naming_the_key(values, key, expected):
    with pytest.raises(ConfigError) as info:
        TrainConfig.from_dict(values)
    assert key in str(info.value) and expected in str(info.value)


def test_all_problems_reported_at_once(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("lr: -1\nepochs: 0\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    message = str(info.value)
    assert str(path) in message and "lr:" in message and "epochs:" in message


@pytest.mark.parametrize("text, expected", [
    ("lr: [1, 2\n", "not valid YAML"),
    ("- 1\n- 2\n", "expected a mapping"),
])
def test_bad_yaml_files(tmp_path, text, expected):
    path = tmp_path / "c.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=expected):
        load_config(path)


def test_missing_config_file(tmp_path):
    with pytest.raises(ConfigError, match="file not found. Check the config path"):
        load_config(tmp_path / "nope.yaml")


def test_empty_yaml_means_defaults(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("# nothing\n")
    assert load_config(path) == TrainConfig()


configs = st.builds(
    TrainConfig,
    epochs=st.integers(1, 1000), batch_size=st.integers(1, 64),
    lr=st.floats(1e-6, 1.0, allow_nan=False), img_size=st.integers(1, 64).map(lambda k: 16 * k),
    input_mode=st.sampled_from(["resize", "crop"]), val_fraction=st.floats(0.01, 0.99),
    num_workers=st.none() | st.integers(0, 8), attention=st.booleans(),
    max_time_minutes=st.none() | st.floats(0.01, 1e4), out=st.none() | st.text("abc/_-", min_size=1),
    precision=st.sampled_from(["auto", "32", "16-mixed", "bf16-mixed"]),
)


@settings(max_examples=40, deadline=None)
@given(config=configs)
def test_yaml_round_trip(tmp_path_factory, config):
    # save -> load is the identity for any valid config (floats survive YAML exactly).
    path = tmp_path_factory.mktemp("rt") / "config.yaml"
    save_config(config, path)
    assert load_config(path) == config


def test_resume_config_allows_run_control_only(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    save_config(TrainConfig(epochs=7, out="elsewhere"), run / "config.yaml")
    resumed = resume_config(run, {"max_time_minutes": 5.0, "epochs": 7})  # same epochs: not a change
    assert resumed.max_time_minutes == 5.0 and resumed.epochs == 7 and resumed.out == str(run)
    assert "max_time_minutes" in RESUME_OVERRIDABLE
    with pytest.raises(ConfigError, match=r"epochs \(run: 7, given: 9\)"):
        resume_config(run, {"epochs": 9})
    with pytest.raises(ConfigError, match="not a run folder"):
        resume_config(tmp_path, {})


def test_cli_print_config(capsys, tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("epochs: 3\n")
    assert cli.main(["train", "--config", str(path), "--lr", "0.5", "--print-config"]) == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed["epochs"] == 3 and printed["lr"] == 0.5 and printed["batch_size"] == 16


def test_cli_bad_flag_value_is_a_clear_error(capsys):
    assert cli.main(["train", "--lr", "-1", "--print-config"]) == 2
    err = capsys.readouterr().err
    assert "lr: expected a value in (0.0, 10.0], got -1.0" in err
