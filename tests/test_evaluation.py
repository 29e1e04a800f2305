"""`evaluate`: metrics worked out by hand on three 4x4 images, id/size problems, the CLI."""

from __future__ import annotations

import json
import re

import cv2
import numpy as np
import pytest

from inpaintseg import cli, rle
from inpaintseg.errors import DataError
from inpaintseg.evaluation.evaluate import evaluate, format_table

# a: truth = the 2x2 top-left block (4 px); prediction = rows 0-1, cols 0-2 (6 px): tp 4, fp 2, fn 0.
# b: truth empty; prediction = pixel (0, 0): tp 0, fp 1, fn 0.
# c: truth empty; prediction empty (counts 1.0 by the competition's rule).
TRUTH = {"a": np.zeros((4, 4), np.uint8), "b": np.zeros((4, 4), np.uint8), "c": np.zeros((4, 4), np.uint8)}
TRUTH["a"][:2, :2] = 1
PRED = {k: np.zeros((4, 4), np.uint8) for k in TRUTH}
PRED["a"][:2, :3] = 1
PRED["b"][0, 0] = 1
# Probability maps (8-bit): a: 200 on its truth, 150 on its two false-positive pixels; b: 100 at (0, 0).
PROBS = {k: np.zeros((4, 4), np.uint8) for k in TRUTH}
PROBS["a"][:2, :3] = 150
PROBS["a"][:2, :2] = 200
PROBS["b"][0, 0] = 100


def write_masks(folder, masks):
    folder.mkdir(parents=True, exist_ok=True)
    for stem, mask in masks.items():
        cv2.imwrite(str(folder / f"{stem}.png"), mask * 255 if mask.max() <= 1 else mask)


@pytest.fixture
def folders(tmp_path):
    write_masks(tmp_path / "truth", TRUTH)
    write_masks(tmp_path / "pred", PRED)
    (tmp_path / "probs").mkdir()
    for stem, p in PROBS.items():
        cv2.imwrite(str(tmp_path / "probs" / f"{stem}.png"), p)
    return tmp_path


def test_metrics_by_hand(folders):
    r = evaluate(folders / "truth", pred_dir=folders / "pred")
    # Per-image Dice: a 2*4/(8+2+0) = 0.8, b 0/(0+1+0) = 0, c 1.0 (both empty) -> mean 1.8/3 = 0.6.
    assert r["dice_mean"] == pytest.approx(0.6)
    assert r["per_image"] == {"a": 0.8, "b": 0.0, "c": 1.0}
    # Pooled: tp 4, fp 3, fn 0 -> Dice 8/11, IoU 4/7, precision 4/7, recall 4/4, F1 = Dice.
    assert r["dice_pooled"] == pytest.approx(8 / 11)
    assert r["iou_pooled"] == pytest.approx(4 / 7)
    assert (r["precision"], r["recall"], r["f1"]) == pytest.approx((4 / 7, 1.0, 8 / 11))
    # Per-image IoU: a 4/6, b 0, c 1 -> mean (2/3 + 1) / 3 = 5/9.
    assert r["iou_mean"] == pytest.approx(5 / 9)
    # Image level without probabilities: score = mask non-empty = a 1, b 1, c 0; truth labels 1, 0, 0.
    # AUC: the positive (1) vs negatives (1: tie = 0.5, 0: win = 1) -> 1.5 / 2 = 0.75; accuracy 2/3.
    assert r["image_auc"] == pytest.approx(0.75)
    assert r["image_accuracy"] == pytest.approx(2 / 3)
    # False positives on untouched images b, c: areas 1/16 and 0 -> mean 1/32; one image with pixels, which is
    # also the one flagged manipulated (without probabilities: its mask is non-empty).
    assert r["false_positive"] == {"n_empty_truth_images": 2, "images_with_any_predicted_pixel": 1,
                                   "images_flagged_manipulated": 1, "mean_area_fraction": pytest.approx(1 / 32)}
    assert "best_f1" not in r
    table = format_table(r)
    assert "0.6000" in table and "empty truth and empty prediction counts 1.0" in table


