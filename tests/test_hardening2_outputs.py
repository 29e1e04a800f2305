"""Issue 26, outputs: a path that is not a regular file (FIFO, device node, symbolic link) is refused, never
replaced; an output is never the model folder, an input file or another output of the same run; '-' is refused.
All checked before any work. Tiny inputs: three 32x32 images and a width-4 model."""

from __future__ import annotations

import os
import stat

import pytest
from conftest import export_tiny_model, predict_cli

from inpaintseg import cli, fileio
from inpaintseg.errors import OutputError


# ---- 1: a path that is not a regular file is refused, and left as it was ---------------------------

@pytest.mark.parametrize("kind", ["fifo", "symlink", "device"])
def test_a_special_submission_path_is_refused_and_kept(three_images_and_model, capsys, kind):
    images, model, tmp = three_images_and_model
    target = str(tmp / "special.csv")
    if kind == "device":
        # A device node of our own (the null device's numbers), never /dev/null itself: on code without the
        # check, run as root, the atomic rename would replace the machine's /dev/null with a regular file.
        try:
            os.mknod(target, 0o666 | stat.S_IFCHR, os.makedev(1, 3))
        except (PermissionError, OSError):
            pytest.skip("cannot create a device node here (needs root or CAP_MKNOD)")
    elif kind == "fifo":
        os.mkfifo(target)
    else:
        os.symlink(tmp / "elsewhere.csv", target)
    before = os.lstat(target)
    assert predict_cli(images, model, "--submission", target) == 2
    err = capsys.readouterr().err
    assert "--submission" in err and "not a regular file" in err and "Traceback" not in err
    after = os.lstat(target)
    assert (after.st_mode, after.st_ino) == (before.st_mode, before.st_ino)
    assert not (tmp / "elsewhere.csv").exists()


def test_atomic_writes_refuse_a_fifo_themselves(tmp_path):
    # The layer that owns atomic writes refuses too (a caller that skipped the up-front check).
    fifo = tmp_path / "x.json"
    os.mkfifo(fifo)
    with pytest.raises(OutputError, match="FIFO"):
        fileio.atomic_write_text(fifo, "{}")
    assert fifo.is_fifo()


def test_submission_dash_is_refused(three_images_and_model, capsys, monkeypatch):
    images, model, tmp = three_images_and_model
    monkeypatch.chdir(tmp)
    assert predict_cli(images, model, "--submission", "-") == 2
    assert "standard output is not supported" in capsys.readouterr().err
    assert not (tmp / "-").exists()


def test_a_folder_output_may_be_a_link_to_a_folder(three_images_and_model):
    # A link to a folder is not replaced (files are written inside it): still allowed.
    images, model, tmp = three_images_and_model
    (tmp / "real_masks").mkdir()
    os.symlink(tmp / "real_masks", tmp / "masks_link")
    assert predict_cli(images, model, "--submission", str(tmp / "s.csv"), "--masks-out", str(tmp / "masks_link")) == 0
    assert len(list((tmp / "real_masks").iterdir())) == 3


# ---- 2: outputs never overwrite the model or another input file ------------------------------------

def test_predict_never_writes_into_the_model_folder(three_images_and_model, capsys):
    images, model, _ = three_images_and_model
    config = (model / "config.json").read_bytes()
    assert predict_cli(images, model, "--submission", str(model / "config.json")) == 2
    err = capsys.readouterr().err
    assert "--submission" in err and "input folder" in err and str(model) in err
    assert (model / "config.json").read_bytes() == config


def test_evaluate_json_never_overwrites_its_submission(three_images_and_model, capsys):
    images, model, tmp = three_images_and_model
    submission = tmp / "s.csv"
    assert predict_cli(images, model, "--submission", str(submission)) == 0
    before = submission.read_bytes()
    assert cli.main(["evaluate", "--quiet", "--truth", str(images.parent / "masks"), "--submission",
                     str(submission), "--json", str(submission)]) == 2
    assert "is the input file" in capsys.readouterr().err
    assert submission.read_bytes() == before


# ---- 4: outputs of one run never on the same path ---------------------------------------------------

@pytest.mark.parametrize("first, second", [("--submission", "--scores-out"), ("--masks-out", "--probs-out"),
                                           ("--masks-out", "--overlays-out")])
def test_two_outputs_on_one_path_are_refused_before_any_work(three_images_and_model, capsys, first, second):
    images, model, tmp = three_images_and_model
    same = tmp / "same"
    args = [first, str(same), second, str(same)]
    if first != "--submission":
        args += ["--submission", str(tmp / "s.csv")]
    assert predict_cli(images, model, *args) == 2
    err = capsys.readouterr().err
    assert f"{second} {same}: is also {first}" in err
    assert not same.exists() and not (tmp / "s.csv").exists()


def test_report_out_refusal_names_out(tmp_path, make_dataset, capsys):
    # report writes its predictions under --out: a refusal names --out (not predict's --submission).
    root = make_dataset(n_train=0, n_test=2)
    run = tmp_path / "run"
    export_tiny_model(run / "model")
    images = root / "test" / "images"
    assert cli.main(["report", str(run), "--images", str(images), "--out", str(images / "rep")]) == 2
    err = capsys.readouterr().err
    assert "--out" in err and "--submission" not in err


def test_report_out_under_a_file_is_one_message(tmp_path, make_dataset, capsys):
    root = make_dataset(n_train=0, n_test=2)
    run = tmp_path / "run"
    export_tiny_model(run / "model")
    (tmp_path / "blocker").write_text("x")
    assert cli.main(["report", str(run), "--images", str(root / "test" / "images"), "--out",
                     str(tmp_path / "blocker" / "rep")]) == 2
    err = capsys.readouterr().err
    assert "--out" in err and "cannot write" in err and "Traceback" not in err


# ---- 8: train --out over the dataset ----------------------------------------------------------------

def test_train_out_over_the_dataset_names_the_dataset(make_dataset, capsys):
    root = make_dataset(n_train=4)
    assert cli.main(["train", "--data", str(root), "--out", str(root / "train"), "--no-progress-bar"]) == 2
    err = capsys.readouterr().err
    assert "holds the input folder" in err and "empty it" not in err
