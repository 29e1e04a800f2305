"""Issue 11, outputs: never inside an input folder, checked before any work, write errors as one message,
legal but odd file names written safely. Unwritable locations are paths under a regular file (the tests
may run as root, for whom permission bits do not block writes)."""

from __future__ import annotations

import errno
import json

import numpy as np
import pytest

from conftest import export_tiny_model, write_pair
from inpaintseg import cli, fileio, rle
from inpaintseg.errors import InpaintsegError


def predict(*args: str) -> int:
    return cli.main(["predict", "--quiet", *args])


def snapshot(folder):
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


# ---- 1: outputs never inside or equal to an input folder -----------------------------------------

@pytest.mark.parametrize("flag, where", [
    ("--masks-out", "images"), ("--probs-out", "images"), ("--masks-out", "images/sub"),
    ("--out", "images/sub.csv"), ("--scores-out", "images/scores.csv"),
    ("--masks-out", "masks"),  # the images' truth masks beside them
])
def test_predict_never_writes_into_its_inputs(three_images_and_model, capsys, flag, where):
    images, model, tmp = three_images_and_model
    truth = images.parent / "masks"
    before, truth_before = snapshot(images), snapshot(truth)
    target = images.parent / where
    args = ["--model", str(model), "--images", str(images), flag, str(target)]
    if flag != "--out":
        args += ["--out", str(tmp / "sub.csv")]
    assert predict(*args) == 2
    err = capsys.readouterr().err
    assert flag in err and "input folder" in err and "Traceback" not in err
    assert snapshot(images) == before and snapshot(truth) == truth_before
    assert not (tmp / "sub.csv").exists()


def test_evaluate_json_never_goes_into_the_truth_folder(three_images_and_model, capsys):
    images, _, tmp = three_images_and_model
    truth = images.parent / "masks"
    before = snapshot(truth)
    assert cli.main(["evaluate", "--quiet", "--truth", str(truth), "--pred", str(truth),
                     "--json", str(truth / "eval.json")]) == 2
    assert "--json" in capsys.readouterr().err
    assert snapshot(truth) == before


def test_check_data_json_never_goes_into_the_data(make_dataset, capsys):
    root = make_dataset(n_train=2, n_test=1)
    assert cli.main(["check-data", str(root), "--json", str(root / "train" / "images" / "s.json")]) == 2
    assert "--json" in capsys.readouterr().err
    assert not (root / "train" / "images" / "s.json").exists()


def test_train_out_never_inside_the_training_images(make_dataset, tmp_path):
    from inpaintseg.config import TrainConfig
    from inpaintseg.training import train

    root = make_dataset(n_train=4)
    config = TrainConfig.from_dict(dict(data=str(root), out=str(root / "train" / "masks" / "run"),
                                        accelerator="cpu", progress_bar=False))
    with pytest.raises(InpaintsegError, match="--out .* lies inside the input folder"):
        train(config)
    assert not (root / "train" / "masks" / "run").exists()


# ---- 4: legal but odd file names ----------------------------------------------------------------

ODD_STEMS = (" lead", "trail ", "new\nline", "x" * 245, "semi;colon,comma\"quote")


def test_odd_file_names_round_trip_through_predict_and_evaluate(tmp_path, capsys):
    root = tmp_path / "data"
    rng = np.random.default_rng(0)
    for stem in ODD_STEMS:
        image = rng.integers(0, 256, (24, 24, 3), dtype=np.uint8)
        write_pair(root / "images", None, stem, image, None)
        fileio.write_png(root / "masks" / f"{stem}.png", np.zeros((24, 24), np.uint8))
    model = export_tiny_model(tmp_path / "model")
    out, masks, scores = tmp_path / "sub.csv", tmp_path / "pred", tmp_path / "scores.csv"
    code = predict("--model", str(model), "--images", str(root / "images"), "--out", str(out),
                   "--masks-out", str(masks), "--scores-out", str(scores))
    assert code == 0, capsys.readouterr().err
    assert sorted(rle.read_submission(out)) == sorted(ODD_STEMS)
    assert sorted(p.stem for p in masks.iterdir()) == sorted(ODD_STEMS)
    assert cli.main(["evaluate", "--quiet", "--truth", str(root / "masks"), "--submission", str(out)]) == 0
    assert cli.main(["evaluate", "--quiet", "--truth", str(root / "masks"), "--pred", str(masks)]) == 0


