"""The small learned inpainters: definition and deterministic training on pristine photo crops.

Real generative inpainting leaves the traces of its decoder: LaMa up-samples with stride-2
transposed convolutions, DeepFill with 2x nearest resize + (gated) convolution, latent-diffusion
inpainting decodes the whole image through a VAE decoder. Each `GeneratorSpec` is a small
encoder-decoder of that kind (no skip connections, as in those networks): a 5x5 head, `depth`
stride-2 down-sampling convolutions, dilated residual blocks, `depth` up-sampling stages of one
`upsampler` kind, a 3x3 tail. Input: the image in [-1, 1] with the hole zeroed, plus the mask;
output: RGB logits (sigmoid gives [0, 1]).

Training (`train_generator`): masked L1 (hole + 0.1 x known pixels) + a light high-frequency term
(L1 of Laplacians inside the hole), Adam with cosine decay, on random crops of the packaged photos
with random masks from `synth.masks`. It runs on one thread with `torch.use_deterministic_algorithms`
and fixed seeds, so the weights are bitwise the same for the same settings (on the same CPU kind).

The set (tiny / demo / full: width and training budget) defaults to $INPAINTSEG_GENERATORS, else
"demo". Loading from and saving to the per-user cache: `synth.generator_bank.GeneratorBank`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import os
import types
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from inpaintseg.errors import InpaintsegError

GENERATOR_SET_ENV = "INPAINTSEG_GENERATORS"  # the default generator set (tests set "tiny")
DEFAULT_GENERATOR_SET = "demo"
UPSAMPLERS = ("transposed", "nearest", "bilinear", "shuffle")
GENERATOR_SETS = ("tiny", "demo", "full")
TRAINING_SEED = 1234


@dataclass(frozen=True)
class GeneratorSpec:
    """Architecture of one learned inpainter."""

    upsampler: str  # one of UPSAMPLERS
    depth: int  # 2x down/up stages
    width: int  # channels after the head; doubled per stage up to 4x
    gated: bool = False  # DeepFill-style gated convolutions
    blocks: int = 2  # dilated residual blocks at the bottleneck
    task: str = "inpaint"  # "inpaint" (fill the hole) or "autoencode" (reconstruct everything)
    # Issue 24 (synth.texture_generators); the defaults are the original networks and leave their cache keys as
    # they were: "plain" | "ffc" (LaMa's Fourier-convolution blocks) | "kl" (KL autoencoder, SD VAE recipe).
    arch: str = "plain"
    adversarial: float = 0.0  # weight of the hinge adversarial term (a PatchGAN trained alongside)
    feature_matching: float = 0.0  # weight of the discriminator feature-matching L1


@dataclass(frozen=True)
class TrainBudget:
    steps: int
    batch: int
    crop: int
    lr: float = 2e-3
    hf_weight: float = 0.5


# The networks (one per learned method); each generator set scales their width and training.
SPECS = {
    "transposed": GeneratorSpec("transposed", depth=3, width=24),  # LaMa-like
    "nearest": GeneratorSpec("nearest", depth=2, width=24, gated=True),  # DeepFill-like
    "bilinear": GeneratorSpec("bilinear", depth=3, width=16, blocks=3),
    "shuffle": GeneratorSpec("shuffle", depth=2, width=24),
    "vae": GeneratorSpec("nearest", depth=3, width=24, task="autoencode"),  # latent-diffusion decoder-like
    # Texture synthesisers (issue 24): adversarially trained, as real inpainters are.
    "lama_gan": GeneratorSpec("transposed", depth=3, width=24, blocks=3, arch="ffc", adversarial=0.1,
                              feature_matching=1.0),  # LaMa: FFC ResNet, transposed convs, PatchGAN + FM
    "gated_gan": GeneratorSpec("nearest", depth=2, width=24, gated=True, adversarial=0.1),  # DeepFill v2, SN-PatchGAN
    # SD VAE recipe at latent diffusion's KL-f4 scale (4x down, 4 latent channels): at 8x the demo budget left
    # it a colour-shifted blur (L1 27 vs 12 grey levels on a 256 px photo); a light adversarial weight.
    "kl_vae": GeneratorSpec("nearest", depth=2, width=24, task="autoencode", arch="kl", adversarial=0.02),
}
KL_STEPS_FACTOR, KL_LR_FACTOR = 3, 0.5  # the autoencoder's longer, gentler training (150 steps did not converge)
SET_SETTINGS = {  # width divisor, training budget
    "tiny": (4, TrainBudget(steps=12, batch=4, crop=32)),
    "demo": (2, TrainBudget(steps=150, batch=8, crop=64)),
    # full at 400 steps measured 708 CPU-s for all five (2-core machine, shared); 300 keeps it < 10 CPU-min.
    "full": (1, TrainBudget(steps=300, batch=8, crop=96)),
}


def default_generator_set() -> str:
    """$INPAINTSEG_GENERATORS, else DEFAULT_GENERATOR_SET."""
    return os.environ.get(GENERATOR_SET_ENV) or DEFAULT_GENERATOR_SET


def check_generator_set(generator_set: str | None, param: str = "generator_set") -> str:
    """`generator_set`, or $INPAINTSEG_GENERATORS (else demo) when None; an InpaintsegError naming `param` (or the
    variable) when it is not a set."""
    value = generator_set or default_generator_set()
    if value not in SET_SETTINGS:
        where = param if generator_set else f"${GENERATOR_SET_ENV}"
        raise InpaintsegError(f"{where} must be one of {', '.join(GENERATOR_SETS)}, got {value!r}.",
                              params=[param] if generator_set else [])
    return value


def spec_for(name: str, generator_set: str) -> tuple[GeneratorSpec, TrainBudget]:
    if name not in SPECS:
        raise InpaintsegError(f"unknown generator {name!r}; known: {', '.join(SPECS)}.")
    generator_set = check_generator_set(generator_set)
    divisor, budget = SET_SETTINGS[generator_set]
    spec = SPECS[name]
    if spec.arch == "kl":
        budget = dataclasses.replace(budget, steps=budget.steps * KL_STEPS_FACTOR, lr=budget.lr * KL_LR_FACTOR)
    return dataclasses.replace(spec, width=max(4, spec.width // divisor)), budget


# ------------------------------------------------------------------------------ networks


def build_generator(spec: GeneratorSpec):
    """The nn.Module for `spec` (torch is imported here, not at module import).

    The masked-L1 and the FFC generators share one encoder-decoder (`_nets().InpaintGenerator`: head, downs,
    body blocks, ups, tail, created in that order, so the parameters and their random initialisation are
    those of the networks before the split); they differ in their body blocks. The KL autoencoder is its own
    network (`texture_generators.build_kl_autoencoder`)."""
    if spec.arch == "kl":
        from inpaintseg.synth.texture_generators import build_kl_autoencoder

        return build_kl_autoencoder(spec)
    nets = _nets()
    if spec.arch == "ffc":
        from inpaintseg.synth.texture_generators import ffc_body_block

        return nets.FFCInpaintGenerator(spec, ffc_body_block())
    return nets.InpaintGenerator(spec, lambda channels, i: nets.DilatedBlock(spec, channels, 2 ** (1 + i % 3)))


@functools.cache
def _blocks() -> types.SimpleNamespace:
    """The layers of the learned inpainters (`conv`, `UpSample`, `DilatedBlock`), defined once on first use
    (importing this module does not import torch)."""
    import torch
    from torch import nn

    class GatedConv(nn.Module):
        """DeepFill v2's gated convolution: features x sigmoid(gate)."""

        def __init__(self, cin, cout, k, stride, pad, dilation):
            super().__init__()
            self.conv = nn.Conv2d(cin, 2 * cout, k, stride, pad, dilation)

        def forward(self, x):
            features, gate = self.conv(x).chunk(2, dim=1)
            return features * torch.sigmoid(gate)

    def conv(spec: GeneratorSpec, cin: int, cout: int, k: int = 3, stride: int = 1, dilation: int = 1) -> nn.Module:
        """A 'same' convolution, gated when `spec.gated`."""
        pad = dilation * (k - 1) // 2
        if spec.gated:
            return GatedConv(cin, cout, k, stride, pad, dilation)
        return nn.Conv2d(cin, cout, k, stride, pad, dilation)

    class UpSample(nn.Module):
        """One 2x up-sampling stage of `spec.upsampler`'s kind, then an activation."""

        def __init__(self, spec: GeneratorSpec, cin: int, cout: int):
            super().__init__()
            kind = spec.upsampler
            if kind == "transposed":  # LaMa: ConvTranspose2d k3 s2 p1 op1
                self.body = nn.ConvTranspose2d(cin, cout, 3, stride=2, padding=1, output_padding=1)
            elif kind == "shuffle":
                self.body = nn.Sequential(nn.Conv2d(cin, 4 * cout, 3, padding=1), nn.PixelShuffle(2))
            elif kind in ("nearest", "bilinear"):
                up = nn.Upsample(scale_factor=2, mode=kind, **({"align_corners": False} if kind == "bilinear" else {}))
                self.body = nn.Sequential(up, conv(spec, cin, cout))
            else:
                raise ValueError(f"unknown upsampler {kind!r}; expected one of {UPSAMPLERS}")
            self.act = nn.ELU()

        def forward(self, x):
            return self.act(self.body(x))

    class DilatedBlock(nn.Module):
        def __init__(self, spec: GeneratorSpec, channels: int, dilation: int):
            super().__init__()
            self.conv1 = conv(spec, channels, channels, dilation=dilation)
            self.conv2 = conv(spec, channels, channels)
            self.act = nn.ELU()

        def forward(self, x):
            return x + self.conv2(self.act(self.conv1(x)))

    return types.SimpleNamespace(conv=conv, UpSample=UpSample, DilatedBlock=DilatedBlock)


