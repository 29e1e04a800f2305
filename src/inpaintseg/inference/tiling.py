"""Tiling for native-resolution (``crop``) models: overlapping tiles blended with a raised-cosine taper,
reflect padding for small images, and the resize rule of ``resize`` models."""

from __future__ import annotations

import math

import cv2
import numpy as np


def tile_starts(length: int, tile: int, overlap: int) -> list[int]:
    """Start offsets of tiles of size ``tile`` covering ``[0, length)`` with at least ``overlap``
    pixels shared by neighbours; the first starts at 0 and the last ends at ``length``.

    >>> tile_starts(256, 256, 64), tile_starts(600, 256, 64)
    ([0], [0, 172, 344])
    """
    if length <= tile:
        return [0]
    stride = tile - overlap
    count = math.ceil((length - tile) / stride) + 1
    return [int(round(v)) for v in np.linspace(0, length - tile, count)]


def taper(size: int, ramp: int, left: bool, right: bool) -> np.ndarray:
    """A 1-D blending weight: 1 in the middle, a raised-cosine ramp from 0 over ``ramp`` pixels at
    each side that borders another tile (``left``/``right``); sides on the image border stay 1, so
    every pixel keeps a positive total weight without a floor (neighbours overlap by >= ``ramp``).

    Shape: -> float32 (size,)
    """
    w = np.ones(size, np.float32)
    if ramp >= 2:  # a 1-pixel ramp would be a single 0 shared with the neighbour's 0: no taper then
        ramp_values = np.sin(0.5 * np.pi * np.arange(ramp) / ramp).astype(np.float32) ** 2
        if left:
            w[:ramp] = ramp_values
        if right:
            w[size - ramp:] = ramp_values[::-1]
    return w


def tile_windows(height: int, width: int, tile: int, overlap: int):
    """Yield ``(y, x, window)`` for each tile of a (height, width) canvas (both >= tile).

    Shape: window float32 (tile, tile), the outer product of the row and column tapers.
    """
    ys, xs = tile_starts(height, tile, overlap), tile_starts(width, tile, overlap)
    for i, y in enumerate(ys):
        wy = taper(tile, overlap, left=i > 0, right=i < len(ys) - 1)
        for j, x in enumerate(xs):
            wx = taper(tile, overlap, left=j > 0, right=j < len(xs) - 1)
            yield y, x, np.outer(wy, wx)


def reflect_pad_to(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """Pad at the bottom/right by reflection to at least (height, width).

    Shape: (H, W, ...) -> (max(H, height), max(W, width), ...)
    """
    pad_h, pad_w = max(0, height - image.shape[0]), max(0, width - image.shape[1])
    if not pad_h and not pad_w:
        return image
    pads = [(0, pad_h), (0, pad_w)] + [(0, 0)] * (image.ndim - 2)
    return np.pad(image, pads, mode="reflect")


def resize_to(array: np.ndarray, height: int, width: int) -> np.ndarray:
    """Resize like training's eval transform (albumentations Resize, area_for_downscale="image"):
    INTER_AREA when either side shrinks, else bilinear; a no-op at the same size.

    Shape: (H, W[, C]) -> (height, width[, C])
    """
    if array.shape[:2] == (height, width):
        return array
    shrink = height < array.shape[0] or width < array.shape[1]
    return cv2.resize(array, (width, height), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)
