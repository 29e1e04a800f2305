"""Family "classical": OpenCV's diffusion fills.

opencv-contrib's xphoto fills (FSR, ShiftMap) are not offered: opencv-contrib-python-headless
installs into the same `cv2` folder as opencv-python-headless, which albumentations requires, so the
two cannot replace each other cleanly (checked with 5.0.0.93: installing both works by overwriting
files, uninstalling either breaks `cv2`).
"""

from __future__ import annotations

import cv2
import numpy as np

from inpaintseg.synth.registry import Fill, MethodContext, method


def _diffusion(ctx: MethodContext, image: np.ndarray, mask: np.ndarray, flag: int) -> Fill:
    radius = int(ctx.rng.integers(3, 8))
    return Fill(cv2.inpaint(image, mask * np.uint8(255), radius, flag), mask, {"radius": radius})


@method("telea", "classical", "OpenCV Telea fast-marching fill")
def telea(ctx: MethodContext, image: np.ndarray, mask: np.ndarray) -> Fill:
    return _diffusion(ctx, image, mask, cv2.INPAINT_TELEA)


@method("ns", "classical", "OpenCV Navier-Stokes fill")
def navier_stokes(ctx: MethodContext, image: np.ndarray, mask: np.ndarray) -> Fill:
    return _diffusion(ctx, image, mask, cv2.INPAINT_NS)
