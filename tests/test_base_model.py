"""The shipped `base` detector (issue 22): name resolution, packaging, cards, the not-useful line, the recipe."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

from conftest import REPO, export_tiny_model
from inpaintseg.cli import main
from inpaintseg.errors import ModelLoadError
from inpaintseg.model import shipped


def test_base_resolves_to_the_package_folder():
    folder = shipped.resolve_model_dir("base")
    assert folder == shipped.SHIPPED_ROOT / "base"
    assert (folder / "weights.safetensors").is_file() and (folder / "config.json").is_file()


def test_other_values_are_paths_and_a_local_base_folder_is_reached_with_dot_slash(tmp_path):
    assert shipped.resolve_model_dir(tmp_path / "m") == tmp_path / "m"
    assert shipped.resolve_model_dir("./base") == Path("base")  # not the shipped name
    assert shipped.resolve_model_dir(Path("base")) == Path("base")  # a Path is always a path


def test_a_missing_shipped_model_names_the_fix(tmp_path, monkeypatch):
    monkeypatch.setattr(shipped, "SHIPPED_ROOT", tmp_path)
    with pytest.raises(ModelLoadError, match="not in this installation.*Reinstall"):
        shipped.resolve_model_dir("base")


def test_load_model_defaults_to_base_and_predicts():
    import inpaintseg

    model = inpaintseg.load_model(device="cpu")
    assert model.source == shipped.SHIPPED_ROOT / "base"
    rng = np.random.default_rng(0)
    pred = model.predict(rng.integers(0, 256, (64, 80, 3), dtype=np.uint8))
    assert pred.mask.shape == (64, 80) and 0.0 <= pred.score <= 1.0


def test_base_config_records_how_it_was_made():
    config = json.loads((shipped.SHIPPED_ROOT / "base" / "config.json").read_text())
    recipe = config["recipe"]
    assert recipe["engine"]["arguments"]["n_train"] > 0 and recipe["chunks"]
    for chunk in recipe["chunks"]:
        assert {"optimizer_steps", "images_seen", "machine", "train_seconds", "command"} <= set(chunk)
    assert recipe["optimizer_steps_total"] == sum(c["optimizer_steps"] for c in recipe["chunks"])


def test_the_shipped_config_names_no_path_of_the_training_machine():
    def strings(value):
        if isinstance(value, dict):
            for item in value.values():
                yield from strings(item)
        elif isinstance(value, list):
            for item in value:
                yield from strings(item)
        elif isinstance(value, str):
            yield value

    config = json.loads((shipped.SHIPPED_ROOT / "base" / "config.json").read_text())
    debian_photos = "/usr/share/backgrounds/"  # a Debian package's files: the same path on every machine
    # every absolute path anywhere in a string (a value, or a word of a recorded command), wherever it was made
    paths = [m for s in strings(config) for m in re.findall(r"(?:^|[\s=:'\"])(/[^\s'\"]+)", s)
             if not m.startswith(debian_photos)]
    assert paths == []


def test_model_info_base_prints_the_card(capsys):
    assert main(["model-info", "base"]) == 0
    out = capsys.readouterr().out
    assert "weights" in out and "optimiser steps" in out and "trained on:" in out
    assert "image gate " in out


def test_an_old_model_folder_without_card_sections_still_loads(tmp_path, capsys):
    import inpaintseg

    folder = export_tiny_model(tmp_path / "old")
    assert "recipe" not in json.loads((folder / "config.json").read_text())
    inpaintseg.load_model(folder, device="cpu")
    assert main(["model-info", str(folder)]) == 0
    assert "no model card" in capsys.readouterr().out


def test_not_useful_message_only_when_a_trivial_answer_wins():
    from inpaintseg.inference.verdicts import not_useful_message

    weak = {"postprocess": {"verdicts": {"model_dice": 0.2, "baselines": {"all-empty": 0.1, "all-full": 0.25}}}}
    message = not_useful_message(weak)
    assert "not useful yet" in message and "'all-full' answer (0.250)" in message and "'base'" in message
    good = {"postprocess": {"verdicts": {"model_dice": 0.3, "baselines": {"all-empty": 0.1, "all-full": 0.25}}}}
    assert not_useful_message(good) is None and not_useful_message({}) is None
    tuned = {**weak, "training": {"init_from": "/models/base"}}
    message = not_useful_message(tuned)
    assert "already fine-tuned from '/models/base'" in message and "init_from 'base'" not in message


@pytest.mark.slow
def test_the_wheel_carries_the_base_weights(tmp_path):
    out = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                          "-w", str(tmp_path), str(REPO)], capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    wheel = next(tmp_path.glob("inpaintseg-*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    assert {"inpaintseg/weights/base/weights.safetensors", "inpaintseg/weights/base/config.json"} <= names


@pytest.mark.slow
def test_the_recipe_runs_end_to_end_at_tiny_settings(tmp_path):
    # The same code path as the shipped weights' recipe, tiny data and network; it never installs.
    work = tmp_path / "work"
    out = subprocess.run([sys.executable, str(REPO / "recipes" / "base.py"), "--work", str(work), "--tiny",
                          "--workers", "1", "--data-seed", "7", "--exclude-families", "selfblend",
                          "--camera-noise", "0.5", "--lr", "0.003"],
                         capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, out.stderr[-3000:]
    config = json.loads((work / "run" / "model" / "config.json").read_text())
    recipe = config["recipe"]
    assert recipe["engine"]["arguments"]["generators"] == "tiny" and recipe["data_seed"] == 7
    assert recipe["engine"]["arguments"]["seed"] == 7 and recipe["chunks"][0]["data"]["seed"] == 7
    assert recipe["chunks"][0]["optimizer_steps"] > 0 and recipe["chunks"][0]["chunk"] == 1
    assert recipe["chunks"][0]["lr"] == recipe["train_config"]["lr"] == 0.003  # --lr reaches the training
    # a variant (--exclude-families): its training data lacks the family, its fresh test set has every family
    assert recipe["chunks"][0]["data"]["exclude_families"] == "selfblend"
    train_families = {i["family"] for i in json.loads((work / "data" / "train" / "meta.json").read_text())["images"].values()}
    fresh_families = {i["family"] for i in json.loads((work / "fresh" / "test" / "meta.json").read_text())["images"].values()}
    assert "selfblend" not in train_families and "selfblend" in fresh_families
    # --camera-noise reaches the training data only
    assert recipe["chunks"][0]["data"]["camera_noise"] == 0.5
    train_meta = json.loads((work / "data" / "train" / "meta.json").read_text())
    fresh_meta = json.loads((work / "fresh" / "test" / "meta.json").read_text())
    assert any("camera_noise" in i for i in train_meta["images"].values())
    assert not any("camera_noise" in i for i in fresh_meta["images"].values())
    assert 0.0 <= recipe["fresh_test"]["dice_mean"] <= 1.0 and "all-full" in recipe["fresh_test"]["baselines"]
    assert config["postprocess"]["verdicts"]["baselines"]["all-full"] >= 0.0
    # the image gate is chosen on the held-out set (24 images at tiny settings), next to the verdict levels
    gate = config["postprocess"]["calibration"]["gate"]
    assert gate["n_images"] == 24 and gate["source"].startswith("24 held-out engine images")
    assert config["postprocess"]["gate"] == gate["gate"] and config["postprocess"]["threshold"] == gate["threshold"]
    assert config["postprocess"]["calibration"]["table"]  # the validation calibration's record is kept
    # every TTA row without CRF carries the gate measured for it on the same held-out images
    rows = [r for r in config["postprocess"]["calibration"]["table"] if r["crf"] == "off"]
    assert rows and all({"gate", "gate_threshold", "false_alarm_gate"} <= set(r) for r in rows)
    assert "24 held-out engine images" in config["postprocess"]["calibration"]["table_gates"]
    assert "gates by TTA: tta " in out.stderr
    assert "image gate:" in out.stderr and "fresh test Dice" in out.stderr
    # Paths of the machine that trained it do not travel with the weights.
    assert str(work) not in (work / "run" / "model" / "config.json").read_text()
    assert recipe["chunks"][0]["command"].startswith("python recipes/base.py --work WORK ")


def test_a_stored_crf_is_skipped_with_a_note_when_pydensecrf_is_missing(monkeypatch):
    from inpaintseg.inference import crf as crf_mod
    from inpaintseg.inference.postprocess import resolve_postprocess

    config = {"postprocess": {"threshold": 0.1, "tta": "d4", "crf": "gaussian", "calibration": {"table": [
        {"tta": "d4", "crf": "off", "threshold": 0.21}, {"tta": "d4", "crf": "gaussian", "threshold": 0.1}]}}}
    monkeypatch.setattr(crf_mod, "crf_available", lambda: False)
    post = resolve_postprocess(config)
    assert (post.crf, post.tta, post.threshold) == ("off", "d4", 0.21)
    assert "pydensecrf2 not installed" in post.sources["crf"]
    assert resolve_postprocess(config, threshold=0.4).threshold == 0.4  # an explicit threshold wins
    monkeypatch.setattr(crf_mod, "crf_available", lambda: True)
    assert resolve_postprocess(config).crf == "gaussian" and resolve_postprocess(config).threshold == 0.1


@pytest.mark.slow
def test_report_and_evaluate_accept_base(tmp_path, make_dataset, capsys):
    root = make_dataset(n_train=2, n_test=3, size=48)
    images, truth = root / "test" / "images", root / "test" / "masks"
    assert main(["report", "base", "--images", str(images), "--truth", str(truth), "--out", str(tmp_path / "r"),
                 "--device", "cpu"]) == 0
    html = (tmp_path / "r" / "report.html").read_text()
    assert "model &#x27;base&#x27;" in html
    assert main(["report", "base", "--images", str(images)]) == 2
    assert "shipped detector, not a training run" in capsys.readouterr().err
    sub = tmp_path / "sub.csv"
    assert main(["predict", "--model", "base", "--images", str(images), "--submission", str(sub),
                 "--device", "cpu"]) == 0
    assert main(["evaluate", "--truth", str(truth), "--submission", str(sub), "--model", "base"]) == 0


def test_the_service_card_carries_the_base_models_measured_rows():
    import inpaintseg
    from inpaintseg.service.results import model_card

    model = inpaintseg.load_model(device="cpu")
    rows = model_card(model, model.postprocess())
    card = [text for label, text in rows if label == "Model card"]
    assert any(text.startswith("training:") for text in card)
    assert any("fresh engine test set" in text for text in card)
    assert any("held-out images" in text for label, text in rows if label == "Verdict levels")


def test_export_accepts_base(tmp_path, monkeypatch):
    # Regression: export_onnx turned its argument into a Path before resolving it, so `export --model base`
    # said "base: model folder not found". (A copy of the package folder: the test never writes into it.)
    import shutil

    pytest.importorskip("onnxruntime")
    shutil.copytree(shipped.SHIPPED_ROOT / "base", tmp_path / "weights" / "base")
    monkeypatch.setattr(shipped, "SHIPPED_ROOT", tmp_path / "weights")
    assert main(["export", "--model", "base", "--threads", "1"]) == 0
    assert (tmp_path / "weights" / "base" / "model.onnx").is_file()
    assert "onnx" in json.loads((tmp_path / "weights" / "base" / "config.json").read_text())


def test_the_brief_card_drops_chunks_and_per_folder_real_rows():
    from inpaintseg.model.card import card_lines

    config = {"recipe": {"chunks": [{"chunk": 1, "epochs": 1, "optimizer_steps": 2, "train_seconds": 60}],
                         "optimizer_steps_total": 2, "images_seen_total": 16},
              "card": {"real_rows": [{"name": "realinpaint/crfill", "n": 3, "dice_mean": 0.1},
                                     {"name": "realinpaint/pooled (folders with originals)", "n": 3, "dice_mean": 0.1},
                                     {"name": "realworld/casia2_gt", "n": 2, "dice_mean": 0.2}]}}
    full, brief = card_lines(config), card_lines(config, brief=True)
    assert any(line.startswith("  chunk 1") for line in full) and any("crfill" in line for line in full)
    assert not any(line.startswith("  chunk") or "crfill" in line for line in brief)
    assert any("pooled" in line for line in brief) and any("casia2_gt" in line for line in brief)


def _recipe_module():
    import importlib.util

    spec = importlib.util.spec_from_file_location("base_recipe", REPO / "recipes" / "base.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_recipe_takes_only_the_named_photographs_of_a_mixed_package_folder(tmp_path, monkeypatch):
    recipe = _recipe_module()
    whole, mixed = tmp_path / "whole", tmp_path / "mixed"
    whole.mkdir(), mixed.mkdir()
    (whole / "a.jpg").write_bytes(b"a")
    (mixed / "photo.jpg").write_bytes(b"p")
    (mixed / "render.png").write_bytes(b"r")
    monkeypatch.setattr(recipe, "DEBIAN_PHOTOS", (
        ("pkg-whole", whole, None), ("pkg-mixed", mixed, ("photo.jpg", "absent.jpg")),
        ("pkg-missing", tmp_path / "nowhere", ("x.jpg",))))
    work = tmp_path / "work"
    folders = recipe.debian_photos(work)
    assert folders == [whole, work / "photos" / "pkg-mixed"]                     # a missing package is skipped
    assert [p.name for p in folders[1].iterdir()] == ["photo.jpg"]              # the render is left out
    assert folders[1].joinpath("photo.jpg").resolve() == mixed / "photo.jpg"    # linked, not copied
    assert recipe.debian_photos(work) == folders                                # a second run starts clean
    sources = recipe.photo_sources(folders)
    assert [s.get("files") for s in sources] == [None, ["a.jpg"], ["photo.jpg"]]
    assert recipe._photo_args(folders)["photos_dir"] == [str(whole), str(work / "photos" / "pkg-mixed")]
    assert recipe._photo_args([whole]) == {"photos_dir": str(whole), "packaged_photos": True}
    assert recipe._photo_args([]) == {"photos_dir": None, "packaged_photos": None}


def test_a_variant_without_a_family_leaves_it_out_of_the_training_data_only(tmp_path):
    recipe = _recipe_module()
    photos = [tmp_path / "p"]
    plain = recipe.engine_settings(recipe.parse_args(["--work", str(tmp_path)]), photos, [])
    variant = recipe.engine_settings(
        recipe.parse_args(["--work", str(tmp_path), "--exclude-families", "learned"]), photos, [])
    assert "exclude_families" not in plain[0]          # the data stamps of the chunks before the option match
    assert variant[0] == {**plain[0], "exclude_families": "learned"}
    assert variant[1:] == plain[1:]                    # fresh test and held-out sets keep every family
    assert plain[1]["photos_dir"] is None and plain[0]["photos_dir"] == str(photos[0])
    noisy = recipe.engine_settings(recipe.parse_args(["--work", str(tmp_path), "--camera-noise", "0.5",
                                                      "--fill-noise", "0.25"]), photos, [])
    assert noisy[0] == {**plain[0], "camera_noise": 0.5, "fill_noise": 0.25} and noisy[1:] == plain[1:]


@pytest.mark.parametrize("flags, message", [
    (["--exclude-families", "nosuch"], "--exclude-families: unknown family(ies) nosuch"),
    (["--exclude-families", "learned", "--install"], "never the shipped base"),
    (["--camera-noise", "1.5"], "--camera-noise must lie in [0, 1], got 1.5"),
    (["--fill-noise", "-1"], "--fill-noise must lie in [0, 2.5], got -1.0"),
    (["--lr", "0"], "--lr must lie in (0, 10], got 0.0"),
])
def test_the_recipe_refuses_a_bad_variant_with_the_flag_named(tmp_path, capsys, flags, message):
    recipe = _recipe_module()
    with pytest.raises(SystemExit) as exc:
        recipe.parse_args(["--work", str(tmp_path), *flags])
    assert exc.value.code == 2 and message in capsys.readouterr().err


@pytest.mark.parametrize("new, old, installed", [
    ((0.56, 0.10), None, True),                 # nothing installed yet
    ((0.566, 0.167), (0.553, 0.033), False),    # chunk 7: more Dice, 5 of 30 untouched flagged: not installed
    ((0.56, 0.10), (0.55, 0.03), True),         # false alarms at the target
    ((0.56, 0.20), (0.55, 0.30), True),         # above the target but fewer than the installed model's
    ((0.55, 0.00), (0.55, 0.10), False),        # Dice not higher
])
def test_a_chunk_is_installed_only_when_its_card_improves(new, old, installed):
    recipe = _recipe_module()

    def scores(pair):
        return None if pair is None else {"dice_mean": pair[0], "untouched": {"false_alarm_rate": pair[1]}}
    decision, why = recipe.install_decision(scores(new), scores(old))
    assert decision is installed and (old is None or "untouched flagged" in why)


def test_the_committed_variant_loads_and_its_record_leaves_the_family_out():
    # recipes/variants/no-autoencoder is the start of the held-out-family rows of docs/model-card.md
    from inpaintseg import load_model

    folder = REPO / "recipes" / "variants" / "no-autoencoder"
    chunk = json.loads((folder / "config.json").read_text())["recipe"]["chunks"][0]
    assert chunk["data"]["exclude_families"] == "autoencoder" and chunk["init_from"] is None
    prediction = load_model(folder, device="cpu", precision="32").predict(np.zeros((32, 32, 3), np.uint8), tta="none")
    assert prediction.probability.shape == (32, 32) and np.isfinite(prediction.probability).all()
