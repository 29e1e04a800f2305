"""ONNX export of a model folder and the onnxruntime session that runs it.

    MODEL_DIR/model.onnx      the network as an ONNX graph: input "image" float32 (B, 3, H, W), normalised;
                              output "logits" float32 (B, 1, H, W); batch, height and width are dynamic
    MODEL_DIR/config.json     gains an "onnx" section: file, opset, the SHA-256 of model.onnx and of the
                              weights.safetensors it was exported from, the parity measured at export

`export_onnx` traces the network with torch.onnx's TorchScript exporter (the torch.export-based exporter
cannot express the U-Net's shape-dependent padding with dynamic height/width: measured, it fails on
``-H % 2**depth``). The trace uses a height and width that are not multiples of any power of two, so the
padding branch is recorded with sizes computed from the input's shape. The graph is then run by onnxruntime
on a few seeded images of several sizes and batch sizes, and compared with PyTorch: the file is written only
when the largest |probability difference| is within `PARITY_TOLERANCE` (atomic: temp file + rename).

`check_onnx_file` refuses a model.onnx that no longer belongs to the weights beside it (a folder retrained
or re-exported after the ONNX export), so the two engines never silently disagree. ONNX files are protobuf
graphs, not pickles: loading one runs no code of the file's author.
"""

from __future__ import annotations

import hashlib
import os
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from inpaintseg.errors import InpaintsegError, ModelLoadError
from inpaintseg.model.model_config import record_of
from inpaintseg.model.io import (CONFIG_FILE, ONNX_FILE, WEIGHTS_FILE, load_model_dir, model_folder,
                                 update_model_config)

ONNX_SECTION = "onnx"  # the config.json key of the export record
ONNX_OPSET = 17
MIN_OPSET = 13  # dynamic Pad inputs and the ops the U-Net needs
PARITY_TOLERANCE = 1e-3  # largest |probability difference| vs PyTorch accepted at export
INPUT_NAME, OUTPUT_NAME = "image", "logits"
SPIN = False  # onnxruntime's thread spinning (see open_session and benchmarks/README.md)
INSTALL_HINT = "pip install 'inpaintseg[onnx]' (`make install` installs it), or use --engine torch"


def require_onnxruntime():
    """The onnxruntime module, or an InpaintsegError saying how to install it."""
    try:
        import onnxruntime
    except ImportError:
        raise InpaintsegError(f"the ONNX engine needs onnxruntime, which is not installed: {INSTALL_HINT}.") from None
    return onnxruntime


def require_onnx():
    """The onnx module (torch.onnx writes the file with it), or an InpaintsegError saying how to install it."""
    try:
        import onnx
    except ImportError:
        raise InpaintsegError(f"ONNX export needs the onnx package, which is not installed: {INSTALL_HINT}.") from None
    return onnx


