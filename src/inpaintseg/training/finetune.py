"""Where a run's network starts and how its encoder trains: `--init-from MODEL_DIR`, `--encoder-weights`,
`--freeze-encoder-epochs N` and `--encoder-lr-mult X` (issue 15).

- `resolve_init_from(config, explicit)`: with `config.init_from`, the model folder's architecture replaces the
  model settings of the config (base_channels, depth, attention, input_stem, encoder, norm), so config.yaml records
  what is trained; a model setting given explicitly (a flag) that disagrees with the folder is a ConfigError.
- `inherit_input(config, given)`: the folder's input mode and size too, where the user did not set them.
- `build_network(config, load_weights)`: the network a run starts from: the model folder's (validated by
  `model.io.load_model_dir`, never unpickled), or a new one (timm encoder weights from `--encoder-weights`).
  A resumed run passes `load_weights=False`: its checkpoint holds the weights, nothing is read or downloaded.
- `FreezeEncoder(epochs)`: a callback that, for the first `epochs` epochs, stops gradients into the encoder
  (`AttentionUNet.encoder_parameters`) and keeps its BatchNorm layers in eval mode (their running statistics
  stay those of the pretrained / initial weights); from epoch `epochs` on everything trains. It decides by the
  epoch number, so a resumed run freezes exactly as the uninterrupted one.
- The encoder learning rate (lr x encoder_lr_mult) is a parameter group of `SegmentationModule`.
- `measure_starting_point` / `keeps_starting_point`: a fine-tuning run validates its starting weights before the
  first epoch, and keeps them when no epoch beats their validation loss -- the starting weights are one more
  candidate of the best-checkpoint choice, so a short fine-tune on little data never exports a model worse (on
  validation) than the one it started from.
  Its post-processing: `training.start_post`.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback

from inpaintseg.config import TrainConfig
from inpaintseg.errors import ConfigError
from inpaintseg.training.hardware import Hardware

# TrainConfig field -> architecture key, for the settings a model folder fixes under --init-from.
INIT_FROM_FIELDS = {"base_channels": "base_channels", "depth": "depth", "attention": "attention",
                    "input_stem": "input_stem", "encoder": "encoder", "norm": "norm"}
FIXED_ARCH = {"in_channels": 3, "out_channels": 1}


def resolve_init_from(config: TrainConfig, explicit: Iterable[str] = ()) -> TrainConfig:
    """`config` with the model settings of its `init_from` folder (unchanged without one)."""
    if config.init_from is None:
        return config
    from inpaintseg.model.io import read_model_config
    from inpaintseg.model.spec import check_architecture

    folder = config.init_from
    arch = read_model_config(folder)["architecture"]
    try:
        values = check_architecture(arch, source=f"init_from {folder}: config.json architecture")
    except ConfigError as exc:  # names init_from, which the CLI prints as --init-from
        raise ConfigError(str(exc), params=["init_from"]) from None
    for key, wanted in FIXED_ARCH.items():
        if values[key] != wanted:
            raise ConfigError(f"init_from {folder}: its model has {key} {values[key]}, training needs {wanted}. "
                              "Fine-tune a model trained by `inpaintseg train`.", params=["init_from"])
    changes = {field: values[key] for field, key in INIT_FROM_FIELDS.items() if values[key] is not None}
    explicit = set(explicit)
    clash = [f"{f} (given {getattr(config, f)!r}, folder {v!r})" for f, v in changes.items()
             if f in explicit and getattr(config, f) != v]
    if clash:
        raise ConfigError(f"init_from {folder}: the model folder fixes the architecture, but these flags "
                          f"disagree: {', '.join(clash)}. Drop them (the architecture comes from the folder), or "
                          "train a new model without init_from.", params=["init_from"])
    return config.replace(**changes)


def inherit_input(config: TrainConfig, given: Iterable[str] = ()) -> tuple[TrainConfig, dict[str, Any]]:
    """`config` with the input mode and size of its `init_from` folder for the ones not in `given` (the keys
    the user set), and the fields it changed. A crop-mode detector fine-tuned on resized images would learn
    from images whose traces the resize erased, so the folder's input is the default, not a rule."""
    if config.init_from is None:
        return config, {}
    from inpaintseg.model.io import read_model_config

    section = read_model_config(config.init_from).get("input") or {}
    given = set(given)
    changes = {field: section[key] for field, key in (("input_mode", "mode"), ("img_size", "size"))
               if field not in given and key in section and getattr(config, field) != section[key]}
    return (config.replace(**changes) if changes else config), changes


