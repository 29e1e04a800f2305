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
                   "--device", "cpu"])
    assert status == 0
    printed = capsys.readouterr().out
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
