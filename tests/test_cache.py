"""The per-user cache folder shared by the precision probe and the data engine's generators."""

from __future__ import annotations

from inpaintseg import precision
from inpaintseg.cache import cache_dir
from inpaintseg.synth import generator_bank


def test_cache_dir_precedence(monkeypatch, tmp_path):
    monkeypatch.setenv("INPAINTSEG_CACHE_DIR", str(tmp_path / "a"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "x"))
    assert cache_dir() == tmp_path / "a"
    monkeypatch.delenv("INPAINTSEG_CACHE_DIR")
    assert cache_dir() == tmp_path / "x" / "inpaintseg"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert cache_dir() == tmp_path / "home" / ".cache" / "inpaintseg"


def test_tilde_is_expanded(monkeypatch, tmp_path):
    # regression: the generators' copy of cache_dir did not expand "~", so INPAINTSEG_CACHE_DIR=~/c
    # put generators in a folder literally named "~" while the precision probe used $HOME/c
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("INPAINTSEG_CACHE_DIR", "~/c")
    assert cache_dir() == tmp_path / "c"


def test_one_folder_for_every_user_of_the_cache(monkeypatch, tmp_path):
    monkeypatch.setenv("INPAINTSEG_CACHE_DIR", str(tmp_path))
    bank = generator_bank.GeneratorBank("tiny")
    assert bank.path("shuffle").parent == tmp_path / "generators"
    assert precision.cache_dir() == tmp_path
