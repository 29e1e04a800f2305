"""The public Python API: load_model / InpaintModel.predict / predict_folder, and that it matches the CLI."""

from __future__ import annotations


import numpy as np
import pytest
from conftest import export_tiny_model

import inpaintseg
from inpaintseg import cli, fileio, rle


@pytest.fixture
def folder(tmp_path, make_dataset):
    root = make_dataset(n_train=0, n_test=3, size=32)
    rng = np.random.default_rng(1)
    fileio.write_png(root / "test" / "images" / "wide.png", rng.integers(0, 256, (20, 41, 3), dtype=np.uint8))
    return root / "test" / "images"


def test_predict_accepts_numpy_pil_and_path_alike(folder, tmp_path):
    from PIL import Image

    model = inpaintseg.load_model(export_tiny_model(tmp_path / "model"), device="cpu")
    path = folder / "wide.png"
    array = fileio.read_image(path)
    by_path = model.predict(path)
    by_str = model.predict(str(path))
    by_array = model.predict(array)
    by_pil = model.predict(Image.fromarray(array))
    for other in (by_str, by_array, by_pil):
        np.testing.assert_array_equal(other.probability, by_path.probability)
        np.testing.assert_array_equal(other.mask, by_path.mask)
    assert by_path.probability.shape == by_path.mask.shape == (20, 41)
    assert by_path.probability.dtype == np.float32 and by_path.mask.dtype == np.uint8
    # The stored post-processing applies by default (flip TTA, threshold 0.5), as in the CLI.
    assert (by_path.tta, by_path.crf, by_path.threshold) == ("flip", "off", 0.5)
    np.testing.assert_array_equal(by_path.mask, (by_path.probability >= 0.5).astype(np.uint8))
    assert by_path.label == int(by_path.score >= 0.5)
    assert set(by_path.timings) >= {"decode", "model"}


def test_keywords_override_the_stored_postprocessing(folder, tmp_path):
    model = inpaintseg.load_model(export_tiny_model(tmp_path / "model"), device="cpu")
    image = fileio.read_image(folder / "wide.png")
    low = model.predict(image, threshold=0.01, tta="none")
    assert (low.tta, low.threshold) == ("none", 0.01)
    np.testing.assert_array_equal(low.mask, (low.probability >= 0.01).astype(np.uint8))
    assert low.mask.sum() >= model.predict(image, tta="none").mask.sum()


def test_grey_and_rgba_arrays_follow_the_file_rules(tmp_path):
    model = inpaintseg.load_model(export_tiny_model(tmp_path / "model"), device="cpu")
    grey = np.random.default_rng(0).integers(0, 256, (16, 16), dtype=np.uint8)
    rgb = np.repeat(grey[:, :, None], 3, axis=2)
    rgba = np.concatenate([rgb, np.full((16, 16, 1), 7, np.uint8)], axis=2)
    expected = model.predict(rgb).probability
    np.testing.assert_array_equal(model.predict(grey).probability, expected)
    np.testing.assert_array_equal(model.predict(rgba).probability, expected)


@pytest.mark.parametrize("bad, error", [
    (np.zeros((8, 8, 3), np.float32), "uint8"),
    (np.zeros((8, 8, 2), np.uint8), "shape"),
    (np.zeros((0, 8, 3), np.uint8), "shape"),
    (42, "path, a PIL image or a numpy array"),
])
def test_bad_images_are_refused_with_a_clear_message(tmp_path, bad, error):
    model = inpaintseg.load_model(export_tiny_model(tmp_path / "model"), device="cpu")
    with pytest.raises((TypeError, ValueError), match=error):
        model.predict(bad)


def test_predict_batch_equals_single_predictions(folder, tmp_path):
    model = inpaintseg.load_model(export_tiny_model(tmp_path / "model"), device="cpu", batch_size=2)
    paths = sorted(folder.iterdir())
    batch = model.predict_batch(paths)
    for path, pred in zip(paths, batch):
        np.testing.assert_allclose(pred.probability, model.predict(path).probability, atol=1e-6)


def test_predict_folder_writes_the_same_submission_as_the_cli(folder, tmp_path):
    model_dir = export_tiny_model(tmp_path / "model", mode="crop", size=16)
    cli_csv, api_csv = tmp_path / "cli.csv", tmp_path / "api.csv"
    assert cli.main(["predict", "--quiet", "--model", str(model_dir), "--images", str(folder),
                     "--out", str(cli_csv), "--device", "cpu"]) == 0
    model = inpaintseg.load_model(model_dir, device="cpu")
    result = inpaintseg.predict_folder(model, folder, out=api_csv, masks_out=tmp_path / "masks", progress=False)
    assert api_csv.read_bytes() == cli_csv.read_bytes()
    assert result.failures == [] and result.n_images == 4
    assert sorted(p.stem for p in (tmp_path / "masks").iterdir()) == sorted(result.encoded)
    # Each single-image prediction is the submission's row for that image.
    rows = rle.read_submission(api_csv)
    for path in sorted(folder.iterdir()):
        pred = model.predict(path)
        assert rle.rle_encode(pred.mask) == rows[path.stem]


