"""Families "learned" and "autoencoder": fills made by the engine's own small inpainting networks
(`inpaintseg.synth.generators`), one method per up-sampler kind, plus the autoencoder pass."""

from __future__ import annotations

import cv2
import numpy as np

from inpaintseg.synth.generators import run_generator
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
