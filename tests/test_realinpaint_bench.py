"""benchmarks/realinpaint.py: the metrics on a tiny folder of the shared data's layout, worked out by hand; the
script end to end on a tiny model folder; and on ../shared/realinpaint itself when it is there."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))
import realinpaint  # noqa: E402

from inpaintseg.metrics import image_score  # noqa: E402

SHARED = REPO.parent / "shared" / "realinpaint"


def _png(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if array.ndim == 3:
        array = cv2.cvtColor(array, cv2.COLOR_RGB2BGR)
    cv2.imwrite(str(path), array)


def _red(values: dict[tuple[int, int], int]) -> np.ndarray:
    """A 4x4 RGB image, black but for the given red values: the fake detector reads red/255 as probability."""
    image = np.zeros((4, 4, 3), np.uint8)
    for (y, x), v in values.items():
        image[y, x, 0] = v
    return image


def _mask(cells) -> np.ndarray:
    mask = np.zeros((4, 4), np.uint8)
    for y, x in cells:
        mask[y, x] = 255
    return mask


def red_detector(images):
    return [(im[:, :, 0].astype(np.float32) / 255, image_score(im[:, :, 0].astype(np.float32) / 255))
            for im in images]


@pytest.fixture
def data(tmp_path):
    """gen_a: x (2x2 block found + 1 false pixel), y (left column at 0.4: missed), z (found exactly; shares x's
    original); gen_b: w (top row found), its original has one pixel at 0.2; gen_c: no originals."""
    root = tmp_path / "real"
    block, column = [(0, 0), (0, 1), (1, 0), (1, 1)], [(i, 0) for i in range(4)]
    corner, row = [(2, 2), (2, 3), (3, 2), (3, 3)], [(0, i) for i in range(4)]
    orig_x = _red({(3, 3): 153})
    cases = {
        ("gen_a", "x"): (_red({**{c: 255 for c in block}, (3, 0): 204}), block, orig_x),
        ("gen_a", "y"): (_red({c: 102 for c in column}), column, _red({})),
        ("gen_a", "z"): (_red({c: 255 for c in corner}), corner, orig_x.copy()),
        ("gen_b", "w"): (_red({c: 255 for c in row}), row, _red({(2, 2): 51})),
        ("gen_c", "v"): (_red({c: 255 for c in row}), row, None),
    }
    for (folder, name), (image, cells, original) in cases.items():
        _png(root / folder / "images" / f"{name}.png", image)
        _png(root / folder / "masks" / f"{name}.png", _mask(cells))
        if original is not None:
            _png(root / folder / "originals" / f"{name}.png", original)
    return root


def test_metrics_match_hand_worked_values(data):
    result = realinpaint.score_data(data, red_detector, threshold=0.5, score_threshold=0.5, batch_size=2)
    a, b, c = (result["folders"][k] for k in ("gen_a", "gen_b", "gen_c"))
    # Dice: x 2*4/(2*4+1) = 8/9, y 0 (nothing >= 0.5), z 1.
    assert a["n"] == 3 and a["dice_mean"] == pytest.approx((8 / 9 + 0 + 1) / 3)
    # Pixels: positives 8 at 1.0 and 4 at 0.4; negatives 35 at 0 and 1 at 0.8 -> (8*36 + 4*35) / (12*36).
    assert a["pixel_auc"] == pytest.approx(428 / 432)
    # Image scores (4x4: the top 1% is the maximum): edited 1.0, 0.4, 1.0 vs distinct originals 0.6, 0.0
    # (z shares x's original: counted once) -> (2 + 1 + 2) / 6.
    assert a["n_originals"] == 2 and a["image_auc"] == pytest.approx(5 / 6)
    # Originals: x's (0.6) is flagged at 0.5 with 1 of 16 pixels >= 0.5; y's is clean.
    assert a["false_alarm_rate"] == pytest.approx(0.5) and a["false_alarm_area"] == pytest.approx(1 / 32)
    assert b["dice_mean"] == 1 and b["pixel_auc"] == 1 and b["image_auc"] == 1 and b["false_alarm_rate"] == 0
    assert c["n_originals"] == 0 and math.isnan(c["image_auc"]) and math.isnan(c["false_alarm_rate"])
    pooled = result["summary"][realinpaint.POOLED]          # gen_a + gen_b (gen_c has no originals)
    assert pooled["n"] == 4 and pooled["n_originals"] == 3
    assert pooled["dice_mean"] == pytest.approx((8 / 9 + 0 + 1 + 1) / 4)
    assert pooled["pixel_auc"] == pytest.approx((12 * 48 + 4 * 47) / (16 * 48))
    # edited 1, .4, 1, 1 vs originals .6, 0, .2: 3*3 + 2 = 11 of 12 pairs.
    assert pooled["image_auc"] == pytest.approx(11 / 12)
    assert pooled["false_alarm_rate"] == pytest.approx(1 / 3) and pooled["false_alarm_area"] == pytest.approx(1 / 48)
    mean = result["summary"][realinpaint.FOLDER_MEAN]
    assert mean["pixel_auc"] == pytest.approx((428 / 432 + 1) / 2)
    assert mean["image_auc"] == pytest.approx((5 / 6 + 1) / 2)


def test_the_image_gate_empties_masks_as_predict_does(data):
    # gate 0.7: x's original (score 0.6) keeps no mask -> no false-alarm area; the edited x, z (score 1.0) keep
    # theirs; y (0.4) was empty already. Scores, AUCs and the labels (score_threshold) do not change.
    result = realinpaint.score_data(data, red_detector, threshold=0.5, score_threshold=0.7, gate=0.7)
    a = result["folders"]["gen_a"]
    assert a["false_alarm_area"] == 0 and a["false_alarm_rate"] == 0
    assert a["dice_mean"] == pytest.approx((8 / 9 + 0 + 1) / 3) and a["image_auc"] == pytest.approx(5 / 6)
    gated_all = realinpaint.score_data(data, red_detector, threshold=0.5, score_threshold=0.5, gate=1.01)
    assert gated_all["folders"]["gen_b"]["dice_mean"] == 0  # every mask empty, every truth not


def test_limit_takes_the_first_pairs_of_each_folder(data):
    result = realinpaint.score_data(data, red_detector, 0.5, 0.5, limit=1, folders=["gen_a"])
    assert list(result["folders"]) == ["gen_a"]
    row = result["folders"]["gen_a"]                        # x alone: Dice 8/9, edited 1.0 vs original 0.6
    assert row["n"] == 1 and row["dice_mean"] == pytest.approx(8 / 9) and row["image_auc"] == 1


def test_bad_layouts_are_named(data, tmp_path):
    from inpaintseg.errors import DataError

    (data / "gen_a" / "masks" / "y.png").unlink()
    with pytest.raises(DataError, match=r"y\.png: no mask"):
        realinpaint.score_data(data, red_detector, 0.5, 0.5)
    with pytest.raises(DataError, match="gen_q"):
        realinpaint.score_data(data, red_detector, 0.5, 0.5, folders=["gen_q"])
    with pytest.raises(DataError, match="not found"):
        realinpaint.score_data(tmp_path / "absent", red_detector, 0.5, 0.5)


def _tiny_model(tmp_path: Path) -> Path:
    import torch

    from inpaintseg.model import build_model
    from inpaintseg.model.io import save_model_dir

    torch.manual_seed(0)
    model = build_model({"name": "AttentionUNet", "base_channels": 2, "depth": 1}).eval()
    config = {"architecture": model.architecture(), "postprocess": {"threshold": 0.5},
              "input": {"mode": "resize", "size": 16, "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]}}
    return save_model_dir(tmp_path / "model", model, config)


def test_script_runs_a_model_folder_end_to_end(data, tmp_path, capsys):
    model = _tiny_model(tmp_path)
    out = tmp_path / "real.json"
    code = realinpaint.main(["--model", str(model), "--data", str(data), "--json", str(out), "--precision", "32"])
    assert code == 0
    table = capsys.readouterr().out
    assert "| gen_a | 3 | 2 |" in table and realinpaint.POOLED in table
    saved = json.loads(out.read_text())
    assert saved["folders"]["gen_c"]["image_auc"] is None       # no originals: null, not NaN
    assert 0 <= saved["summary"][realinpaint.POOLED]["pixel_auc"] <= 1
    assert realinpaint.main(["--model", str(tmp_path / "nope"), "--data", str(data)]) == 2
    assert "nope" in capsys.readouterr().err


def test_shared_real_inpaintings_score_when_present(tmp_path):
    if not SHARED.is_dir():
        pytest.skip(f"real inpaintings not found: looked for {SHARED} (../shared/realinpaint beside the repository)")
    result = realinpaint.score_data(SHARED, red_detector, 0.5, 0.5, limit=1)
    assert {"crfill", "ldm_inpaint", "palette"} <= set(result["folders"])
    assert all(row["n"] == 1 for row in result["folders"].values())
    assert result["folders"]["palette"]["n_originals"] == 0
    assert result["summary"][realinpaint.POOLED]["n_originals"] >= 4


def test_lofo_tables_carry_the_real_row(tmp_path):
    import lofo

    test = {"dice_mean": 0.5, "pixel_auc": 0.8, "image_auc": 0.9, "false_positive": {"mean_area_fraction": 0.01}}
    real = {"summary": {realinpaint.POOLED: {"image_auc": 0.61}, realinpaint.FOLDER_MEAN: {"pixel_auc": 0.57}}}
    rows = {"all-s0": {"family": lofo.IN_DISTRIBUTION, "seed": 0, "test": test, "realinpaint": real},
            "all-s1": {"family": lofo.IN_DISTRIBUTION, "seed": 1, "test": test, "realinpaint": real}}
    (tmp_path / "results.json").write_text(json.dumps({"rows": rows, "setup": {}}))
    assert "| 0.610 +- 0.000 / 0.570 +- 0.000 |" in lofo.compare([tmp_path])
    assert "| 0.610 +- 0.000 / 0.570 +- 0.000 |" in lofo.table({"rows": rows})


def test_lofo_photos_reach_the_engine(tmp_path, monkeypatch):
    # the engine call of a row gets the --photos folders pooled with the packaged photos; stop right after it
    import lofo

    import inpaintseg.synth as synth

    seen = {}

    def engine(out, **kwargs):
        seen.update(kwargs)
        raise RuntimeError("stop")

    monkeypatch.setattr(synth, "generate_demo_data", engine)
    args = lofo.parse_args(["--photos", str(tmp_path / "a"), str(tmp_path / "b")])
    with pytest.raises(RuntimeError, match="stop"):
        lofo.run_row(args, None, 0, tmp_path / "work")
    assert seen["photos_dir"] == [str(tmp_path / "a"), str(tmp_path / "b")] and seen["packaged_photos"] is True
    with pytest.raises(RuntimeError, match="stop"):
        lofo.run_row(lofo.parse_args([]), None, 0, tmp_path / "work")
    assert seen["photos_dir"] is None and seen["packaged_photos"] is None


def test_the_smoothness_baseline_marks_the_part_twice_as_smooth_as_the_image():
    # 3/4 of the image carries noise sigma 8, the right quarter sigma 2: the median noise level is the
    # noisy one, the quarter's log deficit is ln(8/2) = ln 4, so p = sigmoid(4 (ln 4 - ln 2)) = 0.94 there
    # and sigmoid(4 (0 - ln 2)) = 0.06 elsewhere (away from the 15-px window straddling the border).
    rng = np.random.default_rng(0)
    sigma = np.where(np.arange(128) < 96, 8.0, 2.0)[None, :, None]
    image = np.clip(np.round(128 + sigma * rng.standard_normal((128, 128, 1))), 0, 255).repeat(3, 2)
    probs = realinpaint.smoothness_map(image.astype(np.uint8))
    assert probs.shape == (128, 128) and probs.dtype == np.float32
    assert abs(np.median(probs[:, 105:]) - 0.94) < 0.03 and abs(np.median(probs[:, :85]) - 0.06) < 0.03
    (score, _), = [(s, p) for p, s in realinpaint.smoothness_predictor()([image.astype(np.uint8)])]
    assert score > 0.9  # the top 1 % of the map


def test_the_baseline_runs_from_the_command_line_without_a_model(tmp_path, capsys):
    data = tmp_path / "data"
    rng = np.random.default_rng(1)
    noisy = np.clip(128 + 8 * rng.standard_normal((64, 64, 3)), 0, 255).astype(np.uint8)
    edited = noisy.copy()
    edited[:, 40:] = 128
    mask = np.zeros((64, 64), np.uint8)
    mask[:, 40:] = 255
    _png(data / "f" / "images" / "a.png", edited)
    _png(data / "f" / "masks" / "a.png", mask)
    _png(data / "f" / "originals" / "a.png", noisy)
    assert realinpaint.main(["--baseline", "smoothness", "--data", str(data), "--json", str(tmp_path / "r.json")]) == 0
    result = json.loads((tmp_path / "r.json").read_text())
    assert result["setup"]["baseline"] == "smoothness" and result["folders"]["f"]["pixel_auc"] > 0.95
    assert result["folders"]["f"]["image_auc"] == 1.0  # the flat fill scores higher than the untouched photo
    with pytest.raises(SystemExit):
        realinpaint.parse_args(["--baseline", "smoothness", "--model", "m"])
