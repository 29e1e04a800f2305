"""timm encoders end to end (issue 15): train -> export -> reload -> predict from the CLI, a local weights file
the test writes itself, --init-from a timm model folder, freezing, the offline error of --encoder-weights
imagenet, and predict with network access blocked.

Skipped when timm is not installed (the default install: see the README section "Encoders"; `make
test-encoders` runs these in a venv with the [encoders] extra). resnet10t (5 M parameters in the
backbone), random init, 64x64 images, 1 epoch.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import synthetic_sample, write_pair

timm = pytest.importorskip("timm", reason="timm is not installed (the optional [encoders] extra)")

from inpaintseg import cli  # noqa: E402
from inpaintseg.errors import ConfigError  # noqa: E402
from inpaintseg.losses import BCEDiceLoss  # noqa: E402
from inpaintseg.model import build_model  # noqa: E402
from inpaintseg.model.io import load_model_dir  # noqa: E402
from inpaintseg.training import SegmentationModule  # noqa: E402

ENCODER = "timm:resnet10t"
ARCH = {"name": "AttentionUNet", "base_channels": 8, "encoder": ENCODER}
TRAIN = ["--epochs", "1", "--batch-size", "4", "--img-size", "64", "--base-channels", "8", "--num-workers", "0",
         "--no-progress-bar", "--no-calibrate", "--accelerator", "cpu"]

# Every internet socket refused (plus HF_HUB_OFFLINE and dead proxies in the environment): a model folder
# must predict from its own files only.
OFFLINE_PRELUDE = textwrap.dedent("""
    import socket, sys
    def refuse(*args, **kwargs):
        raise OSError("network access blocked by the test")
    real_connect = socket.socket.connect
    def connect(self, address, *args, **kwargs):
        if self.family in (socket.AF_INET, socket.AF_INET6):
            refuse()
        return real_connect(self, address, *args, **kwargs)
    socket.socket.connect = connect
    socket.socket.connect_ex = lambda self, address: refuse()
    socket.create_connection = refuse
    socket.getaddrinfo = refuse
""")
OFFLINE_CLI = OFFLINE_PRELUDE + "from inpaintseg.cli import main\nsys.exit(main(sys.argv[1:]))\n"


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("timm-data")
    rng = np.random.default_rng(0)
    for i in range(12):
        image, mask = synthetic_sample(rng, 64, empty=i < 2)
        write_pair(root / "train" / "images", root / "train" / "masks", f"tr_{i:03d}", image, mask)
    for i in range(3):
        image, mask = synthetic_sample(rng, 64, empty=i == 0)
        write_pair(root / "test" / "images", root / "test" / "masks", f"te_{i:03d}", image, mask)
    return root


@pytest.fixture(scope="module")
def weights_files(tmp_path_factory) -> dict[str, Path]:
    """resnet10t classification weights (seeded random init, 1000 classes) as .safetensors and .pth, and the
    feature extractor's own state dict: the kinds of file a user brings."""
    from safetensors.torch import save_file

    root = tmp_path_factory.mktemp("timm-weights")
    torch.manual_seed(123)
    classifier = timm.create_model("resnet10t", pretrained=False, num_classes=1000)
    state = {k: v.contiguous() for k, v in classifier.state_dict().items()}
    files = {"safetensors": root / "resnet10t.safetensors", "pth": root / "resnet10t.pth",
             "features": root / "resnet10t_features.pth"}
    save_file(state, str(files["safetensors"]))
    torch.save({"state_dict": state, "epoch": 7}, files["pth"])   # a training checkpoint's layout
    features = timm.create_model("resnet10t", pretrained=False, features_only=True)
    features.load_state_dict({k: v for k, v in state.items() if not k.startswith("fc.")})
    torch.save(features.state_dict(), files["features"])
    return files


@pytest.fixture(scope="module")
def timm_run(data, tmp_path_factory) -> Path:
    """A run trained from the CLI with the timm encoder from random init."""
    run = tmp_path_factory.mktemp("timm-run") / "run"
    assert cli.main(["train", "--data", str(data), "--out", str(run), *TRAIN, "--encoder", ENCODER]) == 0
    return run


