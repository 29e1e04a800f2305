"""Inference: probability maps at the original image size, TTA, tiling, post-processing calibration.

- ``Predictor`` turns uint8 RGB images into foreground probability maps at each image's original size.
  ``resize`` models see the image resized to ``input.size`` and the map is resized back (bilinear)
  before any threshold; ``crop`` models see the image at native resolution in overlapping
  ``input.size`` tiles blended with a smooth window (images smaller than a tile are reflect-padded
  and cropped back), so memory stays bounded whatever the image size.
- TTA (``none`` | ``flip`` | ``d4``): each view is a flip and/or a 90-degree rotation, so its inverse
  is exact (no resampling); the per-view probability maps are mapped back and averaged.
- ``image_score``: the image-level manipulation score (mean of the top 1% pixel probabilities).
- ``calibrate_postprocessing``: measures threshold x TTA x CRF on validation data and returns the
  ``config["postprocess"]`` record that ``predict --tta auto --crf auto --threshold auto`` follows.
- ``predict_paths``: the file pipeline used by ``predict`` and the benchmark (decode in a thread,
  model in batches, DenseCRF in a process pool because pydensecrf holds the GIL).
"""

from __future__ import annotations

import concurrent.futures as cf
import math
import multiprocessing
import time
from collections.abc import Iterator, Sequence
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from inpaintseg.errors import ConfigError, DataError, InpaintsegError

TTA_CHOICES = ("none", "flip", "d4")
DEFAULT_THRESHOLD = 0.5
SCORE_TOP_FRACTION = 0.01
CALIBRATION_THRESHOLDS = np.round(np.arange(1, 100) / 100.0, 2)  # 0.01 .. 0.99


# --------------------------------------------------------------------------------------------
# TTA views
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class View:
    """A dihedral view: flip the given axes (2 = rows/vertical, 3 = columns/horizontal), then
    rotate by ``rot`` quarter turns. ``invert`` undoes it exactly."""

    flip: tuple[int, ...] = ()
    rot: int = 0

    def apply(self, x):
        """Shape: (B, C, H, W) -> (B, C, H, W), or (B, C, W, H) for odd ``rot``."""
        import torch  # noqa: PLC0415

        if self.flip:
            x = torch.flip(x, dims=self.flip)
        if self.rot:
            x = torch.rot90(x, self.rot, dims=(2, 3))
        return x

    def invert(self, y):
        """Shape: the model output of ``apply(x)`` -> the frame of ``x``."""
        import torch  # noqa: PLC0415

        if self.rot:
            y = torch.rot90(y, -self.rot, dims=(2, 3))
        if self.flip:
            y = torch.flip(y, dims=self.flip)
        return y


def tta_views(mode: str) -> list[View]:
    """The views of a TTA mode: none = 1, flip = 4 (identity, horizontal, vertical, both), d4 = 8."""
    if mode == "none":
        return [View()]
    if mode == "flip":
        return [View(), View(flip=(3,)), View(flip=(2,)), View(flip=(2, 3))]
    if mode == "d4":
        return [View(rot=k) for k in range(4)] + [View(flip=(3,), rot=k) for k in range(4)]
    raise ConfigError(f"unknown TTA mode {mode!r}; expected one of {', '.join(TTA_CHOICES)}.")


# --------------------------------------------------------------------------------------------
# Tiling
# --------------------------------------------------------------------------------------------
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


# --------------------------------------------------------------------------------------------
# Predictor
# --------------------------------------------------------------------------------------------
def resolve_device(device: str | None) -> str:
    """``auto``/None -> ``cuda`` when available, else ``cpu``; other values are checked."""
    import torch  # noqa: PLC0415

    if device in (None, "", "auto"):
        return "cuda" if torch.cuda.is_available() else "cpu"
    try:
        parsed = torch.device(device)
    except (RuntimeError, ValueError):
        raise ConfigError(f"unknown device {device!r}; use auto, cpu, cuda or cuda:N.") from None
    if parsed.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device {device!r} was asked for but CUDA is not available here; "
                          "use --device cpu (or auto).")
    return str(parsed)


