"""Families "learned" and "autoencoder": fills made by the engine's own small inpainting networks
(`inpaintseg.synth.generators`), one method per up-sampler kind, the adversarially trained texture
synthesisers (`synth.texture_generators`: LaMa-like, DeepFill-v2-like), the autoencoder pass and the
latent-diffusion-like path through a GAN-trained KL autoencoder."""

from __future__ import annotations

import cv2
import numpy as np

from inpaintseg.synth.generators import run_generator
from inpaintseg.synth.texture_generators import latent_fill
from inpaintseg.synth.registry import Fill, MethodContext, method


def _learned(ctx: MethodContext, image: np.ndarray, mask: np.ndarray, name: str) -> Fill:
    return Fill(run_generator(ctx.generators.model(name), image, mask), mask, {"generator": name})


@method("gen_transposed", "learned", "encoder-decoder fill, stride-2 transposed-conv up-sampling (LaMa-like)",
        generators=("transposed",))
def gen_transposed(ctx: MethodContext, image: np.ndarray, mask: np.ndarray) -> Fill:
    return _learned(ctx, image, mask, "transposed")


@method("gen_nearest", "learned", "encoder-decoder fill, gated convs, 2x nearest + conv up-sampling (DeepFill-like)",
        generators=("nearest",))
def gen_nearest(ctx: MethodContext, image: np.ndarray, mask: np.ndarray) -> Fill:
    return _learned(ctx, image, mask, "nearest")


@method("gen_bilinear", "learned", "encoder-decoder fill, 2x bilinear + conv up-sampling",
        generators=("bilinear",))
def gen_bilinear(ctx: MethodContext, image: np.ndarray, mask: np.ndarray) -> Fill:
    return _learned(ctx, image, mask, "bilinear")


@method("gen_shuffle", "learned", "encoder-decoder fill, pixel-shuffle up-sampling", generators=("shuffle",))
def gen_shuffle(ctx: MethodContext, image: np.ndarray, mask: np.ndarray) -> Fill:
    return _learned(ctx, image, mask, "shuffle")


@method("ae_pass", "autoencoder", "whole crop encoded + decoded by an 8x autoencoder, masked region composited "
        "back (latent-diffusion-like); half the time the hole is Telea-filled first", generators=("vae",))
def ae_pass(ctx: MethodContext, image: np.ndarray, mask: np.ndarray) -> Fill:
    prefill = bool(ctx.rng.random() < 0.5)
    if prefill:  # new content in the hole, then the decoder's traces over it
        image = cv2.inpaint(image, mask * np.uint8(255), 5, cv2.INPAINT_TELEA)
    return Fill(run_generator(ctx.generators.model("vae"), image, mask), mask, {"generator": "vae", "prefill": prefill})


@method("gen_lama_gan", "learned", "LaMa-like: Fourier-convolution ResNet, transposed-conv up-sampling, trained with a "
        "PatchGAN (hinge) + feature matching", generators=("lama_gan",))
def gen_lama_gan(ctx: MethodContext, image: np.ndarray, mask: np.ndarray) -> Fill:
    return _learned(ctx, image, mask, "lama_gan")


@method("gen_gated_gan", "learned", "DeepFill-v2-like: gated convs, 2x nearest up-sampling, trained with an "
        "SN-PatchGAN (hinge)", generators=("gated_gan",))
def gen_gated_gan(ctx: MethodContext, image: np.ndarray, mask: np.ndarray) -> Fill:
    return _learned(ctx, image, mask, "gated_gan")


LATENT_STRENGTH = (0.2, 0.8)  # share of noise in the re-sampled latent of the hole (1.0 decodes to blotches)


def _latent(ctx: MethodContext, image: np.ndarray, mask: np.ndarray, whole: bool) -> Fill:
    strength = round(float(ctx.rng.uniform(*LATENT_STRENGTH)), 3)
    decoded = latent_fill(ctx.generators.model("kl_vae"), image, mask, ctx.rng, strength)
    return Fill(decoded, mask, {"generator": "kl_vae", "strength": strength, "whole_frame": whole}, whole_frame=whole)


@method("ldm_latent", "autoencoder", "latent-diffusion-like: GAN-trained 4x KL autoencoder, the hole's latent "
        "re-sampled with noise and decoded, hole composited back", generators=("kl_vae",))
def ldm_latent(ctx: MethodContext, image: np.ndarray, mask: np.ndarray) -> Fill:
    return _latent(ctx, image, mask, whole=False)


@method("ldm_whole", "autoencoder", "as ldm_latent, but the whole decoded crop is kept (pipelines that do not "
        "paste the known pixels back): decoder traces everywhere, the hole re-sampled", generators=("kl_vae",))
def ldm_whole(ctx: MethodContext, image: np.ndarray, mask: np.ndarray) -> Fill:
    return _latent(ctx, image, mask, whole=True)
