"""After training: the best checkpoint's weights, validation calibration at predict's precision, and the
model folder's config (exported by `train`)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import torch

from inpaintseg.config import TrainConfig
from inpaintseg.precision import PrecisionChoice, choose_precision
from inpaintseg.run_dir import SPLIT_FILE
from inpaintseg.training.module import SegmentationModule


def load_best_weights(module: SegmentationModule, checkpoint_path: Path) -> int:
    """Load the network weights of a Lightning checkpoint (weights_only) into `module.model`'s plain
    network; returns the checkpoint's epoch counted from 1."""
    from inpaintseg.model.io import unwrap_model

    checkpoint = torch.load(checkpoint_path, map_location="cpu", weights_only=True)
    state = {}
    for name, tensor in checkpoint["state_dict"].items():
        if name.startswith("model."):
            name = name[len("model."):]
            state[name[len("_orig_mod."):] if name.startswith("_orig_mod.") else name] = tensor
    unwrap_model(module.model).load_state_dict(state, strict=True)
    return int(checkpoint["epoch"]) + 1


def calibration_options(config: TrainConfig) -> dict[str, Any]:
    """What `calibrate` measures: every TTA mode and CRF variant, or with `calibrate: false` the threshold only."""
    return {} if config.calibrate else {"tta_modes": ("none",), "crf_variants": ()}


def predict_precision_choice(network: torch.nn.Module, config: TrainConfig, device: str,
                             requested: str = "auto") -> PrecisionChoice:
    """The precision `predict --precision REQUESTED` (default batch size) will use for this model here."""
    from inpaintseg.inference.predictor import DEFAULT_BATCH_SIZE

    return choose_precision(network, DEFAULT_BATCH_SIZE, config.img_size, device, mode="predict",
                            requested=requested)


def calibrate(network: torch.nn.Module, model_config: dict, datamodule, config: TrainConfig,
              device: str, predict_precision: str = "auto", start_dir=None) -> dict:
    """The `postprocess` section: threshold (always; maximises mean per-image validation Dice at the
    original image size), and with `config.calibrate` also TTA and CRF (inference.calibrate_postprocessing),
    measured at the precision predict will use (`predict_precision_choice`). ``start_dir``: the model folder
    whose weights a fine-tuning run kept; its stored post-processing competes (`training.start_post`)."""
    from inpaintseg.data import LazySamples
    from inpaintseg.inference import calibrate_postprocessing
    from inpaintseg.inference.calibration import DEFAULT_MARGIN
    from inpaintseg.training.start_post import keep_start_postprocess

    samples = LazySamples(datamodule.val_set.samples)
    batch_size = max(1, min(config.batch_size, 16))
    precision = predict_precision_choice(network, config, device, predict_precision).precision
    post = calibrate_postprocessing(network, model_config, samples, device=device, batch_size=batch_size,
                                    progress=config.progress_bar, precision=precision,
                                    report=_say, gate_false_alarm=config.gate_false_alarm,
                                    **calibration_options(config))
    if start_dir is None:
        return post
    post = keep_start_postprocess(network, model_config, samples, post, start_dir, device, batch_size, precision,
                                  DEFAULT_MARGIN)
    comparison = post["calibration"].get("start_comparison")
    if comparison:
        _say(f"post-processing: the start's stored one scores validation Dice {comparison['start_dice']:.4f}, this "
             f"run's calibration {comparison['this_run_dice']:.4f} on {comparison['n_images']} images: keeping "
             + ("the start's" if comparison["kept_start"] else "this run's"))
    return post


def _say(line: str) -> None:
    print(f"train: {line}", file=sys.stderr, flush=True)


def build_model_config(config: TrainConfig, datamodule, postprocess: dict, metrics: dict,
                  training: dict) -> dict:
    from inpaintseg.data.input_spec import input_section

    from inpaintseg.data.datamodule import dataset_root

    data = {**datamodule.summary, "data_dir": str(dataset_root(config.data).resolve()), "split_file": SPLIT_FILE}
    return {
        "architecture": config.architecture(),
        "input": input_section(config.input_mode, config.img_size),
        "postprocess": postprocess,
        "metrics": metrics,
        "data": data,
        "training": training,
    }


def export_network(module: SegmentationModule) -> torch.nn.Module:
    from inpaintseg.model.io import unwrap_model

    network = unwrap_model(module.model)
    network = network.to("cpu").to(memory_format=torch.contiguous_format).float()
    return network.eval()


def chosen_dice(postprocess: dict) -> float | None:
    """Validation Dice of the stored post-processing: the start comparison's (a kept start), else the image
    gate record's (its joint threshold), else the calibration table's row of the stored TTA x CRF."""
    calibration = postprocess.get("calibration", {})
    comparison = calibration.get("start_comparison")
    if comparison:
        return comparison["start_dice" if comparison["kept_start"] else "this_run_dice"]
    gate = calibration.get("gate") or {}
    if gate.get("dice") is not None and gate.get("gate") == postprocess.get("gate"):
        return gate["dice"]
    table = calibration.get("table", [])
    for row in table:
        if row.get("tta") == postprocess.get("tta") and row.get("crf") == postprocess.get("crf"):
            return row.get("dice")
    return None
