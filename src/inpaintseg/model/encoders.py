"""The encoders of the Attention U-Net: its own (`UNetEncoder`) or a timm feature backbone (`TimmEncoder`).

An encoder maps the (padded) input to a feature pyramid, one map per stride 1, 2, 4, ..., 2^depth:

    encoder(x) -> [f_0, f_1, ..., f_depth],  f_i: (B, channels[i], H / 2^i, W / 2^i)

and says how many channels each level has (`channels`, length depth + 1) and which modules count as "the
encoder" for freezing and the encoder learning rate (`encoder_modules()`). The decoder
(`attention_unet.AttentionUNet`) is built from `channels` alone, so any encoder feeds the same
attention-gated decoder.

- `UNetEncoder` (architecture "encoder": "unet", the default): ConvBlock(in -> b), then per level a 2x2 max
  pool and ConvBlock(c -> 2c). It is an `nn.ModuleList` so that its state-dict names stay
  `encoders.<level>.<layer>.*`, those of every model folder written before encoders were a choice.
- `TimmEncoder` ("encoder": "timm:<model name>"): `timm.create_model(name, features_only=True,
  in_chans=in_channels)`; the channel counts and strides come from its `feature_info`. Of several features
  at one stride the deepest is used; the strides must double from one level to the next (ResNet: 2..32,
  ConvNeXt/Swin: 4..32). Strides below the backbone's first (full resolution, and 2 for ConvNeXt) come from
  a light U-Net branch (`hires`: ConvBlock(in -> b), pool, ConvBlock(b -> 2b) ...), so the decoder still
  ends at full resolution with fine detail next to the image: what locates an inpainting's border.
  `depth` is the pyramid's (log2 of the deepest stride). timm is an optional extra (`pip install
  'inpaintseg[encoders]'`); without it building such a model raises an `InpaintsegError` with that hint.

Weights (`weights` of `TimmEncoder`, `--encoder-weights` of `inpaintseg train`): None (random init: what
loading a model folder does, the folder's weights file then holds every tensor), "imagenet" (timm's
pretrained weights for the name, downloaded by timm, on the user's machine only and only when asked), or
the path of a local `.safetensors` / `.pth` / `.pt` / `.bin` state dict (read with safetensors or
`torch.load(weights_only=True)`: never unpickles code), either of the timm classification model (timm
remaps it and drops the classifier) or of the feature extractor itself.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from inpaintseg.errors import ConfigError, InpaintsegError, name_list
from inpaintseg.model.spec import TIMM_PREFIX, UNET_ENCODER, timm_model_name

INSTALL_HINT = "pip install 'inpaintseg[encoders]'"
IMAGENET_WEIGHTS = "imagenet"
WEIGHT_SUFFIXES = (".safetensors", ".pth", ".pt", ".bin")


class ConvBlock(nn.Sequential):
    """Two (3x3 conv, BatchNorm, ReLU) layers.

    Shape: (B, in_channels, H, W) -> (B, out_channels, H, W).
    """

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__(
            nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
            nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
        )


def _conv_pyramid(blocks: nn.ModuleList, x: torch.Tensor) -> list[torch.Tensor]:
    """Run ConvBlocks with a 2x2 max pool before each but the first.

    Shape: (B, C, H, W) -> [(B, c_i, H / 2^i, W / 2^i) for each block i].
    """
    features = []
    for i, block in enumerate(blocks):
        x = block(x if i == 0 else F.max_pool2d(x, 2))
        features.append(x)
    return features


class UNetEncoder(nn.ModuleList):
    """The Attention U-Net's own encoder: level i is a ConvBlock with base_channels * 2^i channels.

    Shape: (B, in_channels, H, W), H and W multiples of 2^depth -> [(B, base * 2^i, H / 2^i, W / 2^i)
    for i = 0..depth].
    """

    def __init__(self, in_channels: int, base_channels: int, depth: int) -> None:
        widths = [base_channels * 2 ** i for i in range(depth + 1)]
        super().__init__([ConvBlock(in_channels, widths[0])]
                         + [ConvBlock(widths[i - 1], widths[i]) for i in range(1, depth + 1)])
        self.channels = tuple(widths)
        self.depth = depth

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        return _conv_pyramid(self, x)

    def encoder_modules(self) -> list[nn.Module]:
        """What --freeze-encoder-epochs freezes and --encoder-lr-mult scales: every level."""
        return [self]

    def stages(self) -> list[tuple[str, nn.Module]]:
        """(name, module) per level, for `model-info`."""
        return [(f"encoder{i}", block) for i, block in enumerate(self)]


# ----------------------------------------------------------------------------------------------
# timm


def import_timm(encoder: str) -> Any:
    """The timm module, or an InpaintsegError saying how to install the extra."""
    try:
        import timm  # noqa: PLC0415 (optional dependency)
    except ImportError as exc:
        raise InpaintsegError(
            f"encoder {encoder!r} needs the timm package, which is not installed ({exc}). Install the optional "
            f"extra with `{INSTALL_HINT}` (it brings timm and torchvision, and torchvision may replace this "
            "torch build: see the README section \"Encoders\"); or train with the default --encoder unet.") from None
    return timm


def load_weights_file(path: str | os.PathLike, source: str = "--encoder-weights") -> dict[str, torch.Tensor]:
    """A state dict from a local `.safetensors` (safetensors) or `.pth`/`.pt`/`.bin` file (`torch.load` with
    `weights_only=True`); a checkpoint dict holding it under "state_dict", "model" or "state_dict_ema" is
    unwrapped. Every problem is a ConfigError naming the file and the fix."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{source} {path}: file not found. Pass a .safetensors or .pth state dict of the "
                          f"encoder, or \"{IMAGENET_WEIGHTS}\" for timm's pretrained weights (needs internet).")
    if path.suffix.lower() not in WEIGHT_SUFFIXES:
        raise ConfigError(f"{source} {path}: unknown weights format {path.suffix!r}; expected one of "
                          f"{', '.join(WEIGHT_SUFFIXES)} (a state dict).")
    try:
        if path.suffix.lower() == ".safetensors":
            from safetensors.torch import load_file

            state: Any = load_file(str(path), device="cpu")
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any reader failure is a bad file for the user
        raise ConfigError(f"{source} {path}: cannot be read as a state dict ({type(exc).__name__}: "
                          f"{str(exc).splitlines()[0] if str(exc) else ''}). Pass a .safetensors file or a "
                          ".pth file holding only tensors (torch.save(model.state_dict(), path)).") from None
    if isinstance(state, dict):
        for key in ("state_dict_ema", "model_ema", "state_dict", "model"):
            if isinstance(state.get(key), dict):
                state = state[key]
                break
    if not isinstance(state, dict) or not state or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ConfigError(f"{source} {path}: expected a state dict (tensor names -> tensors), found "
                          f"{type(state).__name__}. Save one with torch.save(model.state_dict(), path).")
    return {k[len("module."):] if k.startswith("module.") else k: v for k, v in state.items()}


