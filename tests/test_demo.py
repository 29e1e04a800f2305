"""The README's main command end to end (tiny sizes); the planner itself is tested in test_budget.py."""

from __future__ import annotations

import json

import pytest

from inpaintseg.cli import main
from inpaintseg.rle import read_submission


@pytest.mark.slow
def test_demo_runs_the_whole_pipeline(tmp_path, capsys):
    out = tmp_path / "demo"
    status = main(["demo", "--out", str(out), "--n-train", "20", "--n-test", "4", "--budget-minutes", "0.05",
                   "--device", "cpu", "--precision", "bf16-mixed"])
    captured = capsys.readouterr()
    assert status == 0, captured.err
    printed = captured.out
    # The forced precision reaches training, calibration and prediction, and is recorded.
    model_config = json.loads((out / "run" / "model" / "config.json").read_text())
    assert model_config["training"]["precision"] == "bf16-mixed"
    assert model_config["training"]["precision_choice"]["requested"] == "bf16-mixed"
    assert model_config["postprocess"]["calibration"]["precision"] == "bf16-mixed"
    budget = json.loads((out / "budget.json").read_text())
    assert budget["predict_precision"]["precision"] == "bf16-mixed" and budget["budget_seconds"] == 3.0
    assert budget["epochs_planned"] == 1 and budget["used_seconds"] > 0  # 3 s: one epoch, planned vs used recorded
    assert "demo:     budget: planned" in captured.err and "precision bf16-mixed (as requested)" in captured.err
    assert "all-empty" in printed and "all-full" in printed and str(out / "submission.csv") in printed
    rows = read_submission(out / "submission.csv")
    assert sorted(rows) == [f"test_{i:05d}" for i in range(4)]
    evaluation = json.loads((out / "evaluation.json").read_text())
    assert evaluation["n_images"] == 4 and 0.0 <= evaluation["dice_mean"] <= 1.0
    assert (out / "run" / "model" / "weights.safetensors").is_file()
    assert (out / "run" / "report" / "report.html").is_file()
    assert len(list((out / "pred_masks").glob("*.png"))) == 4
    # A second demo into the same folder is refused instead of mixing two runs.
    assert main(["demo", "--out", str(out), "--n-train", "20", "--n-test", "4"]) == 2
