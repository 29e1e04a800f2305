"""Issue 26, inputs and write errors: special files (FIFO) in an input folder are named and skipped without being
opened; a non-UTF-8 file name is refused before any work (the CSVs are UTF-8); a full disk while appending the
part file is one message with the --resume hint; export refuses a bad --opset / --int8 before writing anything."""

from __future__ import annotations

import os
import threading

import pytest
from conftest import predict_cli

from inpaintseg import cli
from inpaintseg.errors import DataError, OutputError


def no_hang(func, seconds: float = float(os.environ.get("HANG_SECONDS", "60"))):
    """Run `func` in a thread; fail (instead of hanging the suite) when it has not returned in time."""
    box = {}

    def target():
        try:
            box["value"] = func()
        except BaseException as exc:  # noqa: BLE001 - re-raised in the test's thread
            box["error"] = exc

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), "hung (a FIFO was opened for reading?)"
    if "error" in box:
        raise box["error"]
    return box["value"]


# ---- 5: special files in an input folder ------------------------------------------------------------

def test_predict_names_and_skips_a_fifo(three_images_and_model, capsys):
    images, model, tmp = three_images_and_model
    os.mkfifo(images / "x.png")
    assert no_hang(lambda: predict_cli(images, model, "--submission", str(tmp / "s.csv"))) == 0
    err = capsys.readouterr().err
    assert "special files" in err and "x.png (FIFO)" in err
    assert (tmp / "s.csv").read_text().count("\n") == 4  # header + the 3 real images


def test_predict_recursive_skips_a_fifo(three_images_and_model, capsys):
    images, model, tmp = three_images_and_model
    os.mkfifo(images / "x.png")
    assert no_hang(lambda: predict_cli(images, model, "--recursive", "--submission", str(tmp / "s.csv"))) == 0
    assert "special files" in capsys.readouterr().err


def test_the_api_refuses_a_fifo_without_opening_it(three_images_and_model):
    import inpaintseg

    images, model, _ = three_images_and_model
    os.mkfifo(images / "x.png")
    m = inpaintseg.load_model(model, device="cpu", precision="32")
    with pytest.raises(DataError, match="FIFO"):
        no_hang(lambda: m.predict(images / "x.png"))


def test_check_data_calls_a_fifo_a_special_file(make_dataset, capsys):
    root = make_dataset(n_train=2, n_test=1)
    os.mkfifo(root / "train" / "images" / "y.png")
    assert no_hang(lambda: cli.main(["check-data", str(root)])) == 1
    captured = capsys.readouterr()
    err = captured.out + captured.err
    assert "y.png (FIFO)" in err and "0-byte" not in err


# ---- 6: a non-UTF-8 file name ------------------------------------------------------------------------

def test_a_non_utf8_file_name_is_refused_before_any_work(three_images_and_model, capsys):
    images, model, tmp = three_images_and_model
    bad = os.fsdecode(os.fsencode(str(images)) + b"/bad\xff.png")
    os.link(images / "te_001.png", bad)
    assert predict_cli(images, model, "--submission", str(tmp / "s.csv")) == 2
    err = capsys.readouterr().err
    assert "not valid UTF-8" in err and "bad\\xff.png" in err and "Traceback" not in err
    assert not list(tmp.glob("s.csv*"))  # no CSV and no part file left


# ---- 6: disk full while appending the part file ------------------------------------------------------

def test_disk_full_in_the_part_file_is_one_message_with_the_resume_hint(tmp_path):
    from inpaintseg.inference import journal

    writer = journal.PartWriter(tmp_path / "s.csv.part", {"a": 1})
    writer._fh.close()
    writer._fh = open("/dev/full", "a", encoding="utf-8", newline="")  # every flush: ENOSPC
    writer._writer = journal.csv.writer(writer._fh, lineterminator="\n")
    with pytest.raises(OutputError, match=r"s\.csv\.part.*disk is full.*--resume"):
        writer.append(journal.Row("x", "1 2"))
    with pytest.raises(OutputError, match="disk is full"):
        writer.close()
    assert writer._fh.closed


# ---- 6 / also seen: export --opset 999, export --int8 BAD ---------------------------------------------

def test_export_refuses_an_unknown_opset_before_writing(three_images_and_model, capsys):
    pytest.importorskip("onnx")
    _, model, _ = three_images_and_model
    assert cli.main(["export", "--model", str(model), "--opset", "999", "--threads", "1"]) == 2
    captured = capsys.readouterr()
    assert "--opset must be an integer from 13 to" in captured.err and captured.out == ""
    assert not (model / "model.onnx").exists()


def test_export_int8_with_a_bad_folder_writes_nothing(three_images_and_model, capsys):
    pytest.importorskip("onnx")
    _, model, tmp = three_images_and_model
    assert cli.main(["export", "--model", str(model), "--int8", str(tmp / "nowhere"), "--threads", "1"]) == 2
    assert "nowhere" in capsys.readouterr().err
    assert sorted(p.name for p in model.iterdir()) == ["config.json", "weights.safetensors"]
