"""End to end from the CLI on 64 px files: every input stem trains (1 epoch, tiny width), calibrates,
exports, reloads and predicts; each run also exercises one of the new training/prediction options, so all
of them are covered without a run per combination."""

from __future__ import annotations

import csv

import numpy as np
import pytest
import torch

from inpaintseg import cli
from inpaintseg.model.io import load_model_dir
from test_paired import make_paired_dataset, write_rgb

TINY = ["--epochs", "1", "--batch-size", "4", "--base-channels", "4", "--depth", "2", "--img-size", "64",
        "--num-workers", "0", "--no-progress-bar", "--accelerator", "cpu", "--lr", "0.01"]

CASES = [  # stem, extra train flags, predict --tta
    ("rgb", ["--loss", "focal-dice", "--paired-batches"], "auto"),
    ("rgb+srm", ["--degrade-jpeg-p", "1", "--degrade-rescale-p", "0.5", "--degrade-blur-p", "0.5",
                 "--degrade-noise-p", "0.5"], "auto"),
    ("rgb+bayar", ["--loss", "lovasz"], "auto"),
    ("rgb+npr", ["--input-mode", "crop"], "flip+scales"),
    ("rgb+srm+bayar+npr", ["--paired-batches", "--degrade-jpeg-p", "0.5"], "d4+scales"),
]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = make_paired_dataset(tmp_path_factory.mktemp("data"), n=10, size=64)
    rng = np.random.default_rng(5)
    for i in range(3):
        write_rgb(root / "test" / "images" / f"te_{i}.png", rng.integers(0, 256, (64 + 8 * i, 72, 3), np.uint8))
    return root


@pytest.mark.slow
@pytest.mark.parametrize("stem, flags, tta", CASES, ids=[c[0] for c in CASES])
def test_stem_trains_calibrates_exports_reloads_and_predicts(stem, flags, tta, data, tmp_path, capsys):
    run = tmp_path / "run"
    assert cli.main(["train", "--data", str(data), "--out", str(run), "--input-stem", stem, *TINY, *flags]) == 0
    model, config = load_model_dir(run / "model")
    assert config["architecture"]["input_stem"] == stem
    assert config["training"]["input_stem"] == stem
    assert config["postprocess"]["tta"] in ("none", "flip", "d4", "flip+scales", "d4+scales")
    calibrated = {row["tta"] for row in config["postprocess"]["calibration"]["table"]}
    assert {"flip+scales", "d4+scales"} <= calibrated
    if "--paired-batches" in flags:
        assert config["data"]["n_train_pairs"] == config["data"]["n_train"]
    if "bayar" in stem:   # the exported weights satisfy the constraint
        weight = model.stem.bayar.weight
        torch.testing.assert_close(weight[:, :, 2, 2], torch.full((3, 1), -1.0))
        torch.testing.assert_close(weight.sum(dim=(2, 3)) + 1.0, torch.ones(3, 1), atol=1e-5, rtol=0)
    capsys.readouterr()
    out = tmp_path / "sub.csv"
    assert cli.main(["predict", "--model", str(run / "model"), "--images", str(data / "test" / "images"),
                     "--out", str(out), "--masks-out", str(tmp_path / "masks"), "--tta", tta, "--no-crf",
                     "--quiet"]) == 0
    with out.open() as handle:
        rows = list(csv.DictReader(handle))
    assert sorted(r["ImageId"] for r in rows) == ["te_0", "te_1", "te_2"]
    assert sorted(p.name for p in (tmp_path / "masks").iterdir()) == ["te_0.png", "te_1.png", "te_2.png"]