def _input_section(model_config: dict) -> dict:
    section = model_config.get("input") if isinstance(model_config, dict) else None
    if not isinstance(section, dict):
        raise ConfigError("the model config has no 'input' section (mode, size, mean, std); "
                          "re-export the model with `inpaintseg train`.")
    mode = section.get("mode", "resize")
    size = section.get("size")
    if mode not in ("resize", "crop"):
        raise ConfigError(f"model config input.mode is {mode!r}; expected 'resize' or 'crop'.")
    if isinstance(size, bool) or not isinstance(size, int) or size < 8:
        raise ConfigError(f"model config input.size is {size!r}; expected an integer >= 8.")
    mean = section.get("mean", [0.485, 0.456, 0.406])
    std = section.get("std", [0.229, 0.224, 0.225])
    if len(mean) != 3 or len(std) != 3 or min(std) <= 0:
        raise ConfigError(f"model config input.mean/std must be 3 numbers (std > 0); got {mean}, {std}.")
    return {"mode": mode, "size": size, "mean": [float(v) for v in mean], "std": [float(v) for v in std]}


class Predictor:
    """Probability maps at the original image size for a loaded model.

    ``model`` returns logits (B, 1, H, W) for (B, 3, H, W) input; ``model_config`` is the model
    folder's config dict (its ``input`` section decides resize vs crop, the size and normalisation).
    ``channels_last`` defaults to True on CPU (measured faster there, see benchmarks/predict_speed.py).
    """

    def __init__(self, model, model_config: dict, device: str = "cpu", tta: str = "none",
                 batch_size: int = 8, channels_last: bool | None = None, tile_overlap: float = 0.25):
        import torch  # noqa: PLC0415

        if tta not in TTA_CHOICES:
            raise ConfigError(f"unknown TTA mode {tta!r}; expected one of {', '.join(TTA_CHOICES)}.")
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ConfigError(f"batch size must be a positive integer, got {batch_size!r}.")
        if not 0.0 <= tile_overlap < 0.5:
            raise ConfigError(f"tile overlap must lie in [0, 0.5), got {tile_overlap!r}.")
        self.input = _input_section(model_config)
        self.device = torch.device(device)
        self.tta = tta
        self.views = tta_views(tta)
        self.batch_size = batch_size
        self.channels_last = (self.device.type == "cpu") if channels_last is None else channels_last
        self.memory_format = torch.channels_last if self.channels_last else torch.contiguous_format
        self.model = model.to(self.device).eval()
        if self.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.tile = self.input["size"]
        self.overlap = int(round(self.tile * tile_overlap))
        self._mean = torch.tensor(self.input["mean"], device=self.device).view(1, 3, 1, 1) * 255.0
        self._inv_std = 1.0 / (torch.tensor(self.input["std"], device=self.device).view(1, 3, 1, 1) * 255.0)

    # -- tensors ----------------------------------------------------------------------------
    def _to_tensor(self, images: Sequence[np.ndarray]):
        """Shape: list of uint8 (h, w, 3), all the same size -> normalised float32 (B, 3, h, w)."""
        import torch  # noqa: PLC0415

        batch = torch.from_numpy(np.stack(images)).to(self.device)
        x = batch.permute(0, 3, 1, 2).float()
        x = (x - self._mean) * self._inv_std
        return x.contiguous(memory_format=self.memory_format)

    def forward_proba(self, x):
        """TTA-averaged foreground probabilities for a normalised batch.

        Shape: (B, 3, h, w) -> float32 (B, h, w)
        """
        import torch  # noqa: PLC0415

        total = None
        with torch.inference_mode():
            for view in self.views:
                xv = view.apply(x).contiguous(memory_format=self.memory_format)
                logits = self.model(xv)
                if logits.ndim != 4 or logits.shape[1] != 1 or logits.shape[2:] != xv.shape[2:]:
                    raise InpaintsegError(
                        f"the model returned logits of shape {tuple(logits.shape)} for input "
                        f"{tuple(xv.shape)}; expected (B, 1, H, W) at the input size.")
                probs = view.invert(torch.sigmoid(logits.float()))
                total = probs if total is None else total + probs
        return (total / len(self.views))[:, 0]

    def _forward_numpy(self, images: Sequence[np.ndarray]) -> np.ndarray:
        """Shape: list of uint8 (h, w, 3) of one size -> float32 (B, h, w) on the host."""
        out = []
        for start in range(0, len(images), self.batch_size):
            x = self._to_tensor(images[start:start + self.batch_size])
            out.append(self.forward_proba(x).cpu().numpy())
        return np.concatenate(out)

    # -- resize mode ------------------------------------------------------------------------
    def _predict_resize(self, images: Sequence[np.ndarray]) -> list[np.ndarray]:
        size = self.tile
        resized = [resize_to(img, size, size) for img in images]
        probs = self._forward_numpy(resized)
        return [np.clip(resize_to(p, img.shape[0], img.shape[1]), 0.0, 1.0) for p, img in zip(probs, images)]

    # -- crop mode --------------------------------------------------------------------------
    def _predict_tiled(self, images: Sequence[np.ndarray]) -> list[np.ndarray]:
        """Tiles from all images of the batch go through the model together, batch_size at a time."""
        tile = self.tile
        padded = [reflect_pad_to(img, tile, tile) for img in images]
        sums = [np.zeros(p.shape[:2], np.float32) for p in padded]
        weights = [np.zeros(p.shape[:2], np.float32) for p in padded]
        jobs = ((k, y, x, w) for k, p in enumerate(padded) for y, x, w in tile_windows(*p.shape[:2], tile, self.overlap))
        while True:
            chunk = [job for _, job in zip(range(self.batch_size), jobs)]
            if not chunk:
                break
            crops = [padded[k][y:y + tile, x:x + tile] for k, y, x, _ in chunk]
            probs = self._forward_numpy(crops)
            for (k, y, x, w), p in zip(chunk, probs):
                sums[k][y:y + tile, x:x + tile] += p * w
                weights[k][y:y + tile, x:x + tile] += w
        return [
            (s / np.maximum(w, 1e-12))[: img.shape[0], : img.shape[1]].astype(np.float32)
            for s, w, img in zip(sums, weights, images)
        ]

    # -- public -----------------------------------------------------------------------------
    def predict_proba_batch(self, images: Sequence[np.ndarray]) -> list[np.ndarray]:
        """Probability maps for a list of images.

        Shape: list of uint8 (H_i, W_i, 3) RGB -> list of float32 (H_i, W_i) in [0, 1]
        """
        for img in images:
            if img.ndim != 3 or img.shape[2] != 3 or img.dtype != np.uint8:
                raise ValueError(f"expected uint8 (H, W, 3) RGB images, got {img.dtype} {img.shape}")
        if not images:
            return []
        if self.input["mode"] == "resize":
            return self._predict_resize(images)
        return self._predict_tiled(images)

    def predict_proba(self, image: np.ndarray) -> np.ndarray:
        """Shape: uint8 (H, W, 3) RGB -> float32 (H, W) in [0, 1] at the original size."""
        return self.predict_proba_batch([image])[0]


