"""Encoders as a choice (issue 15), the parts that need no timm: the U-Net encoder keeps the state-dict names
of every older model folder, encoder names are validated, a timm encoder without timm gives the install hint,
--init-from, --freeze-encoder-epochs and --encoder-lr-mult.

Tiny networks (base 4, depth 2) on 32x32 images; the timm encoders are tested in test_encoders_timm.py."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from lightning.pytorch.callbacks import Callback
from conftest import export_tiny_model, synthetic_sample, write_pair
from inpaintseg import cli
from inpaintseg.config import TrainConfig
from inpaintseg.errors import ConfigError, InpaintsegError
from inpaintseg.losses import BCEDiceLoss
from inpaintseg.model import build_model, check_architecture
from inpaintseg.model.attention_unet import AttentionUNet
from inpaintseg.model.encoders import INSTALL_HINT, UNetEncoder
from inpaintseg.model.io import load_model_dir, save_model_dir
from inpaintseg.training import SegmentationModule, train
from inpaintseg.training.finetune import FreezeEncoder, resolve_init_from

ARCH = {"name": "AttentionUNet", "base_channels": 4, "depth": 2}
TINY = ["--epochs", "1", "--batch-size", "2", "--img-size", "32", "--num-workers", "0", "--no-progress-bar",
        "--no-calibrate", "--accelerator", "cpu"]


def tiny_config(data: Path, out: Path, **changes) -> TrainConfig:
    values = dict(data=str(data), out=str(out), epochs=1, batch_size=2, base_channels=4, depth=2, img_size=32,
                  num_workers=0, progress_bar=False, calibrate=False, accelerator="cpu")
    values.update(changes)
    return TrainConfig.from_dict(values)


def model_config(arch: dict) -> dict:
    from inpaintseg.data.input_spec import input_section

    return {"architecture": arch, "input": input_section("resize", 32), "postprocess": {"threshold": 0.5}}


# ----------------------------------------------------------------------------------------------
# The U-Net encoder: same names, same numbers


def test_unet_encoder_keeps_the_state_dict_names_of_older_model_folders():
    # Written out by hand from the network before encoders became a choice (depth 1, no attention).
    names = list(AttentionUNet(base_channels=2, depth=1, attention=False).state_dict())
    block = ["0.weight", "1.weight", "1.bias", "1.running_mean", "1.running_var", "1.num_batches_tracked",
             "3.weight", "4.weight", "4.bias", "4.running_mean", "4.running_var", "4.num_batches_tracked"]
    expected = ([f"encoders.0.{n}" for n in block] + [f"encoders.1.{n}" for n in block]
                + ["decoders.0.up.weight", "decoders.0.up.bias"] + [f"decoders.0.conv.{n}" for n in block]
                + ["head.weight", "head.bias"])
    assert names == expected


def test_unet_encoder_gives_one_feature_per_stride():
    encoder = UNetEncoder(in_channels=3, base_channels=2, depth=3)
    features = encoder(torch.randn(1, 3, 16, 24))
    assert [tuple(f.shape) for f in features] == [(1, 2, 16, 24), (1, 4, 8, 12), (1, 8, 4, 6), (1, 16, 2, 3)]
    assert encoder.channels == (2, 4, 8, 16)


def test_a_config_without_the_encoder_key_is_the_unet(tmp_path):
    assert check_architecture(ARCH)["encoder"] == "unet"
    model = build_model(ARCH)
    save_model_dir(tmp_path / "model", model, model_config(dict(ARCH)))   # an older folder: no "encoder" key
    loaded, config = load_model_dir(tmp_path / "model")
    assert "encoder" not in config["architecture"] and loaded.architecture()["encoder"] == "unet"
    x = torch.randn(1, 3, 32, 32)
    torch.testing.assert_close(loaded(x), model.eval()(x))


@pytest.mark.parametrize("value", ["resnet18", "timm:", "timm:../../etc", "timm:a b", "TIMM:resnet18", 5, None])
def test_bad_encoder_names_are_refused(value):
    with pytest.raises(ConfigError, match="\"encoder\" must be"):
        check_architecture({**ARCH, "encoder": value})


@pytest.mark.parametrize("value", ["unet", "timm:resnet18", "timm:convnext_tiny.fb_in22k_ft_in1k"])
def test_good_encoder_names_pass(value):
    arch = check_architecture({"name": "AttentionUNet", "encoder": value})
    assert arch["encoder"] == value
    assert arch["depth"] == (4 if value == "unet" else None)   # a timm encoder's depth is its backbone's


def test_timm_architecture_without_depth_leaves_it_to_the_backbone():
    config = TrainConfig(encoder="timm:resnet18")
    assert "depth" not in config.architecture() and config.architecture()["encoder"] == "timm:resnet18"
    assert TrainConfig().architecture()["depth"] == 4


@pytest.mark.parametrize("changes, expected", [
    ({"encoder": "resnet18"}, "\"encoder\" must be"),
    ({"encoder_weights": "imagenet"}, "only a timm encoder"),
    ({"encoder": "timm:resnet18", "encoder_weights": "w.pth", "init_from": "runs/x/model"}, "give one of them"),
    ({"encoder_lr_mult": 0}, "encoder_lr_mult"),
    ({"freeze_encoder_epochs": -1}, "freeze_encoder_epochs"),
])
def test_bad_encoder_settings_are_refused(changes, expected):
    with pytest.raises(ConfigError, match=expected):
        TrainConfig.from_dict(changes)


# ----------------------------------------------------------------------------------------------
# timm missing


@pytest.fixture
def no_timm(monkeypatch):
    monkeypatch.setitem(sys.modules, "timm", None)   # `import timm` raises ImportError


def test_timm_encoder_without_timm_names_the_extra(no_timm):
    with pytest.raises(InpaintsegError, match=r"pip install 'inpaintseg\[encoders\]'"):
        build_model({"name": "AttentionUNet", "encoder": "timm:resnet18"})


def test_train_with_a_timm_encoder_without_timm_exits_2_with_the_hint(no_timm, make_dataset, tmp_path, capsys):
    data = make_dataset(n_train=6)
    code = cli.main(["train", "--data", str(data), "--out", str(tmp_path / "run"), *TINY,
                     "--encoder", "timm:resnet18"])
    assert code == 2
    assert INSTALL_HINT in capsys.readouterr().err
    assert not (tmp_path / "run").exists()   # nothing written before the network exists


def test_predict_with_a_timm_model_folder_without_timm_exits_2_with_the_hint(no_timm, tmp_path, capsys):
    folder = tmp_path / "model"
    save_model_dir(folder, build_model(ARCH), model_config(dict(ARCH)))
    config = json.loads((folder / "config.json").read_text())
    config["architecture"] = {"name": "AttentionUNet", "encoder": "timm:resnet18"}
    (folder / "config.json").write_text(json.dumps(config))
    images = tmp_path / "images"
    images.mkdir()
    code = cli.main(["predict", "--model", str(folder), "--images", str(images), "--out", str(tmp_path / "s.csv")])
    assert code == 2
    assert INSTALL_HINT in capsys.readouterr().err


# ----------------------------------------------------------------------------------------------
# Encoder learning rate and freezing


def test_encoder_lr_mult_puts_the_encoder_in_its_own_group():
    model = build_model(ARCH)
    one = SegmentationModule(model, BCEDiceLoss(), lr=0.01).configure_optimizers()["optimizer"]
    assert len(one.param_groups) == 1
    module = SegmentationModule(model, BCEDiceLoss(), lr=0.01, encoder_lr_mult=0.1)
    groups = module.configure_optimizers()["optimizer"].param_groups
    assert [g["lr"] for g in groups] == pytest.approx([0.01, 0.001])
    encoder_ids = {id(p) for p in model.encoders.parameters()}
    assert {id(p) for p in groups[1]["params"]} == encoder_ids
    assert not encoder_ids & {id(p) for p in groups[0]["params"]}
    assert sum(len(g["params"]) for g in groups) == len(list(model.parameters()))


def test_freeze_encoder_stops_gradients_and_batchnorm_updates_then_releases():
    model = build_model(ARCH).train()
    module = SegmentationModule(model, BCEDiceLoss())
    freeze = FreezeEncoder(epochs=2)
    assert freeze.frozen(0) and freeze.frozen(1) and not freeze.frozen(2)
    freeze._apply(module, True)
    assert not any(p.requires_grad for p in model.encoders.parameters())
    assert all(p.requires_grad for p in model.decoders.parameters())
    assert not model.encoders.training and model.decoders.training
    before = {k: v.clone() for k, v in model.encoders.state_dict().items()}
    model(torch.randn(2, 3, 32, 32)).mean().backward()   # a forward in train mode: encoder BN stats stay
    for name, value in model.encoders.state_dict().items():
        assert torch.equal(value, before[name]), name
    assert all(p.grad is None for p in model.encoders.parameters())
    freeze._apply(module, False)
    assert all(p.requires_grad for p in model.encoders.parameters())


# ----------------------------------------------------------------------------------------------
# --init-from


@pytest.fixture(scope="module")
def trained_folder(tmp_path_factory):
    """A tiny trained model folder (base 4, depth 2) and its dataset."""
    root = tmp_path_factory.mktemp("initfrom")
    data = root / "data"
    rng = np.random.default_rng(0)
    for i in range(8):
        image, mask = synthetic_sample(rng, 32, empty=i < 2)
        write_pair(data / "train" / "images", data / "train" / "masks", f"tr_{i:03d}", image, mask)
    result = train(tiny_config(data, root / "run"))
    return result.model_dir, data


@pytest.mark.slow
def test_init_from_takes_the_architecture_from_the_folder(trained_folder, tmp_path):
    folder, data = trained_folder
    config = resolve_init_from(tiny_config(data, tmp_path / "run", base_channels=16, depth=4,
                                           init_from=str(folder)))
    assert (config.base_channels, config.depth, config.encoder) == (4, 2, "unet")
    with pytest.raises(ConfigError, match="the model folder fixes the architecture"):
        resolve_init_from(tiny_config(data, tmp_path / "run", base_channels=16, init_from=str(folder)),
                          explicit={"base_channels"})


def test_init_from_a_missing_folder_is_a_clear_error(make_dataset, tmp_path, capsys):
    data = make_dataset(n_train=6)
    code = cli.main(["train", "--data", str(data), "--out", str(tmp_path / "run"), *TINY,
                     "--init-from", str(tmp_path / "nope")])
    assert code == 2
    assert "model folder not found" in capsys.readouterr().err


class WreckWeights(Callback):
    """Makes every trained epoch worse than the start: the weights are scaled by -20 before validation."""

    def on_train_epoch_end(self, trainer, pl_module):
        with torch.no_grad():
            for parameter in pl_module.model.parameters():
                parameter.mul_(-20.0)


@pytest.mark.parametrize("keep_start", [True, False])
def test_fine_tuning_keeps_the_starting_weights_when_no_epoch_beats_them(trained_folder, tmp_path, capsys,
                                                                           keep_start):
    folder, data = trained_folder
    result = train(tiny_config(data, tmp_path / "run", init_from=str(folder), keep_start=keep_start),
                   callbacks=[WreckWeights()])
    start, _ = load_model_dir(folder)
    tuned, config = load_model_dir(result.model_dir)
    same = all(torch.equal(tuned.state_dict()[n], v) for n, v in start.state_dict().items())
    assert same is keep_start
    assert result.best_epoch == (0 if keep_start else 1)
    assert config["training"]["best_epoch"] == result.best_epoch
    assert ("no epoch beat the starting weights" in capsys.readouterr().err) is keep_start


@pytest.mark.parametrize("keep_start", [True, False])
def test_kept_starting_weights_keep_their_image_gate(trained_folder, tmp_path, keep_start):
    # the tiny validation split has fewer untouched images than a gate needs: a run that kept the starting
    # weights takes the start's gate (recorded as inherited); one whose weights changed chooses none
    import shutil

    from inpaintseg.model.io import update_model_config

    folder, data = trained_folder
    start = shutil.copytree(folder, tmp_path / "start")
    update_model_config(start, {"postprocess": {"gate": 0.9}})
    result = train(tiny_config(data, tmp_path / "run", init_from=str(start), keep_start=keep_start),
                   callbacks=[WreckWeights()])
    _, config = load_model_dir(result.model_dir)
    post = config["postprocess"]
    record = post["calibration"]["gate"]
    assert config["postprocess"]["gate"] == (0.9 if keep_start else None)
    if not keep_start:
        assert record["n_untouched"] < 10 and "start_comparison" not in post["calibration"]
        return
    # the start's post-processing competed on the same validation images; whichever was kept carries gate 0.9
    comparison = post["calibration"]["start_comparison"]
    assert comparison["n_images"] >= 1 and 0 <= comparison["start_dice"] <= 1
    start_post = load_model_dir(start)[1]["postprocess"]
    if comparison["kept_start"]:
        assert (post["threshold"], post["tta"]) == (start_post["threshold"], start_post["tta"])
        assert comparison["this_run_dice"] <= comparison["start_dice"] + comparison["margin"]
    else:
        assert "inherited" in record and comparison["this_run_dice"] > comparison["start_dice"]


def test_init_from_with_a_frozen_encoder_keeps_the_folders_encoder(trained_folder, tmp_path, capsys):
    folder, data = trained_folder
    run = tmp_path / "finetune"
    code = cli.main(["train", "--data", str(data), "--out", str(run), *TINY, "--init-from", str(folder),
                     "--freeze-encoder-epochs", "1", "--lr", "0.01", "--no-keep-start"])
    assert code == 0, capsys.readouterr().err
    start, _ = load_model_dir(folder)
    tuned, config = load_model_dir(run / "model")
    assert config["architecture"] == start.architecture()
    assert config["training"]["init_from"] == str(folder)
    for name, value in start.encoders.state_dict().items():   # weights and BatchNorm statistics
        assert torch.equal(tuned.encoders.state_dict()[name], value), name
    changed = [n for n, v in start.decoders.state_dict().items()
               if v.is_floating_point() and not torch.equal(tuned.decoders.state_dict()[n], v)]
    assert changed   # the decoder trained from the folder's weights


def test_fine_tuning_takes_the_folders_input_mode_and_size_unless_set(tmp_path, make_dataset, capsys):
    folder = export_tiny_model(tmp_path / "crop_model", mode="crop", size=48)
    data = make_dataset(n_train=4)
    base_args = ["train", "--data", str(data), "--init-from", str(folder), "--print-config"]
    assert cli.main(base_args) == 0
    captured = capsys.readouterr()
    config = yaml.safe_load(captured.out)
    assert (config["input_mode"], config["img_size"]) == ("crop", 48)
    assert "input_mode crop, img_size 48" in captured.err
    assert cli.main([*base_args, "--input-mode", "resize"]) == 0
    config = yaml.safe_load(capsys.readouterr().out)
    assert (config["input_mode"], config["img_size"]) == ("resize", 48)
    (tmp_path / "c.yaml").write_text("img_size: 64\n")
    assert cli.main([*base_args, "--config", str(tmp_path / "c.yaml")]) == 0
    config = yaml.safe_load(capsys.readouterr().out)
    assert (config["input_mode"], config["img_size"]) == ("crop", 64)