def create_backbone(encoder: str, in_channels: int = 3, weights: str | os.PathLike | None = None) -> nn.Module:
    """`timm.create_model(name, features_only=True, in_chans=in_channels)` with the weights asked for
    (see the module docstring); every failure is an InpaintsegError / ConfigError naming the cause."""
    name = timm_model_name(encoder)
    if name is None:
        raise ValueError(f"create_backbone: not a timm encoder: {encoder!r}")
    timm = import_timm(encoder)
    kwargs = {"features_only": True, "in_chans": in_channels}
    try:
        if weights is None:
            return timm.create_model(name, pretrained=False, **kwargs)
        if str(weights) == IMAGENET_WEIGHTS:
            return _create_pretrained(timm, encoder, name, kwargs)
        state = load_weights_file(weights)
        backbone = timm.create_model(name, pretrained=False, **kwargs)
        if set(state) == set(backbone.state_dict()):   # saved from the feature extractor itself
            _load_strict(backbone, state, weights)
            return backbone
        try:   # a classification checkpoint: timm's own loader remaps it and drops the classifier
            return timm.create_model(name, pretrained=True, pretrained_cfg_overlay={"state_dict": state}, **kwargs)
        except (RuntimeError, KeyError, ValueError, AssertionError) as exc:
            raise ConfigError(f"encoder_weights {weights}: does not hold weights of timm model {name!r} "
                              f"({_summary(exc)}). Pass the state dict of that model (the same name and "
                              "variant), or drop encoder_weights for random initialisation.",
                              params=["encoder_weights"]) from None
    except InpaintsegError:
        raise
    except RuntimeError as exc:
        if "Unknown model" in str(exc) or "Unknown model" in repr(exc.args):
            raise ConfigError(f"encoder {encoder}: timm has no model {name!r}. List the names with "
                              "`python -c \"import timm; print(timm.list_models('*resnet*'))\"`.",
                              params=["encoder"]) from None
        if "features_only" in str(exc):
            raise ConfigError(f"encoder {encoder}: timm model {name!r} cannot be a feature extractor "
                              f"({_first_line(exc)}); choose a CNN (resnet18, convnext_tiny, efficientnet_b0) "
                              "or a Swin model.", params=["encoder"]) from None
        raise


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return (text.splitlines()[0] if text else type(exc).__name__)[:300]


