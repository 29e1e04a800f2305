"""Issue 26, items 7-8: silent wrong data gets a warning (a 0/1 mask with a stray 2 in train, a column-major
submission read row-major), and messages blame what the user actually gave (the API's tta=, serve --host, the
checkpoint file given as --model, Ctrl-C in predict says how to resume, a 422 does not echo a huge field)."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import export_tiny_model, write_pair

from inpaintseg import cli, fileio, rle
from inpaintseg.commands import flag_message
from inpaintseg.errors import ConfigError, InpaintsegError

# ---- 7: silent wrong data ----------------------------------------------------------------------------

def test_train_warns_about_a_mask_with_a_stray_value(tmp_path, capsys):
    from inpaintseg.data import dataset
    from inpaintseg.data.pairing import Sample

    image = np.zeros((8, 8, 3), np.uint8)
    mask = np.zeros((8, 8), np.uint8)
    mask[2:5, 2:5] = 1
    mask[0, 0] = 2  # one stray value: the 0/1 mask is read 0/255-style, i.e. empty
    write_pair(tmp_path / "images", None, "a", image, None)
    fileio.write_png(tmp_path / "masks" / "a.png", mask)
    sample = Sample("a", tmp_path / "images" / "a.png", tmp_path / "masks" / "a.png")
    dataset._WARNED.clear()
    _, read = dataset.load_sample(sample)
    _, again = dataset.load_sample(sample)
    err = capsys.readouterr().err
    assert not read.any() and not again.any()
    assert err.count("warning:") == 1 and "a.png" in err and "max value 2 of 255" in err


def test_a_transposed_submission_gets_a_warning(tmp_path):
    # Truth: one rectangle (rows 4-19, columns 2-23) of a 32x32 image. Written column-major and read row-major it
    # is the transpose (rows 2-23, columns 4-19): overlap 16x16 = 256 of 352 + 352 pixels -> Dice 512/704 = 0.727,
    # so the old "twice as good" rule never warned; read column-major it is exact (Dice 1).
    from inpaintseg.evaluation.evaluate import evaluate

    truth = np.zeros((32, 32), np.uint8)
    truth[4:20, 2:24] = 1
    fileio.write_png(tmp_path / "truth" / "a.png", truth * 255)
    rle.write_submission(tmp_path / "kaggle.csv", {"a": truth}, order="F")
    result = evaluate(tmp_path / "truth", submission=tmp_path / "kaggle.csv")
    assert result["dice_mean"] == pytest.approx(512 / 704)
    assert len(result["warnings"]) == 1 and "--rle-order column" in result["warnings"][0]
    assert evaluate(tmp_path / "truth", submission=tmp_path / "kaggle.csv", rle_order="column")["warnings"] == []


# ---- 8: messages name what was wrong -------------------------------------------------------------------

def test_the_api_names_a_wrong_tta_argument(tmp_path):
    import inpaintseg

    model = inpaintseg.load_model(export_tiny_model(tmp_path / "model"), device="cpu", precision="32")
    image = np.zeros((16, 16, 3), np.uint8)
    with pytest.raises(ConfigError, match=r"^tta must be one of .*got 'rot'") as info:
        model.predict(image, tta="rot")
    assert "config.json" not in str(info.value) and info.value.params == ("tta",)
    assert flag_message(info.value).startswith("--tta must be one of")
    with pytest.raises(ConfigError, match=r"^crf must be one of .*got 'bogus'") as info:
        model.predict(image, crf="bogus")
    assert flag_message(info.value).startswith("--crf must be one of")


def test_a_checkpoint_given_as_model_points_at_the_runs_model_folder(tmp_path, capsys):
    run = tmp_path / "run"
    export_tiny_model(run / "model")
    (run / "checkpoints").mkdir()
    (run / "checkpoints" / "last.ckpt").write_bytes(b"x")
    assert cli.main(["predict", "--quiet", "--model", str(run / "checkpoints" / "last.ckpt"), "--images",
                     str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert f"Pass the model folder {run / 'model'}" in err and "parent folder" not in err


@pytest.mark.parametrize("host, words", [("256.1.1.1", "not an IP address or a name"),
                                         ("192.0.2.1", "not an address of this machine")])
def test_serve_blames_the_host_not_the_port(host, words):
    from inpaintseg.service.server import bind_socket

    with pytest.raises(InpaintsegError, match=f"--host {host}: {words}") as info:
        bind_socket(host, 0)
    assert "--port" not in str(info.value)


def test_a_422_does_not_echo_a_huge_field():
    pytest.importorskip("fastapi")
    from inpaintseg.service.jobs import echo

    shown = echo("x" * 5_000_000)
    assert len(shown) < 100 and "5,000,000 characters" in shown
    assert echo("rot") == "'rot'"


def test_ctrl_c_in_predict_says_how_to_resume(tmp_path, make_dataset, capsys, monkeypatch):
    from inpaintseg.inference import pipeline

    images = make_dataset(n_train=0, n_test=3) / "test" / "images"
    model = export_tiny_model(tmp_path / "model")
    real = pipeline.predict_paths

    def ctrl_c_after_two(*args, **kwargs):
        for index, item in enumerate(real(*args, **kwargs)):
            if index == 2:
                raise KeyboardInterrupt
            yield item

    monkeypatch.setattr(pipeline, "predict_paths", ctrl_c_after_two)
    out = tmp_path / "s.csv"
    common = ["predict", "--quiet", "--threads", "1", "--batch-size", "1", "--model", str(model), "--images",
              str(images), "--submission", str(out)]
    assert cli.main(common) == 130
    err = capsys.readouterr().err
    assert "interrupted" in err and f"{out}.part" in err and "--resume" in err
    monkeypatch.setattr(pipeline, "predict_paths", real)
    assert cli.main([*common, "--resume"]) == 0
    assert len(rle.read_submission(out)) == 3
