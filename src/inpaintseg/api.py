"""The Python API: load a model folder once, predict images the way `inpaintseg predict` does.

    import inpaintseg
    model = inpaintseg.load_model("runs/x/model", device="auto")
    pred = model.predict("photo.jpg")          # or a numpy HxWx3 uint8 RGB array, or a PIL image
    pred.mask, pred.probability, pred.score, pred.label, pred.threshold, pred.timings
    inpaintseg.predict_folder(model, "test/images", out="submission.csv", masks_out="pred_masks")

The post-processing stored with the model (validation calibration: TTA, DenseCRF, threshold) is applied by
default, exactly as the CLI does; ``threshold=``, ``tta=`` and ``crf=`` override it per call.

``precision="auto"`` (the default) runs the network under bf16 autocast on a CPU where a short probe of this
model measures it faster than fp32 (cached per machine; see `inpaintseg.precision`), else in fp32; the
choice is made on first use and is `model.precision_choice`. ``"32"`` or ``"bf16-mixed"`` force one.

``engine="auto"`` (the default) runs the folder's exported model.onnx through onnxruntime when it matches the
weights, onnxruntime is installed, the device is the CPU and the precision is not a mixed one; else PyTorch
(`inpaintseg.inference.engines`). With the ONNX engine, ``precision="auto"`` means fp32 (no probe); a mixed
precision with ``engine="onnx"`` is a `ConfigError`.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from inpaintseg import fileio
from inpaintseg.errors import InpaintsegError
from inpaintseg.inference.predictor import DEFAULT_BATCH_SIZE


@dataclass(repr=False)
class Prediction:
    """One image's prediction at its original size.

    probability: float32 (H, W) in [0, 1] (after TTA and, when on, DenseCRF); mask: uint8 (H, W) {0, 1} =
    probability >= threshold, or all 0 when the score is below the image gate (``gate``, `inference.gate`);
    score: the image-level score (mean of the top 1% probabilities); label: 1 when score >= the larger of
    threshold and gate (manipulated), else 0; timings: seconds per stage; verdict: the calibrated `Verdict`
    (level, false-alarm rate of untouched validation images at this score; see `inference.verdicts`).
    ``save(folder)`` writes the mask, the probability map, the overlay and a JSON summary; ``overlay()`` is the
    image with the predicted region drawn on it (a PIL image).
    """

    probability: np.ndarray
    mask: np.ndarray
    score: float
    label: int
    threshold: float
    tta: str
    crf: str
    timings: dict[str, float] = field(default_factory=dict)
    verdict: Any = None  # inference.verdicts.Verdict
    image: np.ndarray | None = None  # the RGB image predicted (for overlay()); not copied
    gate: float | None = None
    gated: bool = False  # the gate left the mask empty (the score is below it)
    image_threshold: float | None = None  # the label's threshold (`PostProcess.image_threshold`)

    @property
    def manipulated_pixels(self) -> int:
        """Pixels of the mask (probability >= threshold)."""
        return int(np.count_nonzero(self.mask))

    @property
    def manipulated_fraction(self) -> float:
        """Share of the image's pixels in the mask, 0..1 (the API's ``manipulated_fraction``)."""
        return self.manipulated_pixels / max(self.mask.size, 1)

    def __repr__(self) -> str:
        h, w = self.mask.shape[:2]
        verdict = ""
        if self.verdict is not None:
            rate = self.verdict.false_alarm_rate
            verdict = f", verdict {self.verdict.level!r}" + ("" if rate is None else f" (false-alarm rate {rate:.0%})")
        return (f"Prediction({w}x{h}, score {self.score:.3f}{verdict}, {self.manipulated_fraction:.2%} of pixels "
                f">= threshold {self.threshold:g}{' (empty: score below the gate)' if self.gated else ''}, "
                f"tta {self.tta}, crf {self.crf})")

    def summary(self) -> dict:
        """The numbers of this prediction as JSON-ready values (the API's names and units)."""
        h, w = self.mask.shape[:2]
        return {"width": int(w), "height": int(h), "score": round(float(self.score), 6), "label": int(self.label),
                "threshold": float(self.threshold), "gate": self.gate, "gated": self.gated, "tta": self.tta,
                "crf": self.crf, "manipulated_pixels": self.manipulated_pixels,
                "manipulated_fraction": round(self.manipulated_fraction, 6),
                "verdict": None if self.verdict is None else self.verdict.as_dict(),
                "timings_seconds": {k: round(float(v), 4) for k, v in self.timings.items()}}

    def overlay(self, image=None):
        """A PIL image: ``image`` (default: the image that was predicted) with the predicted region filled
        translucently in the heat map's colours and outlined; the rest of the image is left as it is."""
        from PIL import Image

        from inpaintseg.inference.overlays import region_overlay

        if image is None and self.image is None:
            raise ValueError("this prediction holds no image: pass the image, e.g. pred.overlay('photo.jpg')")
        rgb = self.image if image is None else as_rgb_image(image)
        return Image.fromarray(region_overlay(rgb, self.probability, self.threshold))

    def save(self, folder: str | os.PathLike, name: str = "prediction") -> dict[str, Path]:
        """Write ``NAME_mask.png`` (0/255), ``NAME_probability.png`` (8-bit, value = round(p x 255)),
        ``NAME_overlay.png`` (when the image is known) and ``NAME.json`` (`summary`) into ``folder``
        (created; atomic writes). Returns {"mask"|"probability"|"overlay"|"summary": path}."""
        import json

        from inpaintseg.inference.overlays import region_overlay
        from inpaintseg.inference.pipeline import to_png8

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        paths = {"mask": folder / f"{name}_mask.png", "probability": folder / f"{name}_probability.png",
                 "summary": folder / f"{name}.json"}
        fileio.write_png(paths["mask"], self.mask * np.uint8(255))
        fileio.write_png(paths["probability"], to_png8(self.probability))
        if self.image is not None:
            paths["overlay"] = folder / f"{name}_overlay.png"
            fileio.write_png(paths["overlay"], region_overlay(self.image, self.probability, self.threshold))
        fileio.atomic_write_text(paths["summary"], json.dumps(self.summary(), indent=2) + "\n")
        return paths


def as_rgb_image(image: Any) -> np.ndarray:
    """A path, a PIL image or a numpy array -> uint8 (H, W, 3) RGB, by the same rules as file reading
    (grey expanded to RGB, alpha dropped). Raises InpaintsegError (a path's problems) or TypeError/ValueError."""
    if isinstance(image, (str, os.PathLike)):
        return fileio.read_image(Path(image))
    if not isinstance(image, np.ndarray) and hasattr(image, "convert") and hasattr(image, "mode"):
        return np.asarray(image.convert("RGB"), dtype=np.uint8)  # a PIL image
    if not isinstance(image, np.ndarray):
        raise TypeError(f"expected a path, a PIL image or a numpy array, got {type(image).__name__}")
    if image.dtype != np.uint8:
        raise ValueError(f"expected a uint8 image (values 0-255), got dtype {image.dtype}; convert it first, "
                         "e.g. (np.clip(x, 0, 1) * 255).round().astype(np.uint8) for floats in [0, 1]")
    if image.ndim == 2:
        image = np.repeat(image[:, :, None], 3, axis=2)
    if image.ndim != 3 or image.shape[2] not in (3, 4) or 0 in image.shape[:2]:
        raise ValueError(f"expected an (H, W, 3) RGB image (or (H, W) grey, (H, W, 4) RGBA), got shape {image.shape}")
    return np.ascontiguousarray(image[:, :, :3])


class InpaintModel:
    """A loaded model folder: the network, its config and its stored post-processing.

    Create it with `inpaintseg.load_model`. Predictors are built once per TTA mode and reused.
    ``precision``: ``auto`` (resolved on first use, see `precision_choice`), ``32``, ``bf16-mixed`` or
    ``16-mixed`` (CUDA).
    """

    def __init__(self, network, config, device: str = "cpu", batch_size: int = DEFAULT_BATCH_SIZE,
                 source: Path | None = None, precision: str = "auto", engine: str = "auto") -> None:
        from inpaintseg.inference.engines import choose_engine
        from inpaintseg.precision import check_fp16_device, check_precision

        from inpaintseg.model.model_config import as_model_config

        self.network = network
        # The folder's config.json, typed (`model.model_config.ModelConfig`); a dict is validated into one.
        # Frozen: to change it, assign a new one (`model.config = model.config.updated({...})`).
        self.config = as_model_config(config)
        self.device = device
        self.batch_size = batch_size
        self.source = source
        self.requested_precision = check_precision(precision, "precision")
        check_fp16_device(self.requested_precision, device)
        self._precision_choice = None
        self._predictors: dict[str, Any] = {}
        # Which engine maps batches to logits (inference/engines.py); resolved and checked now (onnx with a
        # mixed precision is refused here; auto with one is torch), built on first use.
        self.engine_choice = choose_engine(engine, source, config, device, precision=self.requested_precision)
        self._engine = None

    def __repr__(self) -> str:
        inp = self.config.input
        return (f"InpaintModel({self.source or self.config.architecture.get('name')}, input={inp.mode}"
                f" {inp.size}, device={self.device!r})")

    @property
    def input(self) -> dict:
        """The config.json `input` section as a dict (mode, size, mean, std); typed: `config.input`."""
        return self.config.input.to_dict()

    @property
    def precision_choice(self):
        """The `PrecisionChoice` the network runs at (`auto` is resolved here, once: a probe of this model at
        this batch and input size in predict mode, cached per machine)."""
        if self._precision_choice is None:
            from inpaintseg.inference.engines import ONNX_ENGINES
            from inpaintseg.precision import PrecisionChoice, choose_precision

            if self.engine_choice.engine in ONNX_ENGINES:  # the exported graph is fp32: auto means 32, no probe
                self._precision_choice = PrecisionChoice("32", reason=f"engine {self.engine_choice.engine} runs fp32",
                                                         requested=self.requested_precision)
                return self._precision_choice
            self._precision_choice = choose_precision(self.network, self.batch_size, self.config.input.size,
                                                      self.device, mode="predict",
                                                      requested=self.requested_precision)
        return self._precision_choice

    @property
    def precision(self) -> str:
        """The resolved precision: "32", "bf16-mixed" or "16-mixed"."""
        return self.precision_choice.precision

    @property
    def calibration_precision(self) -> str | None:
        """The precision the stored threshold/TTA/CRF were calibrated at (None: a model from before issue 16)."""
        calibration = self.config.postprocess.calibration
        value = calibration.get("precision") if calibration is not None else None
        return value if isinstance(value, str) else None

    def describe_precision(self) -> str:
        """'precision bf16-mixed (auto: 74.1 img/s vs 29.0 img/s fp32)', plus a note when the stored
        post-processing was calibrated at another precision (resolves `auto` if not done yet)."""
        line = self.precision_choice.describe()
        calibrated = self.calibration_precision
        if calibrated is not None and calibrated != self.precision:
            line += (f"; note: the stored threshold/TTA/CRF were calibrated at precision {calibrated} "
                     f"(precision {calibrated} reproduces them exactly)")
        return line

    def postprocess(self, threshold=None, tta=None, crf=None, score_threshold=None, gate=None):
        """The resolved `PostProcess`: None or "auto" = the stored choice (see `resolve_postprocess`; ``gate``
        also "off"); ``score_threshold`` (image-level label) None or "auto" = the larger of the pixel threshold
        and the gate."""
        import dataclasses

        from inpaintseg.inference.postprocess import resolve_postprocess
        from inpaintseg.metrics import check_threshold

        post = resolve_postprocess(self.config, tta="auto" if tta is None else tta,
                                   crf="auto" if crf is None else crf,
                                   threshold="auto" if threshold is None else threshold,
                                   gate="auto" if gate is None else gate)
        if score_threshold not in (None, "auto"):
            post = dataclasses.replace(post, score_threshold=check_threshold(score_threshold, "score_threshold"))
        return post

    @property
    def engine(self):
        """The engine object (`TorchEngine` or `OnnxEngine`), built once and shared by every TTA mode."""
        if self._engine is None:
            from inpaintseg.inference.engines import build_engine

            self._engine = build_engine(self.engine_choice, self.network, self.source, self.device)
        return self._engine

    def predictor(self, tta: str):
        """The `Predictor` for a TTA mode (built on first use)."""
        from inpaintseg.inference.predictor import Predictor

        if tta not in self._predictors:
            self._predictors[tta] = Predictor(self.network, self.config, device=self.device, tta=tta,
                                              batch_size=self.batch_size, precision=self.precision,
                                              engine=self.engine)
        return self._predictors[tta]

    def predict(self, image, *, threshold=None, tta=None, crf=None, gate=None) -> Prediction:
        """Predict one image (path, PIL image, or uint8 HxWx3 RGB array) at its original size."""
        return self.predict_batch([image], threshold=threshold, tta=tta, crf=crf, gate=gate)[0]

    def predict_batch(self, images: Sequence, *, threshold=None, tta=None, crf=None, gate=None) -> list[Prediction]:
        """Predict several images (any sizes); the network sees them `batch_size` at a time. ``gate``: None or
        "auto" = the calibrated image gate, "off", or a number (`inference.gate`)."""
        from inpaintseg.inference import crf as crf_mod
        from inpaintseg.metrics import image_score

        post = self.postprocess(threshold=threshold, tta=tta, crf=crf, gate=gate)
        t0 = time.perf_counter()
        arrays = [as_rgb_image(image) for image in images]
        t1 = time.perf_counter()
        probs = self.predictor(post.tta).predict_proba_batch(arrays)
        t2 = time.perf_counter()
        n = max(len(arrays), 1)
        out = []
        for array, p in zip(arrays, probs):
            timings = {"decode": (t1 - t0) / n, "model": (t2 - t1) / n}
            if post.crf != "off":
                t3 = time.perf_counter()
                p = crf_mod.refine(array, p, post.crf_params)
                timings["crf"] = time.perf_counter() - t3
            score = image_score(p)
            out.append(Prediction(probability=p, mask=post.binarize(p, score), score=score, label=post.label(score),
                                  threshold=post.threshold, tta=post.tta, crf=post.crf, timings=timings, gate=post.gate,
                                  gated=post.gated(score), image_threshold=post.image_threshold,
                                  verdict=self.verdict(score, post), image=array))
        return out

    def verdict(self, score: float, post=None):
        """The `Verdict` of an image score: its calibrated level and the false-alarm rate of untouched
        validation images at that score (`inference.verdicts`; an old model folder: score >= threshold)."""
        from inpaintseg.inference.verdicts import verdict_for

        post = post or self.postprocess()
        return verdict_for(score, self.config.postprocess.verdicts, post.image_threshold)

    @property
    def quality_warning(self) -> str | None:
        """A sentence when the model's validation Dice does not beat the all-empty / all-full answers."""
        from inpaintseg.inference.verdicts import quality_warning

        return quality_warning(self.config)


def load_model(model_dir: str | os.PathLike = "base", device: str = "auto", batch_size: int = DEFAULT_BATCH_SIZE,
               precision: str = "auto", engine: str = "auto") -> InpaintModel:
    """Load a model folder (``weights.safetensors`` + ``config.json``; nothing is unpickled); the default,
    ``"base"``, is the detector shipped with the package (README "The base model").

    ``device``: "auto" (CUDA when available, else CPU), "cpu", "cuda" or "cuda:N". ``precision``: "auto"
    (bf16 autocast where measured faster on this CPU, resolved on first use), "32", "bf16-mixed" or
    "16-mixed" (CUDA). Raises `ModelLoadError` naming the file and the problem when the folder is not a
    usable model, `ConfigError` for an unknown precision.

    ``engine``: "torch", "onnx" (the folder's model.onnx through onnxruntime, `inpaintseg export`), "onnx-int8"
    (its int8 model, `export --int8`) or "auto" (onnx when a model.onnx matching the weights is there, the device
    is the CPU and the precision is 32 or auto, else torch). "onnx" with bf16/16 precision: `ConfigError`.
    """
    from inpaintseg.errors import ConfigError, ModelLoadError
    from inpaintseg.inference.postprocess import check_postprocess_section
    from inpaintseg.inference.predictor import resolve_device
    from inpaintseg.model.io import CONFIG_FILE, load_model_dir, model_folder

    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise InpaintsegError(f"batch_size must be a positive integer, got {batch_size!r}.")
    device = resolve_device(device)
    model_dir = model_folder(model_dir)  # a run folder means its model/
    network, config = load_model_dir(model_dir, device="cpu")
    try:
        check_postprocess_section(config.postprocess)
    except ConfigError as exc:
        raise ModelLoadError(f"{Path(model_dir) / CONFIG_FILE}: {exc} Fix the file or re-export the model.") from None
    return InpaintModel(network, config, device=device, batch_size=batch_size, source=Path(model_dir),
                        precision=precision, engine=engine)