# --------------------------------------------------------------------------------------------
# Image-level score
# --------------------------------------------------------------------------------------------
def image_score(probs: np.ndarray, top_fraction: float = SCORE_TOP_FRACTION) -> float:
    """Image-level manipulation score: the mean of the top 1% pixel probabilities.

    Chosen over the plain maximum (one noisy pixel decides) and the mean (a small inpainted region
    drowns in the untouched rest): an untouched image scores low unless a sizeable cluster of
    pixels is confidently positive, while an image whose inpainted area covers >= 1% of its pixels
    scores about the mean probability inside that area. The result lies in [0, 1] and does not
    depend on resolution.

    Shape: (H, W) float -> float
    """
    flat = np.asarray(probs, dtype=np.float32).ravel()
    if flat.size == 0:
        return 0.0
    k = max(1, int(math.ceil(flat.size * top_fraction)))
    top = np.partition(flat, flat.size - k)[flat.size - k:]
    return float(top.mean())


# --------------------------------------------------------------------------------------------
# Calibration
# --------------------------------------------------------------------------------------------
def dice_curve(probs: np.ndarray, truth: np.ndarray, thresholds: np.ndarray = CALIBRATION_THRESHOLDS) -> np.ndarray:
    """Per-image Dice of ``probs >= t`` against ``truth`` for each threshold t (a multiple of 0.01).

    Both empty counts 1.0 (the competition's rule). Computed from 100-bin histograms, so it costs
    one pass over the pixels whatever the number of thresholds.

    Shape: (H, W) float, (H, W) {0,1} -> float64 (len(thresholds),)
    """
    bins = np.minimum((np.asarray(probs, np.float32) * 100.0).astype(np.int64), 99).ravel()
    pos = truth.ravel() > 0
    pos_hist = np.bincount(bins[pos], minlength=100)
    neg_hist = np.bincount(bins[~pos], minlength=100)
    tp_at = np.cumsum(pos_hist[::-1])[::-1]  # tp_at[k] = positives with bin >= k
    fp_at = np.cumsum(neg_hist[::-1])[::-1]
    idx = np.rint(np.asarray(thresholds) * 100).astype(np.int64)
    tp, fp = tp_at[idx].astype(np.float64), fp_at[idx].astype(np.float64)
    fn = pos.sum() - tp
    denom = 2 * tp + fp + fn
    return np.where(denom > 0, 2 * tp / np.maximum(denom, 1), 1.0)