def test_predict_folder_names_a_corrupt_image_and_keeps_the_others(folder, tmp_path):
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    model = inpaintseg.load_model(export_tiny_model(tmp_path / "model"), device="cpu")
    result = inpaintseg.predict_folder(model, folder, out=tmp_path / "sub.csv", progress=False)
    assert [name for name, _ in result.failures] == ["broken.png"]
    assert sorted(rle.read_submission(tmp_path / "sub.csv")) == sorted(p.stem for p in folder.iterdir()
                                                                     if p.name != "broken.png")


def test_load_model_errors_name_the_folder(tmp_path):
    with pytest.raises(inpaintseg.errors.ModelLoadError, match=str(tmp_path / "missing")):
        inpaintseg.load_model(tmp_path / "missing")


def test_importing_the_package_does_not_import_torch():
    import subprocess
    import sys

    code = "import sys, inpaintseg; assert 'torch' not in sys.modules; print(inpaintseg.__version__)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == inpaintseg.__version__


# ---- issue 25: ergonomics ----------------------------------------------------------------------------------

def test_short_reprs_save_overlay_and_to_csv(folder, tmp_path):
    from PIL import Image

    model = inpaintseg.load_model(export_tiny_model(tmp_path / "run" / "model"), device="cpu")
    pred = model.predict(folder / "wide.png")
    text = repr(pred)
    level = "manipulated" if pred.score >= 0.5 else "untouched"  # no false-alarm table: the old two levels
    assert len(text) < 200 and text.startswith("Prediction(41x20, score ") and f"verdict '{level}'" in text
    paths = pred.save(tmp_path / "saved", "wide")
    np.testing.assert_array_equal(fileio.read_mask(paths["mask"]), pred.mask)
    assert fileio.read_image(paths["overlay"]).shape == (20, 41, 3)
    import json

    summary = json.loads(paths["summary"].read_text())
    assert summary["manipulated_pixels"] == int(pred.mask.sum()) and summary["verdict"]["level"] == level
    overlay = pred.overlay()
    assert isinstance(overlay, Image.Image) and overlay.size == (41, 20)
    # outside the mask (and away from its outline) the photo is left as it is
    untouched = np.asarray(overlay)[pred.probability < 0.3]
    np.testing.assert_array_equal(untouched, fileio.read_image(folder / "wide.png")[pred.probability < 0.3])

    result = inpaintseg.predict_folder(model, folder, out=tmp_path / "sub.csv", scores_out=tmp_path / "scores.csv",
                                       progress=False)
    assert len(repr(result)) < 300 and "4 of 4 images predicted" in repr(result)
    assert result.to_csv() == (tmp_path / "scores.csv").read_text()
    header, first = result.to_csv().splitlines()[:2]
    assert header == "ImageId,score,manipulated_fraction,predicted_label,verdict,false_alarm_rate,score_threshold"
    assert first.endswith((",untouched,,0.5", ",manipulated,,0.5"))
    result.to_csv(tmp_path / "again.csv")
    assert (tmp_path / "again.csv").read_text() == result.to_csv()


def test_a_run_folder_is_accepted_as_the_model_folder(tmp_path, capsys):
    export_tiny_model(tmp_path / "run" / "model")
    model = inpaintseg.load_model(tmp_path / "run", device="cpu")
    assert model.source == tmp_path / "run" / "model"


def test_evaluate_returns_a_typed_result_that_is_still_a_dict(tmp_path, make_dataset):
    root = make_dataset(n_train=0, n_test=2, size=16)
    masks = root / "test" / "masks"
    result = inpaintseg.evaluate(masks, pred_dir=masks)
    assert result.dice_mean == result["dice_mean"] == 1.0 and result.to_dict()["n_images"] == 2
    assert type(result.to_dict()) is dict and "EvaluationResult(2 images, dice_mean=1.0000" in repr(result)
    with pytest.raises(AttributeError, match="no metric 'dice'"):
        result.dice


def test_a_folder_of_runs_gets_a_did_you_mean(tmp_path):
    from inpaintseg.errors import ModelLoadError

    export_tiny_model(tmp_path / "runs" / "a" / "model")
    with pytest.raises(ModelLoadError, match=f"Did you mean {tmp_path / 'runs' / 'a' / 'model'}"):
        inpaintseg.load_model(tmp_path / "runs", device="cpu")


def test_train_result_repr_is_short_not_the_network(tmp_path):
    from inpaintseg.model import AttentionUNet
    from inpaintseg.training.train import TrainResult

    result = TrainResult(run_dir=tmp_path / "run", is_primary=True, model_dir=tmp_path / "run" / "model",
                         epochs_completed=3, best_epoch=2, metrics={"val_dice": 0.41234}, seconds=12.3,
                         network=AttentionUNet(base_channels=4, depth=2), model_config={"big": list(range(10000))})
    text = repr(result)
    assert text == (f"TrainResult({tmp_path / 'run'}, 3 epochs, best epoch 2, val Dice 0.4123, "
                    f"model {tmp_path / 'run' / 'model'}, 12 s)")
