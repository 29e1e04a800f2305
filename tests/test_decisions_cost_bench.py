"""benchmarks/decisions_cost.py end to end on a tiny model: both arms read the same images and agree."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from conftest import export_tiny_model

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))
import decisions_cost  # noqa: E402


def test_shared_and_per_row_passes_agree_on_a_tiny_model(tmp_path, make_dataset, capsys):
    root = make_dataset(n_train=5, n_test=0, size=32)
    model = export_tiny_model(tmp_path / "model")
    out = tmp_path / "r.json"
    assert decisions_cost.main(["--model", str(model), "--folder", str(root / "train"), "--max-images", "3",
                                "--tta", "none,flip,d4", "--precision", "32", "--json", str(out)]) == 0
    record = json.loads(out.read_text())
    assert record["images"] == 3 and record["rows"] == ["none", "flip", "d4"]
    assert record["max_curve_difference"] < 1e-5  # fp32: the same views, the same maps
    assert record["ratio"] == pytest.approx(record["seconds"]["per-row"] / record["seconds"]["shared"])
    assert "ratio" in capsys.readouterr().out


def test_refuses_a_folder_without_masks(tmp_path, capsys):
    (tmp_path / "images").mkdir()
    with pytest.raises(SystemExit):
        decisions_cost.main(["--model", "base", "--folder", str(tmp_path)])
    assert "expected images/ and masks/" in capsys.readouterr().err