def test_probability_metrics_by_hand(folders):
    r = evaluate(folders / "truth", pred_dir=folders / "pred", probs_dir=folders / "probs", threshold=0.5)
    # Truth pixels are all 200; negatives are 150, 150, 100 and zeros -> a threshold in (150, 200]/255
    # separates them perfectly: best F1 = 1 and pixel AUC = 1.
    assert r["best_f1"] == pytest.approx(1.0)
    assert 150 / 255 < r["best_f1_threshold"] <= 200 / 255
    assert r["pixel_auc"] == pytest.approx(1.0)
    # Image score = mean of the top 1% of 16 px = the single largest value: a 200/255, b 100/255, c 0.
    # Labels at 0.5: a 1, b 0, c 0 -> all correct; AUC 1.
    assert r["image_accuracy"] == 1.0 and r["image_auc"] == 1.0
    assert r["dice_mean"] == pytest.approx(0.6)  # Dice still comes from the binary predictions


def test_submission_gives_the_same_metrics(folders):
    rle.write_submission(folders / "sub.csv", PRED)
    from_csv = evaluate(folders / "truth", submission=folders / "sub.csv")
    from_pngs = evaluate(folders / "truth", pred_dir=folders / "pred")
    assert from_csv == from_pngs


def test_per_method_breakdown(folders):
    meta = {"images": {"a": {"method": "lama"}, "b": {"method": "none"}, "c": {"method": "none"}}}
    (folders / "meta.json").write_text(json.dumps(meta))
    r = evaluate(folders / "truth", pred_dir=folders / "pred", meta=folders / "meta.json")
    # lama: a = 0.8; none: (b 0 + c 1) / 2 = 0.5.
    assert r["by_method"] == {"lama": {"n": 1, "dice_mean": pytest.approx(0.8)},
                              "none": {"n": 2, "dice_mean": pytest.approx(0.5)}}

    assert "by_family" not in r  # no family in this meta


def test_per_family_breakdown(folders):
    """demo-data's meta records a family per image: Dice is broken down by method and by family."""
    meta = {"images": {"a": {"method": "gen_nearest", "family": "learned"},
                       "b": {"method": "telea", "family": "classical"},
                       "c": {"method": "none", "family": "none"}}}
    (folders / "meta.json").write_text(json.dumps(meta))
    r = evaluate(folders / "truth", pred_dir=folders / "pred", meta=folders / "meta.json")
    # a = 0.8, b = 0 (empty truth, 1 predicted pixel), c = 1 (both empty).
    assert r["by_family"] == {"classical": {"n": 1, "dice_mean": pytest.approx(0.0)},
                              "learned": {"n": 1, "dice_mean": pytest.approx(0.8)},
                              "none": {"n": 1, "dice_mean": pytest.approx(1.0)}}
    assert set(r["by_method"]) == {"gen_nearest", "telea", "none"}
    table = format_table(r)
    assert "Dice, family learned" in table and "Dice, method gen_nearest" in table


def test_breakdowns_by_coverage_mask_kind_and_degradation(folders):
    """Issue 25: Dice by the truth's coverage (always), by mask kind and degradation chain (from meta.json)."""
    meta = {"images": {"a": {"method": "m", "mask_kind": "blob", "degradations": [{"op": "resize"}, {"op": "jpeg"}]},
                       "b": {"method": "none", "mask_kind": None, "degradations": [{"op": "jpeg"}]},
                       "c": {"method": "none", "mask_kind": None, "degradations": []}}}
    (folders / "meta.json").write_text(json.dumps(meta))
    r = evaluate(folders / "truth", pred_dir=folders / "pred", meta=folders / "meta.json")
    # a covers 4 of 16 pixels (25%, Dice 0.8); b and c are untouched (Dice 0 and 1)
    assert r["by_coverage"] == {"untouched (0%)": {"n": 2, "dice_mean": pytest.approx(0.5)},
                                "large (15-30%)": {"n": 1, "dice_mean": pytest.approx(0.8)}}
    assert r["by_mask_kind"] == {"blob": {"n": 1, "dice_mean": pytest.approx(0.8)},
                                 "none": {"n": 2, "dice_mean": pytest.approx(0.5)}}
    assert r["by_degradation"] == {"jpeg": {"n": 1, "dice_mean": pytest.approx(0.0)},
                                   "none": {"n": 1, "dice_mean": pytest.approx(1.0)},
                                   "resize+jpeg": {"n": 1, "dice_mean": pytest.approx(0.8)}}


