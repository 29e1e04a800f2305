"""The image gate (inference.gate): the gated Dice table and the choice rule by hand, the post-processing that
applies it, where `auto` finds it, config.json checks, and `predict --gate` end to end."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from conftest import export_tiny_model, predict_cli
from inpaintseg.errors import ConfigError, ModelLoadError
from inpaintseg.inference.gate import GATE_GRID, calibrate_gate, gated_mean_curves, table_fields
from inpaintseg.inference.postprocess import PostProcess, resolve_postprocess
from inpaintseg.model.model_config import ModelConfig

THRESHOLDS = (0.3, 0.6)


def test_gated_mean_curves_by_hand():
    # image 0: untouched, Dice 0 at both thresholds (a false alarm), score 0.2
    # image 1: untouched, Dice 0 at 0.3 and 1 at 0.6, score 0.5
    # image 2: edited, Dice 0.8 / 0.6, score 0.9
    curves = np.array([[0.0, 0.0], [0.0, 1.0], [0.8, 0.6]])
    table = gated_mean_curves(curves, np.array([0.2, 0.5, 0.9]), np.array([True, True, False]), gates=(0.0, 0.3, 0.95))
    np.testing.assert_allclose(table[0], [0.8 / 3, 1.6 / 3])   # no gate
    np.testing.assert_allclose(table[1], [1.8 / 3, 2.6 / 3])   # image 0 gated: 1.0 (empty truth)
    np.testing.assert_allclose(table[2], [2.0 / 3, 2.0 / 3])   # all gated: the edited one scores 0


@pytest.fixture
def few_untouched_suffice(monkeypatch):
    """The hand-worked cases below have 1-4 untouched images; the rule itself is the subject, not the minimum."""
    monkeypatch.setattr("inpaintseg.inference.gate.MIN_UNTOUCHED", 1)


def _scored(untouched_scores, edited_scores):
    return [(s, 0.0) for s in untouched_scores] + [(s, 0.2) for s in edited_scores]


def test_gate_meets_the_false_alarm_target_when_it_still_beats_plain_thresholding(few_untouched_suffice):
    # four untouched images, each a false alarm at both thresholds, scoring 0.1..0.4; four edited ones with
    # Dice 0.5 / 0.4 scoring 0.6..0.9. No gate: 2.0 / 8 = 0.25 at 0.3. Gates 0.41..0.60 clear every false
    # alarm: (4 + 2.0) / 8 = 0.75; the lowest of them is 0.41.
    curves = np.array([[0.0, 0.0]] * 4 + [[0.5, 0.4]] * 4)
    record = calibrate_gate(curves, _scored([0.1, 0.2, 0.3, 0.4], [0.6, 0.7, 0.8, 0.9]), margin=0.005,
                            false_alarm_target=0.1, thresholds=THRESHOLDS)
    assert (record["gate"], record["threshold"]) == (0.41, 0.3)
    assert record["without_gate"] == {"gate": 0.0, "threshold": 0.3, "dice": 0.25, "false_alarm_rate": 1.0}
    assert record["false_alarm_target_gate"]["false_alarm_rate"] == 0.0
    assert record["false_alarm_target_gate"]["dice"] == record["best_dice_gate"]["dice"] == 0.75
    assert (record["n_images"], record["n_untouched"]) == (8, 4)


def test_falls_back_to_the_best_dice_gate_when_the_target_costs_too_much(few_untouched_suffice):
    # untouched 0.1 and 0.95 (the second cannot be gated without gating every edited image): the 10 % target
    # needs a gate above 0.95 -> every edited image empty, Dice 2/5 = 0.4 < no gate's 3 x 0.9 / 5 = 0.54.
    # The best-Dice gate 0.11 removes one false alarm: (1 + 2.7) / 5 = 0.74.
    curves = np.array([[0.0, 0.0], [0.0, 0.0], [0.9, 0.9], [0.9, 0.9], [0.9, 0.9]])
    record = calibrate_gate(curves, _scored([0.1, 0.95], [0.5, 0.6, 0.7]), margin=0.005, false_alarm_target=0.1,
                            thresholds=THRESHOLDS)
    assert record["false_alarm_target_gate"]["gate"] == 0.96 and record["false_alarm_target_gate"]["dice"] == 0.4
    assert record["without_gate"]["dice"] == 0.54
    assert record["gate"] == 0.11 and record["best_dice_gate"]["dice"] == 0.74


def test_no_gate_when_scores_do_not_separate_untouched_images(few_untouched_suffice):
    # the untouched images score as high as the edited ones: any gate empties edited masks as well
    curves = np.array([[0.0, 1.0], [0.9, 0.8], [0.9, 0.8]])
    record = calibrate_gate(curves, _scored([0.9], [0.5, 0.6]), margin=0.005, thresholds=THRESHOLDS)
    assert record["gate"] is None and record["threshold"] == 0.6


def test_no_gate_from_fewer_than_the_minimum_of_untouched_images():
    # the same clear case as above, with 4 untouched images and the default minimum of 10: rows measured,
    # no gate adopted
    curves = np.array([[0.0, 0.0]] * 4 + [[0.5, 0.4]] * 4)
    record = calibrate_gate(curves, _scored([0.1, 0.2, 0.3, 0.4], [0.6, 0.7, 0.8, 0.9]), margin=0.005,
                            thresholds=THRESHOLDS)
    assert record["gate"] is None and record["best_dice_gate"]["dice"] == 0.75 and record["threshold"] == 0.3


def test_no_untouched_images_means_no_false_alarm_rate_and_no_target():
    curves = np.array([[0.5, 0.7], [0.4, 0.6]])
    record = calibrate_gate(curves, _scored([], [0.5, 0.6]), margin=0.005, thresholds=THRESHOLDS)
    assert record["without_gate"]["false_alarm_rate"] is None and record["false_alarm_target_gate"] is None
    assert record["gate"] is None


def test_calibrate_gate_checks_its_shapes():
    with pytest.raises(ValueError, match="one score per image"):
        calibrate_gate(np.zeros((2, 2)), _scored([0.1], []), margin=0.0, thresholds=THRESHOLDS)


def test_binarize_empties_a_gated_image_and_the_label_follows_the_larger_threshold():
    post = PostProcess(tta="none", crf="off", crf_params=None, threshold=0.3, sources={}, gate=0.6)
    probs = np.full((10, 10), 0.4, dtype=np.float32)          # score 0.4 < gate 0.6: empty mask
    assert post.binarize(probs).sum() == 0
    probs[:2] = 0.9                                            # top 1 % = 0.9 >= 0.6: thresholded as usual
    assert post.binarize(probs).sum() == 100
    assert post.binarize(probs, score=0.5).sum() == 0          # a given score is used, not recomputed
    assert post.image_threshold == 0.6 and post.label(0.59) == 0 and post.label(0.6) == 1
    assert PostProcess(tta="none", crf="off", crf_params=None, threshold=0.3, sources={}).image_threshold == 0.3


STORED = {"threshold": 0.4, "gate": 0.7, "tta": "flip", "crf": "off",
          "calibration": {"table": [{"tta": "none", "crf": "off", "threshold": 0.35, "gate": 0.8},
                                    {"tta": "flip", "crf": "off", "threshold": 0.45, "gate": 0.7},
                                    {"tta": "d4", "crf": "off", "threshold": 0.5, "gate": None},
                                    {"tta": "flip+scales", "crf": "off", "threshold": 0.3, "gate": 0.6,
                                     "gate_threshold": 0.25}]}}


@pytest.mark.parametrize("kwargs, gate, threshold", [
    ({}, 0.7, 0.4),                                   # stored pair: stored gate and (gated) threshold
    ({"gate": "off"}, None, 0.45),                    # no gate: the table's ungated threshold of the pair
    ({"gate": 0.9}, 0.9, 0.4),                        # a number
    ({"tta": "none"}, 0.8, 0.35),                     # another TTA: its row's gate; no gated threshold recorded
    ({"tta": "flip+scales"}, 0.6, 0.25),              # a row with the threshold chosen with its gate
    ({"tta": "flip+scales", "gate": "off"}, None, 0.3),  # ... without the gate: its ungated one
    ({"tta": "d4"}, None, 0.5),                       # a row that chose no gate: its ungated threshold
    ({"tta": "d4+scales"}, None, 0.4),                # a TTA calibration did not measure: the stored one
    ({"threshold": 0.2}, 0.7, 0.2),                   # --threshold leaves the gate alone
])
def test_resolve_finds_the_gate(kwargs, gate, threshold):
    post = resolve_postprocess({"postprocess": STORED}, **kwargs)
    assert (post.gate, post.threshold) == (gate, threshold)
    assert "gate=" in post.describe()


FEW = {**STORED, "calibration": {**STORED["calibration"], "gate": {
    "n_untouched": 60, "false_alarm_target_gate": {"gate": 0.85, "threshold": 0.5, "dice": 0.4, "false_alarm_rate": 0.1}}}}


def test_few_false_alarms_takes_the_target_row_and_its_threshold():
    post = resolve_postprocess({"postprocess": FEW}, gate="few-false-alarms")
    assert (post.gate, post.threshold) == (0.85, 0.5)
    assert "10% of 60 untouched" in post.sources["gate"] and "few-false-alarms" in post.sources["threshold"]
    explicit = resolve_postprocess({"postprocess": FEW}, gate="few-false-alarms", threshold=0.3)
    assert (explicit.gate, explicit.threshold) == (0.85, 0.3)


@pytest.mark.parametrize("section, kwargs", [(STORED, {}),                 # no false-alarm row recorded
                                             (FEW, {"tta": "none"})])     # measured for flip only
def test_few_false_alarms_without_its_row_names_the_parameter(section, kwargs):
    with pytest.raises(ConfigError, match="few-false-alarms") as info:
        resolve_postprocess({"postprocess": section}, gate="few-false-alarms", **kwargs)
    assert info.value.params == ("gate",)


def test_another_tta_takes_its_own_threshold_on_a_model_without_gates():
    # regression: --tta none on a model calibrated with flip used flip's threshold (0.4), not none's (0.3)
    section = {"threshold": 0.4, "tta": "flip", "crf": "off",
               "calibration": {"table": [{"tta": "none", "crf": "off", "threshold": 0.3},
                                         {"tta": "flip", "crf": "off", "threshold": 0.4}]}}
    post = resolve_postprocess({"postprocess": section}, tta="none")
    assert (post.gate, post.threshold) == (None, 0.3) and "tta none" in post.sources["threshold"]
    assert resolve_postprocess({"postprocess": section}).threshold == 0.4


def test_few_false_alarms_for_another_tta_reads_its_table_row():
    section = {**FEW, "calibration": {**FEW["calibration"], "table": [
        {"tta": "none", "crf": "off", "threshold": 0.35, "gate": 0.8, "false_alarm_gate": 0.9,
         "false_alarm_threshold": 0.45},
        {"tta": "d4", "crf": "off", "threshold": 0.5, "false_alarm_gate": 0.0, "false_alarm_threshold": 0.55}]}}
    post = resolve_postprocess({"postprocess": section}, tta="none", gate="few-false-alarms")
    assert (post.gate, post.threshold) == (0.9, 0.45) and "tta none" in post.sources["gate"]
    # a target met without any gate (gate 0): no gate, the target row's threshold
    post = resolve_postprocess({"postprocess": section}, tta="d4", gate="few-false-alarms")
    assert (post.gate, post.threshold) == (None, 0.55)


def test_table_fields_keep_the_gate_its_threshold_and_the_target_row():
    record = {"gate": 0.3, "threshold": 0.24, "n_untouched": 60,
              "false_alarm_target_gate": {"gate": 0.67, "threshold": 0.35}}
    assert table_fields(record) == {"gate": 0.3, "gate_threshold": 0.24, "false_alarm_gate": 0.67,
                                    "false_alarm_threshold": 0.35}
    few = {"gate": None, "threshold": 0.5, "n_untouched": 4, "false_alarm_target_gate": {"gate": 0.9, "threshold": 0.6}}
    assert table_fields(few) == {"gate": None, "gate_threshold": None, "false_alarm_gate": None,
                                 "false_alarm_threshold": None}


def test_a_model_without_a_gate_resolves_to_none():
    post = resolve_postprocess({"postprocess": {"threshold": 0.4, "calibration": {}}})
    assert post.gate is None and post.sources["gate"] == "none calibrated" and post.threshold == 0.4


def test_a_bad_gate_names_the_parameter():
    with pytest.raises(ConfigError, match="gate must be a number"):
        resolve_postprocess({"postprocess": STORED}, gate=1.5)


def test_config_json_gate_out_of_range_is_a_clear_error():
    from inpaintseg.data.input_spec import input_section

    config = {"format_version": 1, "architecture": {}, "input": input_section("resize", 32),
              "postprocess": {"threshold": 0.5, "gate": 2}}
    with pytest.raises(ModelLoadError, match="postprocess.gate must be a number in"):
        ModelConfig.from_dict(config)
    config["postprocess"]["gate"] = None
    assert ModelConfig.from_dict(config).postprocess.gate is None


def _read_scores(path):
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def test_predict_gate_cli_end_to_end(tmp_path, make_dataset):
    images = make_dataset(n_train=0, n_test=3, size=32) / "test" / "images"
    model = export_tiny_model(tmp_path / "model", postprocess={"threshold": 0.01, "gate": 0.99, "tta": "none",
                                                               "crf": "off", "calibration": {}})
    # the untrained network's probabilities sit near 0.5: every pixel >= 0.01, every score < 0.99
    assert predict_cli(images, model, "--submission", str(tmp_path / "gated.csv"),
                       "--scores-out", str(tmp_path / "gated_scores.csv")) == 0
    gated = _read_scores(tmp_path / "gated.csv")
    assert len(gated) == 3 and all(row["EncodedPixels"] == "" for row in gated)
    assert all(row["score_threshold"] == "0.99" and row["predicted_label"] == "0"
               for row in _read_scores(tmp_path / "gated_scores.csv"))
    assert predict_cli(images, model, "--gate", "off", "--submission", str(tmp_path / "plain.csv")) == 0
    assert all(row["EncodedPixels"] == "1 1024" for row in _read_scores(tmp_path / "plain.csv"))
    config = json.loads((model / "config.json").read_text())
    config["postprocess"]["calibration"] = {"gate": {"n_untouched": 12, "false_alarm_target_gate": {
        "gate": 0.02, "threshold": 0.01, "dice": 0.5, "false_alarm_rate": 0.0}}}
    (model / "config.json").write_text(json.dumps(config))
    assert predict_cli(images, model, "--gate", "few-false-alarms", "--submission", str(tmp_path / "few.csv")) == 0
    assert all(row["EncodedPixels"] == "1 1024" for row in _read_scores(tmp_path / "few.csv"))  # scores >= 0.02
    with pytest.raises(SystemExit) as exit_info:                # argparse: not in (0, 1)
        predict_cli(images, model, "--gate", "2")
    assert exit_info.value.code == 2


def test_gate_grid_starts_at_no_gate_and_every_gate_is_a_valid_threshold():
    from inpaintseg.metrics import is_threshold

    assert GATE_GRID[0] == 0.0 and GATE_GRID[-1] == 0.99 and len(GATE_GRID) == 100
    assert all(is_threshold(g) for g in GATE_GRID[1:])


def test_a_useless_model_never_stores_a_gate_that_predict_refuses(few_untouched_suffice):
    # every edited image scores 0 Dice: emptying everything (gate 0.99 here) is the "best" gate; it must load
    curves = np.array([[0.0, 0.0]] * 2 + [[0.0, 0.0]] * 8)
    record = calibrate_gate(curves, _scored([0.5, 0.6], [0.2] * 8), margin=0.005, thresholds=THRESHOLDS)
    assert record["gate"] is not None and 0 < record["gate"] < 1
    post = resolve_postprocess({"postprocess": {"threshold": record["threshold"], "gate": record["gate"]}})
    assert post.gate == record["gate"]


def test_gate_benchmark_end_to_end(tmp_path, make_dataset):
    import sys

    from conftest import REPO

    sys.path.insert(0, str(REPO / "benchmarks"))
    import gate as gate_bench

    root = make_dataset(n_train=6, n_test=4, size=32, n_empty=3)
    model = export_tiny_model(tmp_path / "model", postprocess={"threshold": 0.5, "tta": "none", "crf": "off",
                                                               "calibration": {}})
    out = tmp_path / "gate.json"
    assert gate_bench.main(["--model", str(model), "--calibrate", str(root / "train"), "--test", str(root / "test"),
                            "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    plain = result["rows"]["without_gate"]
    assert plain["calibration"]["gate"] == 0.0 and plain["calibration"]["false_alarm_rate"] is not None
    assert plain["test"]["n"] == 4 and plain["test"]["n_untouched"] == 1
    assert result["chosen_gate"] is None  # 3 untouched calibration images: below the minimum for a gate


def test_model_info_says_what_another_tta_resolves_to(tmp_path, capsys):
    from inpaintseg.cli import main

    folder = export_tiny_model(tmp_path / "model", postprocess=STORED)
    assert main(["model-info", str(folder)]) == 0
    line = next(x for x in capsys.readouterr().out.splitlines() if x.startswith("with another --tta"))
    # the stored flip is left out; each other row resolves as predict --tta would (see test_resolve_finds_the_gate)
    assert line.endswith("none: threshold 0.35, gate 0.8; d4: threshold 0.5, no gate; "
                         "flip+scales: threshold 0.25, gate 0.6")


@pytest.mark.parametrize("mode", ["resize", "crop"])
def test_folder_curves_many_equals_one_pass_per_pair(tmp_path, make_dataset, mode):
    # The recipe's held-out decisions measure every TTA row in one pass (shared views run once); each pair's
    # curves and scores must be those of predicting it alone through the product's predict_batch.
    from inpaintseg.api import load_model
    from inpaintseg.fileio import read_mask
    from inpaintseg.inference.gate import folder_curves_many
    from inpaintseg.metrics import dice_curve

    root = make_dataset(n_train=0, n_test=5, size=48)
    model = load_model(export_tiny_model(tmp_path / "m", mode=mode, size=32), device="cpu", precision="32")
    pairs = [("flip", "off"), ("none", "off"), ("d4", "off"), ("flip+scales", "off"), ("none", "gaussian")]
    many = folder_curves_many(model, root / "test", pairs, batch_size=2)
    assert list(many) == pairs
    paths = sorted((root / "test" / "images").iterdir())
    truths = [read_mask(root / "test" / "masks" / path.name) for path in paths]
    for (tta, crf), (curves, scored) in many.items():
        alone = load_model(tmp_path / "m", device="cpu", precision="32").predict_batch(paths, tta=tta, crf=crf,
                                                                                        gate="off")
        alone_curves = np.array([dice_curve(pred.probability, truth) for pred, truth in zip(alone, truths)])
        alone_scored = [(pred.score, float(truth.mean())) for pred, truth in zip(alone, truths)]
        assert curves.shape == alone_curves.shape == (5, alone_curves.shape[1])
        np.testing.assert_allclose(curves, alone_curves, atol=1e-6)
        np.testing.assert_allclose(np.array(scored), np.array(alone_scored), atol=1e-6)
    # None means the stored post-processing (flip, off)
    assert list(folder_curves_many(model, root / "test", [(None, None)])) == [("flip", "off")]
