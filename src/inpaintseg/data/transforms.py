"""Albumentations pipelines for training and evaluation, and ImageNet normalisation.

Two input modes:
- ``resize`` (the seed): the whole image is resized to ``img_size`` x ``img_size``. Training adds flips,
  a small rotation and an elastic warp (run after the resize: the warp costs O(pixels), so warping the
  256x256 result is several times cheaper than warping the original), then normalises.
- ``crop``: random ``img_size`` crops at native resolution, so the pixel-level traces that inpainting
  leaves are never resampled. Smaller images are zero-padded (masks padded with 0). Training adds only
  lossless flips and 90-degree rotations; evaluation is a deterministic centre crop/pad.

Masks are uint8 {0, 1}; every geometric step uses nearest interpolation and fills with 0, so a mask is
still exactly binary and aligned with its image after any pipeline here.

Randomness: albumentations 2.x keeps its own random state inside each ``Compose`` and ignores the global
numpy/random seeds. ``train_transform(seed=None)`` therefore draws the Compose seed from the global numpy
generator, so ``lightning.seed_everything`` makes augmentations reproducible; DataLoader workers reseed
the Compose per worker and per epoch through ``inpaintseg.data.dataset.seed_worker``.
"""

from __future__ import annotations

import albumentations as A
import cv2
import numpy as np

from inpaintseg.data.input_spec import IMAGENET_MEAN, IMAGENET_STD, INPUT_MODES, SIZE_MULTIPLE
from inpaintseg.errors import ConfigError


# Augmentation strengths (resize mode). ElasticTransform in albumentations 2.x displaces each pixel
# by alpha * (Gaussian noise scaled to [-1, 1], blurred with sigma): alpha=30, sigma=6 moves pixels
# 0.4 px on average, at most ~4 px, at 256x256 (measured).
# Mask interpolation for resizing (nearest, sampled at pixel centres). Use it wherever masks are resized.
MASK_RESIZE_INTERPOLATION = cv2.INTER_NEAREST_EXACT
ROTATE_LIMIT_DEG = 15
ELASTIC_ALPHA = 30.0
ELASTIC_SIGMA = 6.0
ELASTIC_P = 0.25


def check_input_mode(input_mode: str, img_size: int) -> None:
    """Raise ConfigError unless `input_mode` is known and `img_size` a positive multiple of 16."""
    if input_mode not in INPUT_MODES:
        raise ConfigError(
            f"input mode {input_mode!r} is not known; expected one of {', '.join(INPUT_MODES)}. "
            "Use `resize` (whole image resized) or `crop` (native-resolution crops)."
        )
    if not isinstance(img_size, (int, np.integer)) or isinstance(img_size, bool) or img_size < SIZE_MULTIPLE \
            or img_size % SIZE_MULTIPLE:
        raise ConfigError(
            f"image size {img_size!r} is not usable; expected a positive multiple of {SIZE_MULTIPLE} (e.g. 256) so "
            "the U-Net can halve it four times. Change img_size."
        )


def normalize(image_uint8: np.ndarray, mean=IMAGENET_MEAN, std=IMAGENET_STD) -> np.ndarray:
    """Scale a uint8 RGB image to [0, 1] and standardise each channel.

    Shape: (H, W, 3) uint8 -> (H, W, 3) float32.
    """
    image = image_uint8.astype(np.float32) / 255.0
    return (image - np.asarray(mean, np.float32)) / np.asarray(std, np.float32)


def denormalize(image: np.ndarray, mean=IMAGENET_MEAN, std=IMAGENET_STD) -> np.ndarray:
    """Invert `normalize` back to float values in the 0..255 range (not rounded or clipped).

    Shape: (H, W, 3) float32 -> (H, W, 3) float32.
    """
    return (image * np.asarray(std, np.float32) + np.asarray(mean, np.float32)) * 255.0


def _normalize_step(mean, std) -> A.Normalize:
    return A.Normalize(mean=mean, std=std, max_pixel_value=255.0)


def _resize_step(img_size: int) -> A.Resize:
    # area_for_downscale="image": INTER_AREA when shrinking the image (no aliasing of large photos).
    # Masks: INTER_NEAREST_EXACT samples pixel centres like the image's interpolation does; plain
    # INTER_NEAREST is offset by half a source pixel (measured: 2-3% of mask pixels disagree with the
    # resized image's edges, vs ~0.1% with NEAREST_EXACT).
    return A.Resize(img_size, img_size, interpolation=cv2.INTER_LINEAR,
                    mask_interpolation=MASK_RESIZE_INTERPOLATION, area_for_downscale="image")


def _pad_step(img_size: int) -> A.PadIfNeeded:
    return A.PadIfNeeded(min_height=img_size, min_width=img_size, position="center",
                         border_mode=cv2.BORDER_CONSTANT, fill=0, fill_mask=0)


def _seed_from_numpy(seed: int | None) -> int:
    """The given seed, or one drawn from the global numpy generator (seeded by seed_everything)."""
    return int(seed) if seed is not None else int(np.random.randint(0, 2**31 - 1))


def train_transform(img_size: int = 256, input_mode: str = "resize", mean=IMAGENET_MEAN,
                    std=IMAGENET_STD, seed: int | None = None) -> A.Compose:
    """The training pipeline: geometric augmentation, then normalisation.

    Shape: image (H, W, 3) uint8 + mask (H, W) uint8 {0,1} -> image (S, S, 3) float32 + mask (S, S)
    uint8 {0,1}, S = img_size.
    """
    check_input_mode(input_mode, img_size)
    if input_mode == "resize":
        steps = [
            _resize_step(img_size),
            A.HorizontalFlip(p=0.5),
            A.VerticalFlip(p=0.5),
            A.Rotate(limit=ROTATE_LIMIT_DEG, interpolation=cv2.INTER_LINEAR,
                     mask_interpolation=cv2.INTER_NEAREST, border_mode=cv2.BORDER_CONSTANT,
                     fill=0, fill_mask=0, p=0.5),
            A.ElasticTransform(alpha=ELASTIC_ALPHA, sigma=ELASTIC_SIGMA, interpolation=cv2.INTER_LINEAR,
                               mask_interpolation=cv2.INTER_NEAREST, border_mode=cv2.BORDER_CONSTANT,
                               fill=0, fill_mask=0, p=ELASTIC_P),
        ]
    else:  # crop: lossless augmentation only, so native-resolution traces survive
        steps = [
            _pad_step(img_size),
            A.RandomCrop(img_size, img_size),
            A.HorizontalFlip(p=0.5),
            A.VerticalFlip(p=0.5),
            A.RandomRotate90(p=0.5),
        ]
    return A.Compose(steps + [_normalize_step(mean, std)], seed=_seed_from_numpy(seed))


def eval_transform(img_size: int = 256, input_mode: str = "resize", mean=IMAGENET_MEAN,
                   std=IMAGENET_STD) -> A.Compose:
    """The deterministic validation pipeline: resize (or centre crop/pad), then normalisation.

    Shape: image (H, W, 3) uint8 + mask (H, W) uint8 {0,1} -> image (S, S, 3) float32 + mask (S, S)
    uint8 {0,1}, S = img_size.
    """
    check_input_mode(input_mode, img_size)
    if input_mode == "resize":
        steps = [_resize_step(img_size)]
    else:
        steps = [_pad_step(img_size), A.CenterCrop(img_size, img_size)]
    return A.Compose(steps + [_normalize_step(mean, std)], seed=0)
