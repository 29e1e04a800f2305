"""Calibrated verdicts (issue 25): the false-alarm table, the three levels and their cut-offs, old model folders,
and the baseline warning; values worked out by hand."""

from __future__ import annotations

import pytest

from inpaintseg.inference.verdicts import (LEVELS, NO_TABLE_NOTE, calibrate_verdicts, false_alarm_rate,
                                           quality_warning, verdict_for)

# Four untouched validation images (area 0) and four manipulated ones (a quarter of the image each).
SCORED = [(0.10, 0.0), (0.20, 0.0), (0.30, 0.0), (0.40, 0.0), (0.35, 0.25), (0.50, 0.25), (0.60, 0.25), (0.90, 0.25)]


def test_table_cutoffs_and_baselines_by_hand():
    record = calibrate_verdicts(SCORED, model_dice=0.45)
    table = record["table"]
    at = {t: i for i, t in enumerate(table["score_threshold"])}
    assert len(table["score_threshold"]) == 101 and table["score_threshold"][0] == 0.0
    # untouched scores 0.1 0.2 0.3 0.4: 2 of 4 reach 0.30, 1 of 4 reaches 0.31..0.40, none 0.41
    assert table["false_alarm_rate"][at[0.30]] == 0.5
    assert table["false_alarm_rate"][at[0.31]] == table["false_alarm_rate"][at[0.40]] == 0.25
    assert table["false_alarm_rate"][at[0.41]] == 0.0
    # manipulated 0.35 0.5 0.6 0.9: all of them reach 0.35, three 0.36
    assert table["detection_rate"][at[0.35]] == 1.0 and table["detection_rate"][at[0.36]] == 0.75
    # likely manipulated from the first threshold with <= 5% false alarms (0.41); likely untouched below the
    # last threshold that misses <= 5% of the manipulated images (0.35)
    assert record["cutoffs"] == {"uncertain": 0.35, "likely_manipulated": 0.41}
    assert (record["n_untouched"], record["n_manipulated"]) == (4, 4)
    # all-empty: the 4 untouched images score 1 -> 4/8; all-full: 2 x 0.25 / 1.25 = 0.4 on 4 of 8 -> 0.2
    assert record["baselines"] == {"all-empty": 0.5, "all-full": 0.2}


@pytest.mark.parametrize("score, level, rate", [(0.20, LEVELS[0], 0.75), (0.38, LEVELS[1], 0.25),
                                                (0.95, LEVELS[2], 0.0)])
def test_verdict_levels_and_false_alarm_rate(score, level, rate):
    verdict = verdict_for(score, calibrate_verdicts(SCORED), threshold=0.5)
    assert (verdict.level, verdict.false_alarm_rate, verdict.n_untouched) == (level, rate, 4)
    assert f"({round(rate * 4)} of 4)" in verdict.note


def test_rate_lookup_never_reports_less_than_the_exact_rate():
    record = calibrate_verdicts(SCORED)
    assert false_alarm_rate(record, 0.399) == 0.25  # grid 0.39: one of four (0.40) scores as high
    assert false_alarm_rate(record, 0.30) == 0.5


def test_overlapping_classes_leave_no_uncertain_gap_inversion():
    # manipulated images all score above every untouched one: the two cut-offs meet, no 'uncertain' band
    record = calibrate_verdicts([(0.1, 0.0), (0.2, 0.0), (0.8, 0.1), (0.9, 0.1)])
    assert record["cutoffs"]["uncertain"] <= record["cutoffs"]["likely_manipulated"] == 0.21


def test_old_model_folder_gets_the_two_level_verdict_with_a_note():
    assert verdict_for(0.3, None, threshold=0.13).level == "manipulated"
    old = verdict_for(0.1, {}, threshold=0.13)
    assert (old.level, old.false_alarm_rate, old.note) == ("untouched", None, NO_TABLE_NOTE)


def test_no_untouched_validation_images_means_no_table():
    record = calibrate_verdicts([(0.5, 0.2), (0.7, 0.3)])
    assert record["cutoffs"] is None and record["n_untouched"] == 0
    assert verdict_for(0.9, record, threshold=0.5).level == "manipulated"


def test_quality_warning_when_a_trivial_answer_is_as_good():
    config = {"postprocess": {"verdicts": calibrate_verdicts(SCORED, model_dice=0.45)}}
    warning = quality_warning(config)
    assert "0.450" in warning and "'all-empty'" in warning and "0.500" in warning
    config["postprocess"]["verdicts"]["model_dice"] = 0.61
    assert quality_warning(config) is None
    assert quality_warning({"postprocess": {}}) is None
