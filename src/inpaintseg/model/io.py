"""The exported model folder: `weights.safetensors` + `config.json`; loading never unpickles anything.

Layout (see docs/architecture.md, "Model folder"):

    MODEL_DIR/weights.safetensors   the network's state_dict (float32, CPU, contiguous)
    MODEL_DIR/config.json           format_version, architecture, input, postprocess, metrics, data, training

`save_model_dir` writes the weights first and config.json last, both atomically, so a folder with a
config.json always has complete weights beside it. `load_model_dir` checks, in order: the folder
exists, both files exist, config.json parses and has the required keys with sane values, the format
version is supported, the architecture builds, and every weight's name and shape match it; each
failure is a `ModelLoadError` naming the file, the problem and the fix.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from inpaintseg.errors import ConfigError, ModelLoadError, name_list
from inpaintseg.fileio import atomic_path, atomic_write_text
from inpaintseg.model.model_config import (  # noqa: F401 - FORMAT_VERSION.. are read from here too
    FORMAT_VERSION, REQUIRED_SECTIONS, SUPPORTED_FORMAT_VERSIONS, ModelConfig)
from inpaintseg.model.shipped import resolve_model_dir

WEIGHTS_FILE = "weights.safetensors"
CONFIG_FILE = "config.json"
ONNX_FILE = "model.onnx"  # optional: `inpaintseg export --format onnx` (see model/onnx_export.py)
INT8_FILE = "model.int8.onnx"  # optional: `inpaintseg export --format onnx --int8 IMAGES` (inference/quantize.py)
MISMATCH_LIMIT = 10


def unwrap_model(model: Any) -> Any:
    """The plain network inside DDP / DataParallel (`.module`), torch.compile (`._orig_mod`) or a
    LightningModule holding it as `.model`; repeated until nothing is left to unwrap.

    Only those wrapper types are unwrapped: a network that merely has a `.model` or `.module`
    attribute of its own (MONAI's AttentionUnet keeps its layers in `.model`) is left whole.
    """
    import torch

    while True:
        if isinstance(model, (torch.nn.parallel.DistributedDataParallel, torch.nn.DataParallel)):
            model = model.module
        elif hasattr(model, "_orig_mod") and type(model).__name__ == "OptimizedModule":
            model = model._orig_mod
        elif _is_lightning_module(model) and isinstance(getattr(model, "model", None), torch.nn.Module):
            model = model.model
        else:
            return model


def _is_lightning_module(model: Any) -> bool:
    try:
        import lightning.pytorch as pl
    except ImportError:  # pragma: no cover - lightning is a dependency
        return False
    return isinstance(model, pl.LightningModule)


def export_state_dict(model: Any) -> dict:
    """A state_dict ready for safetensors: unwrapped names, detached CPU contiguous tensors, floats as
    float32 (mixed-precision training keeps float32 masters, but be safe), no shared storage.

    Shape: each tensor keeps its shape.
    """
    import torch

    state = unwrap_model(model).state_dict()
    out = {}
    for name, tensor in state.items():
        tensor = tensor.detach().to("cpu")
        if tensor.is_floating_point():
            tensor = tensor.float()
        out[name] = tensor.contiguous().clone(memory_format=torch.contiguous_format)
    return out


def _json_default(value: Any) -> Any:
    """Numpy / torch scalars and paths in config dicts become plain JSON values."""
    if hasattr(value, "item"):
        return value.item()
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    raise TypeError(f"config.json: cannot store a value of type {type(value).__name__}: {value!r}")


def _config_json(config: Mapping) -> str:
    return json.dumps(config, indent=2, default=_json_default, allow_nan=False) + "\n"


def save_model_dir(model_dir: str | os.PathLike, model: Any, config: Mapping) -> Path:
    """Write `model` (unwrapped) and `config` to `model_dir`; returns the folder.

    `config` must hold the sections of docs/architecture.md; `format_version` is filled in. The
    config is validated against the weights before anything is written, so a bad export fails early.
    """
    from safetensors.torch import save_file

    model_dir = Path(model_dir)
    config = {"format_version": FORMAT_VERSION, **dict(config)}
    typed = ModelConfig.from_dict(config, model_dir / CONFIG_FILE)
    weights = export_state_dict(model)
    _check_weights_match(typed, _shapes_of(weights), model_dir)
    text = _config_json(config)  # fail on non-JSON values before touching the folder
    model_dir.mkdir(parents=True, exist_ok=True)
    with atomic_path(model_dir / WEIGHTS_FILE) as tmp:
        save_file(weights, str(tmp), metadata={"format": "pt", "format_version": str(FORMAT_VERSION)})
    atomic_write_text(model_dir / CONFIG_FILE, text)
    return model_dir


def model_folder(path: str | os.PathLike) -> Path:
    """``path`` itself, or ``path/model`` when ``path`` is a training run folder (no config.json of its own,
    a model/ folder that has one): a run folder is accepted wherever a model folder is; `base` is the shipped
    detector (`model.shipped`)."""
    path = resolve_model_dir(path)
    if not (path / CONFIG_FILE).exists() and (path / "model" / CONFIG_FILE).is_file():
        return path / "model"
    return path


def _model_folder_hint(path: Path) -> str:
    """Which folder to pass instead of the file `path`: its own folder when that is a model folder, the run's
    model/ folder for a training checkpoint (RUN/checkpoints/last.ckpt), else the general form."""
    candidates = [path.parent]
    if path.suffix == ".ckpt" or path.parent.name == "checkpoints":
        candidates.insert(0, path.parent.parent / "model")
    for folder in candidates:
        if all((folder / name).is_file() for name in (CONFIG_FILE, WEIGHTS_FILE)):
            return f"Pass the model folder {folder}."
    what = "a training checkpoint, not a model folder; " if path.suffix == ".ckpt" else ""
    return (f"This is {what}pass the folder that holds both files (e.g. runs/<run>/model; `inpaintseg train` "
            "writes it at the end of a run).")


def read_model_config(model_dir: str | os.PathLike) -> ModelConfig:
    """Read and validate `model_dir/config.json` (without touching the weights); `base` is the shipped model.
    The network's architecture values are checked when it is built (`load_model_dir`)."""
    model_dir = model_folder(model_dir)
    if not model_dir.exists():
        raise ModelLoadError(f"{model_dir}: model folder not found. Pass the folder that holds "
                             f"{WEIGHTS_FILE} and {CONFIG_FILE} (e.g. runs/<run>/model).")
    if not model_dir.is_dir():
        raise ModelLoadError(f"{model_dir}: is a file; expected a model folder holding {WEIGHTS_FILE} "
                             f"and {CONFIG_FILE}. {_model_folder_hint(model_dir)}")
    missing = [name for name in (CONFIG_FILE, WEIGHTS_FILE) if not (model_dir / name).is_file()]
    if missing:
        nearby = sorted(p.parent for p in model_dir.glob(f"*/model/{CONFIG_FILE}"))[:3]
        hint = (f" Did you mean {' or '.join(map(str, nearby))}?" if nearby else
                " Re-export it with `inpaintseg train` or point at a complete run's model/ folder.")
        raise ModelLoadError(f"{model_dir}: missing {' and '.join(missing)}; a model folder needs both "
                             f"{WEIGHTS_FILE} and {CONFIG_FILE}.{hint}")
    path = model_dir / CONFIG_FILE
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelLoadError(f"{path}: not valid JSON ({exc}). Restore the file from the run that wrote "
                             "it or re-export the model.") from None
    return ModelConfig.from_dict(config, path)


def _build(config: ModelConfig, path: Path):
    from inpaintseg.model import build_model

    try:
        return build_model(config.architecture, source=f"{path} architecture", input=config.input.to_dict())
    except ConfigError as exc:
        raise ModelLoadError(f"{exc} (in a model folder: fix config.json or re-export)") from None


def _shapes_of(state: Mapping) -> dict[str, tuple[int, ...]]:
    return {name: tuple(tensor.shape) for name, tensor in state.items()}


def _check_weights_match(config: ModelConfig, shapes: dict[str, tuple[int, ...]], model_dir: Path) -> None:
    """Compare the architecture's tensor names/shapes with `shapes`. The network is built on the meta device
    (no memory), so a config.json claiming a huge network beside small weights allocates nothing."""
    import torch

    with torch.device("meta"):
        skeleton = _build(config, model_dir / CONFIG_FILE)
    expected = _shapes_of(skeleton.state_dict())
    missing = [n for n in expected if n not in shapes]
    unexpected = [n for n in shapes if n not in expected]
    wrong = [f"{n} (weights {list(shapes[n])}, architecture {list(expected[n])})"
             for n in expected if n in shapes and shapes[n] != expected[n]]
    if missing or unexpected or wrong:
        parts = []
        if wrong:
            parts.append(f"{len(wrong)} shape mismatch(es): {name_list(wrong, MISMATCH_LIMIT)}")
        if missing:
            parts.append(f"{len(missing)} tensor(s) missing from the weights: {name_list(missing, MISMATCH_LIMIT)}")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected tensor(s): {name_list(unexpected, MISMATCH_LIMIT)}")
        raise ModelLoadError(
            f"{model_dir}: {WEIGHTS_FILE} does not match the architecture in {CONFIG_FILE} "
            f"({json.dumps(config.section('architecture'))}): " + "; ".join(parts)
            + ". The two files come from different models: re-export the model folder, or restore the "
              "config.json written with these weights.")


def load_model_dir(model_dir: str | os.PathLike, device: Any = "cpu") -> tuple[Any, ModelConfig]:
    """Load an exported model folder: `(model in eval mode on device, its ModelConfig)`.

    Uses safetensors only (no pickle). Raises ModelLoadError for any problem with the folder.
    """
    from safetensors import SafetensorError, safe_open
    from safetensors.torch import load_file

    model_dir = model_folder(model_dir)
    config = read_model_config(model_dir)
    weights_path = model_dir / WEIGHTS_FILE
    try:
        with safe_open(str(weights_path), framework="pt") as handle:
            shapes = {name: tuple(handle.get_slice(name).get_shape()) for name in handle.keys()}
        _check_weights_match(config, shapes, model_dir)
        state = load_file(str(weights_path), device="cpu")
    except (SafetensorError, OSError) as exc:
        raise ModelLoadError(f"{weights_path}: cannot be read as safetensors ({exc}); the file is "
                             "corrupt or truncated. Re-export the model.") from None
    dtypes = sorted({f"{n}: {t.dtype}" for n, t in state.items()
                     if t.is_floating_point() and t.dtype.itemsize < 2})
    if dtypes:
        raise ModelLoadError(f"{weights_path}: unsupported tensor dtypes {name_list(dtypes)}; expected "
                             "float32 weights. Re-export the model.")
    _check_finite(state, weights_path)
    model = _build(config, model_dir / CONFIG_FILE)  # as large as the weights prove
    model.load_state_dict(state, strict=True)
    model.eval()
    return model.to(device), config


def _check_finite(state: Mapping, weights_path: Path) -> None:
    """ModelLoadError naming every tensor that holds NaN or Inf (it would give empty or full masks)."""
    import torch

    bad = [f"{name} ({int((~torch.isfinite(t)).sum())} values)" for name, t in sorted(state.items())
           if t.is_floating_point() and not bool(torch.isfinite(t).all())]
    if bad:
        raise ModelLoadError(f"{weights_path}: {len(bad)} tensor(s) hold values that are not finite (NaN or Inf): "
                             f"{name_list(bad, MISMATCH_LIMIT)}. The file is corrupt, or training diverged before "
                             "this export: re-export the model from a good run.")


def update_model_config(model_dir: str | os.PathLike, updates: Mapping) -> ModelConfig:
    """Merge `updates` into `model_dir/config.json` (`ModelConfig.updated`: a section given as an object is
    updated key by key, any other value replaces the old one), validate the result, rewrite the file
    atomically; returns the new config."""
    model_dir = model_folder(model_dir)
    config = read_model_config(model_dir).updated(updates, model_dir / CONFIG_FILE)
    atomic_write_text(model_dir / CONFIG_FILE, _config_json(config.to_dict()))
    return config
