"""Library errors name the Python parameter; the CLI prints the same message with the flag (issue 21 item 4:
`InpaintsegError(..., params=[...])` + `commands.flag_message`)."""

from __future__ import annotations

import pytest

from inpaintseg.commands import flag_message
from inpaintseg.errors import ConfigError, DataError
from inpaintseg.inference.journal import _parse_header
from inpaintseg.model.encoders import build_encoder
from inpaintseg.sharding import check_topology


@pytest.mark.parametrize("call, library, cli", [
    (lambda: check_topology(0, 1, 0, "cpu"), "devices and num_nodes must be >= 1",
     "--num-devices and --num-nodes must be >= 1"),
    (lambda: check_topology(1, 1, 5, "cpu"), "node_rank must lie in 0..0 for num_nodes 1, got 5",
     "--node-rank must lie in 0..0 for --num-nodes 1, got 5"),
    (lambda: check_topology(10 ** 6, 1, 0, "cpu"), "devices 1000000: at most", "--num-devices 1000000: at most"),
])
def test_sharding_errors_name_parameters_and_the_cli_flags(call, library, cli):
    with pytest.raises(ConfigError) as info:
        call()
    assert str(info.value).startswith(library) and "--" not in str(info.value)
    assert flag_message(info.value).startswith(cli)


def test_a_damaged_part_file_names_resume(tmp_path):
    with pytest.raises(DataError) as info:
        _parse_header(tmp_path / "s.csv.part0", b"not a header")
    assert str(info.value).endswith("Remove it, or run without resume to start over.")
    assert flag_message(info.value).endswith("run without --resume to start over.")


def test_unet_encoder_weights_error_names_parameters():
    with pytest.raises(ConfigError) as info:
        build_encoder("unet", 3, 4, 2, weights="enc.pth")
    assert str(info.value) == ("encoder_weights: the unet encoding path has no pretrained weights; use encoder "
                               "timm:<name>, or init_from MODEL_DIR to start from a trained model.")
    assert flag_message(info.value) == ("--encoder-weights: the unet encoding path has no pretrained weights; use "
                                        "--encoder timm:<name>, or --init-from MODEL_DIR to start from a trained "
                                        "model.")
