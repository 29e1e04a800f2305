"""Training: loss goes down, run folder contents, resume, NaN stop, determinism, DDP, config errors.

Everything is tiny (32x32 images, base_channels 4, depth 2, batch 2, 1-2 epochs) and runs on CPU.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import lightning as L
import pytest
import torch
from inpaintseg import cli
from inpaintseg.config import TrainConfig, load_config, save_config
from inpaintseg.errors import ConfigError, DataError, InpaintsegError
from inpaintseg.losses import BCEDiceLoss
from inpaintseg.model import build_model
from inpaintseg.model.io import load_model_dir
from inpaintseg.run_dir import read_metric_rows
from inpaintseg.training import SegmentationModule, train

TINY = ["--epochs", "2", "--batch-size", "2", "--base-channels", "4", "--depth", "2", "--img-size", "32",
        "--num-workers", "0", "--no-progress-bar"]
INPAINTSEG = Path(sys.executable).with_name("inpaintseg")


def tiny_config(data: Path, out: Path, **changes) -> TrainConfig:
    values = dict(data=str(data), out=str(out), epochs=2, batch_size=2, base_channels=4, depth=2, img_size=32,
                  num_workers=0, progress_bar=False, calibrate=False, accelerator="cpu")
    values.update(changes)
    return TrainConfig.from_dict(values)


def metric_values(run: Path) -> list[dict]:
    """metrics.csv rows without the wall-clock columns."""
    return [{k: v for k, v in row.items() if k not in ("epoch_seconds", "train_images_per_second")}
            for row in read_metric_rows(run / "metrics.csv")]


def test_a_few_steps_lower_the_loss(make_dataset):
    # One fixed batch, 15 Adam steps at lr 2e-2: the training loss on that batch must drop by > 10%.
    L.seed_everything(0, verbose=False)
    from inpaintseg.data import InpaintDataModule

    dm = InpaintDataModule(make_dataset(n_train=4), img_size=32, batch_size=4, val_fraction=0.25)
    dm.setup()
    batch = next(iter(dm.train_dataloader()))
    module = SegmentationModule(build_model({"name": "AttentionUNet", "base_channels": 4, "depth": 2}),
                                BCEDiceLoss(), lr=2e-2, epochs=1)
    optimizer = module.configure_optimizers()["optimizer"]
    module.train()

    def loss_now() -> float:
        with torch.no_grad():
            return float(module.loss(module(batch["image"]), batch["mask"]))

    before = loss_now()
    for _ in range(15):
        optimizer.zero_grad()
        module.loss(module(batch["image"]), batch["mask"]).backward()
        optimizer.step()
    after = loss_now()
    assert after < before * 0.9, (before, after)


@pytest.mark.slow
def test_cli_train_end_to_end(make_dataset, tmp_path, capsys):
    data = make_dataset(n_train=10)
    run = tmp_path / "run"
    # --data may name the dataset root or its train/ folder (as check-data accepts).
    assert cli.main(["train", "--data", str(data / "train"), "--out", str(run), *TINY, "--lr", "0.005"]) == 0
    captured = capsys.readouterr()
    assert "run folder:" in captured.out
    # Without a terminal: what is used, then one plain line per epoch; no bars, no Lightning noise.
    err = captured.err
    assert "train: 8 train / 2 validation images" in err and "AttentionUNet" in err
    assert "epoch 1/2: train_loss " in err and "epoch 2/2: train_loss " in err and "val_dice" in err
    assert "img/s" in err and "ETA" in err
    assert "\r" not in err and "GPU available" not in err and "Total Flops" not in err
    assert "train: `Trainer.fit` stopped: `max_epochs=2` reached." in err
    for name in ("config.yaml", "split.json", "metrics.csv", "checkpoints/best.ckpt", "checkpoints/last.ckpt",
                 "model/weights.safetensors", "model/config.json"):
        assert (run / name).is_file(), name
    saved = load_config(run / "config.yaml")
    assert saved.lr == 0.005 and saved.epochs == 2 and saved.out == str(run)
    split = json.loads((run / "split.json").read_text())
    assert len(split["train"]) + len(split["val"]) == 10 and not set(split["train"]) & set(split["val"])
    rows = read_metric_rows(run / "metrics.csv")
    assert [r["epoch"] for r in rows] == ["1", "2"]
    for row in rows:
        for key in ("train_loss", "val_loss", "val_dice", "val_iou", "val_f1", "lr"):
            assert row[key] != "", key
        assert 0.0 <= float(row["val_dice"]) <= 1.0
    assert float(rows[1]["lr"]) < float(rows[0]["lr"])  # cosine annealing: epoch 2 starts at lr/2
    model, config = load_model_dir(run / "model")
    assert 0.0 < config["postprocess"]["threshold"] < 1.0
    assert config["input"] == {"mode": "resize", "size": 32, "mean": [0.485, 0.456, 0.406],
                               "std": [0.229, 0.224, 0.225]}
    assert config["architecture"]["base_channels"] == 4
    best = config["metrics"]["epoch"]
    assert config["metrics"]["val_loss"] == min(float(r["val_loss"]) for r in rows)
    assert rows[best - 1]["val_loss"] == f"{config['metrics']['val_loss']:.6g}"
    assert config["data"]["n_train"] == len(split["train"]) and config["data"]["n_val"] == len(split["val"])
    assert config["training"]["epochs_completed"] == 2
    assert config["data"]["data_dir"] == str(data.resolve())  # the root, so `report` finds test/
    # An existing run folder is never overwritten by a new run.
    assert cli.main(["train", "--data", str(data), "--out", str(run), *TINY]) == 2
    assert "already holds files" in capsys.readouterr().err


def test_tensorboard_logger_needs_its_extra(make_dataset, tmp_path, capsys):
    import importlib.util

    if importlib.util.find_spec("tensorboard") or importlib.util.find_spec("tensorboardX"):
        pytest.skip("TensorBoard is installed here")
    run = tmp_path / "run"
    assert cli.main(["train", "--data", str(make_dataset(n_train=4)), "--out", str(run), *TINY,
                     "--logger", "tensorboard"]) == 2
    assert "pip install 'inpaintseg[tensorboard]'" in capsys.readouterr().err
    assert not run.exists()  # refused before anything is written


def test_crop_mode_is_stored_in_the_model(make_dataset, tmp_path):
    data = make_dataset(n_train=6, size=48)
    result = train(tiny_config(data, tmp_path / "run", epochs=1, input_mode="crop"))
    _, config = load_model_dir(result.model_dir)
    assert config["input"]["mode"] == "crop" and config["input"]["size"] == 32


class StopAt(L.Callback):
    """Simulates a crash: raises at the start of epoch `epoch` (0-based), after the previous one saved."""

    def __init__(self, epoch: int) -> None:
        self.epoch = epoch

    def on_train_epoch_start(self, trainer, pl_module):
        if trainer.current_epoch == self.epoch:
            raise RuntimeError("simulated crash")


class RecordResumeState(L.Callback):
    def on_train_start(self, trainer, pl_module):
        optimizer = trainer.optimizers[0]
        self.epoch = trainer.current_epoch
        self.adam_steps = [float(s["step"]) for s in optimizer.state.values()]
        self.scheduler_epoch = trainer.lr_scheduler_configs[0].scheduler.last_epoch
        self.lr = optimizer.param_groups[0]["lr"]


@pytest.mark.slow
def test_resume_continues_with_optimizer_and_scheduler_state(make_dataset, tmp_path):
    data = make_dataset(n_train=10)
    run = tmp_path / "run"
    config = tiny_config(data, run, epochs=2)
    with pytest.raises(RuntimeError, match="simulated crash"):
        train(config, callbacks=[StopAt(1)])
    last = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)
    steps_per_epoch = last["global_step"]
    assert last["epoch"] == 0 and steps_per_epoch > 0
    assert [r["epoch"] for r in read_metric_rows(run / "metrics.csv")] == ["1"]

    probe = RecordResumeState()
    result = train(config, resume=True, callbacks=[probe])
    # Restored: epoch counter, Adam's per-parameter step counts, and the cosine schedule position.
    assert probe.epoch == 1
    assert probe.adam_steps and set(probe.adam_steps) == {float(steps_per_epoch)}
    assert probe.scheduler_epoch == 1 and probe.lr == pytest.approx(0.001 * 0.5)  # cos(pi/2) midpoint
    assert result.epochs_completed == 2
    assert [r["epoch"] for r in read_metric_rows(run / "metrics.csv")] == ["1", "2"]
    assert (run / "model" / "config.json").is_file()


def test_resume_needs_a_run_folder(tmp_path, make_dataset):
    from inpaintseg.run_dir import resume_point

    with pytest.raises(ConfigError, match="folder not found"):
        cli_run(["train", "--resume", str(tmp_path / "missing")])
    # A run folder without checkpoints (stopped before its first epoch) starts again in place (issue 11;
    # tests/test_hardening_runs.py trains it).
    run = tmp_path / "run"
    run.mkdir()
    save_config(tiny_config(make_dataset(n_train=4), run), run / "config.yaml")
    point = resume_point(run)
    assert point.checkpoint is None and "starting the run again in place" in point.note


def cli_run(argv):
    """cli.main, but raising instead of printing, to check the error type."""
    args = cli.build_parser().parse_args(argv)
    return args.func(args)


class PoisonWeights(L.Callback):
    """Sets a weight to NaN before epoch 2 (0-based 1), batch 1: the loss becomes NaN there."""

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if trainer.current_epoch == 1 and batch_idx == 1:
            with torch.no_grad():
                next(pl_module.model.parameters()).fill_(float("nan"))


@pytest.mark.slow
def test_nan_loss_stops_naming_epoch_and_batch(make_dataset, tmp_path):
    data = make_dataset(n_train=10)
    run = tmp_path / "run"
    with pytest.raises(InpaintsegError) as info:
        train(tiny_config(data, run, epochs=3), callbacks=[PoisonWeights()])
    message = str(info.value)
    assert "not finite" in message and "epoch 2, batch 1" in message
    assert "last good checkpoint stays" in message
    last = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)
    assert last["epoch"] == 0  # epoch 1's checkpoint, untouched
    assert all(torch.isfinite(t).all() for t in last["state_dict"].values() if t.is_floating_point())
    assert not (run / "model").exists()


@pytest.mark.slow
def test_deterministic_runs_give_equal_metrics(make_dataset, tmp_path):
    data = make_dataset(n_train=8)
    a = train(tiny_config(data, tmp_path / "a", deterministic=True, epochs=1))
    b = train(tiny_config(data, tmp_path / "b", deterministic=True, epochs=1))
    assert metric_values(a.run_dir) == metric_values(b.run_dir)
    assert a.metrics == b.metrics


@pytest.mark.parametrize("changes, expected", [
    ({"batch_size": 64}, "batch_size: expected at most the number of training images"),
    ({"precision": "16-mixed"}, "precision '16-mixed' needs a CUDA GPU"),
])
def test_bad_settings_rejected_before_training(make_dataset, tmp_path, changes, expected):
    data = make_dataset(n_train=6)
    with pytest.raises(ConfigError, match=expected):
        train(tiny_config(data, tmp_path / "run", **changes))
    assert not (tmp_path / "run").exists()


def test_data_folder_problem_gives_the_dataset_error(tmp_path):
    (tmp_path / "data" / "train" / "images").mkdir(parents=True)
    with pytest.raises(DataError):
        train(tiny_config(tmp_path / "data", tmp_path / "run"))
    assert not (tmp_path / "run").exists()


def _env() -> dict:
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONWARNINGS="ignore")
    env.pop("LOCAL_RANK", None)
    return env


@pytest.mark.slow
def test_ddp_two_cpu_processes_end_with_the_same_weights(make_dataset, tmp_path):
    # `--num-devices 2` on CPU: Lightning re-launches the command as a second process (gloo backend).
    data = make_dataset(n_train=10)
    run = tmp_path / "run"
    proc = subprocess.run([str(INPAINTSEG), "train", "--data", str(data), "--out", str(run), *TINY,
                           "--device", "cpu", "--num-devices", "2", "--no-calibrate", "--epochs", "1"],
                          capture_output=True, text=True, timeout=180, env=_env(), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    training = json.loads((run / "model" / "config.json").read_text())["training"]
    hashes = training["rank_weight_sha256"]
    assert training["world_size"] == 2 and len(hashes) == 2 and hashes[0] == hashes[1]
    assert [r["epoch"] for r in read_metric_rows(run / "metrics.csv")] == ["1"]


@pytest.mark.slow
def test_kill_9_mid_epoch_then_resume(make_dataset, tmp_path):
    # 40 images at batch 2 for 4 epochs: 18 batches per epoch, so when epoch 1's checkpoint appears
    # (written atomically: it exists only once complete) 54 training steps are still ahead and a kill
    # within ~0.02 s lands in epoch 2, however fast the machine. Resuming must finish the run with
    # each epoch in metrics.csv exactly once.
    data = make_dataset(n_train=40)
    run = tmp_path / "run"
    args = [str(INPAINTSEG), "train", "--data", str(data), "--out", str(run), *TINY, "--epochs", "4",
            "--no-calibrate"]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=_env(), cwd=tmp_path)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not (run / "checkpoints" / "last.ckpt").exists():
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    assert not (run / "model").exists(), "the run finished before the kill: make it longer"
    done = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)["epoch"] + 1
    assert done in (1, 2)
    finish = subprocess.run([str(INPAINTSEG), "train", "--resume", str(run), "--no-progress-bar"],
                            capture_output=True, text=True, timeout=300, env=_env())
    assert finish.returncode == 0, finish.stderr[-3000:]
    assert [r["epoch"] for r in read_metric_rows(run / "metrics.csv")] == ["1", "2", "3", "4"]  # each once
    _, config = load_model_dir(run / "model")
    assert config["training"]["epochs_completed"] == 4


@pytest.mark.slow
def test_a_network_passed_in_is_trained_and_returned(make_dataset, tmp_path):
    # The quality benchmark trains peer networks through the same path: a foreign network is
    # calibrated and returned but not exported (config.json could not rebuild it); an
    # AttentionUNet passed in is exported with its own architecture, not the config's.
    data = make_dataset(n_train=6)
    foreign = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.ReLU(), torch.nn.Conv2d(4, 1, 1))
    result = train(tiny_config(data, tmp_path / "foreign", epochs=1), model=foreign)
    assert result.network is foreign and result.model_dir is None
    assert not (tmp_path / "foreign" / "model").exists()
    assert result.model_config["architecture"] == {"name": "external:Sequential"}
    assert 0.0 < result.postprocess["threshold"] < 1.0

    plain = build_model({"name": "AttentionUNet", "base_channels": 4, "depth": 2, "attention": False})
    result = train(tiny_config(data, tmp_path / "plain", epochs=1), model=plain)
    _, config = load_model_dir(result.model_dir)
    assert config["architecture"]["attention"] is False


@pytest.mark.slow
def test_train_model_py_is_the_same_as_inpaintseg_train(make_dataset, tmp_path, monkeypatch):
    # The seed's entry point: `python train_model.py` in a folder holding train/ (the default --data .).
    import importlib.util

    spec = importlib.util.spec_from_file_location("train_model", Path(__file__).parents[1] / "train_model.py")
    train_model = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(train_model)
    data = make_dataset(n_train=6)
    monkeypatch.chdir(data)
    assert train_model.main(["--out", str(tmp_path / "run"), *TINY]) == 0
    _, config = load_model_dir(tmp_path / "run" / "model")
    assert config["data"]["n_train"] + config["data"]["n_val"] == 6
    assert train_model.main(["--lr", "-1", *TINY]) == 2  # a bad setting: clear error, exit 2