def _summary(exc: BaseException, limit: int = 400) -> str:
    """The exception's text on one line, cut to `limit` characters (load_state_dict lists every key)."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= limit else text[:limit] + " ..."


def _load_strict(backbone: nn.Module, state: dict, path: Any) -> None:
    expected = backbone.state_dict()
    wrong = [f"{k} (file {list(v.shape)}, model {list(expected[k].shape)})" for k, v in state.items()
             if tuple(v.shape) != tuple(expected[k].shape)]
    if wrong:
        raise ConfigError(f"encoder_weights {path}: {len(wrong)} tensor shape(s) do not match the encoder: "
                          f"{name_list(wrong, 5)}. The file is of another variant of the model.",
                          params=["encoder_weights"])
    backbone.load_state_dict(state, strict=True)


def _create_pretrained(timm: Any, encoder: str, name: str, kwargs: dict) -> nn.Module:
    """timm's pretrained weights: downloaded (or taken from the local cache) by timm itself."""
    try:
        return timm.create_model(name, pretrained=True, **kwargs)
    except Exception as exc:  # noqa: BLE001 - network, hub and "no weights" errors all end here
        text = f"{type(exc).__name__}: {_first_line(exc)}"
        if "No pretrained weights exist" in text:
            raise ConfigError(f"encoder_weights {IMAGENET_WEIGHTS}: timm has no pretrained weights for "
                              f"{name!r} ({text}). Choose a name with a pretrained tag (e.g. "
                              f"{TIMM_PREFIX}resnet18.a1_in1k) or drop encoder_weights.",
                              params=["encoder_weights"]) from None
        offline = os.environ.get("HF_HUB_OFFLINE", "") not in ("", "0")
        raise InpaintsegError(
            f"encoder_weights {IMAGENET_WEIGHTS}: timm could not download the pretrained weights of {name!r} "
            f"({text}). This machine seems to have no internet access"
            f"{' (HF_HUB_OFFLINE is set)' if offline else ''} and they are not in the local cache. Download them "
            "on a machine with internet (the same command there, or timm.create_model(name, pretrained=True) "
            "and torch.save(model.state_dict(), 'enc.pth')), then pass the file: encoder_weights enc.pth; "
            "or train from random initialisation without encoder_weights.", params=["encoder_weights"]) from None