def file_sha256(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def open_session(path: str | os.PathLike, device: str = "cpu", threads: int | None = None):
    """An onnxruntime InferenceSession for `path`: CUDA when `device` is cuda[:N] and this onnxruntime has the
    CUDA provider, else CPU with `threads` intra-op threads (default: torch's thread count)."""
    ort = require_onnxruntime()
    import torch

    options = ort.SessionOptions()
    options.intra_op_num_threads = int(threads or torch.get_num_threads())
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if not SPIN:  # idle intra-op threads sleep instead of spinning: the decode/writer threads need those cores
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    providers: list = ["CPUExecutionProvider"]
    parsed = torch.device(device)
    if parsed.type == "cuda" and "CUDAExecutionProvider" in ort.get_available_providers():
        providers.insert(0, ("CUDAExecutionProvider", {"device_id": parsed.index or 0}))
    try:
        return ort.InferenceSession(str(path), options, providers=providers)
    except Exception as exc:  # onnxruntime raises its own exception types for unreadable graphs
        raise ModelLoadError(f"{path}: onnxruntime cannot load this file ({str(exc).strip()[:300]}); it is "
                             "corrupt or from another tool. Re-run `inpaintseg export --model DIR --format onnx`.") \
            from None


def onnx_record(config) -> dict | None:
    """The config.json "onnx" section (of a `ModelConfig` or a config mapping), or None when the folder was
    never exported."""
    return record_of(config, ONNX_SECTION)


def check_onnx_file(model_dir: str | os.PathLike, config) -> Path:
    """The folder's model.onnx, checked against its record: ModelLoadError when it is missing, was never
    recorded, or does not match the weights beside it (retrained or re-exported since) or its own checksum."""
    model_dir = model_folder(model_dir)  # `base` and RUN -> RUN/model, as everywhere a model folder is read
    path = model_dir / ONNX_FILE
    fix = f"run `inpaintseg export --model {model_dir} --format onnx` (or use --engine torch)"
    record = onnx_record(config)
    if not path.is_file():
        raise ModelLoadError(f"{path}: not found; this model folder has no ONNX export: {fix}.")
    if record is None:
        raise ModelLoadError(f"{model_dir / CONFIG_FILE}: no \"{ONNX_SECTION}\" record for {ONNX_FILE}, so it "
                             f"cannot be matched to {WEIGHTS_FILE}: {fix}.")
    if record.get("weights_sha256") != file_sha256(model_dir / WEIGHTS_FILE):
        raise ModelLoadError(f"{path}: exported from other weights than the {WEIGHTS_FILE} beside it (the model "
                             f"was retrained or re-exported after the ONNX export); it is stale: {fix}.")
    if record.get("sha256") != file_sha256(path):
        raise ModelLoadError(f"{path}: its checksum differs from the one recorded at export (the file was "
                             f"changed or truncated): {fix}.")
    return path


def parity_batches(size: int, mean, std, seed: int = 0) -> list[np.ndarray]:
    """Seeded, normalised float32 image batches for the parity check: the inference shape (2 x size^2) and
    two odd shapes (other batch sizes, height != width, sizes that are no multiple of a power of two)."""
    rng = np.random.default_rng(seed)
    small = min(size, 128)
    shapes = [(2, size, size), (1, small + 5, small + 11), (3, small // 2 + 7, small + 1)]
    mean = np.asarray(mean, np.float32).reshape(1, 3, 1, 1)
    std = np.asarray(std, np.float32).reshape(1, 3, 1, 1)
    out = []
    for b, h, w in shapes:
        pixels = rng.integers(0, 256, (b, 3, h, w)).astype(np.float32) / 255.0
        out.append(((pixels - mean) / std).astype(np.float32))
    return out


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x.astype(np.float64)))


def parity(network, session, batches) -> dict[str, float]:
    """Largest |sigmoid(PyTorch logits) - sigmoid(onnxruntime logits)| per batch shape ("BxCxHxW")."""
    import torch

    out = {}
    with torch.inference_mode():
        for x in batches:
            expected = network(torch.from_numpy(x)).float().numpy()
            got = session.run([OUTPUT_NAME], {INPUT_NAME: x})[0]
            if got.shape != expected.shape:
                diff = float("inf")
            else:
                diff = float(np.abs(_sigmoid(got) - _sigmoid(expected)).max())
            out["x".join(map(str, x.shape))] = diff
    return out


@dataclass
class OnnxExport:
    """What `export_onnx` wrote: the file, its opset, the parity per shape and the time it took."""

    path: Path
    opset: int
    parity: dict[str, float] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def max_diff(self) -> float:
        return max(self.parity.values()) if self.parity else 0.0

    def describe(self) -> str:
        shapes = ", ".join(f"{k}: {v:.2e}" for k, v in self.parity.items())
        return (f"{self.path} (opset {self.opset}, {self.path.stat().st_size / 1e6:.1f} MB, {self.seconds:.1f} s); "
                f"parity vs PyTorch, max |probability difference|: {self.max_diff:.2e} ({shapes})")


def max_opset() -> int:
    """The newest opset the installed torch exporter declares (torch 2.13: 23); the default when unknown."""
    try:
        from torch.onnx import _constants

        return int(_constants.ONNX_MAX_OPSET)
    except (ImportError, AttributeError, TypeError, ValueError):  # a private module: fall back, never fail
        return ONNX_OPSET


def export_onnx(model_dir: str | os.PathLike, opset: int = ONNX_OPSET, tolerance: float = PARITY_TOLERANCE,
                threads: int | None = None) -> OnnxExport:
    """Export `model_dir`'s network to `model_dir/model.onnx` (dynamic batch/height/width), check parity
    with PyTorch and record the export in config.json. Raises InpaintsegError when parity fails (nothing is
    written then) and ModelLoadError for an unusable folder."""
    import torch

    require_onnx()
    require_onnxruntime()
    top = max_opset()
    if isinstance(opset, bool) or not isinstance(opset, int) or not MIN_OPSET <= opset <= top:
        raise InpaintsegError(f"opset must be an integer from {MIN_OPSET} to {top} (the newest opset this torch "
                              f"{torch.__version__} exporter writes), got {opset!r}. The default is {ONNX_OPSET}.",
                              params=["opset"])
    from inpaintseg.fileio import atomic_path
    from inpaintseg.outputs import check_output_file

    model_dir = model_folder(model_dir)  # `base` and RUN -> RUN/model, as everywhere a model folder is read
    start = time.perf_counter()
    network, config = load_model_dir(model_dir, device="cpu")
    check_output_file(model_dir / ONNX_FILE, "--model")
    weights_sha = file_sha256(model_dir / WEIGHTS_FILE)
    section = config.input
    trace_side = min(section.size, 128)
    example = torch.from_numpy(parity_batches(trace_side, section.mean, section.std, seed=1)[0])
    example = example[:, :, : trace_side - 3, : trace_side - 1]  # odd sizes: the padding branch is traced
    dynamic = {0: "batch", 2: "height", 3: "width"}
    with atomic_path(model_dir / ONNX_FILE) as tmp:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # TracerWarnings about the (recorded) shape checks; deprecation note
            try:
                torch.onnx.export(network, (example,), str(tmp), dynamo=False, opset_version=opset,
                                  input_names=[INPUT_NAME], output_names=[OUTPUT_NAME], do_constant_folding=True,
                                  dynamic_axes={INPUT_NAME: dynamic, OUTPUT_NAME: dynamic})
            except (RuntimeError, ValueError) as exc:  # the exporter's own refusal: one line, not its graph dump
                raise InpaintsegError(f"{model_dir}: torch could not export the network at opset {opset} "
                                      f"({str(exc).splitlines()[0][:200]}). Use the default opset {ONNX_OPSET}; "
                                      f"{ONNX_FILE} was not written.", params=["opset"]) from None
        session = open_session(tmp, "cpu", threads)
        measured = parity(network, session, parity_batches(section.size, section.mean, section.std))
        worst = max(measured.values())
        if not worst <= tolerance:
            raise InpaintsegError(
                f"{model_dir}: the ONNX graph does not reproduce the PyTorch network (max |probability "
                f"difference| {worst:.3g} > {tolerance:g}; per shape: {measured}); the network has Python "
                f"control flow the tracer cannot record. {ONNX_FILE} was not written; use engine torch.",
                params=["engine"])
        onnx_sha = file_sha256(tmp)
    update_model_config(model_dir, {ONNX_SECTION: {
        "file": ONNX_FILE, "opset": opset, "sha256": onnx_sha, "weights_sha256": weights_sha,
        "inputs": {INPUT_NAME: "float32 (batch, 3, height, width), normalised"},
        "outputs": {OUTPUT_NAME: "float32 (batch, 1, height, width)"},
        "parity_max_abs_prob_diff": worst, "parity_shapes": list(measured),
        "torch": torch.__version__}})
    return OnnxExport(model_dir / ONNX_FILE, opset, measured, time.perf_counter() - start)
