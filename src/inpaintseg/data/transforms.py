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

Degradation-robust training (`degradation_steps`, off by default): after the geometric augmentation and
before normalisation, each training image may be blurred, rescaled down and back up, given Gaussian noise
and re-compressed as JPEG, each with its own probability. These are image-only steps: the mask and the
geometry never change. A paired original (`additional_targets`) gets exactly the same steps.

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
# Degradation strengths (the probabilities and the JPEG / rescale ranges are TrainConfig keys).
RESCALE_MAX = 0.9  # down-scale factors are drawn from [degrade_rescale_min, RESCALE_MAX]
BLUR_SIGMA = (0.3, 1.5)  # pixels
NOISE_STD = (2.0, 8.0)  # grey levels of 255


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


def jpeg_round_trip(image: np.ndarray, quality: int) -> np.ndarray:
    """Encode an RGB uint8 image as JPEG at `quality` and decode it (in memory).

    Shape: (H, W, 3) uint8 RGB -> (H, W, 3) uint8 RGB.
    """
    ok, buffer = cv2.imencode(".jpg", cv2.cvtColor(image, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise RuntimeError("OpenCV could not encode a JPEG")
    return cv2.cvtColor(cv2.imdecode(buffer, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


class JpegRGB(A.ImageOnlyTransform):
    """JPEG re-compression at a quality drawn from `quality_range` (inclusive).

    Not albumentations' ImageCompression: that one encodes the array as if it were BGR, i.e. the JPEG of
    the channel-swapped image (measured: up to 132 grey levels away from a real JPEG of the RGB image
    at quality 40), whose luma/chroma split differs from what a camera or a website produces.
    """

    def __init__(self, quality_range: tuple[int, int] = (30, 100), p: float = 0.5) -> None:
        super().__init__(p=p)
        self.quality_range = (int(quality_range[0]), int(quality_range[1]))

    def get_params(self) -> dict:
        return {"quality": self.py_random.randint(*self.quality_range)}

    def apply(self, img: np.ndarray, quality: int = 95, **params) -> np.ndarray:
        return jpeg_round_trip(img, quality)

    def get_transform_init_args_names(self) -> tuple[str, ...]:
        return ("quality_range",)


def degradation_steps(jpeg_p: float = 0.0, jpeg_quality_min: int = 30, jpeg_quality_max: int = 100,
                      rescale_p: float = 0.0, rescale_min: float = 0.5, blur_p: float = 0.0,
                      noise_p: float = 0.0) -> list:
    """Image-only degradations in the order a photo meets them (blur, resampling, noise, JPEG); steps
    with probability 0 are left out. Keyword names are TrainConfig's `degrade_*` keys without the prefix.

    Shape: image (H, W, 3) uint8 -> (H, W, 3) uint8; masks pass through unchanged.
    """
    for name, value in (("jpeg_p", jpeg_p), ("rescale_p", rescale_p), ("blur_p", blur_p), ("noise_p", noise_p)):
        if not 0.0 <= value <= 1.0:
            raise ConfigError(f"degrade_{name}: expected a probability in [0, 1], got {value!r}.")
    if not 1 <= jpeg_quality_min <= jpeg_quality_max <= 100:
        raise ConfigError(f"degrade_jpeg_quality_min/max: expected 1 <= min <= max <= 100, got "
                          f"{jpeg_quality_min}, {jpeg_quality_max}.")
    if not 0.0 < rescale_min <= RESCALE_MAX:
        raise ConfigError(f"degrade_rescale_min: expected a factor in (0, {RESCALE_MAX}], got {rescale_min!r}.")
    steps = []
    if blur_p:
        steps.append(A.GaussianBlur(sigma_limit=BLUR_SIGMA, p=blur_p))
    if rescale_p:
        steps.append(A.Downscale(scale_range=(rescale_min, RESCALE_MAX), p=rescale_p,
                                 interpolation_pair={"downscale": cv2.INTER_AREA, "upscale": cv2.INTER_LINEAR}))
    if noise_p:
        steps.append(A.GaussNoise(std_range=(NOISE_STD[0] / 255.0, NOISE_STD[1] / 255.0), p=noise_p))
    if jpeg_p:
        steps.append(JpegRGB(quality_range=(jpeg_quality_min, jpeg_quality_max), p=jpeg_p))
    return steps


def train_transform(img_size: int = 256, input_mode: str = "resize", mean=IMAGENET_MEAN,
                    std=IMAGENET_STD, seed: int | None = None, degradations: dict | None = None,
                    additional_targets: dict | None = None) -> A.Compose:
    """The training pipeline: geometric augmentation, optional degradations (`degradations`: keyword
    arguments of `degradation_steps`), then normalisation. `additional_targets` (e.g. {"original":
    "image"}) are transformed with exactly the same draws as the image.

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
    steps += degradation_steps(**(degradations or {}))
    return A.Compose(steps + [_normalize_step(mean, std)], seed=_seed_from_numpy(seed),
                     additional_targets=additional_targets)


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
