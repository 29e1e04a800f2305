"""benchmarks/engine_ab.py: arm parsing, the summary worked out by hand, and the script end to end on a tiny
start model (two arms, one seed, real rows off)."""

from __future__ import annotations

import argparse
import json
import sys

import pytest

from conftest import REPO, export_tiny_model

sys.path.insert(0, str(REPO / "benchmarks"))
import engine_ab  # noqa: E402


def test_an_arm_is_a_name_with_engine_settings():
    parser = argparse.ArgumentParser()
    assert engine_ab.parse_arm("camera:camera_noise=0.5,degrade_level=none", parser) == (
        "camera", {"camera_noise": 0.5, "degrade_level": "none"})
    assert engine_ab.parse_arm("plain", parser) == ("plain", {})
    for bad in ("start", ":camera_noise=1", "x:camera_noise"):
        with pytest.raises(SystemExit):
            engine_ab.parse_arm(bad, parser)


def test_the_summary_is_the_mean_and_spread_over_seeds():
    rows = [{"arm": "a", "seed": s, "scores": {"fresh": {"dice_mean": d}, "real_image_auc": r}}
            for s, d, r in ((0, 0.5, 0.5), (1, 0.7, 0.7))] + [{"arm": "b", "seed": 0, "scores": {}}]
    lines = engine_ab.summarise(rows, ["fresh"])
    assert lines[0].startswith("arm | seeds | fresh Dice | fresh image AUC")
    cells = lines[1].split(" | ")
    # mean 0.6; sample std of (0.5, 0.7) = sqrt(2 * 0.1^2 / 1) = 0.141
    assert cells[:3] == ["a", "2", "0.600 +- 0.141"] and "0.600 +- 0.141" in cells[3:]
    assert lines[2] == "b | 1 | " + " | ".join(["n/a"] * (len(cells) - 2))


@pytest.mark.slow
def test_the_ab_runs_end_to_end_and_resumes(tmp_path, capsys):
    from inpaintseg.synth import generate_demo_data

    start = export_tiny_model(tmp_path / "start", mode="crop", size=64)
    test = tmp_path / "test"
    generate_demo_data(test, n_train=1, n_test=6, size=64, seed=9, families="classical", log=None)
    argv = ["--out", str(tmp_path / "ab"), "--init-from", str(start), "--seeds", "0", "--n-train", "12",
            "--epochs", "1", "--size", "64", "--workers", "1", "--test", f"fresh={test / 'test'}",
            "--arm", "plain:families=classical", "--arm", "noisy:families=classical,camera_noise=1",
            "--no-realworld", "--no-realinpaint"]
    assert engine_ab.main(argv) == 0
    rows = [json.loads(line) for line in (tmp_path / "ab" / "results.jsonl").read_text().splitlines()]
    assert [r["arm"] for r in rows] == ["start", "plain", "noisy"]
    for row in rows:
        assert 0.0 <= row["scores"]["fresh"]["dice_mean"] <= 1.0 and row["scores"]["fresh"]["all_full"] > 0
    assert rows[0]["postprocess"]["tta"] == "none" and rows[1]["epochs"] == 1
    meta = json.loads((tmp_path / "ab" / "noisy-seed0" / "data" / "train" / "meta.json").read_text())
    assert meta["camera_noise"] == 1
    assert "noisy | 1 |" in capsys.readouterr().out
    assert engine_ab.main(argv) == 0  # a re-run skips the runs already recorded
    assert len((tmp_path / "ab" / "results.jsonl").read_text().splitlines()) == 3
