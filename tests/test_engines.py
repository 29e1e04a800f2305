"""Issue 13: the engine interface, ONNX export with parity, `predict --engine torch|onnx|auto`."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest
from conftest import export_tiny_model

from inpaintseg import cli, fileio, rle
from inpaintseg.errors import ConfigError

pytest.importorskip("onnxruntime", reason="the [onnx] extra is not installed")
pytest.importorskip("onnx", reason="the [onnx] extra is not installed")


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """A tiny resize model and a tiny crop model, each exported to ONNX once for the module."""
    from inpaintseg.model.onnx_export import export_onnx

    root = tmp_path_factory.mktemp("engines")
    resize = export_tiny_model(root / "resize", mode="resize", size=32)
    crop = export_tiny_model(root / "crop", mode="crop", size=16)
    results = {name: export_onnx(folder, threads=1) for name, folder in (("resize", resize), ("crop", crop))}
    return {"resize": resize, "crop": crop, "results": results}


@pytest.fixture
def images(tmp_path):
    rng = np.random.default_rng(3)
    folder = tmp_path / "images"
    for name, shape in (("a", (32, 32)), ("b", (21, 45)), ("c", (50, 17)), ("d", (40, 40))):
        fileio.write_png(folder / f"{name}.png", rng.integers(0, 256, (*shape, 3), dtype=np.uint8))
    return folder


def test_export_records_opset_checksums_and_parity(exported):
    from inpaintseg.model.onnx_export import file_sha256

    folder = exported["resize"]
    config = json.loads((folder / "config.json").read_text())
    record = config["onnx"]
    assert record["file"] == "model.onnx" and record["opset"] == 17
    assert record["sha256"] == file_sha256(folder / "model.onnx")
    assert record["weights_sha256"] == file_sha256(folder / "weights.safetensors")
    result = exported["results"]["resize"]
    # Three shapes: the inference shape and two odd ones (other batch sizes, H != W, no multiple of 4).
    assert list(result.parity) == ["2x3x32x32", "1x3x37x43", "3x3x23x33"]
    assert result.max_diff < 1e-4 and record["parity_max_abs_prob_diff"] == result.max_diff


def test_export_cli_prints_the_parity(tmp_path, capsys):
    model = export_tiny_model(tmp_path / "model")
    assert cli.main(["export", "--model", str(model), "--format", "onnx", "--threads", "1"]) == 0
    out = capsys.readouterr().out
    assert "max |probability difference|" in out and "opset 17" in out
    assert (model / "model.onnx").is_file()


@pytest.mark.parametrize("mode, tta", [("resize", "flip"), ("crop", "d4"), ("resize", "flip+scales")])
def test_onnx_and_torch_engines_give_the_same_probabilities(exported, images, mode, tta):
    # The engine only maps a normalised batch to logits: resizing, tiles and TTA are shared code.
    from inpaintseg import load_model

    arrays = [fileio.read_image(p) for p in sorted(images.iterdir())]
    torch_model = load_model(exported[mode], device="cpu", engine="torch", precision="32")
    onnx_model = load_model(exported[mode], device="cpu", engine="onnx")
    assert (torch_model.engine.name, onnx_model.engine.name) == ("torch", "onnx")
    a = torch_model.predictor(tta).predict_proba_batch(arrays)
    b = onnx_model.predictor(tta).predict_proba_batch(arrays)
    for pa, pb, img in zip(a, b, arrays):
        assert pa.shape == pb.shape == img.shape[:2]
        assert np.abs(pa - pb).max() < 1e-4


def test_predict_engine_onnx_records_the_choice_and_matches_torch(exported, images, tmp_path, capsys):
    model = exported["resize"]
    for engine in ("torch", "onnx"):
        code = cli.main(["predict", "--model", str(model), "--images", str(images), "--engine", engine,
                         "--precision", "32", "--submission", str(tmp_path / f"{engine}.csv"), "--threads", "1"])
        err = capsys.readouterr().err
        assert code == 0, err
        assert f"predict: engine {engine}" in err
    torch_rows, onnx_rows = rle.read_submission(tmp_path / "torch.csv"), rle.read_submission(tmp_path / "onnx.csv")
    assert sorted(torch_rows) == sorted(onnx_rows) == ["a", "b", "c", "d"]
    for stem, encoded in torch_rows.items():
        shape = fileio.read_image(images / f"{stem}.png").shape[:2]
        ma, mb = rle.rle_decode(encoded, shape), rle.rle_decode(onnx_rows[stem], shape)
        total = int(ma.sum()) + int(mb.sum())
        dice = 1.0 if total == 0 else 2 * int((ma & mb).sum()) / total
        assert dice >= 0.999


def test_auto_picks_onnx_only_when_a_matching_export_is_there(exported, tmp_path):
    from inpaintseg import load_model
    from inpaintseg.inference.pipeline import predict_folder

    assert load_model(exported["resize"], device="cpu").engine_choice.engine == "onnx"
    plain = export_tiny_model(tmp_path / "plain")
    choice = load_model(plain, device="cpu").engine_choice
    assert choice.engine == "torch" and "no model.onnx" in choice.reason
    # The engine that ran is recorded in the result.
    folder = tmp_path / "imgs"
    fileio.write_png(folder / "x.png", np.zeros((8, 8, 3), np.uint8))
    result = predict_folder(load_model(exported["resize"], device="cpu"), folder, out=None, progress=False)
    assert result.engine == "onnx"


def test_stale_or_altered_onnx_is_refused_and_auto_falls_back(tmp_path, images, capsys):
    import shutil

    from inpaintseg import load_model
    from inpaintseg.model.onnx_export import export_onnx

    model = export_tiny_model(tmp_path / "model")
    export_onnx(model, threads=1)
    onnx_bytes = (model / "model.onnx").read_bytes()
    config = json.loads((model / "config.json").read_text())
    # Retrained in place: new weights, the old model.onnx (and its record) left beside them.
    import torch

    from inpaintseg.model import build_model
    from inpaintseg.model.io import save_model_dir

    torch.manual_seed(1)
    save_model_dir(tmp_path / "other", build_model(config["architecture"]), config)
    shutil.copy(tmp_path / "other" / "weights.safetensors", model / "weights.safetensors")
    code = cli.main(["predict", "--quiet", "--model", str(model), "--images", str(images), "--engine", "onnx",
                     "--submission", str(tmp_path / "s.csv")])
    assert code == 2 and "stale" in capsys.readouterr().err
    choice = load_model(model, device="cpu").engine_choice
    assert choice.engine == "torch" and "stale" in choice.reason
    # An altered model.onnx (checksum differs from the record) is refused too.
    export_onnx(model, threads=1)
    (model / "model.onnx").write_bytes(onnx_bytes[:-10])
    with pytest.raises(Exception, match="checksum"):
        load_model(model, device="cpu", engine="onnx")


def test_onnx_engine_refuses_reduced_precision():
    from inpaintseg.inference.engines import check_engine_precision, choose_engine

    with pytest.raises(ConfigError, match="^engine onnx .* precision bf16-mixed; use engine torch"):
        check_engine_precision("onnx", "bf16-mixed")
    check_engine_precision("onnx", "32")
    check_engine_precision("onnx", "auto")
    check_engine_precision("torch", "bf16-mixed")
    choice = choose_engine("auto", None, {}, "cpu", precision="bf16-mixed")
    assert choice.engine == "torch"


def test_engine_and_precision_together(exported, images, tmp_path, capsys, monkeypatch):
    from inpaintseg import load_model, precision

    monkeypatch.setattr(precision, "probe_rates", lambda *a, **k: pytest.fail("the onnx engine needs no probe"))
    # onnx + a mixed precision: refused before any work, naming both options and the way out.
    code = cli.main(["predict", "--quiet", "--model", str(exported["resize"]), "--images", str(images),
                     "--engine", "onnx", "--precision", "bf16-mixed", "--submission", str(tmp_path / "s.csv")])
    err = capsys.readouterr().err
    assert code == 2 and "--engine onnx" in err and "--precision bf16-mixed" in err and "--engine torch" in err
    assert not (tmp_path / "s.csv").exists()
    # auto + bf16: PyTorch runs it (under autocast), even though a matching model.onnx is there.
    model = load_model(exported["resize"], device="cpu", precision="bf16-mixed")
    assert model.engine_choice.engine == "torch" and "bf16-mixed" in model.engine_choice.reason
    assert model.predictor("none").precision == "bf16-mixed"
    # precision auto with the onnx engine (chosen or asked for) means fp32, without a probe.
    for engine in ("auto", "onnx"):
        model = load_model(exported["resize"], device="cpu", engine=engine)
        assert (model.engine_choice.engine, model.precision) == ("onnx", "32")
        assert "engine onnx runs fp32" in model.describe_precision()
    # A Predictor refuses an ONNX engine with a mixed precision too (the API below the CLI).
    from inpaintseg.inference.predictor import Predictor

    onnx_model = load_model(exported["resize"], device="cpu", engine="onnx")
    with pytest.raises(ConfigError, match="^engine onnx"):
        Predictor(None, onnx_model.config, precision="bf16-mixed", engine=onnx_model.engine)


def test_missing_onnxruntime_says_how_to_install(exported, images, tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    code = cli.main(["predict", "--quiet", "--model", str(exported["resize"]), "--images", str(images),
                     "--engine", "onnx", "--submission", str(tmp_path / "s.csv")])
    assert code == 2 and "pip install 'inpaintseg[onnx]'" in capsys.readouterr().err
    assert not (tmp_path / "s.csv").exists()


def test_export_of_a_missing_folder_is_a_clear_error(tmp_path, capsys):
    assert cli.main(["export", "--model", str(tmp_path / "nope"), "--format", "onnx"]) == 2
    assert "model folder not found" in capsys.readouterr().err


def test_failed_parity_writes_nothing(tmp_path, monkeypatch):
    from inpaintseg.errors import InpaintsegError
    from inpaintseg.model import onnx_export

    model = export_tiny_model(tmp_path / "model")
    before = (model / "config.json").read_text()
    monkeypatch.setattr(onnx_export, "parity", lambda network, session, batches: {"2x3x32x32": 0.5})
    with pytest.raises(InpaintsegError, match="does not reproduce"):
        onnx_export.export_onnx(model, threads=1)
    assert not (model / "model.onnx").exists()
    assert (model / "config.json").read_text() == before
    assert [p.name for p in model.iterdir() if p.name.startswith(".")] == []  # no temp file left


def test_int8_export_is_checked_against_fp32_and_runs(tmp_path, images, capsys):
    # Threshold 0.05: the untrained model's probabilities (~0.5) all lie above it, so int8 and fp32 masks agree.
    model = export_tiny_model(tmp_path / "model", postprocess={"threshold": 0.05, "tta": "none", "crf": "off"})
    assert cli.main(["export", "--model", str(model), "--int8", str(images), "--threads", "1"]) == 0
    out = capsys.readouterr().out
    assert "model.int8.onnx" in out and "mean Dice 1.0000" in out
    record = json.loads((model / "config.json").read_text())["onnx_int8"]
    assert (record["calibration_images"], record["agreement_images"]) == (2, 2)
    code = cli.main(["predict", "--model", str(model), "--images", str(images), "--engine", "onnx-int8",
                     "--submission", str(tmp_path / "s.csv"), "--threads", "1"])
    assert code == 0 and "engine onnx-int8" in capsys.readouterr().err
    assert sorted(rle.read_submission(tmp_path / "s.csv")) == ["a", "b", "c", "d"]
    from inpaintseg import load_model

    assert load_model(model, device="cpu").engine_choice.engine == "onnx"  # auto never picks the lossy engine


def test_int8_that_changes_the_masks_is_refused(tmp_path, images, capsys):
    # At threshold 0.5 the untrained model's probabilities sit on the threshold: int8 flips many pixels.
    model = export_tiny_model(tmp_path / "model", postprocess={"threshold": 0.5, "tta": "none", "crf": "off"})
    assert cli.main(["export", "--model", str(model), "--int8", str(images), "--threads", "1"]) == 2
    assert "changes the masks too much" in capsys.readouterr().err
    assert not (model / "model.int8.onnx").exists() and (model / "model.onnx").exists()
    assert cli.main(["predict", "--quiet", "--model", str(model), "--images", str(images), "--engine", "onnx-int8",
                     "--submission", str(tmp_path / "s.csv")]) == 2
    assert "no recorded int8 export" in capsys.readouterr().err
