"""Progress without a terminal: plain lines at every 10%, no carriage return; one switch for the mode."""

from __future__ import annotations

import io

import pytest

from inpaintseg import progress


@pytest.fixture(autouse=True)
def reset_mode():
    yield
    progress.set_progress_mode("auto")


def test_line_progress_prints_one_line_per_ten_percent():
    stream = io.StringIO()
    bar = progress.LineProgress(100, "predicting", stream=stream)
    for _ in range(100):
        bar.update(1)
    lines = stream.getvalue().splitlines()
    assert len(lines) == 10 and "\r" not in stream.getvalue()
    assert lines[0].startswith("predicting: 10/100 img (10%)") and lines[-1].startswith("predicting: 100/100 img (100%)")
    assert all("img/s" in line and "ETA" in line for line in lines)


def test_line_progress_small_runs_and_big_steps():
    stream = io.StringIO()
    bar = progress.LineProgress(3, "x", stream=stream)
    bar.update(3)  # one update crossing every step prints once
    assert stream.getvalue().count("\n") == 1 and "3/3" in stream.getvalue()
    empty = progress.LineProgress(0, "x", stream=stream)
    empty.update(1)  # nothing to divide by: silent, no error
    assert stream.getvalue().count("\n") == 1


def test_mode_follows_terminal_env_and_switch(monkeypatch):
    class Tty(io.StringIO):
        def isatty(self):
            return True

    monkeypatch.setattr("sys.stderr", Tty())
    monkeypatch.delenv("TQDM_DISABLE", raising=False)
    assert progress.use_bars()
    monkeypatch.setenv("TQDM_DISABLE", "1")
    assert not progress.use_bars()  # TQDM_DISABLE=1 is respected
    progress.set_progress_mode("bar")
    assert progress.use_bars()  # --progress forces bars
    progress.set_progress_mode("lines")
    monkeypatch.delenv("TQDM_DISABLE")
    assert not progress.use_bars()  # --quiet: plain lines even on a terminal
    progress.set_progress_mode("auto")
    monkeypatch.setattr("sys.stderr", io.StringIO())
    assert not progress.use_bars()  # not a terminal
    assert isinstance(progress.progress_bar(5, "x"), progress.LineProgress)
    with pytest.raises(ValueError, match="progress mode"):
        progress.set_progress_mode("loud")


def test_disabled_progress_is_silent(capsys):
    with progress.progress_bar(4, "x", enabled=False) as bar:
        bar.update(4)
    assert capsys.readouterr().err == ""