def _best_threshold(mean_curve: np.ndarray) -> tuple[float, float]:
    """(threshold, dice) at the curve's maximum; ties go to the threshold nearest 0.5."""
    best = mean_curve.max()
    candidates = np.flatnonzero(mean_curve >= best - 1e-12)
    pick = candidates[np.argmin(np.abs(CALIBRATION_THRESHOLDS[candidates] - 0.5))]
    return float(CALIBRATION_THRESHOLDS[pick]), float(mean_curve[pick])


def _even_subset(n: int, limit: int) -> list[int]:
    """``limit`` indices spread evenly over range(n) (all of them when n <= limit)."""
    if n <= limit:
        return list(range(n))
    return sorted({int(v) for v in np.linspace(0, n - 1, limit).round()})


@dataclass
class _Variant:
    curves: list = field(default_factory=list)
    seconds: float = 0.0


def calibrate_postprocessing(
    model,
    model_config: dict,
    samples: Sequence[tuple[np.ndarray, np.ndarray]],
    device: str = "cpu",
    batch_size: int = 8,
    tta_modes: Sequence[str] = TTA_CHOICES,
    crf_variants: Sequence[str] = ("gaussian", "seed"),
    crf_params: dict | None = None,
    max_images: int = 300,
    crf_max_images: int = 64,
    margin: float = 0.005,
    progress: bool = False,
) -> dict:
    """Decide threshold, TTA and CRF on validation data; return ``config["postprocess"]``.

    ``samples``: (image uint8 (H, W, 3) RGB at original size, mask uint8 (H, W) {0,1}) pairs.
    Cost is kept bounded: at most ``max_images`` images (spread evenly) for the TTA modes and at
    most ``crf_max_images`` of those for the CRF variants (CRF is compared with no-CRF on the same
    images). Every TTA x CRF combination is measured: per-image Dice at thresholds 0.01..0.99,
    averaged (competition rule), its best threshold, and its time per image.

    Rule: TTA modes are tried cheapest first (none, flip, d4) and a costlier one is chosen only if
    its best mean Dice beats the current choice by more than ``margin``; then, under the chosen
    TTA, a CRF variant is switched on only if it beats no-CRF on the CRF images by more than
    ``margin``. The threshold is the best one of the chosen combination.

    Returns ``{"threshold", "tta", "crf", "crf_params", "calibration": {...table...}}``.
    """
    from inpaintseg import crf as crf_mod  # noqa: PLC0415

    params = crf_mod.default_crf_params() if crf_params is None else crf_params
    if not samples:
        raise DataError("calibration needs at least one validation image; the validation split is empty.")
    for mode in tta_modes:
        tta_views(mode)  # validates
    chosen_idx = _even_subset(len(samples), max_images)
    crf_idx = set(chosen_idx[i] for i in _even_subset(len(chosen_idx), crf_max_images))
    crf_note = None
    if crf_variants and not crf_mod.crf_available():
        crf_note = f"pydensecrf is not installed; CRF variants were not measured (`{crf_mod.INSTALL_HINT}`)."
        crf_variants = ()
    for name in crf_variants:
        if name not in params:
            raise ConfigError(f"crf_params has no entry for the CRF variant {name!r}; "
                              f"expected keys {sorted(crf_mod.CRF_PRESETS)}.")
        crf_mod.validate_params(params[name], f"crf_params.{name}")

    results: dict[tuple[str, str], _Variant] = {}
    off_on_crf_subset: dict[str, _Variant] = {}
    bar = _progress(len(tta_modes) * len(chosen_idx), "calibrating", progress)
    for mode in tta_modes:
        predictor = Predictor(model, model_config, device=device, tta=mode, batch_size=batch_size)
        off = results.setdefault((mode, "off"), _Variant())
        off_sub = off_on_crf_subset.setdefault(mode, _Variant())
        for start in range(0, len(chosen_idx), batch_size):
            batch = [samples[i] for i in chosen_idx[start:start + batch_size]]
            t0 = time.perf_counter()
            probs = predictor.predict_proba_batch([img for img, _ in batch])
            off.seconds += time.perf_counter() - t0
            for i, (img, mask), p in zip(chosen_idx[start:start + batch_size], batch, probs):
                curve = dice_curve(p, mask)
                off.curves.append(curve)
                if i in crf_idx:
                    off_sub.curves.append(curve)
                    for name in crf_variants:
                        t1 = time.perf_counter()
                        refined = crf_mod.refine(img, p, params[name])
                        variant = results.setdefault((mode, name), _Variant())
                        variant.seconds += time.perf_counter() - t1
                        variant.curves.append(dice_curve(refined, mask))
            bar.update(len(batch))
    bar.close()

    table = []
    summary: dict[tuple[str, str], dict] = {}
    for (mode, name), variant in results.items():
        threshold, dice = _best_threshold(np.mean(variant.curves, axis=0))
        n = len(variant.curves)
        row = {
            "tta": mode, "crf": name, "n_images": n, "threshold": threshold, "dice": round(dice, 5),
            "dice_at_0.5": round(float(np.mean(variant.curves, axis=0)[49]), 5),
            "seconds_per_image": round(variant.seconds / max(n, 1), 5),
        }
        if name != "off":
            base_t, base_dice = _best_threshold(np.mean(off_on_crf_subset[mode].curves, axis=0))
            row["dice_without_crf_same_images"] = round(base_dice, 5)
            row["crf_gain"] = round(dice - base_dice, 5)
            row["seconds_per_image"] = round(
                row["seconds_per_image"] + results[(mode, "off")].seconds / len(results[(mode, "off")].curves), 5)
        summary[(mode, name)] = row
        table.append(row)

    chosen_tta = tta_modes[0]
    for mode in tta_modes[1:]:
        if summary[(mode, "off")]["dice"] > summary[(chosen_tta, "off")]["dice"] + margin:
            chosen_tta = mode
    chosen_crf = "off"
    best_gain = margin
    for name in crf_variants:
        gain = summary[(chosen_tta, name)]["crf_gain"]
        if gain > best_gain:
            chosen_crf, best_gain = name, gain
    threshold = summary[(chosen_tta, chosen_crf)]["threshold"]
    calibration = {
        "table": table,
        "n_val_images": len(samples),
        "n_images": len(chosen_idx),
        "n_crf_images": len(crf_idx) if crf_variants else 0,
        "margin": margin,
        "thresholds": "0.01..0.99 step 0.01",
        "dice_rule": "mean over images of per-image Dice; empty truth and empty prediction count 1.0",
        "rule": (f"TTA cheapest first (none < flip < d4): a costlier mode only if its best Dice beats the "
                 f"current choice by > {margin}; then CRF only if it beats no-CRF on the same "
                 f"{len(crf_idx)} images by > {margin}; threshold = best of the chosen combination."),
        "device": str(device),
    }
    if crf_note:
        calibration["note"] = crf_note
    return {"threshold": threshold, "tta": chosen_tta, "crf": chosen_crf, "crf_params": params,
            "calibration": calibration}


