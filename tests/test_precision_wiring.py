"""`--precision auto|32|bf16-mixed` through train, predict, calibration, the API and the budget planner.

The choice logic itself (margins, cache, CPU detection) is in test_precision.py. Here a fake probe
(`inpaintseg.precision.probe_rates` monkeypatched, on a CPU that claims AMX, with a fresh cache) makes
`auto` prefer one side, and the tests check that every entry point runs and records that side.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from conftest import TINY_ARCH, export_tiny_model

import inpaintseg
from inpaintseg import cli, config as config_mod, fileio, precision
from inpaintseg.config import TrainConfig, load_config
from inpaintseg.errors import ConfigError
from inpaintseg.inference import predictor as predictor_mod
from inpaintseg.precision import CpuInfo, PrecisionChoice
from inpaintseg.cache import CACHE_ENV
from inpaintseg.run_dir import PRECISION_FILE, load_precision_record, resume_config

AMX_CPU = CpuInfo("GenuineIntel", "Fake Xeon with AMX", frozenset({"avx512f", "avx512_bf16", "amx_bf16"}))


class FakeProbe:
    """A probe that says `prefer` runs at 20 img/s and the other precision at 10; records (mode, batch, size)."""

    def __init__(self, prefer: str) -> None:
        self.prefer, self.calls = prefer, []

    def __call__(self, model, batch_size, size, device, mode, channels_last):
        self.calls.append((mode, batch_size, size))
        return {p: (20.0 if p == self.prefer else 10.0) for p in precision.PROBED}


@pytest.fixture
def fake_probe(monkeypatch, tmp_path):
    """fake_probe("bf16-mixed") -> the FakeProbe now answering every `auto` (fresh cache, AMX CPU)."""

    def install(prefer: str) -> FakeProbe:
        probe = FakeProbe(prefer)
        monkeypatch.setattr(precision, "probe_rates", probe)
        monkeypatch.setattr(precision, "cpu_info", lambda *a, **k: AMX_CPU)
        cache = tmp_path / f"cache-{prefer}-{len(list(tmp_path.glob('cache-*')))}"
        monkeypatch.setenv(CACHE_ENV, str(cache))
        return probe

    return install


@pytest.fixture
def autocast_spy(monkeypatch):
    """The precisions the Predictor's model calls ran under."""
    seen: list[str] = []
    original = predictor_mod.autocast_context

    def spy(device, name):
        seen.append(name)
        return original(device, name)

    monkeypatch.setattr(predictor_mod, "autocast_context", spy)
    return seen


def tiny_train_config(data: Path, out: Path, **changes) -> TrainConfig:
    values = dict(data=str(data), out=str(out), epochs=1, batch_size=2, base_channels=4, depth=2, img_size=32,
                  num_workers=0, progress_bar=False, calibrate=False, accelerator="cpu")
    return TrainConfig.from_dict({**values, **changes})


def confident_model(folder: Path) -> Path:
    """The tiny untrained model with its head scaled x6, so probabilities spread over (0, 1) instead of
    clustering at 0.5 (a mask comparison then means something)."""
    from inpaintseg.data.input_spec import input_section
    from inpaintseg.model import build_model
    from inpaintseg.model.io import save_model_dir

    torch.manual_seed(0)
    network = build_model(TINY_ARCH)
    with torch.no_grad():
        network.head.weight.mul_(6.0)
        network.head.bias.fill_(0.0)
    config = {"architecture": TINY_ARCH, "input": input_section("resize", 32),
              "postprocess": {"threshold": 0.5, "tta": "none", "crf": "off", "calibration": {}}}
    return save_model_dir(folder, network, config)


# ------------------------------------------------------------------------------------------ config
def test_config_uses_the_one_precision_list_and_defaults_to_auto():
    assert config_mod.PRECISIONS is precision.PRECISIONS
    assert TrainConfig().precision == "auto"
    assert load_config(overrides={"precision": 32}).precision == "32"  # YAML `precision: 32` is an int