def build_network(config: TrainConfig, load_weights: bool = True) -> torch.nn.Module:
    """The network a run trains: from `config.init_from` (weights included), else built from the config's
    architecture with `config.encoder_weights`. `load_weights=False` (resume) builds it without weights."""
    from inpaintseg.model import build_model

    if config.init_from is not None and load_weights:
        from inpaintseg.model.io import load_model_dir

        network, _ = load_model_dir(config.init_from, device="cpu")
        wanted = config.architecture()   # the depth of a timm encoder is its backbone's: not in here
        got = {k: v for k, v in network.architecture().items() if k in wanted}
        if got != wanted:
            raise ConfigError(f"init_from {config.init_from}: its architecture {got} differs from the run's "
                              f"{wanted}; resolve the config with resolve_init_from first.", params=["init_from"])
        return network.train()
    weights = config.encoder_weights if load_weights else None
    return build_model(config.architecture(), source="config", encoder_weights=weights)


def encoder_parameters(model: torch.nn.Module) -> list[torch.nn.Parameter]:
    """The encoder's parameters of an AttentionUNet (possibly compiled / wrapped); [] for other networks."""
    from inpaintseg.model.io import unwrap_model

    network = unwrap_model(model)
    method = getattr(network, "encoder_parameters", None)
    return list(method()) if callable(method) else []


def encoder_modules(model: torch.nn.Module) -> list[torch.nn.Module]:
    from inpaintseg.model.io import unwrap_model

    encoders = getattr(unwrap_model(model), "encoders", None)
    method = getattr(encoders, "encoder_modules", None)
    return list(method()) if callable(method) else []


class FreezeEncoder(Callback):
    """Freezes the encoder (no gradients, BatchNorm in eval mode) during the first `epochs` epochs."""

    def __init__(self, epochs: int) -> None:
        self.epochs = int(epochs)

    def frozen(self, epoch: int) -> bool:
        return epoch < self.epochs

    def _apply(self, pl_module: L.LightningModule, frozen: bool) -> None:
        for parameter in encoder_parameters(pl_module.model):
            parameter.requires_grad_(not frozen)
        if frozen:
            for module in encoder_modules(pl_module.model):
                module.eval()

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._apply(pl_module, self.frozen(trainer.current_epoch))

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any,
                             batch_idx: int) -> None:
        if self.frozen(trainer.current_epoch):   # validation switches the module back to train mode
            for module in encoder_modules(pl_module.model):
                module.eval()

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._apply(pl_module, False)


@dataclass
class StartingPoint:
    """The starting weights of a fine-tuning run and their validation metrics (val_loss, val_dice, ...)."""

    metrics: dict[str, float]
    state: dict[str, torch.Tensor]


def measure_starting_point(module: L.LightningModule, datamodule: L.LightningDataModule,
                           hardware: Hardware) -> StartingPoint:
    """Validate `module`'s current weights on the run's validation split (a throw-away Trainer: no logger, no
    checkpoints) and keep a copy of them."""
    from inpaintseg.model.io import unwrap_model
    from inpaintseg.training.console import quiet_lightning_warnings

    state = {k: v.detach().clone() for k, v in unwrap_model(module.model).state_dict().items()}
    trainer = L.Trainer(accelerator=hardware.lightning_accelerator, devices=1, precision=hardware.precision,
                        logger=False, callbacks=[], enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False)
    with warnings.catch_warnings():
        quiet_lightning_warnings()
        (metrics,) = trainer.validate(module, datamodule=datamodule, verbose=False)
    return StartingPoint(metrics={k: float(v) for k, v in metrics.items()}, state=state)


def keeps_starting_point(start: StartingPoint | None, best: dict[str, float]) -> bool:
    """True when the starting weights' validation loss is strictly lower than the best epoch's (or no epoch
    was validated)."""
    if start is None or "val_loss" not in start.metrics:
        return False
    return "val_loss" not in best or start.metrics["val_loss"] < best["val_loss"]
