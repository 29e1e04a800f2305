"""Fixtures for the manipulation engine: tiny textured images and a method context."""

from __future__ import annotations

import numpy as np
import pytest

from inpaintseg.synth.generator_bank import GeneratorBank
from inpaintseg.synth.registry import MethodContext


def textured(size: int, seed: int = 0) -> np.ndarray:
    """A noisy colour gradient with some structure: (size, size, 3) uint8."""
    rng = np.random.default_rng(seed)
    ramp = np.linspace(20, 220, size, dtype=np.float32)
    image = np.stack([ramp[None, :].repeat(size, 0), ramp[:, None].repeat(size, 1),
                      np.full((size, size), 90, np.float32)], -1)
    image += 40 * np.sin(np.arange(size) / 3.0)[None, :, None] + rng.normal(0, 8, (size, size, 3))
    return np.clip(image, 0, 255).astype(np.uint8)


def centre_mask(size: int) -> np.ndarray:
    mask = np.zeros((size, size), np.uint8)
    mask[size // 4: size // 2 + size // 8, size // 4: size // 2 + size // 8] = 1
    return mask


@pytest.fixture(name="textured")
def textured_fixture():
    """The `textured(size, seed=0)` image maker."""
    return textured


@pytest.fixture(scope="session")
def tiny_bank():
    """The tiny generator set (trained once per session into the session's tmp cache)."""
    bank = GeneratorBank("tiny", workers=1)
    bank.prepare(["transposed", "nearest", "bilinear", "shuffle", "vae"])
    return bank


@pytest.fixture
def make_ctx(tiny_bank):
    def _make(seed: int, size: int) -> MethodContext:
        rng = np.random.default_rng(seed)
        return MethodContext(rng, lambda: ("test/donor", textured(size, seed + 100)[::-1].copy()), tiny_bank)

    return _make
