"""Int8 static quantisation of an exported model.onnx: MODEL_DIR/model.int8.onnx (`predict --engine onnx-int8`).

Measured on the demo model (benchmarks/README.md): dynamic int8 quantisation (ConvInteger) ran 6.5x SLOWER
than fp32 onnxruntime on this CPU, so it is not offered; static QDQ quantisation (uint8 activations, int8
weights, ranges calibrated on real images) ran 1.8x faster at a test-Dice change of -0.0002. Quantisation
error depends on the model, so every export checks it: the images are split in two, ranges are calibrated on
one half, and the masks of the other half (at the stored threshold) from the int8 graph are compared with the
fp32 graph's; the file is written only when their mean per-image Dice is at least `AGREEMENT_MIN`.
`auto` never picks the int8 engine: it is lossy, so it is asked for by name.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from inpaintseg.errors import InpaintsegError
from inpaintseg.inference.predictor import network_inputs
from inpaintseg.model.model_config import record_of
from inpaintseg.model.io import INT8_FILE, ONNX_FILE, model_folder, read_model_config, update_model_config
from inpaintseg.model.onnx_export import (INPUT_NAME, ONNX_SECTION, OUTPUT_NAME, check_onnx_file, file_sha256,
                                          open_session)

INT8_SECTION = "onnx_int8"
AGREEMENT_MIN = 0.995  # mean Dice between int8 and fp32 masks on held-out images (issue 13: within 0.005)
MAX_IMAGES = 64  # images read for calibration + agreement


@dataclass
class Int8Export:
    path: Path
    calibration_images: int
    agreement_images: int
    agreement_dice: float
    seconds: float

    def describe(self) -> str:
        return (f"{self.path} ({self.path.stat().st_size / 1e6:.1f} MB, {self.seconds:.1f} s); ranges from "
                f"{self.calibration_images} images; int8 vs fp32 masks on {self.agreement_images} other images: "
                f"mean Dice {self.agreement_dice:.4f} (at least {AGREEMENT_MIN} required)")


def _masks(session, inputs, threshold: float) -> list[np.ndarray]:
    return [(1.0 / (1.0 + np.exp(-session.run([OUTPUT_NAME], {INPUT_NAME: x})[0])) >= threshold)[0, 0]
            for x in inputs]


def calibration_paths(images) -> list:
    """The images int8 calibration reads (at most MAX_IMAGES, evenly spread), or InpaintsegError when `images`
    names none or fewer than 4; `export --int8` calls it before writing model.onnx, so a bad value writes nothing."""
    from inpaintseg.inference.inputs import resolve_images

    paths = resolve_images(images).paths
    step = max(1, len(paths) // MAX_IMAGES)
    paths = paths[::step][:MAX_IMAGES]
    if len(paths) < 4:
        raise InpaintsegError(f"{images}: int8 calibration needs at least 4 images, found {len(paths)}. Pass a "
                              "folder of typical images (validation or test images).")
    return paths


def quantize_int8(model_dir: str | os.PathLike, images, threads: int | None = None) -> Int8Export:
    """Write `model_dir/model.int8.onnx` from its model.onnx, calibrated on `images` (a folder, file or glob,
    as `predict --images`), or raise InpaintsegError when the int8 masks disagree with fp32 (nothing written)."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    from inpaintseg import fileio
    from inpaintseg.metrics import mask_dice

    start = time.perf_counter()
    model_dir = model_folder(model_dir)  # `base` and RUN -> RUN/model, as everywhere a model folder is read
    config = read_model_config(model_dir)
    source = check_onnx_file(model_dir, config)
    paths = calibration_paths(images)
    inputs = network_inputs([fileio.read_image(p) for p in paths], config.input)
    calibration, held_out = inputs[0::2], inputs[1::2]

    class Reader(CalibrationDataReader):
        def __init__(self):
            self._items = iter(calibration)

        def get_next(self):
            x = next(self._items, None)
            return None if x is None else {INPUT_NAME: x}

    from inpaintseg.fileio import atomic_path

    threshold = float(config.postprocess.threshold)
    with atomic_path(model_dir / INT8_FILE) as tmp:
        quantize_static(str(source), str(tmp), Reader(), quant_format=QuantFormat.QDQ,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, per_channel=True)
        fp32 = _masks(open_session(source, "cpu", threads), held_out, threshold)
        int8 = _masks(open_session(tmp, "cpu", threads), held_out, threshold)
        dice = float(np.mean([mask_dice(a.astype(np.uint8), b.astype(np.uint8)) for a, b in zip(int8, fp32)]))
        if not dice >= AGREEMENT_MIN:
            raise InpaintsegError(f"{model_dir}: int8 quantisation changes the masks too much for this model (mean "
                                  f"Dice {dice:.4f} between int8 and fp32 masks on {len(held_out)} held-out images, "
                                  f"at least {AGREEMENT_MIN} required); {INT8_FILE} was not written. Use engine onnx.",
                                  params=["engine"])
        sha = file_sha256(tmp)
    update_model_config(model_dir, {INT8_SECTION: {
        "file": INT8_FILE, "sha256": sha, "onnx_sha256": record_of(config, ONNX_SECTION)["sha256"], "format": "QDQ",
        "activations": "uint8", "weights": "int8 per channel", "calibration_images": len(calibration),
        "agreement_images": len(held_out), "agreement_dice_mean": dice}})
    return Int8Export(model_dir / INT8_FILE, len(calibration), len(held_out), dice, time.perf_counter() - start)


def check_int8_file(model_dir: str | os.PathLike, config) -> Path:
    """model.int8.onnx, checked: it exists, is recorded, was made from the current model.onnx (itself checked
    against the weights) and is unchanged since."""
    from inpaintseg.errors import ModelLoadError

    model_dir = model_folder(model_dir)  # `base` and RUN -> RUN/model, as everywhere a model folder is read
    path = model_dir / INT8_FILE
    fix = f"run `inpaintseg export --model {model_dir} --format onnx --int8 IMAGES` (or use --engine onnx)"
    record = record_of(config, INT8_SECTION)
    if not path.is_file() or record is None:
        raise ModelLoadError(f"{path}: no recorded int8 export in this model folder: {fix}.")
    check_onnx_file(model_dir, config)
    if record.get("onnx_sha256") != record_of(config, ONNX_SECTION).get("sha256") or record.get("sha256") != file_sha256(path):
        raise ModelLoadError(f"{path}: stale or altered (it does not match {ONNX_FILE} or its own record): {fix}.")
    return path
