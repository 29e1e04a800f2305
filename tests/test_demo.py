"""The README's main command end to end (tiny sizes), and the demo's schedule arithmetic."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from inpaintseg.cli import main
from inpaintseg.demo import plan_epochs
from inpaintseg.rle import read_submission


def test_plan_epochs_fits_the_budget():
    # 360 images at 12 images/s = 30 s of training + 15% for validation = 34.5 s per epoch;
    # 6 minutes = 360 s -> 360 / 34.5 = 10.4 -> 10 epochs.
    assert plan_epochs(6.0, 360, 12.0) == 10
    assert plan_epochs(0.01, 360, 12.0) == 1  # never zero epochs


@pytest.mark.slow
def test_demo_runs_the_whole_pipeline_with_a_clean_log(tmp_path):
    # As `make demo > log 2>&1` runs it: stdout and stderr to a file, no terminal. The log must be plain
    # lines: no carriage return, no escape code, no line over 300 characters, one line per epoch.
    import inpaintseg

    out = tmp_path / "demo"
    log = tmp_path / "demo.log"
    env = {**os.environ, "PYTHONPATH": str(Path(inpaintseg.__file__).parents[1])}
    with open(log, "wb") as fh:
        status = subprocess.run([sys.executable, "-m", "inpaintseg.cli", "demo", "--out", str(out), "--n-train", "20",
                                 "--n-test", "4", "--budget-minutes", "0.05", "--device", "cpu"],
                                stdout=fh, stderr=subprocess.STDOUT, env=env, timeout=600).returncode
    text = log.read_text(encoding="utf-8")
    assert status == 0, text[-3000:]
    assert "\r" not in text and "\x1b" not in text
    longest = max(text.splitlines(), key=len)
    assert len(longest) <= 300, longest
    assert re.search(r"^epoch 1/\d+: train_loss \S+, val_loss", text, re.M)
    assert "predicting with tta=" in text and "Total Flops" not in text
    assert "all-empty" in text and "all-full" in text and str(out / "submission.csv") in text
    rows = read_submission(out / "submission.csv")
    assert sorted(rows) == [f"test_{i:05d}" for i in range(4)]
    evaluation = json.loads((out / "evaluation.json").read_text())
    assert evaluation["n_images"] == 4 and 0.0 <= evaluation["dice_mean"] <= 1.0
    assert (out / "run" / "model" / "weights.safetensors").is_file()
    # The report renders the demo's own predictions, scored by the same code: the same numbers.
    assert (out / "run" / "report" / "report.html").is_file()
    assert json.loads((out / "run" / "report" / "evaluation.json").read_text()) == evaluation
    assert len(list((out / "pred_masks").glob("*.png"))) == 4
    # A second demo into the same folder is refused instead of mixing two runs.
    assert main(["demo", "--out", str(out), "--n-train", "20", "--n-test", "4"]) == 2
