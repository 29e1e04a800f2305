"""The README's main command end to end (tiny sizes); the planner itself is tested in test_budget.py."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from inpaintseg.cli import main
from inpaintseg.model.spec import check_architecture
from inpaintseg.rle import read_submission


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
                                 "--n-test", "4", "--budget-minutes", "0.05", "--device", "cpu",
                                 "--precision", "bf16-mixed"],
                                stdout=fh, stderr=subprocess.STDOUT, env=env, timeout=600).returncode
    text = log.read_text(encoding="utf-8")
    assert status == 0, text[-3000:]
    assert "\r" not in text and "\x1b" not in text
    longest = max(text.splitlines(), key=len)
    assert len(longest) <= 300, longest
    assert re.search(r"^epoch 1/\d+: train_loss \S+, val_loss", text, re.M)
    assert "predicting with tta=" in text and "Total Flops" not in text
    assert "all-empty" in text and "all-full" in text and str(out / "submission.csv") in text
    # Two rows: the shipped detector zero-shot, then fine-tuned from it (its architecture, the demo's data).
    assert re.search(r"^  base zero-shot +\d\.\d{4} / \d\.\d{4}$", text, re.M)
    assert re.search(r"^  fine-tuned from base +\d\.\d{4} / \d\.\d{4}$", text, re.M)
    assert (out / "base_zero_shot" / "submission.csv").is_file()
    # The forced precision reaches training, calibration and prediction, and is recorded.
    model_config = json.loads((out / "run" / "model" / "config.json").read_text())
    assert model_config["training"]["precision"] == "bf16-mixed"
    assert model_config["training"]["precision_choice"]["requested"] == "bf16-mixed"
    assert model_config["postprocess"]["calibration"]["precision"] == "bf16-mixed"
    base = json.loads((Path(inpaintseg.__file__).parent / "weights" / "base" / "config.json").read_text())
    # the base's config.json may predate an architecture key with a default (norm: batch): compare normalised
    assert (check_architecture(model_config["architecture"], "run") == check_architecture(base["architecture"], "base")
            and model_config["training"]["init_from"])
    assert {"all-full", "all-empty"} <= set(model_config["postprocess"]["verdicts"]["baselines"])
    budget = json.loads((out / "budget.json").read_text())
    assert budget["predict_precision"]["precision"] == "bf16-mixed" and budget["budget_seconds"] == 3.0
    assert budget["epochs_planned"] == 1 and budget["used_seconds"] > 0  # 3 s: one epoch, planned vs used recorded
    assert set(budget["rows"]) == {"base zero-shot", "fine-tuned from base"} and budget["from_scratch"] is False
    assert "budget: planned" in text and "precision bf16-mixed (as requested)" in text
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


def test_demo_from_scratch_config_keeps_the_seed_path(tmp_path):
    from inpaintseg.demo import DEMO_BASE_CHANNELS, DEMO_LR, _train_config

    scratch = _train_config(tmp_path / "d", tmp_path / "r", 0, "32", "cpu", from_scratch=True)
    assert scratch.init_from is None and scratch.base_channels == DEMO_BASE_CHANNELS and scratch.lr == DEMO_LR
    tuned = _train_config(tmp_path / "d", tmp_path / "r", 0, "32", "cpu", from_scratch=False)
    assert tuned.init_from is not None and tuned.lr < DEMO_LR


def test_the_demo_says_so_when_its_test_images_do_not_beat_a_trivial_answer():
    # The --from-scratch run of 2026-12-07: validation (where calibration chose threshold, TTA and CRF) said
    # 0.290 > all-full 0.164, the test said 0.204 < all-full 0.223.
    from inpaintseg.demo import verdict_on_test

    baselines = {"all-empty": {"dice_mean": 0.100}, "all-full": {"dice_mean": 0.2228}}
    line = verdict_on_test("trained from scratch", {"dice_mean": 0.2042}, baselines, from_scratch=True)
    assert line.startswith("The model is not useful yet") and "0.204" in line and "'all-full' answer (0.223)" in line
    assert "without --from-scratch" in line
    tuned = verdict_on_test("fine-tuned from base", {"dice_mean": 0.05}, baselines, from_scratch=False)
    assert "'all-full' answer (0.223)" in tuned and "Use 'base' as it is" in tuned  # the larger of the two beaten
    assert verdict_on_test("fine-tuned from base", {"dice_mean": 0.558}, baselines, from_scratch=False) is None
    assert verdict_on_test("x", {"dice_mean": 0.2228}, baselines, from_scratch=True) is not None  # a tie is no gain
