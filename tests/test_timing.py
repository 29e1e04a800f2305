"""The one timing harness (`inpaintseg.timing.time_rounds`) on a fake clock: interleaving, warm-up, budget."""

from __future__ import annotations

import pytest

from inpaintseg.timing import time_rounds


@pytest.fixture
def clock(monkeypatch):
    now = [0.0]
    monkeypatch.setattr("inpaintseg.timing.time.perf_counter", lambda: now[0])
    return now


def steps_costing(clock, seen, **costs):
    def make(name, cost):
        def step():
            seen.append(name)
            clock[0] += cost
            return len(seen)
        return step
    return {name: make(name, cost) for name, cost in costs.items()}


def test_rounds_interleave_after_warm_up_and_record_each_step(clock):
    seen = []
    timings = time_rounds(steps_costing(clock, seen, a=1.0, b=0.25), warmup=2, rounds=3)
    assert seen == ["a", "b"] * 5  # 2 warm-up + 3 timed rounds, a and b alternating
    assert timings.seconds == {"a": [1.0] * 3, "b": [0.25] * 3}
    assert timings.values == {"a": [5, 7, 9], "b": [6, 8, 10]}  # what the timed steps returned
    assert (timings.fastest("b"), timings.median("a"), timings.total("a")) == (0.25, 1.0, 3.0)


@pytest.mark.parametrize("warmup, budget, timed, warm", [
    (2, 1000.0, 3, 2),  # everything fits
    (2, 5.5, 2, 1),     # 4 s left after the first round (1.5 s): 2 timed rounds, no second warm-up
    (2, 7.0, 3, 1),     # 5.5 s left: 3 timed rounds fit, a 4th round would not, so no extra warm-up
    (3, 7.5, 3, 2),     # 6 s left: 4 rounds: 3 timed + 1 extra warm-up (2 warm-ups of the 3 asked for)
    (2, 0.0, 1, 1),     # over budget at once: still one warm-up and one timed round
    (0, 0.0, 1, 0),     # no warm-up asked: the first round is the one timed round
    (0, 3.5, 2, 0),     # no warm-up: 2 s left after the first (timed) round, one more
])
def test_the_budget_keeps_timed_rounds_first(clock, warmup, budget, timed, warm):
    seen = []
    timings = time_rounds(steps_costing(clock, seen, a=1.0, b=0.5), warmup=warmup, rounds=3, max_seconds=budget)
    assert len(timings.seconds["a"]) == timed and len(seen) == 2 * (timed + warm)


def test_sync_brackets_every_step(clock):
    events = []
    time_rounds({"a": lambda: events.append("step")}, warmup=1, rounds=1, sync=lambda: events.append("sync"))
    assert events == ["sync", "step", "sync"] * 2


def test_bad_counts_are_refused():
    with pytest.raises(ValueError, match="rounds >= 1"):
        time_rounds({"a": lambda: None}, warmup=0, rounds=0)
