"""`inpaintseg predict` and main.py end to end on a tiny dataset with a tiny exported model."""

from __future__ import annotations

import csv
import importlib.util
import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from inpaintseg import cli, fileio, rle
from conftest import export_tiny_model as export_model

REPO = Path(__file__).resolve().parents[1]
@pytest.fixture
def setup(tmp_path, make_dataset):
    root = make_dataset(n_train=0, n_test=4, size=32)
    # Odd, non-square sizes: outputs must come back at each image's own size.
    rng = np.random.default_rng(0)
    fileio.write_png(root / "test" / "images" / "odd_a.png", rng.integers(0, 256, (21, 45, 3), dtype=np.uint8))
    fileio.write_png(root / "test" / "images" / "odd_b.png", rng.integers(0, 256, (50, 17, 3), dtype=np.uint8))
    return root / "test" / "images", export_model(tmp_path / "model"), tmp_path


def predict(*args: str) -> int:
    return cli.main(["predict", "--quiet", *args])


def stems(folder: Path) -> list[str]:
    return sorted(p.stem for p in folder.iterdir())


def test_predict_writes_every_output_at_original_size(setup, capsys):
    images, model, tmp = setup
    out = tmp / "sub.csv"
    code = predict("--model", str(model), "--images", str(images), "--submission", str(out),
                   "--masks-out", str(tmp / "masks"), "--probs-out", str(tmp / "probs"),
                   "--scores-out", str(tmp / "scores.csv"), "--threshold", "0.5")
    assert code == 0, capsys.readouterr().err
    rows = rle.read_submission(out)
    assert sorted(rows) == stems(images) == stems(tmp / "masks") == stems(tmp / "probs")
    for stem in rows:
        image = fileio.read_image(images / f"{stem}.png")
        mask = fileio.read_mask(tmp / "masks" / f"{stem}.png")
        probs = cv2.imread(str(tmp / "probs" / f"{stem}.png"), cv2.IMREAD_UNCHANGED)
        assert mask.shape == probs.shape == image.shape[:2]
        # predict -> submission -> read_submission -> rle_decode gives back the written mask.
        np.testing.assert_array_equal(rle.rle_decode(rows[stem], mask.shape), mask)
        # The mask is the probability map thresholded at 0.5 (PNG rounding can flip p within 1/510).
        far = np.abs(probs.astype(int) - 127.5) > 1
        np.testing.assert_array_equal(mask[far], (probs[far] >= 128).astype(np.uint8))
    with open(tmp / "scores.csv", newline="") as fh:
        scores = list(csv.DictReader(fh))
    assert [r["ImageId"] for r in scores] == sorted(rows)
    assert list(scores[0]) == ["ImageId", "score", "manipulated_fraction", "predicted_label", "verdict",
                               "false_alarm_rate", "score_threshold"]
    assert all(0 <= float(r["score"]) <= 1 and r["predicted_label"] in ("0", "1") for r in scores)
    # the tiny model has no false-alarm table: the two-level verdict, no rate; the threshold it decided with
    assert all(r["verdict"] == ("manipulated" if r["predicted_label"] == "1" else "untouched")
               and r["false_alarm_rate"] == "" and r["score_threshold"] == "0.5" for r in scores)


def test_predict_reports_the_stored_choices_even_when_quiet(setup, capsys):
    # --quiet turns bars into plain lines; the lines saying what is used still print. --out is the old
    # spelling of --submission, accepted (with a note) for one release.
    images, model, tmp = setup
    assert predict("--model", str(model), "--images", str(images), "--out", str(tmp / "s.csv")) == 0
    err = capsys.readouterr().err
    assert "tta=flip [stored by validation calibration]" in err and "crf=off" in err
    assert "threshold=0.5 [stored by validation calibration]" in err
    assert "--out is now --submission" in err and (tmp / "s.csv").is_file()
    assert "\r" not in err


def test_old_spellings_are_hidden_from_help(capsys):
    for command, old, new in (("predict", "--out ", "--submission"), ("evaluate", "--threshold ", "--score-threshold"),
                              ("model-info", "--size", "--img-size"), ("demo-data", "--size", "--img-size"),
                              ("report", "--masks", "--truth"), ("train", "--accelerator", "--device")):
        with pytest.raises(SystemExit):
            cli.main([command, "--help"])
        shown = capsys.readouterr().out
        assert new in shown and old not in shown, command


def test_column_order_score_threshold_and_overlays(setup, capsys):
    images, model, tmp = setup
    code = predict("--model", str(model), "--images", str(images), "--submission", str(tmp / "col.csv"),
                   "--rle-order", "column", "--masks-out", str(tmp / "m"), "--overlays-out", str(tmp / "ov"),
                   "--scores-out", str(tmp / "scores.csv"), "--score-threshold", "0.99", "--threshold", "0.3")
    assert code == 0, capsys.readouterr().err
    rows = rle.read_submission(tmp / "col.csv")
    for stem in stems(images):
        mask = fileio.read_mask(tmp / "m" / f"{stem}.png")
        np.testing.assert_array_equal(rle.rle_decode(rows[stem], mask.shape, order="F"), mask)
        overlay = fileio.read_image(tmp / "ov" / f"{stem}.png")
        assert overlay.shape == fileio.read_image(images / f"{stem}.png").shape  # native size
    with open(tmp / "scores.csv", newline="") as fh:
        scores = list(csv.DictReader(fh))
    # An image score is a mean of probabilities of an untrained net (about 0.5): none reaches 0.99.
    assert all(float(r["score"]) < 0.99 and r["predicted_label"] == "0" for r in scores)