def offline_env() -> dict[str, str]:
    return dict(os.environ, HF_HUB_OFFLINE="1", HTTP_PROXY="http://127.0.0.1:9", HTTPS_PROXY="http://127.0.0.1:9",
                NO_PROXY="", PYTHONWARNINGS="ignore", PYTHONPATH=os.pathsep.join(sys.path))


def backbone_state(model) -> dict[str, torch.Tensor]:
    return model.encoders.backbone.state_dict()


def test_pyramid_channels_come_from_the_backbone():
    model = build_model(ARCH)
    info = model.encoders.backbone.feature_info
    assert info.reduction() == [2, 4, 8, 16, 32]
    assert model.encoders.channels == (8, *info.channels())   # full-resolution branch, then the backbone's
    assert model.depth == 5 and model.architecture()["depth"] == 5
    logits = model(torch.randn(2, 3, 50, 70))   # padded to a multiple of 32 inside, cropped back
    assert logits.shape == (2, 1, 50, 70)


def test_train_export_reload_predict_from_the_cli_offline(timm_run, data, tmp_path):
    model, config = load_model_dir(timm_run / "model")
    assert config["architecture"] == {"name": "AttentionUNet", "in_channels": 3, "out_channels": 1,
                                      "base_channels": 8, "depth": 5, "attention": True, "input_stem": "rgb",
                                      "encoder": ENCODER, "norm": "batch"}
    assert config["training"]["encoder_weights"] is None
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        expected = torch.sigmoid(model(x))
    again, _ = load_model_dir(timm_run / "model")
    torch.testing.assert_close(torch.sigmoid(again(x)), expected)

    out = tmp_path / "submission.csv"
    proc = subprocess.run([sys.executable, "-c", OFFLINE_CLI, "predict", "--model", str(timm_run / "model"),
                           "--images", str(data / "test" / "images"), "--out", str(out),
                           "--masks-out", str(tmp_path / "masks")],
                          capture_output=True, text=True, timeout=300, env=offline_env(), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = out.read_text().splitlines()
    assert rows[0] == "ImageId,EncodedPixels" and [r.split(",")[0] for r in rows[1:]] == ["te_000", "te_001", "te_002"]
    assert sorted(p.name for p in (tmp_path / "masks").iterdir()) == ["te_000.png", "te_001.png", "te_002.png"]


def test_the_offline_prelude_really_blocks_the_network():
    probe = OFFLINE_PRELUDE + textwrap.dedent("""
        for attempt in (lambda: socket.socket(socket.AF_INET).connect(("127.0.0.1", 9)),
                        lambda: socket.create_connection(("huggingface.co", 443))):
            try:
                attempt()
            except OSError as exc:
                print(exc)
    """)
    proc = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
    assert proc.stdout.count("network access blocked by the test") == 2, proc.stdout + proc.stderr[-2000:]


@pytest.mark.parametrize("kind", ["safetensors", "pth", "features"])
def test_a_local_weights_file_initialises_the_backbone(weights_files, kind):
    model = build_model(ARCH, encoder_weights=str(weights_files[kind]))
    source = timm.create_model("resnet10t", pretrained=False, features_only=True)
    source.load_state_dict(torch.load(weights_files["features"], weights_only=True))
    for name, value in source.state_dict().items():
        assert torch.equal(backbone_state(model)[name], value), name


def test_a_weights_file_of_another_model_is_refused(weights_files):
    with pytest.raises(ConfigError, match="does not hold weights of timm model 'resnet18'"):
        build_model({**ARCH, "encoder": "timm:resnet18"}, encoder_weights=str(weights_files["safetensors"]))


def test_a_weights_file_with_pickled_code_is_refused(tmp_path):
    path = tmp_path / "evil.pth"
    torch.save({"state_dict": {"w": torch.zeros(1)}, "extra": Path("x")}, path)   # not loadable weights_only
    with pytest.raises(ConfigError, match="cannot be read as a state dict"):
        build_model(ARCH, encoder_weights=str(path))


def test_imagenet_weights_without_network_say_so(data, tmp_path):
    run = tmp_path / "run"
    proc = subprocess.run([sys.executable, "-c", OFFLINE_CLI, "train", "--data", str(data), "--out", str(run),
                           *TRAIN, "--encoder", ENCODER, "--encoder-weights", "imagenet"],
                          capture_output=True, text=True, timeout=300, env=offline_env(), cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "no internet access" in proc.stderr and "--encoder-weights enc.pth" in proc.stderr
    assert "Traceback" not in proc.stderr and not run.exists()


def test_cli_weights_file_with_frozen_encoder_keeps_the_file_weights(data, weights_files, tmp_path, capsys):
    run = tmp_path / "run"
    code = cli.main(["train", "--data", str(data), "--out", str(run), *TRAIN, "--encoder", ENCODER,
                     "--encoder-weights", str(weights_files["safetensors"]), "--freeze-encoder-epochs", "1",
                     "--lr", "0.01"])
    assert code == 0, capsys.readouterr().err
    model, config = load_model_dir(run / "model")
    assert config["training"]["encoder_weights"] == str(weights_files["safetensors"])
    start = build_model(ARCH, encoder_weights=str(weights_files["safetensors"]))
    for name, value in backbone_state(start).items():   # frozen: weights and BatchNorm statistics
        assert torch.equal(backbone_state(model)[name], value), name
    assert not torch.equal(model.head.weight, start.head.weight)   # the decoder trained


def test_init_from_a_timm_model_folder(timm_run, data, tmp_path, capsys):
    run = tmp_path / "finetune"
    code = cli.main(["train", "--data", str(data), "--out", str(run), *TRAIN, "--init-from",
                     str(timm_run / "model"), "--encoder-lr-mult", "0.1"])
    assert code == 0, capsys.readouterr().err
    start, start_config = load_model_dir(timm_run / "model")
    tuned, config = load_model_dir(run / "model")
    assert config["architecture"] == start_config["architecture"]
    assert config["training"]["init_from"] == str(timm_run / "model") and config["training"]["encoder_lr_mult"] == 0.1
    # Started from the folder: 2 Adam steps at lr 1e-4 move each backbone weight by ~2e-4 at most, while a
    # fresh initialisation would differ by O(0.1).
    tuned_params = dict(tuned.encoders.backbone.named_parameters())
    for name, value in start.encoders.backbone.named_parameters():
        assert (tuned_params[name] - value).abs().max() < 1e-2, name


def test_encoder_lr_mult_scales_the_backbone_only():
    model = build_model(ARCH)
    groups = SegmentationModule(model, BCEDiceLoss(), lr=0.01, encoder_lr_mult=0.1) \
        .configure_optimizers()["optimizer"].param_groups
    assert [g["lr"] for g in groups] == pytest.approx([0.01, 0.001])
    assert {id(p) for p in groups[1]["params"]} == {id(p) for p in model.encoders.backbone.parameters()}
    hires = {id(p) for p in model.encoders.hires.parameters()}
    assert hires and hires <= {id(p) for p in groups[0]["params"]}   # the new full-resolution branch: full lr


def test_an_input_stem_runs_in_front_of_a_timm_encoder(weights_files):
    model = build_model({**ARCH, "input_stem": "rgb+srm"}, encoder_weights=str(weights_files["safetensors"]))
    first = model.encoders.backbone.conv1[0].weight   # resnet10t's deep stem: the first 3x3 conv
    assert first.shape[1] == 6 and model.encoders.hires[0][0].weight.shape[1] == 6   # RGB + 3 SRM residuals
    # timm adapts the 3-channel pretrained conv to 6 input channels (repeated and rescaled by 3/6).
    source = torch.load(weights_files["features"], weights_only=True)["conv1.0.weight"]
    torch.testing.assert_close(first[:, :3], source * 0.5)
    assert model(torch.randn(1, 3, 64, 64)).shape == (1, 1, 64, 64)
    assert model.architecture()["input_stem"] == "rgb+srm"