# --------------------------------------------------------------------------------------------
# Post-processing choice (what predict uses)
# --------------------------------------------------------------------------------------------
@dataclass
class PostProcess:
    """The resolved post-processing of a prediction run, with where each choice came from."""

    tta: str
    crf: str
    crf_params: dict | None
    threshold: float
    sources: dict[str, str]

    def describe(self) -> str:
        crf = self.crf if self.crf == "off" else f"{self.crf} ({_crf_summary(self.crf_params)})"
        return (f"tta={self.tta} [{self.sources['tta']}], crf={crf} [{self.sources['crf']}], "
                f"threshold={self.threshold:g} [{self.sources['threshold']}]")


def _crf_summary(params: dict | None) -> str:
    if not params:
        return ""
    parts = []
    if params.get("gaussian"):
        parts.append("gaussian sxy={sxy:g} compat={compat:g}".format(**params["gaussian"]))
    if params.get("bilateral"):
        parts.append("bilateral sxy={sxy:g} srgb={srgb:g} compat={compat:g}".format(**params["bilateral"]))
    parts.append(f"{params.get('iterations', 5)} iterations")
    return ", ".join(parts)


def resolve_postprocess(model_config: dict, tta: str = "auto", crf: str = "auto",
                        threshold: str | float = "auto") -> PostProcess:
    """Turn the CLI choices into concrete ones, following ``config["postprocess"]`` for ``auto``.

    ``crf="on"`` (a bare ``--crf``) means the CRF variant stored by calibration when it chose one,
    otherwise ``gaussian`` (the variant that does not rely on colour edges, which inpainting hides).
    Without a calibration record, ``auto`` means tta=none, crf=off, threshold=0.5.
    """
    from inpaintseg import crf as crf_mod  # noqa: PLC0415

    post = model_config.get("postprocess") if isinstance(model_config, dict) else None
    post = post if isinstance(post, dict) else {}
    calibrated = "calibration" in post
    stored = "stored by validation calibration" if calibrated else "stored in config.json"
    sources = {}
    if tta == "auto":
        tta = post.get("tta", "none")
        sources["tta"] = stored if "tta" in post else "default: no calibration record"
    else:
        sources["tta"] = "--tta"
    if tta not in TTA_CHOICES:
        raise ConfigError(f"model config postprocess.tta is {tta!r}; expected one of {', '.join(TTA_CHOICES)}. "
                          "Pass --tta explicitly or fix config.json.")
    stored_crf = post.get("crf", "off")
    if crf == "auto":
        crf = stored_crf
        sources["crf"] = stored if "crf" in post else "default: no calibration record"
    elif crf == "on":
        crf = stored_crf if stored_crf in ("gaussian", "seed") else "gaussian"
        sources["crf"] = "--crf (stored variant)" if stored_crf in ("gaussian", "seed") else "--crf (gaussian)"
    else:
        sources["crf"] = "--crf" if crf != "off" else "--crf off"
    if crf not in crf_mod.CRF_CHOICES:
        raise ConfigError(f"model config postprocess.crf is {crf!r}; expected one of "
                          f"{', '.join(crf_mod.CRF_CHOICES)}. Pass --crf explicitly or fix config.json.")
    params = None
    if crf != "off":
        stored_params = post.get("crf_params") or {}
        params = stored_params.get(crf, crf_mod.CRF_PRESETS[crf])
        params = crf_mod.validate_params(params, f"postprocess.crf_params.{crf}")
    if threshold == "auto":
        value = post.get("threshold", DEFAULT_THRESHOLD)
        sources["threshold"] = stored if "threshold" in post else "default: no calibration record"
    else:
        value = threshold
        sources["threshold"] = "--threshold"
    try:
        value = float(value)
    except (TypeError, ValueError):
        value = float("nan")
    if not 0.0 < value < 1.0:
        raise ConfigError(f"threshold must be a number in (0, 1), got {threshold!r}"
                          f"{' (from config.json)' if threshold == 'auto' else ''}.")
    return PostProcess(tta=tta, crf=crf, crf_params=params, threshold=value, sources=sources)