def test_crop_model_with_crf_in_a_process_pool(setup, tmp_path, capsys):
    images, _, tmp = setup
    model = export_model(tmp_path / "crop_model", mode="crop", size=16)
    code = predict("--model", str(model), "--images", str(images), "--submission", str(tmp / "c.csv"),
                   "--masks-out", str(tmp / "cm"), "--tta", "d4", "--crf", "gaussian", "--crf-workers", "1")
    assert code == 0, capsys.readouterr().err
    for stem in stems(images):
        assert fileio.read_mask(tmp / "cm" / f"{stem}.png").shape == fileio.read_image(images / f"{stem}.png").shape[:2]


def test_corrupt_image_is_named_and_others_are_written(setup, capsys):
    images, model, tmp = setup
    (images / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    code = predict("--model", str(model), "--images", str(images), "--submission", str(tmp / "s.csv"),
                   "--masks-out", str(tmp / "m"))
    err = capsys.readouterr().err
    assert code == 1
    assert "broken.png" in err and "could not be predicted" in err
    good = [s for s in stems(images) if s != "broken"]
    assert sorted(rle.read_submission(tmp / "s.csv")) == good == stems(tmp / "m")


def test_missing_model_folder(setup, capsys):
    images, _, tmp = setup
    assert predict("--model", str(tmp / "nope"), "--images", str(images), "--submission", str(tmp / "s.csv")) == 2
    assert "model folder not found" in capsys.readouterr().err
    assert not (tmp / "s.csv").exists()


def test_empty_image_folder(setup, capsys):
    _, model, tmp = setup
    (tmp / "empty").mkdir()
    assert predict("--model", str(model), "--images", str(tmp / "empty"), "--submission", str(tmp / "s.csv")) == 2
    assert "empty images folder" in capsys.readouterr().err


def test_config_that_does_not_match_weights(setup, capsys):
    images, model, tmp = setup
    config = json.loads((model / "config.json").read_text())
    config["architecture"]["base_channels"] = 8
    (model / "config.json").write_text(json.dumps(config))
    assert predict("--model", str(model), "--images", str(images), "--submission", str(tmp / "s.csv")) == 2
    assert "does not match" in capsys.readouterr().err
    assert not (tmp / "s.csv").exists()


def test_crf_without_pydensecrf_fails_before_work(setup, capsys, monkeypatch):
    import sys

    images, model, tmp = setup
    monkeypatch.setitem(sys.modules, "pydensecrf", None)
    monkeypatch.setitem(sys.modules, "pydensecrf.densecrf", None)
    assert predict("--model", str(model), "--images", str(images), "--submission", str(tmp / "s.csv"), "--crf") == 2
    assert "pip install pydensecrf2" in capsys.readouterr().err
    assert not (tmp / "s.csv").exists()


def test_out_that_is_a_folder(setup, capsys):
    images, model, tmp = setup
    assert predict("--model", str(model), "--images", str(images), "--submission", str(tmp)) == 2
    assert "is a folder" in capsys.readouterr().err


def load_main():
    spec = importlib.util.spec_from_file_location("repo_main", REPO / "main.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_main_py_uses_newest_run_and_writes_submission(setup, tmp_path, monkeypatch, capsys):
    import os
    import shutil

    images, model, _ = setup
    work = tmp_path / "work"
    shutil.copytree(images, work / "test" / "images")
    old = export_model(work / "runs" / "old" / "model")
    export_model(work / "runs" / "new" / "model", postprocess={"threshold": 0.3})
    os.utime(old / "config.json", (1, 1))  # make "old" clearly older
    monkeypatch.chdir(work)
    main = load_main()
    assert main.newest_model_dir(Path("runs")) == Path("runs/new/model")
    assert main.main(["--quiet"]) == 0
    assert sorted(rle.read_submission(work / "submission.csv")) == stems(images)
    assert "runs/new/model" in capsys.readouterr().err


def test_main_py_without_runs_says_what_to_do(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert load_main().main([]) == 2
    assert "inpaintseg train" in capsys.readouterr().err


def test_realworld_predict_then_evaluate(tmp_path, capsys, realworld):
    REALWORLD = realworld("casia2_gt")
    # Real photos of assorted sizes: every mask must come back at its image's size, so `evaluate`
    # (which rejects any missing id or size mismatch) accepts the submission.
    model = export_model(tmp_path / "model", mode="resize", size=32)
    sub = tmp_path / "sub.csv"
    assert predict("--model", str(model), "--images", str(REALWORLD / "images"), "--submission", str(sub),
                   "--masks-out", str(tmp_path / "masks"), "--probs-out", str(tmp_path / "probs"),
                   "--tta", "none", "--batch-size", "16") == 0
    # (--pred, not --submission: an untrained model's noisy masks give RLE rows longer than the csv
    # module's default field limit, which rle.read_submission does not raise yet.)
    assert cli.main(["evaluate", "--quiet", "--truth", str(REALWORLD / "masks"), "--pred", str(tmp_path / "masks"),
                     "--probs", str(tmp_path / "probs"), "--json", str(tmp_path / "e.json")]) == 0
    result = json.loads((tmp_path / "e.json").read_text())
    assert result["n_images"] == len(list((REALWORLD / "masks").iterdir()))
    assert 0.0 <= result["dice_mean"] <= 1.0
