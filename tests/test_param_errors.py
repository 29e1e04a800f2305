"""Library errors name Python parameters (`InpaintsegError.params`); the CLI prints them as flags.

One test per converted family: the library's message names the parameter and lists it, and
`commands.flag_message` (what `cli.run_guarded` prints) writes the flag in its place.
"""

from __future__ import annotations

import pytest

from inpaintseg import runtime
from inpaintseg.commands import flag_message
from inpaintseg.errors import InpaintsegError


def raised(call, *args, **kwargs) -> InpaintsegError:
    with pytest.raises(InpaintsegError) as info:
        call(*args, **kwargs)
    return info.value


def test_count_limits_name_the_parameter(monkeypatch):
    monkeypatch.setattr(runtime, "available_cpus", lambda: 3)
    monkeypatch.setattr(runtime, "memory_bytes", lambda: 64 << 30)
    exc = raised(runtime.check_count, "crf_workers", 7, processes=True)
    assert str(exc).startswith("crf_workers 7: at most 6 on this machine") and exc.params == ("crf_workers",)
    assert flag_message(exc).startswith("--crf-workers 7: at most 6") and flag_message(exc).endswith("Lower --crf-workers.")
    side = raised(runtime.check_image_side, "img_size", 1 << 20, 4.0, "training")
    assert flag_message(side).startswith("--img-size 1048576: at most")
    assert "--" not in str(side)
    # a flag spelled out (callers not converted yet) is printed as it is
    assert flag_message(raised(runtime.check_count, "--threads", 7)).startswith("--threads 7: at most 6")


def test_node_rank_names_the_parameters():
    from inpaintseg.prediction import check_node_rank

    check_node_rank(2, 1)
    exc = raised(check_node_rank, 1, 5)
    assert str(exc) == "node_rank must lie in 0..0 for num_nodes 1, got 5."
    assert flag_message(exc) == "--node-rank must lie in 0..0 for --num-nodes 1, got 5."
