"""One vocabulary across commands (issue 25): every `--help` example parses as written, shared flags have one
spelling, type and placeholder everywhere, and the progress help mentions epochs only where there are epochs."""

from __future__ import annotations

import argparse
import shlex

import pytest

from inpaintseg import cli


def subparsers() -> dict[str, argparse.ArgumentParser]:
    parser = cli.build_parser()
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


def examples(sub: argparse.ArgumentParser) -> list[list[str]]:
    """The `inpaintseg ...` lines of a command's --help examples (continuations joined, comments dropped)."""
    text = (sub.epilog or "").replace("\\\n", " ")
    lines = []
    for line in text.splitlines():
        words = shlex.split(line, comments=True)
        shell = next((i for i, w in enumerate(words) if w[:1] in "<>|" or w.startswith("2>")), len(words))
        if words[:1] == ["inpaintseg"]:
            lines.append(words[1:shell])  # without the shell's redirections
    return lines


@pytest.mark.parametrize("name", sorted(subparsers()))
def test_every_help_example_parses_as_written(name, capsys):
    parser = cli.build_parser()
    found = examples(subparsers()[name])
    assert found, f"{name} --help has no examples"
    for words in found:
        if "--print-config" in words or "--list-methods" in words:
            continue  # they exit from the parser by design
        try:
            parser.parse_args(words)
        except SystemExit:
            pytest.fail(f"`inpaintseg {' '.join(words)}` does not parse: {capsys.readouterr().err}")


def _option(sub, flag):
    return next((a for a in sub._actions if flag in a.option_strings), None)


def test_shared_flags_have_one_spelling():
    parsers = subparsers()
    for flag in ("--device", "--max-pixels"):
        users = {name: _option(sub, flag) for name, sub in parsers.items() if _option(sub, flag) is not None}
        assert len(users) >= 2, flag
        types = {name: getattr(a.type, "__name__", a.type) for name, a in users.items() if name != "train"}
        assert len(set(types.values())) == 1, (flag, types)
        assert len({a.metavar for name, a in users.items() if name != "train"}) == 1, flag
    # the pixel limit reads 50e6 and 50_000_000 alike and prints its default one way
    for name, sub in parsers.items():
        if _option(sub, "--max-pixels") is not None:
            assert _option(sub, "--max-pixels").type("50e6") == _option(sub, "--max-pixels").type("50_000_000")
            assert "megapixels)" in _option(sub, "--max-pixels").help, name
    # --workers means processes (demo-data); serve's threads are --concurrency
    assert _option(parsers["serve"], "--concurrency") is not None
    assert parsers["serve"].parse_args(["--model", "m", "--workers", "2"]).workers == 2  # old spelling, hidden


def test_progress_help_mentions_epochs_only_where_there_are_epochs():
    for name, sub in subparsers().items():
        quiet = _option(sub, "--quiet")
        if quiet is not None:
            assert ("epoch" in quiet.help) == (name in ("train", "demo")), name


def test_device_values_are_checked_by_the_parser(capsys):
    parser = cli.build_parser()
    assert parser.parse_args(["predict", "--model", "m", "--images", "i", "--device", "cuda:1"]).device == "cuda:1"
    with pytest.raises(SystemExit):
        parser.parse_args(["predict", "--model", "m", "--images", "i", "--device", "gpu0"])
    assert "expected auto, cpu, cuda or cuda:N, got 'gpu0'" in capsys.readouterr().err