def test_atomic_write_of_a_255_byte_name(tmp_path):
    target = tmp_path / ("y" * 251 + ".png")
    fileio.atomic_write_bytes(target, b"data")
    assert target.read_bytes() == b"data" and [p.name for p in tmp_path.iterdir()] == [target.name]


# ---- 5 / 10: output locations checked up front, write errors as one message ----------------------

def test_predict_checks_an_unwritable_out_before_any_work(three_images_and_model, capsys):
    images, model, tmp = three_images_and_model
    (tmp / "blocker").write_text("a file, not a folder")
    masks = tmp / "masks"
    code = predict("--model", str(model), "--images", str(images), "--out", str(tmp / "blocker" / "sub.csv"),
                   "--masks-out", str(masks))
    err = capsys.readouterr().err
    assert code == 2 and "--out" in err and "blocker" in err and "Traceback" not in err
    assert not masks.exists() or not any(masks.iterdir())  # nothing was predicted


def test_check_data_unwritable_json(make_dataset, tmp_path, capsys):
    root = make_dataset(n_train=2, n_test=0)
    (tmp_path / "blocker").write_text("x")
    assert cli.main(["check-data", str(root), "--json", str(tmp_path / "blocker" / "s.json")]) == 2
    err = capsys.readouterr().err
    assert "--json" in err and "cannot write" in err


def test_evaluate_unwritable_json(three_images_and_model, capsys):
    images, _, tmp = three_images_and_model
    truth = images.parent / "masks"
    (tmp / "blocker").write_text("x")
    assert cli.main(["evaluate", "--quiet", "--truth", str(truth), "--pred", str(truth),
                     "--json", str(tmp / "blocker" / "e.json")]) == 2
    assert "cannot write" in capsys.readouterr().err


def test_train_unwritable_out(make_dataset, tmp_path, capsys):
    root = make_dataset(n_train=4)
    (tmp_path / "blocker").write_text("x")
    assert cli.main(["train", "--data", str(root), "--out", str(tmp_path / "blocker" / "run"),
                     "--no-progress-bar"]) == 2
    err = capsys.readouterr().err
    assert "--out" in err and "cannot write" in err


def test_a_write_error_names_the_path_and_the_fix(tmp_path):
    target = tmp_path / "x.bin"
    with pytest.raises(InpaintsegError, match=r"x\.bin.*disk is full.*free space"):
        with fileio.atomic_path(target):
            raise OSError(errno.ENOSPC, "No space left on device")
    assert not target.exists() and not list(tmp_path.iterdir())


def test_disk_full_during_a_checkpoint_is_one_clear_message(tmp_path, monkeypatch):
    import torch

    from inpaintseg.training import callbacks

    real_save = torch.save
    monkeypatch.setattr(callbacks.torch, "save", lambda obj, f: real_save(obj, "/dev/full"))
    path = tmp_path / "checkpoints" / "last.ckpt"
    with pytest.raises(InpaintsegError, match=r"last\.ckpt.*disk is full"):
        callbacks.AtomicCheckpointIO().save_checkpoint({"w": torch.zeros(1000)}, path)
    assert not path.exists()


def test_the_up_front_checks_let_normal_outputs_through(three_images_and_model, capsys):
    # Sanity: a good evaluate --json still writes (the up-front check does not block normal use).
    images, model, tmp = three_images_and_model
    truth = images.parent / "masks"
    assert predict("--model", str(model), "--images", str(images), "--out", str(tmp / "s.csv")) == 0
    assert cli.main(["evaluate", "--quiet", "--truth", str(truth), "--submission", str(tmp / "s.csv"),
                     "--json", str(tmp / "out" / "e.json")]) == 0
    assert json.loads((tmp / "out" / "e.json").read_text())["n_images"] == 3
