"""The training configuration: one typed source (`TrainConfig`) for defaults, YAML files and CLI flags.

Precedence: CLI flags override a YAML file (`--config FILE`) which overrides the defaults. The
defaults are the seed's hyperparameters and equal `configs/default.yaml` (a test checks). The CLI
flags of `inpaintseg train` are generated from the fields below (`add_config_arguments`), so a new
setting is added in exactly one place: a field here (plus its line in configs/default.yaml).

Validation happens before any training starts; each problem names the key, what was expected and
the value received, and all problems are reported together in one `ConfigError`.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from inpaintseg.data.input_spec import INPUT_MODES
from inpaintseg.errors import ConfigError
from inpaintseg.fileio import atomic_write_text
from inpaintseg.model.spec import (INPUT_STEMS, MAX_BASE_CHANNELS, MAX_DEPTH, NORMS, UNET_ENCODER,
                                   architecture_section, check_encoder)
from inpaintseg.precision import PRECISIONS

ACCELERATORS = ("auto", "cpu", "gpu", "cuda", "mps")
LOGGERS = ("csv", "tensorboard")

# The losses of `inpaintseg.losses.build_loss` (named here so this module stays torch-free).
LOSS_CHOICES = ("bce-dice", "focal-dice", "lovasz")
LR_SCHEDULES = ("cosine", "warmup-cosine", "onecycle")
# Degradation-robust training as one switch (benchmarks/quality.py --degrade-train): probabilities per
# training image, in the spirit of TruFor / IMDL-BenCo's training-time JPEG, rescaling, blur and noise.
# Not the default: the multi-seed ablation decides.
DEGRADE_PRESET = {"degrade_jpeg_p": 0.5, "degrade_rescale_p": 0.3, "degrade_blur_p": 0.2, "degrade_noise_p": 0.2}


def _setting(default: Any, help: str, *, minimum: float | None = None, maximum: float | None = None,
             exclusive_min: bool = False, exclusive_max: bool = False,
             choices: tuple[str, ...] | None = None, metavar: str | None = None, flag: str | None = None,
             aliases: tuple[str, ...] = (), hidden: bool = False) -> Any:
    """A dataclass field carrying its CLI help text and its allowed range/choices. ``flag``: the CLI name
    when it differs from the key (the vocabulary shared by every command, README "Commands"); ``aliases``:
    older spellings, accepted but not shown; ``hidden``: a key whose flag is not shown."""
    return field(default=default, metadata={
        "help": help, "minimum": minimum, "maximum": maximum, "exclusive_min": exclusive_min,
        "exclusive_max": exclusive_max, "choices": choices, "metavar": metavar, "flag": flag,
        "aliases": aliases, "hidden": hidden,
    })


@dataclass
class TrainConfig:
    """Every training setting. Field order is the order of `config.yaml` and of `--help`."""

    # data
    data: str = _setting(".", "dataset root holding train/images and train/masks (or that train/ folder)",
                         metavar="DIR")
    out: str | None = _setting(None, "run folder (default: runs/<YYYYmmdd-HHMMSS>)", metavar="RUN_DIR")
    img_size: int = _setting(256, "network input size in pixels (a multiple of 16)", minimum=16, maximum=8192)
    input_mode: str = _setting("resize", "resize: whole image resized to img_size (the seed); "
                               "crop: random img_size crops at native resolution", choices=INPUT_MODES)
    val_fraction: float = _setting(0.1, "fraction of train images held out for validation",
                                   minimum=0.0, maximum=1.0, exclusive_min=True, exclusive_max=True)
    seed: int = _setting(0, "seed for the split, initialisation and augmentation", minimum=0)
    num_workers: int | None = _setting(None, "DataLoader workers per process (default: from the CPU count)",
                                       minimum=0, maximum=64)
    paired_batches: bool = _setting(False, "put each training image and its untouched original "
                                    "(DATA/train/originals/<same stem>, e.g. from `demo-data --with-originals`) "
                                    "in the same batch, the original with an empty mask and the same augmentation")
    # degradation-robust training: image-only, after the geometric augmentation, before normalisation
    degrade_jpeg_p: float = _setting(0.0, "probability of a JPEG re-compression of a training image",
                                     minimum=0.0, maximum=1.0)
    degrade_jpeg_quality_min: int = _setting(30, "lowest JPEG quality of that re-compression", minimum=1, maximum=100)
    degrade_jpeg_quality_max: int = _setting(100, "highest JPEG quality of that re-compression", minimum=1, maximum=100)
    degrade_rescale_p: float = _setting(0.0, "probability of a down-then-up rescale of a training image",
                                        minimum=0.0, maximum=1.0)
    degrade_rescale_min: float = _setting(0.5, "smallest down-scale factor of that rescale (drawn up to 0.9)",
                                          minimum=0.1, maximum=0.9)
    degrade_blur_p: float = _setting(0.0, "probability of a Gaussian blur (sigma 0.3-1.5 px) of a training image",
                                     minimum=0.0, maximum=1.0)
    degrade_noise_p: float = _setting(0.0, "probability of Gaussian noise (sigma 2-8 grey levels) on a training "
                                      "image", minimum=0.0, maximum=1.0)
    # model
    base_channels: int = _setting(16, "channels of the first U-Net level (doubles per level)",
                                  minimum=1, maximum=MAX_BASE_CHANNELS)
    depth: int = _setting(4, "number of down-sampling levels", minimum=1, maximum=MAX_DEPTH)
    attention: bool = _setting(True, "attention gates on the skip connections (off: plain U-Net)")
    input_stem: str = _setting("rgb", "input stem: the image alone (rgb) or next to forensic residuals: SRM "
                               "high-pass filters, a learnable Bayar constrained conv, NPR up-sampling residuals",
                               choices=INPUT_STEMS)
    encoder: str = _setting(UNET_ENCODER, "unet (the U-Net's own encoder, sized by base_channels and depth) or "
                            "timm:<name> for a timm backbone, e.g. timm:resnet18, timm:convnext_tiny (needs the "
                            "[encoders] extra; its feature pyramid sets the depth)", metavar="NAME")
    norm: str = _setting("batch", "normalisation in the U-Net's conv blocks: batch (BatchNorm) or group (GroupNorm, "
                         "independent of the batch size: >= 4 channels per group, at most 32 groups; a timm "
                         "backbone keeps its own)", choices=NORMS)
    encoder_weights: str | None = _setting(None, "initial weights of a timm encoder: imagenet (timm's "
                                           "pretrained weights, downloaded: needs internet) or a local .safetensors "
                                           "/ .pth state dict; default: random initialisation", metavar="WEIGHTS")
    init_from: str | None = _setting(None, "fine-tune: start from the weights of this model folder (e.g. "
                                     "runs/old/model), whose architecture replaces the model settings",
                                     metavar="MODEL_DIR")
    freeze_encoder_epochs: int = _setting(0, "train with the encoder frozen (weights and BatchNorm statistics) "
                                          "for this many first epochs", minimum=0, maximum=100000)
    encoder_lr_mult: float = _setting(1.0, "the encoder's learning rate is lr x this (e.g. 0.1 when "
                                      "fine-tuning pretrained weights)", minimum=0.0, maximum=100.0,
                                      exclusive_min=True)
    keep_start: bool = _setting(True, "fine-tune: export the init_from weights unchanged when no epoch beats "
                                "their validation loss (they are validated before the first epoch)")
    # optimisation (the seed: Adam lr 1e-3, cosine annealing over the epochs, BCE + Dice)
    epochs: int = _setting(50, "training epochs (the cosine schedule spans them)", minimum=1, maximum=100000)
    batch_size: int = _setting(16, "images per batch per device", minimum=1, maximum=4096)
    lr: float = _setting(0.001, "Adam learning rate", minimum=0.0, maximum=10.0, exclusive_min=True)
    weight_decay: float = _setting(0.0, "Adam weight decay", minimum=0.0, maximum=1.0)
    loss: str = _setting("bce-dice", "bce-dice (the seed), focal-dice, or lovasz (Lovasz hinge, a fine-tuning "
                         "loss; ignores the two weights below)", choices=LOSS_CHOICES)
    bce_weight: float = _setting(1.0, "weight of the pixel term of the loss: BCE (bce-dice) or focal "
                                 "(focal-dice)", minimum=0.0)
    dice_weight: float = _setting(1.0, "weight of the soft Dice term of the loss", minimum=0.0)
    # convergence options (benchmarks/learning_curve.py compares them; off by default until 3 seeds say so)
    lr_schedule: str = _setting("cosine", "cosine: cosine annealing per epoch (the seed); warmup-cosine: linear "
                                "warm-up over warmup_fraction of the steps, then cosine per step; onecycle: "
                                "PyTorch's OneCycleLR per step (peak lr)", choices=LR_SCHEDULES)
    warmup_fraction: float = _setting(0.05, "share of the optimiser steps spent warming up (warmup-cosine, "
                                      "onecycle)", minimum=0.0, maximum=0.5)
    deep_supervision: float = _setting(0.0, "weight of the auxiliary losses on the decoder levels (1x1 heads, "
                                       "training only; 0 = off)", minimum=0.0, maximum=10.0)
    small_mask_power: float = _setting(0.0, "bce-dice: weigh each image's loss by (mask coverage / 0.25)^-power "
                                       "(clipped to [0.04, 1] coverage; empty masks weigh 1), renormalised per "
                                       "batch; 0 = off", minimum=0.0, maximum=2.0)
    curriculum_epochs: int = _setting(0, "sample easy images (no degradation, shortcut breaker or hard negative "
                                      "in DATA/train/meta.json) more in the first N epochs, ramping to the full "
                                      "mix; 0 = off", minimum=0, maximum=100000)
    # hardware
    accelerator: str = _setting("auto", "auto: CUDA when present, else CPU", choices=ACCELERATORS,
                                flag="--device", aliases=("--accelerator",))
    devices: int = _setting(1, "devices per node; more than 1 trains with DDP", minimum=1, maximum=1024,
                            flag="--num-devices", aliases=("--devices",))
    num_nodes: int = _setting(1, "nodes for multi-node DDP (each node runs the same command)",
                              minimum=1, maximum=4096)
    precision: str = _setting("auto", "auto: on CPU, bf16 autocast when a short probe of this model measures it "
                              "faster than fp32 by a margin (cached per machine), else 32; on a GPU 32. 32, "
                              "bf16-mixed or 16-mixed (CUDA) force one; the choice is recorded in the run folder",
                              choices=PRECISIONS)
    channels_last: bool = _setting(False, "channels_last memory format (helps CUDA mixed precision; "
                                   "measured no gain on CPU)")
    compile: bool = _setting(False, "torch.compile the model (needs a C compiler; slow first epoch)")
    deterministic: bool = _setting(False, "deterministic algorithms: same seed gives the same metrics")
    # run control
    max_time_minutes: float | None = _setting(None, "stop after this many minutes (time budget); the best "
                                              "model so far is exported", minimum=0.0, exclusive_min=True,
                                              metavar="MINUTES")
    limit_train_batches: int | None = _setting(None, "use at most this many training batches per epoch",
                                               minimum=1, metavar="N")
    calibrate: bool = _setting(True, "after training, choose threshold/TTA/CRF on the validation images")
    gate_false_alarm: float | None = _setting(0.10, "the image gate's target: the share of untouched validation "
                                              "images left with a non-empty mask (inference.gate); null: the "
                                              "gate maximises Dice only", minimum=0.0, maximum=1.0,
                                              metavar="RATE")
    progress_bar: bool = _setting(True, "progress as bars on a terminal (false: one plain line per epoch; "
                                  "on the command line use --quiet)", hidden=True)
    logger: str = _setting("csv", "csv: metrics.csv only; tensorboard: also TensorBoard event files in "
                           "RUN_DIR/tensorboard (needs the [tensorboard] extra)", choices=LOGGERS)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any], source: str = "config") -> TrainConfig:
        """Build and validate a config from a mapping (a YAML file's content or CLI overrides).

        Unknown keys, wrong types and out-of-range values raise one ConfigError listing every problem.
        """
        if not isinstance(values, dict):
            raise ConfigError(
                f"{source}: expected a mapping of settings (key: value), got {type(values).__name__}. "
                f"See configs/default.yaml for the layout.")
        known = {f.name: f for f in dataclasses.fields(cls)}
        hints = typing.get_type_hints(cls)
        problems = []
        unknown = [k for k in values if k not in known]
        for key in unknown:
            problems.append(f"unknown key {key!r}{_suggest(str(key), known)}")
        clean: dict[str, Any] = {}
        for key, value in values.items():
            if key in known:
                try:
                    clean[key] = _coerce(key, value, hints[key], known[key].metadata)
                except ValueError as exc:
                    problems.append(str(exc))
        if not problems:
            config = cls(**clean)
            problems.extend(config.problems())
        if problems:
            raise ConfigError(f"{source}: invalid configuration:\n  - " + "\n  - ".join(problems)
                              + "\nFix these keys (see configs/default.yaml or `inpaintseg train --help`).")
        return config

    def replace(self, **changes: Any) -> TrainConfig:
        """A validated copy with some settings changed."""
        return TrainConfig.from_dict({**self.to_dict(), **changes}, source="config")

    def problems(self) -> list[str]:
        """Cross-field checks (single-field ranges are checked when values are coerced)."""
        found = []
        if self.img_size % 16:
            found.append(f"img_size: expected a multiple of 16 (e.g. 256), got {self.img_size}")
        if self.input_mode == "crop" and self.img_size < 2 ** self.depth:
            found.append(f"img_size: expected at least 2**depth = {2 ** self.depth} for depth {self.depth}, "
                         f"got {self.img_size}")
        if self.bce_weight == 0 and self.dice_weight == 0 and self.loss != "lovasz":
            found.append("bce_weight, dice_weight: expected at least one > 0, got both 0")
        try:
            check_encoder(self.encoder, "encoder")
        except ConfigError as exc:
            found.append(str(exc).rstrip("."))
        if self.encoder_weights is not None and self.encoder == UNET_ENCODER:
            found.append("encoder_weights: only a timm encoder (encoder: timm:<name>) takes pretrained weights; "
                         "use init_from: MODEL_DIR to start from a trained model")
        if self.encoder_weights is not None and self.init_from is not None:
            found.append("encoder_weights, init_from: both set the starting weights; give one of them")
        if self.deep_supervision and self.compile:
            found.append("deep_supervision: not with compile (its hooks on the decoder stages need eager mode)")
        if self.curriculum_epochs and self.paired_batches:
            found.append("curriculum_epochs: not with paired_batches (pairs are drawn as they are); pick one")
        if self.small_mask_power and self.loss != "bce-dice":
            found.append(f"small_mask_power: only the bce-dice loss takes per-image weights, got loss {self.loss}")
        if self.degrade_jpeg_quality_min > self.degrade_jpeg_quality_max:
            found.append(f"degrade_jpeg_quality_min: expected at most degrade_jpeg_quality_max "
                         f"({self.degrade_jpeg_quality_max}), got {self.degrade_jpeg_quality_min}")
        return found

    def degradations(self) -> dict[str, Any]:
        """The degradation settings (`degrade_*` keys without the prefix) for the training transform."""
        return {f.name[len("degrade_"):]: getattr(self, f.name) for f in dataclasses.fields(self)
                if f.name.startswith("degrade_")}

    def architecture(self) -> dict[str, Any]:
        """The `architecture` section of the model folder's config.json."""
        return architecture_section(in_channels=3, out_channels=1, base_channels=self.base_channels,
                                    depth=self.depth if self.encoder == UNET_ENCODER else None,  # timm: the backbone's
                                    attention=self.attention, input_stem=self.input_stem, encoder=self.encoder,
                                    norm=self.norm)


def _suggest(key: str, known: dict[str, Any]) -> str:
    import difflib

    close = difflib.get_close_matches(key.replace("-", "_"), list(known), n=1)
    return f" (did you mean {close[0]!r}?)" if close else f"; known keys: {', '.join(known)}"


def _optional_inner(hint: Any) -> tuple[Any, bool]:
    """(X, True) for `X | None`, else (hint, False)."""
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        if len(args) == 1 and len(typing.get_args(hint)) == 2:
            return args[0], True
    return hint, False


def _type_name(hint: Any) -> str:
    inner, optional = _optional_inner(hint)
    name = {int: "an integer", float: "a number", str: "a string", bool: "true or false"}[inner]
    return f"{name} or null" if optional else name


def _coerce(key: str, value: Any, hint: Any, meta: Any) -> Any:
    """Check one value's type and range; return it in the field's type or raise ValueError."""
    inner, optional = _optional_inner(hint)
    expected = _type_name(hint)
    if value is None:
        if optional:
            return None
        raise ValueError(f"{key}: expected {expected}, got null")
    if inner is bool:
        if not isinstance(value, bool):
            raise ValueError(f"{key}: expected {expected}, got {value!r}")
        return value
    if inner is int:
        if isinstance(value, bool) or not (isinstance(value, int) or (isinstance(value, float) and value.is_integer())):
            raise ValueError(f"{key}: expected {expected}, got {value!r}")
        value = int(value)
    elif inner is float:
        if isinstance(value, str):  # PyYAML reads `1e-3` (no dot) as a string
            try:
                value = float(value)
            except ValueError:
                raise ValueError(f"{key}: expected {expected}, got {value!r}") from None
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise ValueError(f"{key}: expected {expected} (finite), got {value!r}")
        value = float(value)
    elif inner is str:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            value = str(value)  # `precision: 32` in YAML
        if not isinstance(value, str):
            raise ValueError(f"{key}: expected {expected}, got {value!r}")
    _check_range(key, value, meta)
    return value


def _check_range(key: str, value: Any, meta: Any) -> None:
    choices = meta.get("choices")
    if choices and value not in choices:
        raise ValueError(f"{key}: expected one of {', '.join(choices)}, got {value!r}")
    low, high = meta.get("minimum"), meta.get("maximum")
    too_low = low is not None and (value <= low if meta.get("exclusive_min") else value < low)
    too_high = high is not None and (value >= high if meta.get("exclusive_max") else value > high)
    if too_low or too_high:
        left = "(" if meta.get("exclusive_min") else "["
        right = ")" if meta.get("exclusive_max") else "]"
        span = f"{left}{'-inf' if low is None else low}, {'inf' if high is None else high}{right}"
        raise ValueError(f"{key}: expected a value in {span}, got {value!r}")


def load_yaml(path: str | os.PathLike) -> dict[str, Any]:
    """Read a YAML config file (safe loader) into a mapping, with clear errors for bad files."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: file not found. Check the config path.", params=["config"]) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read the config file ({exc}). Expected a UTF-8 YAML file.") from None
    try:
        values = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({exc}). Compare with configs/default.yaml.") from None
    if values is None:
        return {}
    if not isinstance(values, dict):
        raise ConfigError(f"{path}: expected a mapping of settings (key: value), got {type(values).__name__}. "
                          f"See configs/default.yaml.")
    return values


def load_config(path: str | os.PathLike | None = None, overrides: dict[str, Any] | None = None) -> TrainConfig:
    """Defaults, then the YAML file at `path` (if any), then `overrides` (e.g. CLI flags)."""
    values: dict[str, Any] = {}
    source = "config"
    if path is not None:
        values.update(load_yaml(path))
        source = str(path)
        TrainConfig.from_dict(values, source=source)  # name the file when the file itself is wrong
    if overrides:
        values.update(overrides)
        source = f"{source} + command-line flags" if path is not None else "command-line flags"
    return TrainConfig.from_dict(values, source=source)


def save_config(config: TrainConfig, path: str | os.PathLike) -> None:
    """Write the effective config as YAML (atomically); `load_config(path)` reads it back equal."""
    header = "# Effective training configuration written by `inpaintseg train`.\n"
    atomic_write_text(path, header + yaml.safe_dump(config.to_dict(), sort_keys=False))


# ----------------------------------------------------------------------------------------------
# CLI flags generated from the fields


def _cli_value_parser(key: str, inner: Any, optional: bool):
    def parse(text: str) -> Any:
        if optional and text.lower() in ("none", "null"):
            return None
        try:
            return inner(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {_type_name(inner)}, got {text!r}") from None

    parse.__name__ = inner.__name__  # argparse names the type in its messages
    return parse


def _default_metavar(inner: Any, choices: Any) -> str | None:
    if choices:
        return None  # argparse shows {a,b}
    return {int: "N", float: "X", str: "TEXT"}[inner]


def add_config_arguments(parser: argparse.ArgumentParser) -> None:
    """Add one flag per TrainConfig field (`batch_size` -> `--batch-size`; bools get `--no-...`).

    Flags default to "not given" (absent from the namespace), so only flags the user typed
    override the YAML file; `overrides_from_args` collects them.
    """
    hints = typing.get_type_hints(TrainConfig)
    defaults = TrainConfig()
    group = parser.add_argument_group("training settings (also keys of the --config YAML file)")
    for f in dataclasses.fields(TrainConfig):
        meta = f.metadata
        names = [meta["flag"] or "--" + f.name.replace("_", "-")]
        inner, optional = _optional_inner(hints[f.name])
        default = getattr(defaults, f.name)
        help_text = meta["help"]
        if "default" not in help_text:
            help_text += f" (default: {default})"
        if meta["flag"]:
            help_text += f" [config key: {f.name}]"
        for spelling in names + list(meta["aliases"]):
            shown = spelling == names[0] and not meta["hidden"]
            if inner is bool:
                group.add_argument(spelling, dest=f.name, action=argparse.BooleanOptionalAction,
                                   default=argparse.SUPPRESS, help=help_text if shown else argparse.SUPPRESS)
            else:
                group.add_argument(spelling, dest=f.name, type=_cli_value_parser(f.name, inner, optional),
                                   default=argparse.SUPPRESS, choices=meta["choices"],
                                   metavar=meta["metavar"] or _default_metavar(inner, meta["choices"]),
                                   help=help_text if shown else argparse.SUPPRESS)


def overrides_from_args(args: argparse.Namespace) -> dict[str, Any]:
    """The TrainConfig settings given on the command line."""
    return {f.name: getattr(args, f.name) for f in dataclasses.fields(TrainConfig) if hasattr(args, f.name)}
