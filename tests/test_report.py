"""The HTML report: figures from a tiny exported model and a hand-written metrics.csv."""

from __future__ import annotations

import re

import numpy as np
import pytest

from inpaintseg.evaluation import report
from inpaintseg.errors import InpaintsegError
from inpaintseg.inference import tta_views


@pytest.fixture
def run_dir(tmp_path, make_dataset):
    import torch

    from inpaintseg.model import AttentionUNet
    from inpaintseg.model.io import save_model_dir

    data = make_dataset(n_train=4, n_test=4, size=32, n_empty=1)
    torch.manual_seed(0)
    model = AttentionUNet(base_channels=4, depth=2)
    run = tmp_path / "run"
    config = {
        "architecture": {"name": "AttentionUNet", "in_channels": 3, "out_channels": 1, "base_channels": 4,
                         "depth": 2, "attention": True},
        "input": {"mode": "resize", "size": 32, "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]},
        "postprocess": {"threshold": 0.5, "tta": "flip", "crf": "off"},
        "metrics": {}, "data": {"data_dir": str(data)}, "training": {},
    }
    save_model_dir(run / "model", model, config)
    (run / "metrics.csv").write_text(
        "epoch,train_loss,val_loss,val_dice,val_iou,val_f1\n1,1.2,1.1,0.2,0.1,0.2\n2,0.9,1.0,0.3,0.2,0.3\n")
    return run


def test_report_writes_every_figure_it_references(run_dir):
    path = report.write_report(run_dir, device="cpu")
    assert path == run_dir / "report" / "report.html"
    page = path.read_text()
    images = re.findall(r"<img src='([^']+)'>", page)
    # curves (2), examples, CRF effect (pydensecrf is installed by the set-up), TTA views, PR curve
    assert set(images) == {"loss_curves.png", "metric_curves.png", "examples.png", "crf_effect.png",
                           "tta_views.png", "precision_recall.png"}
    for name in images:
        data = (path.parent / name).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 1000
    assert "test split" in page  # the dataset's test/ folder has masks, so it is the one shown
    assert "http" not in page.replace("http-equiv", "")  # opens offline: no remote resources


def test_report_on_explicit_folder_and_bad_inputs(run_dir, tmp_path):
    data = run_dir.parent / "data"
    out = report.write_report(run_dir, images_dir=data / "test" / "images", masks_dir=data / "test" / "masks",
                              out_dir=tmp_path / "elsewhere", max_images=2, device="cpu")
    assert out.is_file() and "2 images" in out.read_text()
    with pytest.raises(InpaintsegError, match="needs --masks"):
        report.write_report(run_dir, images_dir=data / "test" / "images", device="cpu")
    with pytest.raises(InpaintsegError, match="run folder not found"):
        report.write_report(tmp_path / "nope", device="cpu")


@pytest.mark.parametrize("mode", ["flip", "d4"])
def test_numpy_views_invert_exactly(mode):
    # A non-square array with distinct values: applying a view then its inverse must give it back.
    image = np.arange(3 * 5 * 2).reshape(3, 5, 2)
    for view in tta_views(mode):
        moved = report._numpy_view(view, image)
        assert np.array_equal(report._numpy_view(view, moved, inverse=True), image)


def test_numpy_views_match_torch_views():
    # The report's numpy views must be the same transforms as inference's torch views.
    import torch

    image = np.arange(4 * 6, dtype=np.float32).reshape(4, 6)
    for view in tta_views("d4"):
        expected = view.apply(torch.from_numpy(image)[None, None])[0, 0].numpy()
        assert np.array_equal(report._numpy_view(view, image), expected)


def test_overlay_tints_only_mask_pixels():
    image = np.zeros((8, 8, 3), np.uint8)
    mask = np.zeros((8, 8), np.uint8)
    mask[2:6, 2:6] = 1
    out = report._overlay(image, mask, colour=(255, 0, 0), alpha=0.5)
    assert out[0, 0].tolist() == [0, 0, 0]          # outside: unchanged
    assert out[4, 4].tolist() == [127, 0, 0]        # inside: 0 * 0.5 + 255 * 0.5 = 127.5 -> 127
