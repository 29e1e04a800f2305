"""Issue 26, item 3: every count flag (processes, threads, workers) and image-size flag has an upper bound
derived from this machine, checked before any work, and the message names the bound. The bounds are computed
from the same helpers, so the tests hold on any machine."""

from __future__ import annotations

import pytest
from conftest import export_tiny_model

from inpaintseg import cli, runtime


@pytest.fixture
def setup(tmp_path, make_dataset):
    root = make_dataset(n_train=0, n_test=2, size=32)
    return root / "test" / "images", export_tiny_model(tmp_path / "model"), tmp_path


def bound(processes: bool = False) -> int:
    return runtime.count_bound(processes)[0]


@pytest.mark.parametrize("flag", ["--num-devices", "--threads", "--crf-workers"])
def test_predict_count_flags_are_bounded_before_any_work(setup, capsys, flag):
    images, model, tmp = setup
    value = str(bound(processes=True) + 1 if flag != "--threads" else bound() + 1)
    code = cli.main(["predict", "--quiet", "--model", str(model), "--images", str(images), "--submission",
                     str(tmp / "s.csv"), flag, value])
    err = capsys.readouterr().err
    assert code == 2 and f"{flag} {value}: at most" in err and "CPU" in err
    assert not list(tmp.glob("s.csv*"))


def test_predict_node_rank_must_be_below_num_nodes(setup, capsys):
    images, model, tmp = setup
    assert cli.main(["predict", "--quiet", "--model", str(model), "--images", str(images), "--submission",
                     str(tmp / "s.csv"), "--node-rank", "5", "--num-nodes", "1"]) == 2
    assert "--node-rank must lie in 0..0" in capsys.readouterr().err
    assert not (tmp / "s.csv").exists()


@pytest.mark.parametrize("flag, value", [("--num-devices", None), ("--num-workers", None), ("--img-size", "8192")])
def test_train_count_and_size_flags_are_bounded(make_dataset, tmp_path, capsys, monkeypatch, flag, value):
    if flag == "--img-size":  # a machine with 8 GiB: 8192^2 x batch 16 x 16 channels x 32 B does not fit
        monkeypatch.setattr(runtime, "memory_bytes", lambda: 8 << 30)
    root = make_dataset(n_train=4)
    value = value or str(bound(processes=True) + 1)
    assert cli.main(["train", "--data", str(root), "--out", str(tmp_path / "run"), "--device", "cpu",
                     "--no-progress-bar", flag, value]) == 2
    err = capsys.readouterr().err
    assert f"{flag} {value}: at most" in err
    assert not (tmp_path / "run").exists()


def test_model_info_img_size_is_bounded_by_memory(capsys):
    assert cli.main(["model-info", "--img-size", "1000000"]) == 2
    err = capsys.readouterr().err
    side = int((runtime.memory_bytes() / ((16 + 3) * runtime.FORWARD_BYTES_PER_PIXEL_CHANNEL)) ** 0.5)
    assert f"--img-size 1000000: at most {side} on this machine" in err and "GiB" in err


def test_the_bounds_come_from_the_machine(monkeypatch):
    monkeypatch.setattr(runtime, "available_cpus", lambda: 3)
    monkeypatch.setattr(runtime, "memory_bytes", lambda: 64 << 30)
    assert runtime.count_bound() == (6, "2 x the 3 CPU(s) this process may use")
    monkeypatch.setattr(runtime, "memory_bytes", lambda: 1 << 30)  # 1 GiB holds 2 processes of 512 MiB
    assert runtime.count_bound(processes=True)[0] == 2
    runtime.check_count("--threads", 6)
    with pytest.raises(Exception, match=r"--threads 7: at most 6"):
        runtime.check_count("--threads", 7)