@functools.cache
def _nets() -> types.SimpleNamespace:
    """The encoder-decoder of the learned inpainters (`InpaintGenerator`, `FFCInpaintGenerator`, `DilatedBlock`),
    defined once on first use."""
    import torch
    from torch import nn

    blocks = _blocks()
    conv, UpSample = blocks.conv, blocks.UpSample

    class InpaintGenerator(nn.Module):
        """Head (5x5), `depth` stride-2 downs, `spec.blocks` body blocks (`body_block(channels, index)`),
        `depth` up-sampling stages, 3x3 tail; no skip connections."""

        def __init__(self, spec: GeneratorSpec, body_block):
            super().__init__()
            self.spec = spec
            w = spec.width
            chans = [min(w * 2**i, 4 * w) for i in range(spec.depth + 1)]
            self.head = nn.Sequential(conv(spec, 4, w, 5), nn.ELU())
            self.down = nn.ModuleList(
                nn.Sequential(conv(spec, chans[i], chans[i + 1], 3, stride=2), nn.ELU()) for i in range(spec.depth))
            self.body = nn.Sequential(*(body_block(chans[-1], i) for i in range(spec.blocks)))
            self.up = nn.ModuleList(UpSample(spec, chans[i + 1], chans[i]) for i in reversed(range(spec.depth)))
            self.tail = nn.Conv2d(w, 3, 3, padding=1)

        def forward(self, image, mask):
            """image (B,3,H,W) in [0,1], mask (B,1,H,W) {0,1}; H, W multiples of 2**depth -> RGB logits."""
            x = torch.cat([(image * 2 - 1) * (1 - mask), mask], dim=1)
            x = self.head(x)
            for stage in self.down:
                x = stage(x)
            x = self.body(x)
            for stage in self.up:
                x = stage(x)
            return self.tail(x)

    class FFCInpaintGenerator(InpaintGenerator):
        """LaMa-like: the same encoder-decoder with Fast Fourier Convolution ResNet blocks as its body."""

    return types.SimpleNamespace(InpaintGenerator=InpaintGenerator, FFCInpaintGenerator=FFCInpaintGenerator,
                                 DilatedBlock=blocks.DilatedBlock)