def test_missing_and_extra_ids_are_named(folders):
    (folders / "pred" / "b.png").unlink()
    cv2.imwrite(str(folders / "pred" / "zz.png"), np.zeros((4, 4), np.uint8))
    with pytest.raises(DataError) as info:
        evaluate(folders / "truth", pred_dir=folders / "pred")
    assert "have no predicted mask" in str(info.value) and ": b" in str(info.value)
    assert "zz" in str(info.value)


def test_submission_missing_row_is_named(folders):
    rle.write_submission(folders / "sub.csv", {k: v for k, v in PRED.items() if k != "c"})
    with pytest.raises(DataError, match="no submission row.*: c"):
        evaluate(folders / "truth", submission=folders / "sub.csv")


def test_size_mismatch_is_named(folders):
    cv2.imwrite(str(folders / "pred" / "a.png"), np.zeros((4, 5), np.uint8))
    with pytest.raises(DataError, match=r"a \(prediction 5x4, truth 4x4\)"):
        evaluate(folders / "truth", pred_dir=folders / "pred")


def test_submission_rle_too_long_for_truth_is_named(folders):
    rows = dict(PRED)
    rows["c"] = "10 20"  # runs past pixel 16 of a 4x4 image
    rle.write_submission(folders / "sub.csv", rows)
    with pytest.raises(DataError, match="c: submission RLE does not fit the truth size 4x4"):
        evaluate(folders / "truth", submission=folders / "sub.csv")


def test_cli_prints_table_and_writes_json(folders, capsys):
    out = folders / "eval.json"
    code = cli.main(["evaluate", "--truth", str(folders / "truth"), "--pred", str(folders / "pred"),
                     "--json", str(out), "--quiet"])
    assert code == 0
    assert "Dice (competition: mean per image)" in capsys.readouterr().out
    assert json.loads(out.read_text())["dice_mean"] == pytest.approx(0.6)


def test_cli_missing_truth_folder_is_a_clear_error(folders, capsys):
    code = cli.main(["evaluate", "--truth", str(folders / "nope"), "--pred", str(folders / "pred"), "--quiet"])
    assert code == 2
    assert "nope" in capsys.readouterr().err


def test_column_major_submission_is_read_with_rle_order_and_warned_about(tmp_path, capsys):
    # Truth: a horizontal bar (row 0). Written column-major, its runs read row-major land in column 0:
    # tp 1 (pixel (0, 0)), fp 3, fn 3 -> Dice 2/8 = 0.25; read column-major it is exact (Dice 1).
    truth = {"bar": np.zeros((4, 4), np.uint8)}
    truth["bar"][0, :] = 1
    write_masks(tmp_path / "truth", truth)
    rle.write_submission(tmp_path / "kaggle.csv", truth, order="F")
    r = evaluate(tmp_path / "truth", submission=tmp_path / "kaggle.csv")
    assert r["dice_mean"] == pytest.approx(0.25)
    assert len(r["warnings"]) == 1 and "--rle-order column" in r["warnings"][0]
    assert cli.main(["evaluate", "--truth", str(tmp_path / "truth"), "--submission", str(tmp_path / "kaggle.csv"),
                     "--rle-order", "column", "--quiet"]) == 0
    assert re.search(r"Dice \(competition: mean per image\) +1\.0000", capsys.readouterr().out)
    assert evaluate(tmp_path / "truth", submission=tmp_path / "kaggle.csv", rle_order="column")["warnings"] == []
    cli.main(["evaluate", "--truth", str(tmp_path / "truth"), "--submission", str(tmp_path / "kaggle.csv"), "--quiet"])
    assert "warning: the submission fits the truth much better" in capsys.readouterr().err


