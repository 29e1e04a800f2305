"""Precision vocabulary, autocast, CPU detection and the `auto` choice (probe, margin, cache)."""

from __future__ import annotations

import json

import pytest
import torch

from inpaintseg.errors import ConfigError
from inpaintseg.model import AttentionUNet
from inpaintseg.precision_probe import CACHE_VERSION
from inpaintseg.precision import (BF16_MARGIN, CACHE_FILE, PRECISIONS, CpuInfo, PrecisionChoice, autocast_context,
                                  cache_dir, check_precision, choose_precision, cpu_info, decide,
                                  forward_probs, lightning_precision, probe_rates)

BF16_CPU = CpuInfo("GenuineIntel", "Test Xeon", frozenset({"avx512f", "avx512_bf16", "amx_bf16"}))
AVX2_CPU = CpuInfo("AuthenticAMD", "Test Ryzen", frozenset({"avx2", "fma"}))


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("INPAINTSEG_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache"


class FakeProbe:
    """Returns fixed rates and counts its calls."""

    def __init__(self, fp32: float, bf16: float):
        self.rates, self.calls = {"32": fp32, "bf16-mixed": bf16}, 0

    def __call__(self, model, batch_size, size, device, mode, channels_last):
        self.calls += 1
        return self.rates


def tiny_model(width: int = 4) -> AttentionUNet:
    torch.manual_seed(0)
    return AttentionUNet(base_channels=width, depth=2)


def test_vocabulary_and_validation():
    assert PRECISIONS == ("auto", "32", "bf16-mixed", "16-mixed")
    assert check_precision(32) == "32" and check_precision("bf16-mixed") == "bf16-mixed"
    with pytest.raises(ConfigError, match=r"precision: expected one of auto, 32, bf16-mixed, 16-mixed, got 'bf16'"):
        check_precision("bf16")
    with pytest.raises(ConfigError, match="expected one of 32, bf16-mixed, 16-mixed"):
        check_precision("auto", allow_auto=False)
    with pytest.raises(ConfigError):
        check_precision(True)
    assert lightning_precision("32") == "32-true" and lightning_precision("bf16-mixed") == "bf16-mixed"


def test_cpu_info_parses_the_first_processor(tmp_path):
    path = tmp_path / "cpuinfo"
    path.write_text("processor\t: 0\nvendor_id\t: GenuineIntel\nmodel name\t: Intel Xeon Platinum\n"
                    "flags\t\t: fpu avx512f avx512_bf16 amx_bf16 amx_tile\n\n"
                    "processor\t: 1\nvendor_id\t: Other\nmodel name\t: Other\nflags\t: fpu\n")
    info = cpu_info(path)
    assert (info.vendor, info.model_name, info.bf16_units) == ("GenuineIntel", "Intel Xeon Platinum", "AMX-BF16")
    assert "avx512_bf16" in info.flags and "amx_tile" in info.flags
    assert CpuInfo("v", "m", frozenset({"avx512f", "avx512_bf16"})).bf16_units == "AVX512-BF16"
    assert CpuInfo("v", "m", frozenset({"avx512f"})).bf16_units == "AVX-512 (bf16 emulated)"
    assert CpuInfo("0x41", "m", frozenset({"asimd", "bf16"})).bf16_units == "Arm BF16"
    assert AVX2_CPU.bf16_units == "none"
    assert cpu_info(tmp_path / "missing").flags == frozenset()  # non-Linux: names from `platform`, no flags


@pytest.mark.parametrize("fp32, bf16, expected", [
    (29.0, 74.1, "bf16-mixed"),   # bf16 2.6x faster
    (30.0, 20.0, "32"),           # bf16 slower (a CPU without bf16 units)
    (30.0, 32.0, "32"),           # bf16 faster, but within the 10% margin: a tie keeps fp32
    (30.0, 30.0 * (1 + BF16_MARGIN), "bf16-mixed"),  # exactly the margin
])
def test_decide(fp32, bf16, expected):
    assert decide({"32": fp32, "bf16-mixed": bf16})[0] == expected


@pytest.mark.parametrize("fp32, bf16, expected", [(29.0, 74.1, "bf16-mixed"), (30.0, 20.0, "32"), (30.0, 32.0, "32")])
def test_auto_on_cpu_follows_the_probe(fp32, bf16, expected):
    probe = FakeProbe(fp32, bf16)
    choice = choose_precision(tiny_model(), 16, 64, "cpu", "train", probe=probe, cpu=BF16_CPU)
    assert (choice.precision, choice.cached, probe.calls) == (expected, False, 1)
    assert choice.rates == {"32": fp32, "bf16-mixed": bf16}


def test_describe_and_record():
    choice = PrecisionChoice("bf16-mixed", {"32": 29.0, "bf16-mixed": 74.1}, "bf16 2.56x fp32", cached=True)
    assert choice.describe() == "precision bf16-mixed (auto: 74.1 img/s vs 29.0 img/s fp32, cached)"
    fp32 = PrecisionChoice("32", {"32": 30.0, "bf16-mixed": 20.0}, "slower")
    assert fp32.describe() == "precision 32 (auto: 30.0 img/s vs 20.0 img/s bf16)"
    assert PrecisionChoice("32", requested="32").describe() == "precision 32 (as requested)"
    record = json.loads(json.dumps(choice.as_dict()))
    assert record == {"precision": "bf16-mixed", "requested": "auto", "rates": {"32": 29.0, "bf16-mixed": 74.1},
                      "reason": "bf16 2.56x fp32", "cached": True}


def test_cache_hit_skips_the_probe_and_other_shapes_miss(private_cache):
    probe = FakeProbe(29.0, 74.1)
    first = choose_precision(tiny_model(), 16, 64, "cpu", "train", probe=probe, cpu=BF16_CPU)
    again = choose_precision(tiny_model(), 16, 64, "cpu", "train", probe=probe, cpu=BF16_CPU)
    assert probe.calls == 1 and not first.cached and again.cached
    assert (again.precision, again.rates) == (first.precision, first.rates)
    assert "cached" in again.describe()
    # The cached rates are decided again with the caller's margin: 74.1 / 29.0 = 2.56x < 3x.
    strict = choose_precision(tiny_model(), 16, 64, "cpu", "train", probe=probe, cpu=BF16_CPU, margin=2.0)
    assert (strict.precision, strict.cached, probe.calls) == ("32", True, 1)
    assert cache_dir() == private_cache and (private_cache / CACHE_FILE).is_file()
    # Each of: another width, batch, size, mode, memory format or CPU is a new key -> probed again.
    choose_precision(tiny_model(width=8), 16, 64, "cpu", "train", probe=probe, cpu=BF16_CPU)
    choose_precision(tiny_model(), 8, 64, "cpu", "train", probe=probe, cpu=BF16_CPU)
    choose_precision(tiny_model(), 16, 128, "cpu", "train", probe=probe, cpu=BF16_CPU)
    choose_precision(tiny_model(), 16, 64, "cpu", "predict", probe=probe, cpu=BF16_CPU)
    choose_precision(tiny_model(), 16, 64, "cpu", "train", probe=probe, cpu=BF16_CPU, channels_last=True)
    choose_precision(tiny_model(), 16, 64, "cpu", "train", probe=probe,
                     cpu=CpuInfo("AuthenticAMD", "Test EPYC", frozenset({"avx512f"})))
    assert probe.calls == 7
    entries = json.loads((private_cache / CACHE_FILE).read_text())["entries"]
    assert len(entries) == 7
    # cache=False neither reads nor writes
    choose_precision(tiny_model(), 16, 64, "cpu", "train", probe=probe, cpu=BF16_CPU, cache=False)
    assert probe.calls == 8


def test_an_instruction_set_limit_is_another_machine_for_the_cache(private_cache, monkeypatch):
    # ONEDNN_MAX_CPU_ISA=AVX2 (a stand-in for a CPU without AVX-512) changes the speed: not a cache hit
    probe = FakeProbe(29.0, 74.1)
    choose_precision(tiny_model(), 16, 64, "cpu", "train", probe=probe, cpu=BF16_CPU)
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX2")
    limited = choose_precision(tiny_model(), 16, 64, "cpu", "train", probe=probe, cpu=BF16_CPU)
    assert probe.calls == 2 and not limited.cached


@pytest.mark.parametrize("content", ["{not json", "[]", '{"version": 99, "entries": {}}',
                                     '{"version": 2, "entries": {"x": 1}}'])
def test_corrupt_cache_is_ignored_and_rewritten(private_cache, content):
    private_cache.mkdir(parents=True)
    (private_cache / CACHE_FILE).write_text(content)
    probe = FakeProbe(30.0, 20.0)
    choice = choose_precision(tiny_model(), 4, 32, "cpu", "predict", probe=probe, cpu=BF16_CPU)
    assert (choice.precision, probe.calls) == ("32", 1)
    data = json.loads((private_cache / CACHE_FILE).read_text())
    assert data["version"] == CACHE_VERSION and len(data["entries"]) == 1
    assert choose_precision(tiny_model(), 4, 32, "cpu", "predict", probe=probe, cpu=BF16_CPU).cached


def test_a_tampered_cache_entry_is_probed_again(private_cache):
    probe = FakeProbe(29.0, 74.1)
    choose_precision(tiny_model(), 4, 32, "cpu", "train", probe=probe, cpu=BF16_CPU)
    path = private_cache / CACHE_FILE
    data = json.loads(path.read_text())
    for entry in data["entries"].values():
        entry["precision"] = "16-mixed"  # not a CPU choice
    path.write_text(json.dumps(data))
    assert not choose_precision(tiny_model(), 4, 32, "cpu", "train", probe=probe, cpu=BF16_CPU).cached
    assert probe.calls == 2
    data = json.loads(path.read_text())
    for entry in data["entries"].values():
        entry["created"] -= 31 * 24 * 3600  # older than a month: probed again
    path.write_text(json.dumps(data))
    assert not choose_precision(tiny_model(), 4, 32, "cpu", "train", probe=probe, cpu=BF16_CPU).cached
    assert probe.calls == 3


def test_unwritable_cache_does_not_fail(tmp_path, monkeypatch):
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    monkeypatch.setenv("INPAINTSEG_CACHE_DIR", str(blocker / "sub"))  # a folder below a file
    choice = choose_precision(tiny_model(), 4, 32, "cpu", "train", probe=FakeProbe(29.0, 74.1), cpu=BF16_CPU)
    assert choice.precision == "bf16-mixed"


def test_no_probe_when_not_needed():
    probe = FakeProbe(29.0, 74.1)
    forced = choose_precision(tiny_model(), 4, 32, "cpu", requested="bf16-mixed", probe=probe, cpu=AVX2_CPU)
    assert (forced.precision, forced.rates) == ("bf16-mixed", {})
    slow_cpu = choose_precision(tiny_model(), 4, 32, "cpu", probe=probe, cpu=AVX2_CPU)
    assert slow_cpu.precision == "32" and "Test Ryzen" in slow_cpu.describe()
    assert probe.calls == 0
    with pytest.raises(ConfigError, match="16-mixed.*needs a CUDA GPU"):
        choose_precision(tiny_model(), 4, 32, "cpu", requested="16-mixed")
    with pytest.raises(ConfigError, match="expected one of"):
        choose_precision(tiny_model(), 4, 32, "cpu", requested="fp8")


def test_auto_on_cuda_keeps_the_default_without_probing():  # torch.device("cuda") needs no GPU
    probe = FakeProbe(29.0, 74.1)
    assert choose_precision(tiny_model(), 4, 32, "cuda", probe=probe, default="16-mixed").precision == "16-mixed"
    assert choose_precision(tiny_model(), 4, 32, "cuda:0", probe=probe).precision == "32"
    assert probe.calls == 0


def test_autocast_context():
    assert torch.get_autocast_dtype("cpu") is not None
    with autocast_context("cpu", "bf16-mixed"):
        assert torch.is_autocast_enabled("cpu")
        assert torch.mm(torch.ones(2, 2), torch.ones(2, 2)).dtype == torch.bfloat16
    with autocast_context(torch.device("cpu"), "32"):
        assert not torch.is_autocast_enabled("cpu")
    with pytest.raises(ConfigError, match="needs a CUDA GPU"):
        autocast_context("cpu", "16-mixed")
    with pytest.raises(ConfigError, match="must be resolved"):
        autocast_context("cpu", "auto")


def test_bf16_forward_matches_fp32_within_tolerance():
    model = tiny_model().eval()
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    fp32 = forward_probs(model, x, "32")
    bf16 = forward_probs(model, x, "bf16-mixed")
    assert fp32.dtype == bf16.dtype == torch.float32 and bf16.shape == (2, 1, 32, 32)
    assert (fp32 - bf16).abs().max().item() < 0.03  # bf16 keeps 8 mantissa bits
    assert not torch.equal(fp32, bf16)  # autocast really ran in bf16
    agree = ((fp32 >= 0.5) == (bf16 >= 0.5)).float().mean().item()
    assert agree > 0.97  # masks equal except for pixels within bf16 rounding of the threshold


@pytest.mark.slow
def test_real_probe_runs_in_both_modes():
    model = tiny_model()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    for mode in ("train", "predict"):
        rates = probe_rates(model, 2, 32, "cpu", mode, channels_last=(mode == "predict"), warmup=1, steps=1)
        assert set(rates) == {"32", "bf16-mixed"} and all(r > 0 for r in rates.values())
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # the probe trains a copy
    choice = choose_precision(model, 2, 32, "cpu", "predict", cpu=BF16_CPU, cache=False)
    assert choice.precision in ("32", "bf16-mixed") and choice.rates["32"] > 0


@pytest.mark.parametrize("max_seconds, calls", [(1000.0, 2 * (2 + 3)), (5.5, 2 * (1 + 2)), (0.0, 2 * (1 + 1))])
def test_probe_keeps_to_its_time_budget(monkeypatch, max_seconds, calls):
    # Fake steps on a fake clock: fp32 1.0 s, bf16 0.5 s per batch of 4, so a round "costs" 1.5 s: 1000 s
    # affords all 2 warm-up + 3 timed rounds; 5.5 s leaves 4 s after the first round, 2 more rounds (timed
    # ones before the second warm-up); 0 s still runs one warm-up and one timed round.
    seen, clock = [], [0.0]

    def fake_step(self):
        seen.append(self.precision)
        clock[0] += 1.0 if self.precision == "32" else 0.5

    monkeypatch.setattr("inpaintseg.precision_probe._Stepper.step", fake_step)
    monkeypatch.setattr("inpaintseg.timing.time.perf_counter", lambda: clock[0])  # the harness's clock
    rates = probe_rates(tiny_model(), 4, 32, "cpu", "train", warmup=2, steps=3, max_seconds=max_seconds)
    assert rates == {"32": 4.0, "bf16-mixed": 8.0} and len(seen) == calls


def test_a_probe_on_a_busy_machine_is_not_cached(private_cache, monkeypatch):
    # Regression: a probe taken while other jobs shared the cores (0.3 img/s either way) was cached for days
    # and chose fp32 for every later run on an AMX machine.
    import inpaintseg.precision as precision_mod

    monkeypatch.setattr(precision_mod, "busy_machine", lambda: "load average 12.0 on 2 CPUs")
    probe = FakeProbe(29.0, 74.1)
    first = choose_precision(tiny_model(), 16, 64, "cpu", "train", probe=probe, cpu=BF16_CPU)
    again = choose_precision(tiny_model(), 16, 64, "cpu", "train", probe=probe, cpu=BF16_CPU)
    assert probe.calls == 2 and not again.cached and not (private_cache / CACHE_FILE).exists()
    assert "not cached (load average 12.0 on 2 CPUs" in first.reason


def test_busy_machine_compares_the_load_average_with_the_cpus(monkeypatch):
    from inpaintseg import precision_probe

    monkeypatch.setattr(precision_probe.os, "cpu_count", lambda: 2)
    monkeypatch.setattr(precision_probe.os, "getloadavg", lambda: (2.0, 0.0, 0.0))
    assert precision_probe.busy_machine() is None
    monkeypatch.setattr(precision_probe.os, "getloadavg", lambda: (2.5, 0.0, 0.0))
    assert precision_probe.busy_machine() == "load average 2.5 on 2 CPUs"


def test_a_cache_of_version_1_is_dropped_its_probes_may_come_from_a_loaded_machine(private_cache):
    private_cache.mkdir(parents=True)
    probe = FakeProbe(30.0, 20.0)
    choose_precision(tiny_model(), 4, 32, "cpu", "predict", probe=probe, cpu=BF16_CPU)
    data = json.loads((private_cache / CACHE_FILE).read_text())
    (private_cache / CACHE_FILE).write_text(json.dumps({**data, "version": 1}))
    assert not choose_precision(tiny_model(), 4, 32, "cpu", "predict", probe=probe, cpu=BF16_CPU).cached
    assert probe.calls == 2
