"""Engines: the one thing that differs between PyTorch and onnxruntime inference.

An engine maps a normalised float32 batch (B, 3, H, W) (a torch tensor on the predictor's device) to logits
(B, 1, H, W) float32 on the same device. Everything around it -- decoding, resizing, tiling, TTA views,
sigmoid and averaging, calibration, thresholds, DenseCRF, writing -- is the `Predictor`'s and the pipeline's,
so TTA, tiles and calibration work the same with either engine.

- `TorchEngine`: the nn.Module in eval mode (channels_last on CPU by default: measured faster there).
  By default (`fold_bn=True`) it runs a copy with every Conv2d -> BatchNorm2d pair folded into one convolution
  (`fold_batchnorm`; measured faster, same probabilities within float rounding); the model passed in is never
  changed, so nothing folded is trained or saved.
- `OnnxEngine`: MODEL_DIR/model.onnx (`inpaintseg export --format onnx`) through onnxruntime, or its static
  int8 quantisation model.int8.onnx (`--int8 IMAGES`, engine "onnx-int8", never chosen by auto: lossy). A
  bf16/fp16 precision request is refused for both (`check_engine_precision`).

`choose_engine("auto" | "torch" | "onnx" | "onnx-int8", ...)` picks one: auto is onnx when the folder has a model.onnx
that matches its weights, onnxruntime is installed, the device is the CPU and the precision is fp32
(onnxruntime was measured faster than PyTorch on this project's CPU, benchmarks/README.md); else torch.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from inpaintseg.errors import ConfigError, InpaintsegError

ENGINES = ("auto", "torch", "onnx", "onnx-int8")  # the one list (CLI choices, API values)
ONNX_ENGINES = ("onnx", "onnx-int8")


def check_engine(value: str, source: str = "engine") -> str:
    if value not in ENGINES:
        raise ConfigError(f"{source}: unknown engine {value!r}; expected one of {', '.join(ENGINES)}.")
    return value


def check_engine_precision(engine: str, precision: str | None) -> None:
    """The ONNX engine runs the exported fp32 graph: any reduced precision is a ConfigError, not ignored."""
    if engine in ONNX_ENGINES and precision not in (None, "32", "auto"):
        raise ConfigError(f"engine {engine} runs the exported fp32 graph and cannot run precision {precision}; "
                          f"use engine torch for mixed precision, or precision 32 (or auto) with engine {engine}.",
                          params=["engine", "precision"])


def _foldable_pairs(model) -> list[tuple]:
    """(sequential, conv name, batchnorm name) for every BatchNorm2d right after a Conv2d in an nn.Sequential."""
    from torch import nn

    pairs = []
    for module in model.modules():
        if isinstance(module, nn.Sequential):
            names = list(module._modules)
            for conv_name, bn_name in zip(names, names[1:]):
                conv, bn = module._modules[conv_name], module._modules[bn_name]
                if isinstance(conv, nn.Conv2d) and type(bn) is nn.BatchNorm2d and bn.running_mean is not None:
                    pairs.append((module, conv_name, bn_name))
    return pairs


def fold_batchnorm(model):
    """(a folded copy of `model` in eval mode, the number of BatchNorm layers folded); `model` itself when there
    is nothing to fold (no copy: a model without BatchNorm runs as it is).

    Every `nn.BatchNorm2d` that directly follows an `nn.Conv2d` inside an `nn.Sequential` (the U-Net's
    ConvBlocks, also a timm backbone's downsample branches) is folded into that convolution with PyTorch's
    `torch.nn.utils.fusion.fuse_conv_bn_eval` (w' = w * gamma / sqrt(var + eps), b' = (b - mean) * gamma /
    sqrt(var + eps) + beta, from the running statistics) and replaced by `nn.Identity`. The eval-mode output is
    the same up to float rounding. Inference only: the copy has no BatchNorm left to train, and `model` is not
    touched. GroupNorm (architecture "norm": "group") depends on each input and cannot be folded; subclasses
    of BatchNorm2d (timm's BatchNormAct2d adds an activation) and the input stem's BatchNorm (after a
    concatenation) are left alone.
    """
    import copy

    from torch import nn
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    if not _foldable_pairs(model):
        return model, 0
    folded = copy.deepcopy(model).eval()
    pairs = _foldable_pairs(folded)
    for module, conv_name, bn_name in pairs:
        module._modules[conv_name] = fuse_conv_bn_eval(module._modules[conv_name], module._modules[bn_name])
        module._modules[bn_name] = nn.Identity()
    return folded, len(pairs)


class TorchEngine:
    """The PyTorch module itself. Shape: (B, 3, H, W) -> (B, 1, H, W) logits.

    ``fold_bn`` (default True): run a copy with BatchNorm folded into the convolutions (`fold_batchnorm`):
    benchmarks/bn_fold.py measured 1.12x (fp32) and 1.18x (bf16) less CPU per forward pass of the base model
    (docs/benchmarks.md, issue 23), with probabilities within 1e-6 of the unfolded model's in fp32.
    """

    name = "torch"

    def __init__(self, model, device: str = "cpu", channels_last: bool | None = None, fold_bn: bool = True):
        import torch

        self.device = torch.device(device)
        self.channels_last = (self.device.type == "cpu") if channels_last is None else channels_last
        self.memory_format = torch.channels_last if self.channels_last else torch.contiguous_format
        self.folded = 0
        if fold_bn:
            model, self.folded = fold_batchnorm(model)
        self.model = model.to(self.device).eval()
        if self.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)

    def __call__(self, x):
        return self.model(x.contiguous(memory_format=self.memory_format))

    def describe(self) -> str:
        folded = f", {self.folded} BatchNorm folded" if self.folded else ""
        return f"engine torch ({'channels_last' if self.channels_last else 'contiguous'}{folded})"


class OnnxEngine:
    """An onnxruntime session on an exported model.onnx. Shape: (B, 3, H, W) -> (B, 1, H, W) logits."""

    name = "onnx"

    def __init__(self, onnx_path: str | os.PathLike, device: str = "cpu", threads: int | None = None):
        import torch

        from inpaintseg.model.onnx_export import INPUT_NAME, OUTPUT_NAME, open_session

        self.path = Path(onnx_path)
        self.device = torch.device(device)
        self.memory_format = torch.contiguous_format
        self.session = open_session(self.path, str(self.device), threads)
        self._input, self._output = INPUT_NAME, OUTPUT_NAME
        self.providers = self.session.get_providers()

    def __call__(self, x):
        import torch

        array = x.detach().to("cpu", torch.float32).contiguous().numpy()
        logits = self.session.run([self._output], {self._input: array})[0]
        return torch.from_numpy(logits).to(x.device)

    def describe(self) -> str:
        return f"engine onnx ({self.path.name}, onnxruntime {self.providers[0]})"


@dataclass
class EngineChoice:
    """Which engine runs and why (printed by predict, recorded in FolderPrediction)."""

    engine: str  # "torch" | "onnx"
    requested: str
    reason: str

    def describe(self) -> str:
        return f"engine {self.engine} ({self.reason})" if self.requested == "auto" else f"engine {self.engine}"


def choose_engine(requested: str, model_dir: str | os.PathLike | None, config, device: str = "cpu",
                  precision: str | None = "32") -> EngineChoice:
    """Resolve `requested` without building anything. "onnx" is checked now (file, record, weights match,
    onnxruntime installed, fp32): every problem is an error before any work. "auto" falls back to torch,
    saying why."""
    check_engine(requested)
    check_engine_precision(requested, precision)
    if requested == "torch":
        return EngineChoice("torch", requested, "asked for")
    if requested in ONNX_ENGINES:
        if model_dir is None:
            raise ConfigError(f"the {requested} engine needs a model folder (load it with inpaintseg.load_model).")
        _onnx_ready(model_dir, config, int8=requested == "onnx-int8")
        return EngineChoice(requested, requested, "asked for")
    if model_dir is None:
        return EngineChoice("torch", requested, "no model folder")
    if precision not in (None, "32", "auto"):
        return EngineChoice("torch", requested, f"precision {precision} runs in PyTorch")
    if not str(device).startswith("cpu"):
        return EngineChoice("torch", requested, f"device {device}")
    from inpaintseg.model.io import ONNX_FILE

    if not (Path(model_dir) / ONNX_FILE).is_file():
        return EngineChoice("torch", requested, f"no {ONNX_FILE}; `inpaintseg export --format onnx` makes one")
    try:
        _onnx_ready(model_dir, config)
    except InpaintsegError as exc:
        return EngineChoice("torch", requested, f"{ONNX_FILE} not usable: {exc}")
    return EngineChoice("onnx", requested, f"{ONNX_FILE} present and matches the weights")


def _onnx_ready(model_dir, config, int8: bool = False) -> Path:
    from inpaintseg.model.onnx_export import check_onnx_file, require_onnxruntime

    require_onnxruntime()
    if int8:
        from inpaintseg.inference.quantize import check_int8_file

        return check_int8_file(model_dir, config)
    return check_onnx_file(model_dir, config)


def build_engine(choice: EngineChoice, network, model_dir, device: str = "cpu", threads: int | None = None):
    """The engine object for a resolved choice."""
    if choice.engine in ONNX_ENGINES:
        from inpaintseg.model.io import INT8_FILE, ONNX_FILE

        name = INT8_FILE if choice.engine == "onnx-int8" else ONNX_FILE
        return OnnxEngine(Path(model_dir) / name, device, threads)
    return TorchEngine(network, device)
