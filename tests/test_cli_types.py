"""The shared argparse value types of commands/__init__.py: ranges and messages worked out by hand."""

from __future__ import annotations

import argparse

import pytest

from inpaintseg.commands import fraction, number_in, positive_number, threshold


@pytest.mark.parametrize("parse, text, value", [
    (threshold, "0.5", 0.5), (threshold, "1e-3", 0.001),
    (fraction, "0", 0.0), (fraction, "1", 1.0), (fraction, "0.25", 0.25),
    (positive_number, "50e6", 50e6), (positive_number, "1e-9", 1e-9),
    (number_in(high=10, open_high=True), "-3", -3.0),
])
def test_values_inside_the_range_are_parsed(parse, text, value):
    assert parse(text) == value


@pytest.mark.parametrize("parse, text, message", [
    (threshold, "0", "expected a threshold in (0, 1), got 0"),
    (threshold, "1", "expected a threshold in (0, 1), got 1"),
    (threshold, "high", "expected a threshold in (0, 1), got 'high'"),
    (fraction, "1.5", "expected a fraction in [0, 1], got 1.5"),
    (fraction, "-0.1", "expected a fraction in [0, 1], got -0.1"),
    (fraction, "nan", "expected a fraction in [0, 1], got nan"),
    (positive_number, "0", "expected a number > 0, got 0"),
    (positive_number, "-2", "expected a number > 0, got -2"),
    (number_in(high=10, open_high=True), "10", "expected a number < 10, got 10"),
    (number_in(2, 4, what="a ratio"), "4.5", "expected a ratio in [2, 4], got 4.5"),
])
def test_values_outside_the_range_name_the_range_and_the_value(parse, text, message):
    with pytest.raises(argparse.ArgumentTypeError) as info:
        parse(text)
    assert str(info.value) == message


def test_flag_message_writes_listed_parameters_as_flags():
    from inpaintseg.commands import flag_message
    from inpaintseg.errors import InpaintsegError

    exc = InpaintsegError("n_train must be >= 1; size too: size must be 32+, resize untouched.", params=["n_train", "size"])
    assert flag_message(exc) == "--n-train must be >= 1; --img-size too: --img-size must be 32+, resize untouched."
    assert flag_message(InpaintsegError("seed must be >= 0.")) == "seed must be >= 0."  # nothing listed: as is
    assert flag_message(ValueError("n_train")) == "n_train"