# --------------------------------------------------------------------------------------------
# File pipeline
# --------------------------------------------------------------------------------------------
@dataclass
class ImageResult:
    """One image's outcome: ``probs``/``mask`` at the original size, or ``error`` when it failed."""

    stem: str
    path: Path
    probs: np.ndarray | None = None
    mask: np.ndarray | None = None
    error: str | None = None


def _crf_worker(image: np.ndarray, probs: np.ndarray, params: dict) -> np.ndarray:
    from inpaintseg import crf as crf_mod  # noqa: PLC0415

    return crf_mod.refine(image, probs, params)


class CrfRunner:
    """Runs DenseCRF beside the model: in ``workers`` processes (pydensecrf holds the GIL, so a thread
    would not overlap with the model), or inline with ``workers=0``.

    Worker processes start with ``forkserver`` (``spawn`` where missing), so a script that calls
    this with workers > 0 needs the usual ``if __name__ == "__main__":`` guard.
    """

    def __init__(self, params: dict, workers: int = 1):
        from inpaintseg import crf as crf_mod  # noqa: PLC0415

        crf_mod.require_pydensecrf()
        self.params = crf_mod.validate_params(params)
        self.workers = workers
        self.pool = None
        self._start()

    def _start(self) -> None:
        if self.workers > 0:
            method = "forkserver" if "forkserver" in multiprocessing.get_all_start_methods() else "spawn"
            self.pool = cf.ProcessPoolExecutor(self.workers, mp_context=multiprocessing.get_context(method))

    def submit(self, image: np.ndarray, probs: np.ndarray) -> cf.Future:
        if self.pool is None:
            future: cf.Future = cf.Future()
            try:
                future.set_result(_crf_worker(image, probs, self.params))
            except Exception as exc:  # noqa: BLE001 - handed to the caller through the future
                future.set_exception(exc)
            return future
        return self.pool.submit(_crf_worker, image, probs, self.params)

    def result(self, future: cf.Future, image: np.ndarray, probs: np.ndarray) -> np.ndarray:
        """The refined map of ``submit(image, probs)``. A worker that died (the OS kills it when a huge
        image exhausts memory) breaks the whole pool: the pool is restarted and the image tried once
        more alone, so only an image that kills a worker twice fails (MemoryError)."""
        try:
            return future.result()
        except BrokenProcessPool:
            pass
        self.restart()
        try:
            return self.submit(image, probs).result()
        except BrokenProcessPool:
            self.restart()
            raise MemoryError("the DenseCRF worker process died twice on this image") from None

    def restart(self) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=True)
            self._start()

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=True)
            self.pool = None