@contextlib.contextmanager
def one_thread() -> Iterator[None]:
    """torch on one thread (bitwise reproducible reductions), restored afterwards."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def run_generator(model, image: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """The network's output for one image (the whole frame; the caller composites the hole).

    Shape: (H, W, 3) uint8, (H, W) uint8 {0, 1} -> (H, W, 3) uint8. Any H, W (reflect-padded to a
    multiple of 2**depth and cropped back).
    """
    import torch
    import torch.nn.functional as F

    height, width = mask.shape
    multiple = 2 ** model.spec.depth
    pad_h, pad_w = -height % multiple, -width % multiple
    x = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)[None].float() / 255.0
    m = torch.from_numpy(np.ascontiguousarray(mask)).float()[None, None]
    if model.spec.task == "autoencode":
        m = torch.zeros_like(m)
    if pad_h or pad_w:
        mode = "reflect" if pad_h < height and pad_w < width else "replicate"
        x = F.pad(x, (0, pad_w, 0, pad_h), mode=mode)
        m = F.pad(m, (0, pad_w, 0, pad_h), mode=mode)
    with one_thread(), torch.no_grad():
        out = torch.sigmoid(model(x, m))[0, :, :height, :width]
    return (out.permute(1, 2, 0).numpy() * 255.0).round().clip(0, 255).astype(np.uint8)


# ------------------------------------------------------------------------------ training


def _batch(rng: np.random.Generator, photos: Sequence[np.ndarray], budget: TrainBudget,
           task: str) -> tuple[np.ndarray, np.ndarray]:
    from inpaintseg.synth.masks import random_mask
    from inpaintseg.synth.photos import random_crop

    images = np.empty((budget.batch, budget.crop, budget.crop, 3), np.uint8)
    masks = np.zeros((budget.batch, budget.crop, budget.crop), np.uint8)
    for i in range(budget.batch):
        images[i] = random_crop(rng, photos[int(rng.integers(len(photos)))], budget.crop)[0]
        if task == "inpaint":
            masks[i] = random_mask(rng, budget.crop)[0]
    return images, masks


def reconstruction_loss(spec: GeneratorSpec, budget: TrainBudget, out, x, m):
    """Masked L1 (hole + 0.1 x known pixels; every pixel for an autoencoder) + `budget.hf_weight` x the L1 of
    Laplacians (inside the hole). Shapes: (B, 3, H, W) in [0, 1], mask (B, 1, H, W)."""
    import torch
    import torch.nn.functional as F

    error = (out - x).abs()
    if spec.task == "inpaint":
        hole = (error * m).sum() / (3 * m.sum()).clamp(min=1)
        known = (error * (1 - m)).sum() / (3 * (1 - m).sum()).clamp(min=1)
        loss, weight = hole + 0.1 * known, m
    else:
        loss, weight = error.mean(), torch.ones_like(m)
    if budget.hf_weight:
        laplace = torch.tensor([[0.0, 1.0, 0.0], [1.0, -4.0, 1.0], [0.0, 1.0, 0.0]]).expand(3, 1, 3, 3)
        detail = (F.conv2d(out, laplace, padding=1, groups=3) - F.conv2d(x, laplace, padding=1, groups=3)).abs()
        loss = loss + budget.hf_weight * (detail * weight).sum() / (3 * weight.sum()).clamp(min=1)
    return loss


def train_generator(spec: GeneratorSpec, budget: TrainBudget, photos: Sequence[np.ndarray],
                    seed: int = TRAINING_SEED) -> dict:
    """Train one generator deterministically; return its state dict (CPU tensors). Specs with an adversarial
    term or the KL autoencoder train through `texture_generators.train_adversarial`."""
    import torch

    deterministic = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True)
    try:
        with one_thread():
            if spec.adversarial or spec.arch == "kl":
                from inpaintseg.synth.texture_generators import train_adversarial

                return train_adversarial(spec, budget, photos, seed,
                                         lambda rng: _batch(rng, photos, budget, spec.task),
                                         lambda out, x, m: reconstruction_loss(spec, budget, out, x, m))
            torch.manual_seed(seed)
            rng = np.random.default_rng([seed, UPSAMPLERS.index(spec.upsampler), spec.depth, spec.width])
            model = build_generator(spec).train()
            optimiser = torch.optim.Adam(model.parameters(), lr=budget.lr, betas=(0.5, 0.9))
            schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimiser, budget.steps)
            for _ in range(budget.steps):
                images, masks = _batch(rng, photos, budget, spec.task)
                x = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255.0
                m = torch.from_numpy(masks).float()[:, None]
                loss = reconstruction_loss(spec, budget, torch.sigmoid(model(x, m)), x, m)
                optimiser.zero_grad(set_to_none=True)
                loss.backward()
                optimiser.step()
                schedule.step()
    finally:
        torch.use_deterministic_algorithms(deterministic)
    return {k: v.detach().clone().contiguous() for k, v in model.state_dict().items()}
