"""Library errors name Python parameters (`InpaintsegError.params`); the CLI prints them as flags.

One test per converted family: the library's message names the parameter and lists it, and
`commands.flag_message` (what `cli.run_guarded` prints) writes the flag in its place.
"""

from __future__ import annotations

import pytest

from inpaintseg import runtime
from inpaintseg.commands import flag_message
from inpaintseg.errors import ConfigError, DataError, InpaintsegError
from inpaintseg.inference.journal import _parse_header
from inpaintseg.model.encoders import build_encoder
from inpaintseg.sharding import check_topology


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


def test_run_folder_errors_name_out_and_resume(tmp_path):
    from inpaintseg.run_dir import check_new_run_dir, resume_config

    (tmp_path / "out").write_text("")  # a file where the run folder should go, named like the parameter
    exc = raised(check_new_run_dir, tmp_path / "out")
    assert str(exc) == f"out: {tmp_path / 'out'} is a file; expected a run folder path. Choose another out."
    assert flag_message(exc) == (f"--out: {tmp_path / 'out'} is a file; expected a run folder path. "
                                 "Choose another --out.")  # the path's last part stays as it is
    missing = raised(resume_config, tmp_path / "nope")
    assert flag_message(missing).startswith(f"--resume {tmp_path / 'nope'}: folder not found.")
    assert "--" not in str(missing)


def test_hardware_errors_name_the_training_settings(monkeypatch):
    from inpaintseg.config import TrainConfig
    from inpaintseg.training import hardware

    monkeypatch.setattr(hardware.torch.cuda, "is_available", lambda: False)
    exc = raised(hardware.resolve_hardware, TrainConfig(accelerator="cuda"))
    assert "Set accelerator to cpu" in str(exc)
    assert flag_message(exc).startswith("--device: expected a CUDA GPU") and "Set --device to cpu" in flag_message(exc)
    monkeypatch.setattr(runtime, "available_cpus", lambda: 1)
    workers = raised(hardware.check_training_limits, TrainConfig(num_workers=9), "cuda")
    assert flag_message(workers).startswith("--num-workers 9: at most 2 on this machine")
    devices = raised(hardware.check_training_limits, TrainConfig(devices=9), "cpu")
    assert flag_message(devices).startswith("--num-devices 9: at most")  # TrainConfig's flag for `devices`


def test_output_checks_name_a_parameter_label(tmp_path):
    from inpaintseg.outputs import check_outputs

    (tmp_path / "report").write_text("")
    exc = raised(check_outputs, folders={"out_dir": tmp_path / "report"})
    assert str(exc).startswith("out_dir ") and flag_message(exc).startswith(f"--out {tmp_path / 'report'}: is a file")
    flag = raised(check_outputs, files={"--json": tmp_path})  # a flag label (not converted callers): as it is
    assert flag_message(flag) == str(flag) and str(flag).startswith("--json ")


def test_library_argument_errors_name_parameters(tmp_path):
    from inpaintseg.config import load_yaml
    from inpaintseg.evaluation.sources import predictions
    from inpaintseg.fileio import pixel_limit_scope
    from inpaintseg.model.encoders import build_encoder

    cases = [
        (lambda: predictions(None, None, set()),
         "give exactly one of --pred (a folder of predicted masks) or --submission (an ImageId,EncodedPixels CSV)."),
        (lambda: pixel_limit_scope(0).__enter__(), "--max-pixels must be a whole number >= 1, got 0."),
        (lambda: load_yaml(tmp_path / "none.yaml"), f"{tmp_path / 'none.yaml'}: file not found. "
                                                    "Check the --config path."),
        (lambda: build_encoder("unet", 3, 8, 2, weights="w.pth"),
         "--encoder-weights: the unet backbone has no pretrained weights; use --encoder timm:<name>, or "
         "--init-from MODEL_DIR to start from a trained model."),
    ]
    for call, printed in cases:
        exc = raised(call)
        assert flag_message(exc) == printed
        assert "--" not in str(exc), str(exc)


def test_demo_refuses_an_earlier_run_naming_out(tmp_path):
    from inpaintseg.demo import run_demo

    (tmp_path / "run" / "model").mkdir(parents=True)
    exc = raised(run_demo, tmp_path, precision="32")
    assert str(exc).endswith("Remove it or pass another out.")
    assert flag_message(exc).endswith("Remove it or pass another --out.")


def test_init_from_architecture_errors_name_init_from(monkeypatch, tmp_path):
    from inpaintseg.config import TrainConfig
    from inpaintseg.model import io as model_io
    from inpaintseg.training.finetune import resolve_init_from

    monkeypatch.setattr(model_io, "read_model_config", lambda folder: {"architecture": "unet"})
    exc = raised(resolve_init_from, TrainConfig(init_from=str(tmp_path / "m")))
    assert str(exc).startswith(f"init_from {tmp_path / 'm'}: config.json architecture: expected a mapping")
    assert flag_message(exc).startswith(f"--init-from {tmp_path / 'm'}: config.json architecture")


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
    assert str(info.value) == ("encoder_weights: the unet backbone has no pretrained weights; use encoder "
                               "timm:<name>, or init_from MODEL_DIR to start from a trained model.")
    assert flag_message(info.value) == ("--encoder-weights: the unet backbone has no pretrained weights; use "
                                        "--encoder timm:<name>, or --init-from MODEL_DIR to start from a trained "
                                        "model.")
