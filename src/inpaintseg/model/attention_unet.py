"""Attention U-Net (Oktay et al. 2018, "Attention U-Net: Learning Where to Look for the Pancreas").

A pure `nn.Module` that maps an image batch (B, C, H, W) to per-pixel logits (B, out, H, W); the
sigmoid is applied at inference, the loss works on logits. Layout, for depth 4 and base width b:

    encoder  ConvBlock(in -> b)                                      H   x W
             MaxPool 2, ConvBlock(b -> 2b)                           H/2
             MaxPool 2, ConvBlock(2b -> 4b)                          H/4
             MaxPool 2, ConvBlock(4b -> 8b)                          H/8
             MaxPool 2, ConvBlock(8b -> 16b)   (the bottleneck)      H/16
    decoder  UpBlock(16b -> 8b) ... UpBlock(2b -> b): each one
               g     = ConvTranspose2d 2x2 stride 2 (deep -> skip channels)   the gating signal
               x_hat = AttentionGate(g, skip)  = skip * alpha                  alpha in [0, 1]
               out   = ConvBlock(cat[x_hat, g])
    head     Conv2d 1x1 (b -> out)  -> logits

An optional input stem (`inpaintseg.model.stems`, architecture key "input_stem") runs before the encoder
and adds forensic residual channels to the image; the encoder's first layer then takes its channels. The
default "rgb" builds no stem, so the state-dict names are those of a model saved before stems existed.

The encoder is a choice (`inpaintseg.model.encoders`, architecture key "encoder"): the U-Net's own (above,
the default) or a timm feature backbone ("timm:<name>"), behind the input stem in either case; the decoder is
built from the encoder's channel counts per stride, so UpBlock(c_i -> c_{i-1}) works for any of them.

Choices (measured on a 2-core AVX-512 CPU with torch 2.13, see benchmarks/README.md):
- Up-sampling is `ConvTranspose2d(kernel 2, stride 2)`: every output pixel comes from exactly one input
  pixel, so it costs Cin*Cout multiply-adds per output pixel (a quarter of a 3x3 transposed conv, half
  of bilinear + 1x1 conv once the bilinear pass is counted) and oneDNN runs it as one GEMM. Bilinear +
  conv was slower per training step on CPU in our measurements.
- The attention gate follows the paper's additive form without batch norm:
  alpha = sigmoid(psi(relu(W_g g + W_x x))), computed at the skip resolution (g is already up-sampled,
  as in MONAI's `AttentionBlock`), with F_int = skip channels // 2.
- Inputs of any size are padded (replicate, bottom/right) to a multiple of 2^depth and the logits are
  cropped back, so the output always has the input's height and width.
- Kaiming-normal init (fan_out, ReLU) for every convolution, BN / GN weight 1 / bias 0.
- The ConvBlocks' normalisation is architecture key "norm": BatchNorm ("batch", the default) or GroupNorm
  ("group", `spec.group_count` groups: >= 4 channels per group, at most 32 groups), which does not depend on
  the batch size or on running statistics (small batches, batch-size-1 fine-tuning).
- channels_last: all ops work on it (no `.view` on activations), and after
  `model.to(memory_format=torch.channels_last)` the input is converted too. On CPU this made a
  training step 1.3-1.6x faster (oneDNN skips its layout reorders); see benchmarks/README.md.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from inpaintseg.data.input_spec import IMAGENET_MEAN, IMAGENET_STD
from inpaintseg.model.encoders import ConvBlock, build_encoder  # noqa: F401 (ConvBlock's old home)
from inpaintseg.model.spec import INPUT_STEMS, MAX_DEPTH, NORMS, UNET_ENCODER, architecture_section
from inpaintseg.model.stems import build_stem


class AttentionGate(nn.Module):
    """Additive attention gate: alpha = sigmoid(psi(relu(W_g g + W_x x))); returns (x * alpha, alpha).

    `g` is the gating signal from the coarser decoder stage (already up-sampled to x's size), `x` the
    encoder skip connection. alpha is one coefficient in [0, 1] per pixel, shared by all channels.

    Shape: g (B, F_g, H, W), x (B, F_l, H, W) -> (B, F_l, H, W), alpha (B, 1, H, W).
    """

    def __init__(self, F_g: int, F_l: int, F_int: int) -> None:
        super().__init__()
        self.W_g = nn.Conv2d(F_g, F_int, 1, bias=True)   # the paper's b_g lives here
        self.W_x = nn.Conv2d(F_l, F_int, 1, bias=False)
        self.psi = nn.Conv2d(F_int, 1, 1, bias=True)     # b_psi

    def forward(self, g: torch.Tensor, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        q = F.relu(self.W_g(g) + self.W_x(x), inplace=True)  # (B, F_int, H, W)
        alpha = torch.sigmoid(self.psi(q))                    # (B, 1, H, W)
        return x * alpha, alpha


class UpBlock(nn.Module):
    """One decoder stage: up-sample, gate the skip connection, concatenate, ConvBlock.

    Shape: deep (B, in_channels, H/2, W/2), skip (B, out_channels, H, W) -> (B, out_channels, H, W)
    (and alpha (B, 1, H, W), or None without attention).
    """

    def __init__(self, in_channels: int, out_channels: int, attention: bool = True, norm: str = "batch") -> None:
        super().__init__()
        self.up = nn.ConvTranspose2d(in_channels, out_channels, 2, stride=2)
        self.gate = AttentionGate(out_channels, out_channels, max(out_channels // 2, 1)) if attention else None
        self.conv = ConvBlock(2 * out_channels, out_channels, norm)

    def forward(self, deep: torch.Tensor, skip: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        g = self.up(deep)                                      # (B, C, H, W)
        alpha = None
        if self.gate is not None:
            skip, alpha = self.gate(g, skip)                   # (B, C, H, W), (B, 1, H, W)
        return self.conv(torch.cat([skip, g], dim=1)), alpha   # cat: (B, 2C, H, W) -> (B, C, H, W)


class AttentionUNet(nn.Module):
    """Attention U-Net returning logits; `attention=False` gives the plain U-Net ablation.

    With the U-Net encoder, stage i has base_channels * 2^i channels, i = 0..depth; with a timm encoder
    (`encoder="timm:<name>"`) the channels are the backbone's and `depth` its pyramid's (None: take it).
    `encoder_weights` (timm only: "imagenet" or a state-dict file) initialises the backbone. `input_stem`
    (one of `INPUT_STEMS`) adds forensic residuals before the encoder; `mean`/`std` are the normalisation of
    the input (fractions of 255) that the stem undoes (not stored in the weights). `norm` (one of `NORMS`) is
    the ConvBlocks' normalisation.

    Shape: (B, in_channels, H, W) -> (B, out_channels, H, W) for any H, W >= 1.
    """

    def __init__(self, in_channels: int = 3, out_channels: int = 1, base_channels: int = 16,
                 depth: int | None = 4, attention: bool = True, input_stem: str = "rgb",
                 mean=IMAGENET_MEAN, std=IMAGENET_STD, encoder: str = UNET_ENCODER,
                 encoder_weights: str | None = None, norm: str = "batch") -> None:
        super().__init__()
        for name, value, low in (("in_channels", in_channels, 1), ("out_channels", out_channels, 1),
                                 ("base_channels", base_channels, 1), ("depth", depth, 1)):
            if name == "depth" and value is None and encoder != UNET_ENCODER:
                continue
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(f"AttentionUNet: {name} must be an integer >= {low}, got {value!r}")
        if depth is not None and depth > MAX_DEPTH:
            raise ValueError(f"AttentionUNet: depth must be <= {MAX_DEPTH}, got {depth}")
        if input_stem not in INPUT_STEMS:
            raise ValueError(f"AttentionUNet: input_stem must be one of {', '.join(INPUT_STEMS)}, got {input_stem!r}")
        if input_stem != "rgb" and in_channels != 3:
            raise ValueError(f"AttentionUNet: input_stem {input_stem!r} needs in_channels 3, got {in_channels}")
        if norm not in NORMS:
            raise ValueError(f"AttentionUNet: norm must be one of {', '.join(NORMS)}, got {norm!r}")
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.base_channels = base_channels
        self.attention = bool(attention)
        self.input_stem = input_stem
        self.encoder = encoder
        self.norm = norm

        # None for "rgb": no module, so no state-dict entry (old model folders keep loading).
        self.stem = build_stem(input_stem, mean, std)
        # The stem works in front of any encoder: the encoder takes the stem's channels.
        encoder_in = in_channels if self.stem is None else self.stem.out_channels
        self.encoders = build_encoder(encoder, encoder_in, base_channels, depth, encoder_weights, norm)
        self.depth = self.encoders.depth
        widths = self.encoders.channels
        depth = self.depth
        # decoders[0] is the deepest stage (widths[depth] -> widths[depth-1]).
        self.decoders = nn.ModuleList(
            [UpBlock(widths[i], widths[i - 1], self.attention, norm) for i in range(depth, 0, -1)]
        )
        self.head = nn.Conv2d(widths[0], out_channels, 1)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Kaiming-normal (fan_out, ReLU) convolutions with zero bias; BatchNorm / GroupNorm weight 1, bias 0 (a timm
        backbone keeps its own initialisation or pretrained weights)."""
        skip = {id(m) for m in getattr(self.encoders, "backbone", nn.Identity()).modules()}
        for module in self.modules():
            if id(module) in skip:
                continue
            if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d)):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, (nn.BatchNorm2d, nn.GroupNorm)) and module.affine:
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)

    def architecture(self) -> dict:
        """The config.json "architecture" section that `build_model` turns back into this model."""
        return architecture_section(in_channels=self.in_channels, out_channels=self.out_channels,
                                    base_channels=self.base_channels, depth=self.depth, attention=self.attention,
                                    input_stem=self.input_stem, encoder=self.encoder, norm=self.norm)

    def encoder_parameters(self) -> list[nn.Parameter]:
        """The parameters that --freeze-encoder-epochs freezes and --encoder-lr-mult scales (the U-Net
        encoder's levels, or a timm backbone without the full-resolution branch; never the input stem)."""
        return [p for module in self.encoders.encoder_modules() for p in module.parameters()]

    def constrain_(self) -> None:
        """Re-apply the weight constraints (the Bayar stem's); called after every optimiser step."""
        if self.stem is not None:
            self.stem.constrain_()

    def _pad(self, x: torch.Tensor) -> torch.Tensor:
        """Replicate-pad bottom/right to a multiple of 2^depth.

        Shape: (B, C, H, W) -> (B, C, ceil(H / 2^depth) * 2^depth, ceil(W / 2^depth) * 2^depth).
        """
        multiple = 2 ** self.depth
        pad_h = -x.shape[-2] % multiple
        pad_w = -x.shape[-1] % multiple
        if pad_h == 0 and pad_w == 0:
            return x
        return F.pad(x, (0, pad_w, 0, pad_h), mode="replicate")

    def _forward(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        if x.ndim != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f"AttentionUNet expects input of shape (B, {self.in_channels}, H, W), "
                             f"got {tuple(x.shape)}")
        height, width = x.shape[-2:]
        if self.head.weight.is_contiguous(memory_format=torch.channels_last):
            x = x.contiguous(memory_format=torch.channels_last)   # model.to(channels_last) is enough
        x = self._pad(x)
        if self.stem is not None:
            x = self.stem(x)                             # (B, 3 + residual channels, H_pad, W_pad)
        skips = self.encoders(x)                         # [(B, channels[i], H/2^i, W/2^i) for i = 0..depth]
        x = skips.pop()                                  # bottleneck (B, base*2^depth, H/2^depth, ...)
        alphas = []
        for decoder in self.decoders:
            x, alpha = decoder(x, skips.pop())           # one stage up: (B, C/2, 2h, 2w)
            if alpha is not None:
                alphas.append(alpha)
        logits = self.head(x)                            # (B, out, H_pad, W_pad)
        return logits[..., :height, :width], alphas

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Per-pixel logits.

        Shape: (B, in_channels, H, W) -> (B, out_channels, H, W).
        """
        return self._forward(x)[0]

    def forward_with_attention(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Logits and the attention coefficients of every gate, deepest stage first.

        Shape: (B, in_channels, H, W) -> logits (B, out_channels, H, W), alphas: list of
        (B, 1, H_pad / 2^k, W_pad / 2^k) for k = depth-1 .. 0 (padded size; empty without attention).
        """
        return self._forward(x)