def test_resume_with_precision_auto_keeps_the_runs_resolved_value(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    config_mod.save_config(TrainConfig(precision="bf16-mixed", out=str(run)), run / "config.yaml")
    assert resume_config(run, {"precision": "auto"}).precision == "bf16-mixed"
    with pytest.raises(ConfigError, match="precision"):
        resume_config(run, {"precision": "32"})


def test_precision_choice_round_trips_and_rejects_bad_records():
    choice = PrecisionChoice("bf16-mixed", {"32": 10.0, "bf16-mixed": 20.0}, "bf16 2.00x fp32", True, "auto")
    assert PrecisionChoice.from_dict(choice.as_dict()) == choice
    assert PrecisionChoice.from_dict({"precision": "32", "rates": {"32": -1, "bf16-mixed": 1}}).rates == {}
    with pytest.raises(ConfigError, match="precision.json: precision"):
        PrecisionChoice.from_dict({"precision": "auto"}, source="precision.json")


# ------------------------------------------------------------------------------------------ training
def test_train_honours_a_forced_precision_and_records_it(make_dataset, tmp_path, fake_probe):
    probe = fake_probe("32")  # would pick fp32 for predict's calibration; training is forced to bf16
    result = inpaintseg.train(tiny_train_config(make_dataset(n_train=6), tmp_path / "run", precision="bf16-mixed"))
    run = result.run_dir
    assert load_config(run / "config.yaml").precision == "bf16-mixed"
    assert load_precision_record(run / PRECISION_FILE) == {"precision": "bf16-mixed", "requested": "bf16-mixed",
                                                           "rates": {}, "reason": "requested", "cached": False}
    training = json.loads((run / "model" / "config.json").read_text())["training"]
    assert training["precision"] == "bf16-mixed" and training["precision_choice"]["requested"] == "bf16-mixed"
    assert result.postprocess["calibration"]["precision"] == "32"  # predict's auto on this (fake) machine
    assert [mode for mode, _, _ in probe.calls] == ["predict"]  # the forced training precision is not probed
    assert "training precision bf16-mixed (as requested)" in result.summary()


@pytest.mark.slow
def test_train_auto_probes_before_fit_records_the_choice_and_resume_keeps_it(make_dataset, tmp_path, fake_probe):
    probe = fake_probe("bf16-mixed")
    data = make_dataset(n_train=6)
    result = inpaintseg.train(tiny_train_config(data, tmp_path / "run", precision="auto"))
    run = result.run_dir
    # train mode at the run's batch and size; predict mode at predict's default batch for calibration
    assert probe.calls == [("train", 2, 32), ("predict", predictor_mod.DEFAULT_BATCH_SIZE, 32)]
    assert load_config(run / "config.yaml").precision == "bf16-mixed"  # resolved, never "auto"
    record = load_precision_record(run / PRECISION_FILE)
    assert record["requested"] == "auto" and record["rates"] == {"32": 10.0, "bf16-mixed": 20.0}
    model_config = json.loads((run / "model" / "config.json").read_text())
    assert model_config["training"]["precision"] == "bf16-mixed"
    assert model_config["training"]["precision_choice"] == record
    assert model_config["postprocess"]["calibration"]["precision"] == "bf16-mixed"
    # This machine now measures fp32 faster (fresh cache): resuming keeps the run's bf16.
    fake_probe("32")
    resumed = inpaintseg.train(resume_config(run, {"epochs": 1}), resume=True)
    assert load_config(run / "config.yaml").precision == "bf16-mixed"
    assert load_precision_record(run / PRECISION_FILE) == record
    assert resumed.precision_choice["precision"] == "bf16-mixed"


def test_ddp_workers_take_rank_zeros_precision_without_probing(monkeypatch, tmp_path):
    from inpaintseg.training.hardware import resolve_hardware
    from inpaintseg.training.precision_choice import PRECISION_ENV, resolve_training_precision

    config = TrainConfig(accelerator="cpu", precision="auto")
    monkeypatch.setenv(PRECISION_ENV, "bf16-mixed")
    monkeypatch.setenv("LOCAL_RANK", "1")
    monkeypatch.setattr(precision, "probe_rates", lambda *a, **k: pytest.fail("a DDP worker probed"))
    choice = resolve_training_precision(config, resolve_hardware(config), torch.nn.Conv2d(3, 1, 1), tmp_path)
    assert choice.precision == "bf16-mixed"


# ------------------------------------------------------------------------------------------ predict
@pytest.fixture
def images(make_dataset):
    return make_dataset(n_train=0, n_test=3, size=32) / "test" / "images"


@pytest.mark.parametrize("prefer", ["32", "bf16-mixed"])
def test_predict_auto_follows_the_probe_end_to_end(prefer, images, tmp_path, capsys, fake_probe, autocast_spy):
    probe = fake_probe(prefer)
    model = export_tiny_model(tmp_path / "model")
    code = cli.main(["predict", "--model", str(model), "--images", str(images), "--out", str(tmp_path / "s.csv"),
                     "--device", "cpu", "--batch-size", "4"])
    err = capsys.readouterr().err
    assert code == 0, err
    other = "fp32" if prefer == "bf16-mixed" else "bf16"
    assert f"predict: precision {prefer} (auto: 20.0 img/s vs 10.0 img/s {other})" in err
    assert probe.calls == [("predict", 4, 32)]
    assert autocast_spy and set(autocast_spy) == {prefer}  # every model call ran at the chosen precision


def test_forced_precision_is_not_probed_and_reaches_the_model(images, tmp_path, capsys, fake_probe, autocast_spy):
    probe = fake_probe("32")
    model = export_tiny_model(tmp_path / "model")
    assert cli.main(["predict", "--model", str(model), "--images", str(images), "--out", str(tmp_path / "s.csv"),
                     "--precision", "bf16-mixed"]) == 0
    assert "predict: precision bf16-mixed (as requested)" in capsys.readouterr().err
    assert probe.calls == [] and set(autocast_spy) == {"bf16-mixed"}


def test_bf16_predict_gives_the_fp32_masks_within_tolerance(images, tmp_path, capsys):
    model = confident_model(tmp_path / "model")
    outputs = {}
    for name in ("32", "bf16-mixed"):
        out = tmp_path / name
        code = cli.main(["predict", "--quiet", "--model", str(model), "--images", str(images),
                         "--out", str(out / "s.csv"), "--masks-out", str(out / "masks"),
                         "--probs-out", str(out / "probs"), "--precision", name, "--threshold", "0.5"])
        assert code == 0, capsys.readouterr().err
        outputs[name] = {p.stem: (fileio.read_mask(out / "masks" / p.name),
                                  cv2.imread(str(out / "probs" / p.name), cv2.IMREAD_UNCHANGED).astype(int))
                         for p in sorted((out / "masks").iterdir())}
    assert sorted(outputs["32"]) == sorted(outputs["bf16-mixed"]) and len(outputs["32"]) == 3
    tolerance = 8  # of 255: bf16 keeps 8 mantissa bits; measured max diff of sigmoid outputs ~0.02
    for stem, (mask32, probs32) in outputs["32"].items():
        mask16, probs16 = outputs["bf16-mixed"][stem]
        assert np.abs(probs32 - probs16).max() <= tolerance, stem
        far = np.abs(probs32 - 127.5) > tolerance  # pixels whose fp32 probability is not at the threshold
        assert far.mean() > 0.5  # the comparison covers most pixels
        np.testing.assert_array_equal(mask32[far], mask16[far])


def test_an_old_model_folder_without_any_precision_key_predicts(images, tmp_path, capsys):
    folder = export_tiny_model(tmp_path / "model")
    config = json.loads((folder / "config.json").read_text())
    assert "precision" not in json.dumps(config)
    model = inpaintseg.load_model(folder, device="cpu")
    assert model.calibration_precision is None and model.requested_precision == "auto"
    assert model.predict(fileio.read_image(next(images.iterdir()))).mask.shape == (32, 32)
    assert model.precision in ("32", "bf16-mixed")
    assert cli.main(["predict", "--model", str(folder), "--images", str(images),
                     "--out", str(tmp_path / "s.csv")]) == 0
    assert "calibrated at precision" not in capsys.readouterr().err


def test_predict_notes_a_calibration_at_another_precision(images, tmp_path, capsys):
    folder = export_tiny_model(tmp_path / "model", postprocess={
        "threshold": 0.5, "tta": "none", "crf": "off", "calibration": {"precision": "bf16-mixed"}})
    assert cli.main(["predict", "--model", str(folder), "--images", str(images), "--out", str(tmp_path / "s.csv"),
                     "--precision", "32"]) == 0
    assert "calibrated at precision bf16-mixed" in capsys.readouterr().err


def test_bad_precisions_are_refused_clearly(tmp_path, images, capsys):
    folder = export_tiny_model(tmp_path / "model")
    with pytest.raises(ConfigError, match="expected one of auto, 32"):
        inpaintseg.load_model(folder, device="cpu", precision="fp8")
    with pytest.raises(ConfigError, match="needs a CUDA GPU"):
        inpaintseg.load_model(folder, device="cpu", precision="16-mixed")
    network = inpaintseg.load_model(folder, device="cpu").network
    with pytest.raises(ConfigError, match="expected one of 32, bf16-mixed, 16-mixed"):
        predictor_mod.Predictor(network, {"input": json.loads((folder / "config.json").read_text())["input"]},
                                precision="auto")
    with pytest.raises(SystemExit):
        cli.main(["predict", "--model", str(folder), "--images", str(images), "--precision", "fast"])
    assert "invalid choice: 'fast'" in capsys.readouterr().err


# ------------------------------------------------------------------------------------------ budget planner
@pytest.mark.slow
def test_plan_training_measures_at_the_chosen_precision_and_fits_the_budget(make_dataset, tmp_path, fake_probe,
                                                                            monkeypatch):
    from inpaintseg.training import budget

    fake_probe("bf16-mixed")
    measured = []
    real = budget.measure_train_rate

    def spy(module, loader, precision_name, *args, **kwargs):
        measured.append(precision_name)
        return real(module, loader, precision_name, *args, **kwargs)

    monkeypatch.setattr(budget, "measure_train_rate", spy)
    config = tiny_train_config(make_dataset(n_train=10), tmp_path / "run", precision="auto", calibrate=True)
    plan = budget.plan_training(config, budget_seconds=600.0, warmup=1, steps=2)
    assert measured == ["bf16-mixed"] and plan.config.precision == "bf16-mixed"
    assert plan.precision_choice.rates == {"32": 10.0, "bf16-mixed": 20.0}
    assert (plan.n_train, plan.n_val) == (8, 2)  # the split is stratified on empty / non-empty masks
    # epochs = floor((budget - reserve) / seconds per epoch), the reserve holding start-up and calibration
    per_epoch = 8 / plan.train_rate + 2 / plan.eval_rate + budget.EPOCH_OVERHEAD_SECONDS
    assert plan.epochs.seconds_per_epoch == pytest.approx(per_epoch)
    assert plan.config.epochs == max(1, int((600.0 - plan.reserve_seconds) // per_epoch))
    assert plan.reserve_seconds == pytest.approx(budget.STARTUP_SECONDS + plan.calibration_seconds)
    assert plan.calibration_seconds > 0
    assert plan.planned_seconds <= 600.0 or plan.config.epochs == 1
    # A forced precision is planned as is, without a probe.
    forced = budget.plan_training(dataclasses.replace(config, precision="32"), 600.0, warmup=0, steps=1)
    assert forced.config.precision == "32" and forced.precision_choice.requested == "32"
    assert measured[-1] == "32"


def test_calibration_estimate_counts_every_tta_view(tmp_path):
    from inpaintseg.inference.calibration import estimate_seconds

    rng = np.random.default_rng(0)
    samples = [(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8), (rng.random((32, 32)) > 0.5).astype(np.uint8))
               for _ in range(10)]
    # 10 images x 13 views (none 1 + flip 4 + d4 8) at 10 img/s = 13 s of forward passes, + Dice curves
    seconds = estimate_seconds(samples, forward_rate=10.0, crf_variants=())
    assert 13.0 <= seconds < 13.0 + 3 * 10 * 0.5
    assert estimate_seconds(samples, 10.0, tta_modes=("none",), crf_variants=(), max_images=4) >= 0.4
    assert estimate_seconds([], 10.0) == 0.0
