"""The HTML report: its numbers are `inpaintseg evaluate --json` on the same predictions; galleries, figures,
predictions-only mode, and bad inputs. A tiny exported model and a hand-written metrics.csv."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

from inpaintseg import cli
from inpaintseg.errors import InpaintsegError
from inpaintseg.evaluation.report import write_report
from inpaintseg.evaluation.report.explain import numpy_view
from inpaintseg.evaluation.report.figures import FN_RGB, FP_RGB, TP_RGB, confusion_overlay
from inpaintseg.inference import tta_views


@pytest.fixture
def run_dir(tmp_path, make_dataset):
    import torch

    from inpaintseg.model import AttentionUNet
    from inpaintseg.model.io import save_model_dir

    data = make_dataset(n_train=4, n_test=6, size=32, n_empty=1)
    (data / "test" / "meta.json").write_text(json.dumps(
        {"images": {f"te_{i:03d}": {"method": "none" if i == 0 else ("telea" if i % 2 else "patch")}
                    for i in range(6)}}))
    torch.manual_seed(0)
    model = AttentionUNet(base_channels=4, depth=2)
    run = tmp_path / "run"
    calibration = {"table": [{"tta": "none", "crf": "off", "dice": 0.2}, {"tta": "flip", "crf": "off", "dice": 0.3}]}
    config = {
        "architecture": {"name": "AttentionUNet", "in_channels": 3, "out_channels": 1, "base_channels": 4,
                         "depth": 2, "attention": True},
        "input": {"mode": "resize", "size": 32, "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]},
        # A low threshold makes the untrained model mark pixels, so every gallery has entries.
        "postprocess": {"threshold": 0.3, "tta": "flip", "crf": "off", "calibration": calibration},
        "metrics": {}, "data": {"data_dir": str(data), "n_train": 3, "n_val": 1},
        "training": {"epochs_completed": 2, "best_epoch": 2, "seconds": 1.5, "accelerator": "cpu",
                     "inpaintseg": "0.1.0", "torch": "2.13.0", "lightning": "2.6.6"},
    }
    save_model_dir(run / "model", model, config)
    (run / "metrics.csv").write_text(
        "epoch,train_loss,val_loss,val_dice,val_iou,val_f1\n1,1.2,1.1,0.2,0.1,0.2\n2,0.9,1.0,0.3,0.2,0.3\n")
    return run


def test_report_numbers_equal_evaluate_json(run_dir, capsys):
    # The report predicts into report/predictions/ and renders evaluate's result: every number in its
    # evaluation table must be the text `inpaintseg evaluate --json` gives on those files.
    path = write_report(run_dir, device="cpu", n_examples=2, progress=False)
    assert path == run_dir / "report" / "report.html"
    page = path.read_text()
    data = run_dir.parent / "data"
    pred = run_dir / "report" / "predictions"
    out = run_dir / "evaluate.json"
    assert cli.main(["evaluate", "--truth", str(data / "test" / "masks"), "--submission", str(pred / "submission.csv"),
                     "--probs", str(pred / "probs"), "--meta", str(data / "test" / "meta.json"),
                     "--score-threshold", "0.3", "--json", str(out), "--quiet"]) == 0
    expected = json.loads(out.read_text())
    assert json.loads((run_dir / "report" / "evaluation.json").read_text()) == expected
    cells = dict(re.findall(r"data-key='([^']+)'>([^<]*)<", page))
    assert cells["dice_mean"] == f"{expected['dice_mean']:.4f}"
    assert cells["dice_pooled"] == f"{expected['dice_pooled']:.4f}"
    assert cells["pixel_auc"] == f"{expected['pixel_auc']:.4f}"
    assert cells["best_f1"] == f"{expected['best_f1']:.4f} ({expected['best_f1_threshold']:.3f})"
    assert cells["image_auc"] == ("n/a" if expected["image_auc"] is None else f"{expected['image_auc']:.4f}")
    assert cells["pixel_average_precision"] == f"{expected['pixel_average_precision']:.4f}"
    k = expected['false_positive']['images_with_any_predicted_pixel']
    assert cells["false_positive.images_with_any_predicted_pixel"] == f"{k} of 1 ({100 * k:.0f}%)"
    for method, info in expected["by_method"].items():
        assert cells[f"by_method.{method}"] == f"{info['dice_mean']:.4f}"
    # Baselines: all-empty scores 1.0 on the one untouched image and 0 on the five manipulated ones.
    baselines = json.loads((run_dir / "report" / "baselines.json").read_text())
    assert baselines["all-empty"]["dice_mean"] == pytest.approx(1 / 6)
    assert baselines["all-full"]["false_positive"]["mean_area_fraction"] == 1.0
    check_page_sections_and_figures(run_dir, page)


def check_page_sections_and_figures(run_dir, page: str) -> None:
    """(Part of the test above, which renders the report once.)"""
    for heading in ("Headline", "Run", "Evaluation", "Verdicts", "Examples", "Validation calibration",
                    "Training curves", "DenseCRF effect", "TTA aggregation"):
        anchor = "s-" + heading.lower().replace(" ", "-")
        assert f"<h2 id='{anchor}'>{heading}</h2>" in page and f"<a href='#{anchor}'>{heading}</a>" in page
    # issue 25: the title names the model, the headline states the conclusion before the contents list
    import html

    assert "<title>inpaintseg report: model 'run' (AttentionUNet, input resize 32, trained on 3 images of 'data')" \
        in html.unescape(page)
    assert page.index("id='s-headline'") < page.index("<h2>Contents</h2>") < page.index("id='s-run'")
    headline = page[page.index("id='s-headline'"):page.index("<h2>Contents</h2>")]
    assert "mean Dice" in headline and "every mask full" in headline and "every mask empty" in headline
    assert re.search(r"than every mask (empty|full) \(\d\.\d{3}\) by \d\.\d{3}", headline)
    assert "loading='lazy'" not in page  # printed or captured pages have no gaps
    assert "Dice by truth coverage" in page
    # the tiny model has no false-alarm table: the verdicts section says so
    assert "no false-alarm table" in page
    assert "Dice by method" in page and "versions at training" in page and "2 epochs (best epoch 2)" in page
    # The calibration row the model uses (tta flip, crf off) is marked.
    assert re.search(r"<tr class='chosen'><td>flip</td><td>off</td>", page)
    # Galleries: 2 worst, 2 best manipulated; false alarms on the untouched image if it has predicted pixels.
    assert len(set(re.findall(r"gallery/worst_te_\d+\.png'", page))) == 2
    assert len(set(re.findall(r"gallery/best_te_\d+\.png'", page))) == 2
    folder = run_dir / "report"
    for name in set(re.findall(r"(?:src|href)='([^']+\.png)'", page)):
        data = (folder / name).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 200, name
    # Full-size overlays are at the image's native size (32x32).
    import cv2

    overlay = cv2.imread(str(next((folder / "gallery").glob("worst_*_overlay.png"))))
    assert overlay.shape == (32, 32, 3)
    assert "http" not in page  # opens offline: no remote resources


def test_report_without_truth_shows_predictions_only(run_dir, tmp_path):
    images = run_dir.parent / "data" / "test" / "images"
    out = write_report(run_dir, images_dir=images, out_dir=tmp_path / "only", n_examples=3, device="cpu",
                       progress=False)
    page = out.read_text()
    assert "no truth masks given" in page and "The 3 highest-scoring images" in page
    assert "<h2>Evaluation</h2>" not in page and not (tmp_path / "only" / "evaluation.json").exists()
    assert len(re.findall(r"<tr><td>te_\d+</td>", page)) == 6  # one row per image


def test_report_cli_and_bad_inputs(run_dir, tmp_path, capsys):
    data = run_dir.parent / "data"
    assert cli.main(["report", str(run_dir), "--images", str(data / "test" / "images"), "--masks",
                     str(data / "test" / "masks"), "--out", str(tmp_path / "r"), "--max-images", "2", "--quiet",
                     "--device", "cpu"]) == 0  # --masks: the old spelling of --truth
    captured = capsys.readouterr()
    assert "--masks is now --truth" in captured.err and "report written" in captured.out
    assert "2 from" in (tmp_path / "r" / "report.html").read_text()
    with pytest.raises(InpaintsegError, match="truth_dir needs images_dir"):
        write_report(run_dir, truth_dir=data / "test" / "masks", device="cpu")
    assert cli.main(["report", str(run_dir), "--truth", str(data / "test" / "masks"), "--device", "cpu"]) == 2
    assert "error: --truth needs --images (the images whose masks" in capsys.readouterr().err
    with pytest.raises(InpaintsegError, match="run folder not found"):
        write_report(tmp_path / "nope", device="cpu")


def test_confusion_overlay_colours_by_hand():
    # 1x4 black image: TP, FP, FN, TN pixels; alpha 0.5 -> half the colour, rounded.
    image = np.zeros((1, 4, 3), np.uint8)
    pred = np.array([[1, 1, 0, 0]])
    truth = np.array([[1, 0, 1, 0]])
    out = confusion_overlay(image, pred, truth, alpha=0.5)
    assert out[0, 0].tolist() == [round(c / 2) for c in TP_RGB]
    assert out[0, 1].tolist() == [round(c / 2) for c in FP_RGB]
    assert out[0, 2].tolist() == [round(c / 2) for c in FN_RGB]
    assert out[0, 3].tolist() == [0, 0, 0]


@pytest.mark.parametrize("mode", ["flip", "d4"])
def test_numpy_views_invert_exactly(mode):
    # A non-square array with distinct values: applying a view then its inverse must give it back.
    image = np.arange(3 * 5 * 2).reshape(3, 5, 2)
    for view in tta_views(mode):
        moved = numpy_view(view, image)
        assert np.array_equal(numpy_view(view, moved, inverse=True), image)


def test_numpy_views_match_torch_views():
    # The report's numpy views must be the same transforms as inference's torch views.
    import torch

    image = np.arange(4 * 6, dtype=np.float32).reshape(4, 6)
    for view in tta_views("d4"):
        expected = view.apply(torch.from_numpy(image)[None, None])[0, 0].numpy()
        assert np.array_equal(numpy_view(view, image), expected)


def test_report_falls_back_to_the_validation_split(run_dir, tmp_path):
    # No test/ folder: the report uses the run's validation images (split.json), scored against train/masks.
    import shutil

    data = run_dir.parent / "data"
    shutil.rmtree(data / "test")
    (run_dir / "split.json").write_text(json.dumps({"train": ["tr_000", "tr_003"], "val": ["tr_001", "tr_002"]}))
    page = write_report(run_dir, out_dir=tmp_path / "val", n_examples=1, device="cpu", progress=False).read_text()
    assert "validation split of" in page
    evaluation = json.loads((tmp_path / "val" / "evaluation.json").read_text())
    assert sorted(evaluation["per_image"]) == ["tr_001", "tr_002"]


def test_report_takes_the_model_folder_too_and_suggests_runs(run_dir):
    """Issue 25: `report runs/x/model` reports on runs/x; a folder of runs says which one was meant."""
    from inpaintseg.evaluation.report.build import run_folder

    assert run_folder(run_dir / "model") == run_dir
    assert run_folder(run_dir) == run_dir
    with pytest.raises(InpaintsegError, match=f"not a training run folder .*Did you mean {re.escape(str(run_dir))}"):
        run_folder(run_dir.parent)


def test_verdict_section_counts_levels_of_untouched_and_manipulated_images():
    from types import SimpleNamespace

    from inpaintseg.evaluation.report.build import verdict_section
    from inpaintseg.inference.verdicts import calibrate_verdicts, verdict_for

    # validation: untouched 0.1 0.2, manipulated 0.5 0.6 -> likely manipulated from 0.21, likely untouched < 0.21
    record = calibrate_verdicts([(0.1, 0), (0.2, 0), (0.5, 0.1), (0.6, 0.1)])
    model = SimpleNamespace(config={"postprocess": {"verdicts": record}},
                            verdict=lambda score: verdict_for(score, record, 0.5))
    html = verdict_section(model, [(0.9, True), (0.05, False), (0.3, False), (0.1, True)])
    rows = re.findall(r"<tr><td>([a-z ]+)</td><td>([^<]+)</td><td>([^<]+)</td></tr>", html)
    # one untouched image (0.3) reaches 'likely manipulated': the validation's 0% false alarms were coarse
    assert rows == [("likely untouched", "1 (50%)", "1 (50%)"), ("likely manipulated", "1 (50%)", "1 (50%)")]
    assert "from image score 0.21 (false-alarm rate there 0%)" in html