def _read(path: Path) -> tuple[np.ndarray | None, str | None]:
    from inpaintseg import io  # noqa: PLC0415

    try:
        return io.read_image(path), None
    except InpaintsegError as exc:
        return None, str(exc)


def _progress(total: int, desc: str, enabled: bool):
    from tqdm import tqdm  # noqa: PLC0415

    return tqdm(total=total, desc=desc, unit="img", disable=not enabled, dynamic_ncols=True)


def predict_paths(
    predictor: Predictor,
    paths: Sequence[Path],
    post: PostProcess,
    crf_workers: int = 1,
    progress: bool = True,
    keep_probs: bool = True,
) -> Iterator[ImageResult]:
    """Predict image files in order, yielding one ``ImageResult`` per path (failures included).

    Pipeline: the next batch is decoded in a thread (cv2 releases the GIL) while the model runs on
    the current one; DenseCRF, when on, runs in a process pool and overlaps with the next batch's
    forward pass. At most about three batches of images are in memory at once.
    """
    batch_size = predictor.batch_size
    batches = [list(paths[i:i + batch_size]) for i in range(0, len(paths), batch_size)]
    crf_runner = CrfRunner(post.crf_params, crf_workers) if post.crf != "off" else None
    bar = _progress(len(paths), "predicting", progress)
    pending: list[tuple[ImageResult, np.ndarray | None, np.ndarray | None, cf.Future | None]] = []

    def finish(items) -> Iterator[ImageResult]:
        for result, image, probs, future in items:
            if result.error is None:
                if future is not None:
                    try:
                        probs = crf_runner.result(future, image, probs)
                    except InpaintsegError as exc:
                        result.error = str(exc)
                    except MemoryError:
                        shape = f"{image.shape[1]}x{image.shape[0]}"
                        result.error = (f"{result.path}: DenseCRF ran out of memory on this {shape} image "
                                        "(it runs at native size); use --crf off for images this large.")
                if result.error is None:
                    result.mask = (probs >= post.threshold).astype(np.uint8)
                    result.probs = probs if keep_probs else None
            bar.update(1)
            yield result

    try:
        with cf.ThreadPoolExecutor(1) as decoder:
            next_decoded = decoder.submit(lambda b: [_read(p) for p in b], batches[0]) if batches else None
            for index, batch in enumerate(batches):
                decoded = next_decoded.result()
                if index + 1 < len(batches):
                    next_decoded = decoder.submit(lambda b: [_read(p) for p in b], batches[index + 1])
                good_probs = iter(predictor.predict_proba_batch([img for img, _ in decoded if img is not None]))
                current = []
                for p, (img, err) in zip(batch, decoded):
                    result = ImageResult(stem=p.stem, path=p, error=err)
                    probs = next(good_probs) if img is not None else None
                    future = crf_runner.submit(img, probs) if (crf_runner and probs is not None) else None
                    current.append((result, img, probs, future))
                yield from finish(pending)
                pending = current
            yield from finish(pending)
    finally:
        bar.close()
        if crf_runner is not None:
            crf_runner.close()

