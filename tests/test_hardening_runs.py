"""Issue 11, runs and interruptions: Ctrl-C in train (exit 130 with a --resume hint), a run stopped before its
first checkpoint (resume restarts it in place; --out may reuse it), a truncated last.ckpt, Ctrl-C and the
DenseCRF worker processes. Everything is tiny (32x32 images, base_channels 4, depth 2, batch 2)."""

from __future__ import annotations

import signal

import lightning as L
import pytest
import torch

from inpaintseg import cli
from inpaintseg.commands import flag_message
from inpaintseg.config import TrainConfig
from inpaintseg.errors import ConfigError
from inpaintseg.run_dir import read_metric_rows, resume_point
from inpaintseg.training import TrainingInterrupted, train


def tiny_config(data, out, **changes) -> TrainConfig:
    values = dict(data=str(data), out=str(out), epochs=2, batch_size=2, base_channels=4, depth=2, img_size=32,
                  num_workers=0, progress_bar=False, calibrate=False, accelerator="cpu")
    values.update(changes)
    return TrainConfig.from_dict(values)


class CtrlC(L.Callback):
    """Raises KeyboardInterrupt (what Ctrl-C does) at (epoch, batch), both 0-based."""

    def __init__(self, epoch: int, batch: int = 0) -> None:
        self.at = (epoch, batch)

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if (trainer.current_epoch, batch_idx) == self.at:
            raise KeyboardInterrupt


def cli_run(argv):
    args = cli.build_parser().parse_args(argv)
    return args.func(args)


@pytest.fixture(autouse=True)
def restore_sigint():
    """Each test starts with Ctrl-C raising KeyboardInterrupt (Python's default in a terminal), whatever the
    suite inherited: started in the background (`make test > log &`, nohup), SIGINT is ignored and the Ctrl-C
    test saw its ignored state restored instead of the handler it checks for."""
    handler = signal.getsignal(signal.SIGINT)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, handler)


def test_ctrl_c_in_train_exits_130_with_the_resume_hint(make_dataset, tmp_path, capsys):
    run = tmp_path / "run"
    config = tiny_config(make_dataset(n_train=8), run, epochs=2)
    code = cli.run_guarded("inpaintseg train", lambda _: train(config, callbacks=[CtrlC(0, 1)]), None)
    err = capsys.readouterr().err
    assert code == 130, err
    assert f"--resume {run}" in err and "interrupted" in err
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # Ctrl-C works again afterwards


@pytest.mark.slow
def test_a_run_stopped_before_its_first_checkpoint_resumes_in_place(make_dataset, tmp_path, capsys):
    data = make_dataset(n_train=8)
    run = tmp_path / "run"
    with pytest.raises(TrainingInterrupted) as info:
        train(tiny_config(data, run, epochs=1), callbacks=[CtrlC(0)])
    assert "starts it again in place" in str(info.value)
    assert (run / "config.yaml").is_file() and not (run / "checkpoints" / "last.ckpt").exists()
    assert resume_point(run).checkpoint is None
    assert cli_run(["train", "--resume", str(run)]) == 0
    assert "no epoch had finished" in capsys.readouterr().err
    assert (run / "model" / "config.json").is_file()
    assert [r["epoch"] for r in read_metric_rows(run / "metrics.csv")] == ["1"]


@pytest.mark.slow
def test_out_may_reuse_a_run_folder_without_checkpoints(make_dataset, tmp_path):
    data = make_dataset(n_train=8)
    run = tmp_path / "run"
    with pytest.raises(TrainingInterrupted):
        train(tiny_config(data, run, epochs=1), callbacks=[CtrlC(0)])
    result = train(tiny_config(data, run, epochs=1, lr=0.002))
    assert result.model_dir is not None
    assert "lr: 0.002" in (run / "config.yaml").read_text()


def test_out_still_refuses_a_run_with_checkpoints(make_dataset, tmp_path):
    data = make_dataset(n_train=8)
    run = tmp_path / "run"
    with pytest.raises(TrainingInterrupted):
        train(tiny_config(data, run, epochs=2), callbacks=[CtrlC(1)])
    with pytest.raises(ConfigError, match="continue it with `resume ") as info:
        train(tiny_config(data, run, epochs=2))
    assert "continue it with `--resume " in flag_message(info.value)  # what the CLI prints

    # A truncated last.ckpt: resume falls back to best.ckpt and says so; with both truncated it explains.
    last, best = run / "checkpoints" / "last.ckpt", run / "checkpoints" / "best.ckpt"
    last.write_bytes(last.read_bytes()[:1000])
    point = resume_point(run)
    assert point.checkpoint == best and "last.ckpt is truncated or corrupt" in point.note
    best.write_bytes(best.read_bytes()[:1000])
    with pytest.raises(ConfigError, match=r"last\.ckpt is truncated or corrupt.*best\.ckpt"):
        resume_point(run)


@pytest.mark.slow
def test_resume_from_best_after_a_truncated_last(make_dataset, tmp_path, capsys):
    data = make_dataset(n_train=8)
    run = tmp_path / "run"
    with pytest.raises(TrainingInterrupted):
        train(tiny_config(data, run, epochs=2), callbacks=[CtrlC(1)])
    last = run / "checkpoints" / "last.ckpt"
    last.write_bytes(last.read_bytes()[:1000])
    assert cli_run(["train", "--resume", str(run)]) == 0
    assert "falls back to best.ckpt" in capsys.readouterr().err
    assert [r["epoch"] for r in read_metric_rows(run / "metrics.csv")] == ["1", "2"]
    assert torch.load(last, weights_only=True)["epoch"] == 1


def test_crf_workers_ignore_ctrl_c():
    # Ctrl-C reaches every process of the terminal's group: the workers must leave it to the parent, which
    # stops the pool (no worker traceback).
    pytest.importorskip("pydensecrf")
    from inpaintseg.inference.crf import CRF_PRESETS
    from inpaintseg.inference.crf_pool import CrfRunner

    runner = CrfRunner(CRF_PRESETS["gaussian"], workers=1)
    try:
        assert runner.pool.submit(signal.getsignal, signal.SIGINT).result(timeout=60) == signal.SIG_IGN
    finally:
        runner.close()
