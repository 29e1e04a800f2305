"""Generators that synthesise texture, as real inpainters do (issue 24): adversarially trained fills and a
latent-diffusion-like autoencoder path.

What real methods leave and a 20-second masked-L1 network does not is texture made up by an adversarially
trained decoder. The recipes, scaled down to minutes of CPU:

- LaMa (Suvorov et al. 2022): ResNet blocks of Fast Fourier Convolutions (a local 3x3 branch and a global
  branch that convolves in the 2-D real FFT domain, `FourierUnit`/`SpectralTransform`), stride-2 transposed
  convolutions to up-sample, a PatchGAN discriminator with a feature-matching term (`arch="ffc"`);
- DeepFill v2 (Yu et al. 2019): gated convolutions, 2x nearest + convolution up-sampling, an SN-PatchGAN
  discriminator with the hinge loss (`GeneratorSpec(gated=True, upsampler="nearest", adversarial=...)`);
- the Stable Diffusion VAE (AutoencoderKL + LPIPSWithDiscriminator in CompVis/latent-diffusion): a
  KL-regularised autoencoder (4 latent channels, KL weight 1e-6; 4x down here, latent diffusion's KL-f4, as
  8x did not converge in minutes of CPU), nearest + convolution up-sampling in the decoder, a hinge-loss
  PatchGAN switched on after a warm-up (`disc_start`) (`arch="kl"`). `latent_fill`
  encodes a crop, re-samples the latent of the masked region (the Telea-filled hole's latent mixed with
  Gaussian noise at a sampled strength: one "noise + decode" step) and decodes: the caller composites the
  hole back, or keeps the whole decoded crop (diffusion pipelines that do not paste the known pixels back).

The generator loss is the engine's masked L1 + high-frequency term (`generators.train_generator`) plus
`spec.adversarial` x the hinge generator loss and `spec.feature_matching` x the L1 between the
discriminator's features of real and generated crops. The discriminator sees the composite (fill in the
hole, real pixels around it) and the mask, so it has to find the hole: the pressure lands on the fill's
texture. Training is deterministic (one thread, fixed seeds), cached by `GeneratorBank` like the others.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import numpy as np

LATENT_CHANNELS = 4
KL_WEIGHT = 1e-6
DISC_START_FRACTION = 1 / 3  # reconstruction first, then the adversarial terms (latent diffusion's disc_start)


# ------------------------------------------------------------------------------ networks
@functools.cache
def _ffc_modules() -> dict:
    """LaMa's Fast Fourier Convolution blocks (defined once on first use: importing this module does not import
    torch)."""
    import torch
    from torch import nn

    class FourierUnit(nn.Module):
        """LaMa/FFC: 1x1 convolution of the real and imaginary parts of the 2-D real FFT (a global receptive
        field in one layer), back by the inverse FFT."""

        def __init__(self, channels: int):
            super().__init__()
            self.conv = nn.Conv2d(2 * channels, 2 * channels, 1)
            self.act = nn.ReLU()

        def forward(self, x):
            height, width = x.shape[-2:]
            spectrum = torch.fft.rfft2(x, norm="ortho")
            y = self.act(self.conv(torch.cat([spectrum.real, spectrum.imag], dim=1)))
            real, imag = y.chunk(2, dim=1)
            return torch.fft.irfft2(torch.complex(real, imag), s=(height, width), norm="ortho")

    class SpectralTransform(nn.Module):
        def __init__(self, channels: int):
            super().__init__()
            half = max(1, channels // 2)
            self.reduce = nn.Sequential(nn.Conv2d(channels, half, 1), nn.ReLU())
            self.fourier = FourierUnit(half)
            self.expand = nn.Conv2d(half, channels, 1)

        def forward(self, x):
            x = self.reduce(x)
            return self.expand(x + self.fourier(x))

    class FFC(nn.Module):
        """Fast Fourier Convolution over (local, global) channel groups: l->l, g->l, l->g are 3x3 convolutions,
        g->g the spectral transform (LaMa's ratio 0.75 of the channels global)."""

        def __init__(self, channels: int):
            super().__init__()
            self.n_global = max(1, (3 * channels) // 4)
            n_local = channels - self.n_global
            self.l2l = nn.Conv2d(n_local, n_local, 3, padding=1, padding_mode="reflect")
            self.g2l = nn.Conv2d(self.n_global, n_local, 3, padding=1, padding_mode="reflect")
            self.l2g = nn.Conv2d(n_local, self.n_global, 3, padding=1, padding_mode="reflect")
            self.g2g = SpectralTransform(self.n_global)

        def forward(self, x):
            local, glob = x[:, :-self.n_global], x[:, -self.n_global:]
            return torch.cat([self.l2l(local) + self.g2l(glob), self.l2g(local) + self.g2g(glob)], dim=1)

    class FFCResBlock(nn.Module):
        def __init__(self, channels: int):
            super().__init__()
            self.body = nn.Sequential(FFC(channels), nn.ELU(), FFC(channels))

        def forward(self, x):
            return x + self.body(x)

    return {"FFCResBlock": FFCResBlock}


@functools.cache
def _kl_gan_modules() -> dict:
    """The KL autoencoder's residual block and the PatchGAN discriminator (defined once on first use)."""
    from torch import nn
    from torch.nn.utils.parametrizations import spectral_norm

    class ResBlock(nn.Module):
        def __init__(self, channels: int):
            super().__init__()
            self.body = nn.Sequential(nn.Conv2d(channels, channels, 3, padding=1), nn.SiLU(),
                                      nn.Conv2d(channels, channels, 3, padding=1))

        def forward(self, x):
            return x + self.body(x)

    class PatchDiscriminator(nn.Module):
        """A small PatchGAN (pix2pix / taming's NLayerDiscriminator, spectrally normalised as DeepFill v2's
        SN-PatchGAN): 4x4 convolutions, stride 2 twice then 1; one logit per ~22x22 patch. `forward`
        returns the logits and the intermediate features (for feature matching)."""

        def __init__(self, in_channels: int, width: int):
            super().__init__()
            chans = [in_channels, width, 2 * width, 4 * width]
            self.layers = nn.ModuleList(
                nn.Sequential(spectral_norm(nn.Conv2d(chans[i], chans[i + 1], 4, 2 if i < 2 else 1, 1)),
                              nn.LeakyReLU(0.2)) for i in range(3))
            self.out = spectral_norm(nn.Conv2d(chans[-1], 1, 4, 1, 1))

        def forward(self, x):
            features = []
            for layer in self.layers:
                x = layer(x)
                features.append(x)
            return self.out(x), features

    return {"ResBlock": ResBlock, "PatchDiscriminator": PatchDiscriminator}


def ffc_body_block():
    """`generators.build_generator`'s body block for `arch="ffc"` (LaMa-like): (channels, index) -> an FFC ResNet
    block; the encoder-decoder around it is the masked-L1 generators' (`generators._nets().InpaintGenerator`)."""
    block = _ffc_modules()["FFCResBlock"]
    return lambda channels, _index: block(channels)


def build_kl_autoencoder(spec):
    """The SD VAE recipe scaled down: encoder (stride-2 convs + residual blocks, SiLU) to 2 x 4 latent channels
    (mean, log-variance) at 1/2**depth resolution; decoder (residual block, then 2x nearest + 3x3 conv per
    stage, as the SD decoder). `forward(image, mask)` (mask ignored) reconstructs through the latent mean
    during inference and a sample while training; `encode` / `decode` are used by `latent_fill`."""
    import torch
    from torch import nn

    blocks = _kl_gan_modules()

    class KLAutoencoder(nn.Module):
        def __init__(self):
            super().__init__()
            self.spec = spec
            w = spec.width
            chans = [min(w * 2**i, 4 * w) for i in range(spec.depth + 1)]
            enc = [nn.Conv2d(3, w, 3, padding=1), nn.SiLU()]
            for i in range(spec.depth):
                enc += [nn.Conv2d(chans[i], chans[i + 1], 3, stride=2, padding=1), nn.SiLU(),
                        blocks["ResBlock"](chans[i + 1])]
            self.encoder = nn.Sequential(*enc, nn.Conv2d(chans[-1], 2 * LATENT_CHANNELS, 1))
            dec = [nn.Conv2d(LATENT_CHANNELS, chans[-1], 3, padding=1), nn.SiLU(), blocks["ResBlock"](chans[-1])]
            for i in reversed(range(spec.depth)):
                dec += [nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(chans[i + 1], chans[i], 3, padding=1),
                        nn.SiLU()]
            self.decoder = nn.Sequential(*dec, nn.Conv2d(w, 3, 3, padding=1))

        def encode(self, image):
            mean, logvar = self.encoder(image * 2 - 1).chunk(2, dim=1)
            return mean, logvar.clamp(-30.0, 20.0)

        def decode(self, z):
            return self.decoder(z)

        def forward(self, image, mask=None):
            mean, logvar = self.encode(image)
            z = mean + torch.exp(0.5 * logvar) * torch.randn_like(mean) if self.training else mean
            self.last_kl = 0.5 * (mean**2 + logvar.exp() - 1.0 - logvar).sum(dim=1).mean()
            return self.decode(z)

    return KLAutoencoder()


# ------------------------------------------------------------------------------ training
def _hinge_d(real_logits, fake_logits):
    import torch.nn.functional as F

    return 0.5 * (F.relu(1.0 - real_logits).mean() + F.relu(1.0 + fake_logits).mean())


def train_adversarial(spec, budget, photos: Sequence[np.ndarray], seed: int, batch_fn, reconstruction_fn) -> dict:
    """Train `spec`'s generator with reconstruction + hinge adversarial + feature-matching losses and a
    PatchGAN trained alongside (Adam, betas (0.5, 0.9) for both, as the GAN inpainters). `batch_fn(rng)`
    gives (images, masks) uint8 arrays; `reconstruction_fn(out, x, m)` the engine's masked L1 + HF loss.
    Called inside `generators.train_generator`'s deterministic, one-thread scope. Returns the generator's
    state dict (the discriminator is thrown away, as in the real methods)."""
    import torch

    from inpaintseg.synth.generators import UPSAMPLERS, build_generator

    torch.manual_seed(seed)
    rng = np.random.default_rng([seed, UPSAMPLERS.index(spec.upsampler), spec.depth, spec.width, 7])
    model = build_generator(spec).train()
    kl = spec.arch == "kl"
    disc = _kl_gan_modules()["PatchDiscriminator"](3 if kl else 4, max(8, spec.width)).train()
    g_opt = torch.optim.Adam(model.parameters(), lr=budget.lr, betas=(0.5, 0.9))
    d_opt = torch.optim.Adam(disc.parameters(), lr=budget.lr, betas=(0.5, 0.9))
    g_sched = torch.optim.lr_scheduler.CosineAnnealingLR(g_opt, budget.steps)
    disc_start = int(budget.steps * DISC_START_FRACTION)
    for step in range(budget.steps):
        images, masks = batch_fn(rng)
        x = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255.0
        m = torch.from_numpy(masks).float()[:, None]
        out = torch.sigmoid(model(x, m))
        loss = reconstruction_fn(out, x, m)
        if kl:
            loss = loss + KL_WEIGHT * model.last_kl
        if step >= disc_start:
            fake = out if kl else out * m + x * (1 - m)
            d_in = (lambda im: im * 2 - 1) if kl else (lambda im: torch.cat([im * 2 - 1, m], dim=1))
            d_opt.zero_grad(set_to_none=True)
            real_logits, real_features = disc(d_in(x))
            fake_logits, _ = disc(d_in(fake.detach()))
            _hinge_d(real_logits, fake_logits).backward()
            d_opt.step()
            logits, features = disc(d_in(fake))
            loss = loss - spec.adversarial * logits.mean()
            if spec.feature_matching:
                matching = sum((f - r.detach()).abs().mean() for f, r in zip(features, real_features))
                loss = loss + spec.feature_matching * matching / len(features)
        g_opt.zero_grad(set_to_none=True)
        loss.backward()
        g_opt.step()
        g_sched.step()
    return {k: v.detach().clone().contiguous() for k, v in model.state_dict().items()}


# ------------------------------------------------------------------------------ latent path
def latent_fill(model, image: np.ndarray, mask: np.ndarray, rng: np.random.Generator, strength: float) -> np.ndarray:
    """Latent-diffusion-like fill: the Telea-prefilled crop is encoded (latent mean), the latent cells touching
    the hole are re-sampled as sqrt(1 - s) * z + sqrt(s) * sigma * noise (s = `strength`, sigma the latent's
    spread; the noise from `rng`), and the whole latent is decoded. Returns the decoded crop (the caller
    composites the hole, or keeps it all). Shape: (H, W, 3) uint8, (H, W) {0,1} -> (H, W, 3) uint8."""
    import cv2
    import torch
    import torch.nn.functional as F

    from inpaintseg.synth.generators import one_thread

    height, width = mask.shape
    multiple = 2 ** model.spec.depth
    prefilled = cv2.inpaint(image, mask * np.uint8(255), 5, cv2.INPAINT_TELEA)
    x = torch.from_numpy(np.ascontiguousarray(prefilled)).permute(2, 0, 1)[None].float() / 255.0
    m = torch.from_numpy(np.ascontiguousarray(mask)).float()[None, None]
    pad_h, pad_w = -height % multiple, -width % multiple
    if pad_h or pad_w:
        mode = "reflect" if pad_h < height and pad_w < width else "replicate"
        x, m = F.pad(x, (0, pad_w, 0, pad_h), mode=mode), F.pad(m, (0, pad_w, 0, pad_h), mode=mode)
    with one_thread(), torch.no_grad():
        z, _ = model.encode(x)
        cells = F.max_pool2d(m, multiple)  # a latent cell is re-sampled when any pixel under it is in the hole
        noise = torch.from_numpy(rng.standard_normal(z.shape).astype(np.float32))
        sigma = z.std().clamp(min=1e-3)
        resampled = (1.0 - strength) ** 0.5 * z + strength ** 0.5 * sigma * noise
        z = cells * resampled + (1 - cells) * z
        out = torch.sigmoid(model.decode(z))[0, :, :height, :width]
    return (out.permute(1, 2, 0).numpy() * 255.0).round().clip(0, 255).astype(np.uint8)