def test_stems_restrict_both_sides_and_dice_vs_threshold(folders):
    # Only a and b: a's extra prediction files for c are ignored, not an error.
    r = evaluate(folders / "truth", pred_dir=folders / "pred", probs_dir=folders / "probs", stems=["a", "b"])
    assert r["n_images"] == 2 and r["dice_mean"] == pytest.approx(0.4)  # (0.8 + 0) / 2
    # Dice of probs >= t: for t in (150/255, 200/255] image a is exact (1.0) and b (100/255) is empty (1.0).
    curve = r["dice_vs_threshold"]
    assert curve["best_dice_mean"] == 1.0 and 150 / 255 < curve["best_threshold"] <= 200 / 255
    at = dict(zip(curve["thresholds"], curve["dice_mean"]))
    # t = 0.5: a predicts 6 px (tp 4, fp 2) -> 0.8; b predicts nothing -> 1.0; mean 0.9.
    assert at[0.5] == pytest.approx(0.9)
    assert r["pixel_average_precision"] == pytest.approx(1.0) and r["pixel_prevalence"] == pytest.approx(4 / 32)
    with pytest.raises(DataError, match="no truth mask for 1 image"):
        evaluate(folders / "truth", pred_dir=folders / "pred", stems=["a", "zz"])


def test_old_threshold_flag_is_the_score_threshold(folders, capsys):
    out = folders / "e.json"
    assert cli.main(["evaluate", "--truth", str(folders / "truth"), "--pred", str(folders / "pred"), "--probs",
                     str(folders / "probs"), "--threshold", "0.3", "--json", str(out), "--quiet"]) == 0
    assert "--threshold is now --score-threshold" in capsys.readouterr().err
    # Scores a 200/255, b 100/255 = 0.39, c 0: at 0.3, b is labelled manipulated -> 2 of 3 right.
    result = json.loads(out.read_text())
    assert result["score_threshold"] == 0.3 and result["image_accuracy"] == pytest.approx(2 / 3)


def test_the_image_threshold_comes_from_the_model_or_the_scores_file(folders, capsys):
    """Issue 25: evaluate decides manipulated vs untouched with the threshold predict used, not a fixed 0.5.
    Scores: a 200/255 = 0.78, b 100/255 = 0.39, c 0."""
    from conftest import export_tiny_model

    args = ["evaluate", "--truth", str(folders / "truth"), "--pred", str(folders / "pred"), "--probs",
            str(folders / "probs"), "--quiet", "--json"]
    assert cli.main(args + [str(folders / "default.json")]) == 0
    assert "image threshold 0.5 (default; pass --model" in capsys.readouterr().err
    assert json.loads((folders / "default.json").read_text())["image_accuracy"] == 1.0  # b < 0.5: right
    export_tiny_model(folders / "run" / "model", postprocess={"threshold": 0.3, "tta": "none", "crf": "off"})
    assert cli.main(args + [str(folders / "model.json"), "--model", str(folders / "run")]) == 0  # a run folder
    assert "image threshold 0.3 (the model's" in capsys.readouterr().err
    result = json.loads((folders / "model.json").read_text())
    assert result["score_threshold"] == 0.3 and result["image_accuracy"] == pytest.approx(2 / 3)  # b flagged
    assert result["false_positive"]["images_flagged_manipulated"] == 1
    (folders / "scores.csv").write_text("ImageId,score,manipulated_fraction,predicted_label,verdict,"
                                        "false_alarm_rate,score_threshold\na,0.78,0.375,1,manipulated,,0.3\n")
    assert cli.main(args + [str(folders / "scores.json")]) == 0
    assert f"image threshold 0.3 (from {folders / 'scores.csv'})" in capsys.readouterr().err
    assert json.loads((folders / "scores.json").read_text())["score_threshold"] == 0.3


def test_pred_or_submission_error_names_parameters_and_the_cli_its_flags(folders):
    from inpaintseg.commands import flag_message
    from inpaintseg.errors import InpaintsegError

    with pytest.raises(InpaintsegError, match=r"^give exactly one of pred_dir \(a folder") as error:
        evaluate(folders / "truth")
    assert error.value.params == ("pred_dir", "submission")
    assert flag_message(error.value).startswith("give exactly one of --pred (a folder of predicted masks) or "
                                                "--submission (an ImageId,EncodedPixels CSV)")
