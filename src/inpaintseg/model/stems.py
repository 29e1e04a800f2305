"""Forensic input stems: residual features computed from the pixels, fused with RGB before the U-Net.

An RGB network learns what inpainted content *looks like* (smooth, blurry) and fails when that look changes
(JPEG, resampling, other generators). The stems add what the camera pipeline left in the *noise*: high-pass
residuals in which a filled region lacks the sensor noise / demosaicing / resampling correlations of its
surroundings. Three residual branches, each giving 3 channels:

- `SRMFilters` (fixed): the three classic 5x5 SRM high-pass kernels of Fridrich & Kodovsky's rich models as
  used in RGB-N (Zhou et al., CVPR 2018), MVSS-Net and ManTra-Net -- we followed the PyTorch ports in
  scu-zjz/IMDLBenCo (`model_zoo/mantra_net/mantranet.py` `_get_srm_list`): KV/4 (3x3 second order),
  KV/12 (the 5x5 "KV" kernel) and the 1-D second difference /2, applied to the grey image, truncated to
  [-3, 3] grey levels (SRM's truncation, MVSS-Net's `Hardtanh(-3, 3)`): the noise level stays, strong
  edges saturate. (The ports stack each kernel over R, G, B, i.e. filter R + G + B: the same up to scale.)
- `BayarConv` (learnable): a 5x5 constrained convolution on the grey image, 1 -> 3 filters, as MVSS-Net's
  `BayarConv2d(in_channels=1, out_channels=3)` after its `rgb2gray` (Bayar & Stamm, IH&MMSec 2016;
  ManTra-Net's `BayarConstraint`): every filter has centre -1 and its other 24 weights sum to 1, so it can
  only learn prediction-error filters (it cannot pass image content). The constraint is a projection
  (`constrain_`) applied at construction and after every optimiser step (`SegmentationModule.optimizer_step`),
  as in Bayar & Stamm, rather than re-normalising in forward as MVSS-Net does: forward is then a plain
  convolution and the stored weights are the ones used.
- `NPRResidual` (fixed): the neighbouring-pixel relation of NPR (Tan et al., CVPR 2024;
  chuangchuangtan/NPR-DeepfakeDetection `networks/resnet.py`): x - up(down(x)) with nearest-neighbour
  resampling by a factor 2, per colour channel, which exposes the 2x2 correlations an up-sampling
  generator leaves.

Every residual is computed on the UN-normalised pixels (0..255, float32 even under mixed precision): the
network input is ImageNet-normalised, so `InputStem` undoes it with the input section's mean/std
(non-persistent buffers: not in the weights, set from config.json's "input" section by `build_model`).
Grey = ITU-R BT.601 luma (MVSS-Net's `rgb2gray`), computed once for SRM and Bayar. Fusion: the residual
channels go through one BatchNorm without affine parameters (their scales differ by orders of magnitude
from the normalised RGB and from each other; an affine part would be redundant before a convolution) and
are concatenated to the normalised RGB; the U-Net's first 3x3 convolution, which then sees 3 + 3k channels,
is the fusion convolution. The U-Net itself is unchanged. Grey inputs (3x cheaper 5x5 convolutions) and
no BatchNorm parameters (no gradient through the fusion convolution's input unless Bayar needs it) were
measured to keep the stems' training cost down (benchmarks/stem_speed.py).

Shape of every stem: (B, 3, H, W) normalised RGB -> (B, 3 + 3k, H, W), k = number of residual branches;
H and W must be even for NPR (the U-Net pads its input to a multiple of 2^depth before the stem).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from inpaintseg.data.input_spec import IMAGENET_MEAN, IMAGENET_STD
from inpaintseg.model.spec import INPUT_STEMS

BRANCHES = ("srm", "bayar", "npr")
BRANCH_CHANNELS = 3
SRM_TRUNCATION = 3.0  # grey levels (of 255)
BAYAR_KERNEL = 5
LUMA = (0.299, 0.587, 0.114)  # ITU-R BT.601
_SRM_KERNELS = (
    ([[0, 0, 0, 0, 0], [0, -1, 2, -1, 0], [0, 2, -4, 2, 0], [0, -1, 2, -1, 0], [0, 0, 0, 0, 0]], 4.0),
    ([[-1, 2, -2, 2, -1], [2, -6, 8, -6, 2], [-2, 8, -12, 8, -2], [2, -6, 8, -6, 2], [-1, 2, -2, 2, -1]], 12.0),
    ([[0, 0, 0, 0, 0], [0, 0, 0, 0, 0], [0, 1, -2, 1, 0], [0, 0, 0, 0, 0], [0, 0, 0, 0, 0]], 2.0),
)


def stem_branches(name: str) -> tuple[str, ...]:
    """The residual branches of a stem name: "rgb+srm+npr" -> ("srm", "npr"); "rgb" -> ()."""
    if name not in INPUT_STEMS:
        raise ValueError(f"unknown input stem {name!r}; expected one of {', '.join(INPUT_STEMS)}")
    return tuple(name.split("+")[1:])


def srm_kernels() -> torch.Tensor:
    """The three SRM kernels as a 1 -> 3 convolution weight. Shape: (3, 1, 5, 5)."""
    return torch.stack([torch.tensor(k, dtype=torch.float32) / scale for k, scale in _SRM_KERNELS])[:, None]


def grey(pixels: torch.Tensor) -> torch.Tensor:
    """BT.601 luma. Shape: (B, 3, H, W) -> (B, 1, H, W)."""
    r, g, b = pixels.unbind(dim=1)
    return (LUMA[0] * r + LUMA[1] * g + LUMA[2] * b)[:, None]


def _same_pad(x: torch.Tensor, kernel: int) -> torch.Tensor:
    """Replicate padding that keeps the size under a `kernel` x `kernel` convolution (works for any size,
    unlike reflect; a replicated border has zero high-pass response across it)."""
    half = kernel // 2
    return F.pad(x, (half, half, half, half), mode="replicate")


class SRMFilters(nn.Module):
    """Fixed SRM high-pass residuals of a grey image, truncated to +-SRM_TRUNCATION.

    Shape: (B, 1, H, W) grey 0..255 -> (B, 3, H, W).
    """

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("kernels", srm_kernels(), persistent=False)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        out = F.conv2d(_same_pad(pixels, 5), self.kernels)
        return out.clamp(-SRM_TRUNCATION, SRM_TRUNCATION)


class BayarConv(nn.Module):
    """Learnable constrained 5x5 convolution (default grey -> 3 filters): each (out, in) slice has centre -1
    and its other weights sum to 1 after `constrain_()`.

    Shape: (B, in_channels, H, W) 0..255 -> (B, out_channels, H, W).
    """

    def __init__(self, in_channels: int = 1, out_channels: int = BRANCH_CHANNELS,
                 kernel_size: int = BAYAR_KERNEL) -> None:
        super().__init__()
        self.kernel_size = kernel_size
        # Positive random start (as MVSS-Net: torch.rand), then projected onto the constraint.
        self.weight = nn.Parameter(torch.rand(out_channels, in_channels, kernel_size, kernel_size))
        self.constrain_()

    @torch.no_grad()
    def constrain_(self) -> None:
        """Project the weights onto the constraint, in place: centre 0, divide each slice by its sum,
        centre -1. A slice whose off-centre sum is (near) zero cannot be rescaled and restarts as the
        mean predictor (1/24 everywhere off-centre)."""
        w = self.weight.data
        if w.is_meta:  # a shape-only skeleton (the model loader's check) holds no values to project
            return
        centre = self.kernel_size // 2
        w[:, :, centre, centre] = 0.0
        sums = w.sum(dim=(2, 3), keepdim=True)
        degenerate = sums.abs() < 1e-6
        if degenerate.any():
            uniform = torch.full_like(w, 1.0 / (self.kernel_size ** 2 - 1))
            uniform[:, :, centre, centre] = 0.0
            w.copy_(torch.where(degenerate, uniform, w))
            sums = torch.where(degenerate, torch.ones_like(sums), sums)
        w.div_(sums)
        w[:, :, centre, centre] = -1.0

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return F.conv2d(_same_pad(pixels, self.kernel_size), self.weight)

    def extra_repr(self) -> str:
        out_channels, in_channels = self.weight.shape[:2]
        return f"{in_channels}, {out_channels}, kernel_size={self.kernel_size}"


class NPRResidual(nn.Module):
    """x - up(down(x)), nearest neighbour, factor 2: each pixel minus the top-left pixel of its 2x2 block.

    Shape: (B, C, H, W) with H, W even -> (B, C, H, W).
    """

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        height, width = pixels.shape[-2:]
        if height % 2 or width % 2:
            raise ValueError(f"NPRResidual needs an even height and width, got {height}x{width}")
        blocks = pixels.unflatten(3, (width // 2, 2)).unflatten(2, (height // 2, 2))  # (B, C, H/2, 2, W/2, 2)
        return (blocks - blocks[:, :, :, :1, :, :1]).flatten(4).flatten(2, 3)        # one pass, no copies


class InputStem(nn.Module):
    """Normalised RGB -> [RGB, BatchNorm(residuals of the chosen branches)] (see the module docstring).

    Shape: (B, 3, H, W) -> (B, out_channels, H, W), out_channels = 3 + 3 x len(branches).
    """

    def __init__(self, name: str, mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD):
        super().__init__()
        branches = stem_branches(name)
        if not branches:
            raise ValueError("InputStem: the 'rgb' stem has no residual branch; build no stem for it")
        self.name = name
        self.srm = SRMFilters() if "srm" in branches else None
        self.bayar = BayarConv() if "bayar" in branches else None
        self.npr = NPRResidual() if "npr" in branches else None
        self.out_channels = 3 + BRANCH_CHANNELS * len(branches)
        self.norm = nn.BatchNorm2d(self.out_channels - 3, affine=False)
        self.register_buffer("pixel_mean", torch.zeros(1, 3, 1, 1), persistent=False)
        self.register_buffer("pixel_std", torch.ones(1, 3, 1, 1), persistent=False)
        self.register_buffer("grey_weights", torch.ones(3), persistent=False)  # luma_c x std_c (x 255)
        # SRM channels truncated at +-SRM_TRUNCATION; Bayar channels after them are not.
        bounds = [SRM_TRUNCATION] * (BRANCH_CHANNELS if self.srm is not None else 0) \
            + [float("inf")] * (BRANCH_CHANNELS if self.bayar is not None else 0)
        self.register_buffer("truncation", torch.tensor(bounds).view(1, -1, 1, 1), persistent=False)
        self.set_normalization(mean, std)

    @torch.no_grad()
    def set_normalization(self, mean: Sequence[float], std: Sequence[float]) -> None:
        """The input section's mean/std (fractions of 255) that the network input was normalised with."""
        self.pixel_mean.copy_(torch.tensor([float(v) * 255.0 for v in mean]).view(1, 3, 1, 1))
        self.pixel_std.copy_(torch.tensor([float(v) * 255.0 for v in std]).view(1, 3, 1, 1))
        self.grey_weights.copy_(torch.tensor(LUMA) * self.pixel_std.flatten())

    def constrain_(self) -> None:
        if self.bayar is not None:
            self.bayar.constrain_()

    def pixels(self, x: torch.Tensor) -> torch.Tensor:
        """Undo the input normalisation. Shape: (B, 3, H, W) normalised -> (B, 3, H, W) 0..255."""
        return x * self.pixel_std + self.pixel_mean

    def residuals(self, x: torch.Tensor) -> torch.Tensor:
        """The residual channels (before the BatchNorm), in pixel units, float32.

        Equal to cat[SRMFilters(grey(pixels)), BayarConv(grey(pixels)), NPRResidual(pixels)] with
        pixels = `self.pixels(x)`, computed without materialising the pixels: grey and the 5x5 filters are
        linear, every SRM/Bayar kernel sums to 0 and NPR subtracts pixels of the same channel, so the mean
        cancels and the std folds into the weights: one convolution of the (replicate-padded) input with
        kernel x luma_c x std_c, and NPR(x) x std_c. (The float32 cast: under bf16 autocast, 0..255 would
        be stored in steps of up to 1 grey level and the residuals of a few levels would be lost.)

        Shape: (B, 3, H, W) normalised -> (B, 3k, H, W).
        """
        x = x.float()
        out = []
        filters = ([self.srm.kernels] if self.srm is not None else []) \
            + ([self.bayar.weight] if self.bayar is not None else [])
        if filters:
            kernels = torch.cat(filters)                                                 # (3f, 1, 5, 5)
            weight = kernels * self.grey_weights.view(1, 3, 1, 1)                         # (3f, 3, 5, 5)
            filtered = F.conv2d(_same_pad(x, BAYAR_KERNEL), weight)                      # (B, 3f, H, W)
            if self.srm is not None:                                                     # truncate SRM only
                filtered = torch.clamp(filtered, min=-self.truncation, max=self.truncation)
            out.append(filtered)
        if self.npr is not None:
            out.append(self.npr(x) * self.pixel_std)
        return out[0] if len(out) == 1 else torch.cat(out, dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.autocast(device_type=x.device.type, enabled=False):
            features = self.norm(self.residuals(x))                  # (B, 3k, H, W), float32
        return torch.cat([x, features.to(x.dtype)], dim=1)            # (B, 3 + 3k, H, W)

    def extra_repr(self) -> str:
        return f"name={self.name!r}, out_channels={self.out_channels}"


def build_stem(name: str, mean: Sequence[float] = IMAGENET_MEAN,
               std: Sequence[float] = IMAGENET_STD) -> InputStem | None:
    """The stem module for a stem name; None for "rgb" (the network sees the normalised image alone)."""
    return InputStem(name, mean, std) if stem_branches(name) else None