class TimmEncoder(nn.Module):
    """A timm feature backbone plus a light full-resolution branch for the strides it does not cover.

    Shape: (B, in_channels, H, W), H and W multiples of 2^depth -> [(B, channels[i], H / 2^i, W / 2^i)
    for i = 0..depth]; `depth` = log2 of the backbone's deepest stride.
    """

    def __init__(self, encoder: str, in_channels: int = 3, base_channels: int = 16,
                 weights: str | os.PathLike | None = None) -> None:
        super().__init__()
        self.encoder = encoder
        self.backbone = create_backbone(encoder, in_channels, weights)
        info = self.backbone.feature_info
        deepest: dict[int, int] = {}
        for index, stride in enumerate(info.reduction()):
            deepest[int(stride)] = index           # of several features at one stride, the deepest
        strides = sorted(deepest)
        doubling = all(b == 2 * a for a, b in zip(strides, strides[1:]))
        if not strides or strides[0] < 1 or strides[0] & (strides[0] - 1) or not doubling:
            raise ConfigError(f"encoder {encoder}: its feature strides {list(info.reduction())} are not a "
                              "pyramid whose strides double (e.g. 4, 8, 16, 32); choose a CNN (resnet18, "
                              "convnext_tiny, efficientnet_b0) or a Swin model.", params=["encoder"])
        self.feature_indices = [deepest[s] for s in strides]
        backbone_channels = [int(info.channels()[i]) for i in self.feature_indices]
        below = int(math.log2(strides[0]))        # levels at strides 1 .. strides[0] / 2
        widths = [base_channels * 2 ** i for i in range(below)]
        self.hires = nn.ModuleList([ConvBlock(in_channels if i == 0 else widths[i - 1], w)
                                    for i, w in enumerate(widths)])
        self.strides = [2 ** i for i in range(below)] + strides
        self.channels = tuple(widths + backbone_channels)
        self.depth = len(self.channels) - 1

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        features = _conv_pyramid(self.hires, x) if len(self.hires) else []
        outputs = self.backbone(x)
        for index, channels in zip(self.feature_indices, self.channels[len(self.hires):]):
            f = outputs[index]
            if f.shape[1] != channels and f.shape[-1] == channels:   # NHWC backbones (Swin)
                f = f.permute(0, 3, 1, 2)
            features.append(f)
        height, width = x.shape[-2:]
        for f, stride in zip(features, self.strides):
            if tuple(f.shape[-2:]) != (height // stride, width // stride):
                raise ValueError(f"{self.encoder}: the feature at stride {stride} is {tuple(f.shape[-2:])} for a "
                                 f"{height}x{width} input, expected {(height // stride, width // stride)}; "
                                 "this backbone does not keep exact strides: choose another one.")
        return features

    def encoder_modules(self) -> list[nn.Module]:
        """What --freeze-encoder-epochs freezes and --encoder-lr-mult scales: the timm backbone only (the
        full-resolution branch starts from random weights and trains at the decoder's rate)."""
        return [self.backbone]

    def stages(self) -> list[tuple[str, nn.Module]]:
        return [(f"hires{i}", block) for i, block in enumerate(self.hires)] + [("backbone", self.backbone)]


def build_encoder(encoder: str, in_channels: int, base_channels: int, depth: int | None,
                  weights: str | os.PathLike | None = None) -> nn.Module:
    """The encoder an architecture names. `weights` applies to timm encoders only; `depth`, when given for
    a timm encoder (a model folder records it), must equal its pyramid's."""
    if encoder == UNET_ENCODER:
        if weights is not None:
            # "encoding path", not "encoder": the CLI writes every standalone parameter name as its flag
            raise ConfigError("encoder_weights: the unet encoding path has no pretrained weights; use "
                              f"encoder {TIMM_PREFIX}<name>, or init_from MODEL_DIR to start from a trained model.",
                              params=["encoder_weights", "encoder", "init_from"])
        return UNetEncoder(in_channels, base_channels, depth)
    module = TimmEncoder(encoder, in_channels, base_channels, weights)
    if depth is not None and depth != module.depth:
        raise ConfigError(f"architecture: \"depth\" {depth} does not match encoder {encoder}, whose feature "
                          f"pyramid has depth {module.depth} (strides up to {2 ** module.depth}). Remove \"depth\" "
                          "or set it to that.")
    return module
