"""DenseCRF refinement of a probability map (pydensecrf2).

The unary term comes from the probability map (``unary_from_softmax`` on ``[1 - p, p]``, with the
probabilities clipped to ``[clip, 1 - clip]``); the pairwise terms are a Gaussian (smoothness) kernel
and, optionally, a bilateral (appearance) kernel on the RGB image. Refinement runs at the image's
native size.

Presets (``CRF_PRESETS``):
- ``"seed"``: Gaussian(sxy=3, compat=3) + bilateral(sxy=80, srgb=13, compat=10), 5 iterations: the
  original project's choice. Inpainting is made to leave no colour edge at its border, so the
  bilateral term tends to *hurt* on this task; calibration measures it rather than assuming.
- ``"gaussian"``: the same Gaussian term only (a pure smoothness prior), 5 iterations.

pydensecrf holds the GIL during inference (measured: two threads take as long as running serially),
so parallel callers should use a process pool (see ``inference.CrfRunner``).
"""

from __future__ import annotations

import copy
from typing import Any

import numpy as np

from inpaintseg.errors import ConfigError, InpaintsegError


CRF_PRESETS: dict[str, dict[str, Any]] = {
    "seed": {
        "iterations": 5,
        "clip": 1e-5,
        "gaussian": {"sxy": 3.0, "compat": 3.0},
        "bilateral": {"sxy": 80.0, "srgb": 13.0, "compat": 10.0},
    },
    "gaussian": {
        "iterations": 5,
        "clip": 1e-5,
        "gaussian": {"sxy": 3.0, "compat": 3.0},
        "bilateral": None,
    },
}
CRF_VARIANTS = ("gaussian", "seed")  # the refinements calibration compares with no CRF, cheaper first
CRF_CHOICES = ("off", *CRF_VARIANTS)

INSTALL_HINT = "pip install pydensecrf2"
MAX_ITERATIONS = 100  # the presets use 5; more is a crafted or mistaken config (each costs a full pass)
MAX_KERNEL_VALUE = 1e4  # sxy / srgb / compat: the presets use 3 to 80


def require_pydensecrf():
    """Import and return ``pydensecrf.densecrf``, or raise an InpaintsegError with the install command."""
    try:
        import pydensecrf.densecrf as dcrf  # noqa: PLC0415 (optional dependency)
    except ImportError as exc:
        raise InpaintsegError(
            f"DenseCRF post-processing needs the pydensecrf package, which is not installed ({exc}). "
            f"Install it with `{INSTALL_HINT}` (or `pip install -e .[crf]`), or run without CRF "
            "(`--crf off`)."
        ) from None
    return dcrf


def crf_available() -> bool:
    """True when pydensecrf can be imported."""
    try:
        require_pydensecrf()
    except InpaintsegError:
        return False
    return True


def default_crf_params() -> dict[str, dict[str, Any]]:
    """A deep copy of the presets, the form stored under ``config["postprocess"]["crf_params"]``."""
    return copy.deepcopy(CRF_PRESETS)


def _positive(value: Any, where: str) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = float("nan")
    if not 0 < number <= MAX_KERNEL_VALUE:
        raise ConfigError(f"CRF parameter {where} must be a positive number up to {MAX_KERNEL_VALUE:g}, "
                          f"got {value!r}.")
    return number


def validate_params(params: dict[str, Any], name: str = "crf_params") -> dict[str, Any]:
    """Check a CRF parameter dict and return a normalised copy; raise ConfigError naming the bad key.

    Expected: ``{"iterations": int >= 1, "clip": float in (0, 0.5), "gaussian": {"sxy", "compat"} or
    None, "bilateral": {"sxy", "srgb", "compat"} or None}``, at least one pairwise term.
    """
    if not isinstance(params, dict):
        raise ConfigError(f"{name} must be a mapping, got {type(params).__name__}. "
                          f"Use one of the presets: {', '.join(CRF_PRESETS)}.")
    known = {"iterations", "clip", "gaussian", "bilateral"}
    unknown = sorted(set(params) - known)
    if unknown:
        raise ConfigError(f"{name}: unknown keys {unknown}; expected {sorted(known)}.")
    iterations = params.get("iterations", 5)
    if isinstance(iterations, bool) or not isinstance(iterations, int) or not 1 <= iterations <= MAX_ITERATIONS:
        raise ConfigError(f"{name}.iterations must be an integer from 1 to {MAX_ITERATIONS}, got {iterations!r}.")
    try:
        clip = float(params.get("clip", 1e-5))
    except (TypeError, ValueError):
        clip = float("nan")
    if not 0.0 < clip < 0.5:
        raise ConfigError(f"{name}.clip must lie in (0, 0.5), got {clip!r}.")
    out: dict[str, Any] = {"iterations": iterations, "clip": clip, "gaussian": None, "bilateral": None}
    for term, keys in (("gaussian", ("sxy", "compat")), ("bilateral", ("sxy", "srgb", "compat"))):
        spec = params.get(term)
        if spec is None:
            continue
        if not isinstance(spec, dict) or set(spec) != set(keys):
            raise ConfigError(f"{name}.{term} must be a mapping with keys {list(keys)} (or null), "
                              f"got {spec!r}.")
        out[term] = {k: _positive(spec[k], f"{name}.{term}.{k}") for k in keys}
    if out["gaussian"] is None and out["bilateral"] is None:
        raise ConfigError(f"{name}: needs a 'gaussian' or a 'bilateral' term; both are null.")
    return out


def refine(image: np.ndarray, probs: np.ndarray, params: dict[str, Any]) -> np.ndarray:
    """Refine a foreground probability map with a fully connected CRF.

    Shape: image uint8 (H, W, 3) RGB, probs float (H, W) in [0, 1] -> float32 (H, W) in [0, 1]
    (the CRF's marginal probability of the foreground label).
    """
    dcrf = require_pydensecrf()
    from pydensecrf.utils import unary_from_softmax  # noqa: PLC0415

    params = validate_params(params)
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"refine: expected a uint8 (H, W, 3) image, got {image.dtype} {image.shape}")
    height, width = image.shape[:2]
    if probs.shape != (height, width):
        raise ValueError(f"refine: probability map {probs.shape} does not match image {(height, width)}")
    clip = params["clip"]
    p = np.clip(probs.astype(np.float32), clip, 1.0 - clip)
    softmax = np.stack([1.0 - p, p])  # (2, H, W)
    crf = dcrf.DenseCRF2D(width, height, 2)
    crf.setUnaryEnergy(np.ascontiguousarray(unary_from_softmax(softmax, clip=None)))
    if params["gaussian"] is not None:
        g = params["gaussian"]
        crf.addPairwiseGaussian(sxy=g["sxy"], compat=g["compat"])
    if params["bilateral"] is not None:
        b = params["bilateral"]
        crf.addPairwiseBilateral(sxy=b["sxy"], srgb=b["srgb"], rgbim=np.ascontiguousarray(image),
                                 compat=b["compat"])
    q = np.asarray(crf.inference(params["iterations"]), dtype=np.float32)
    return q[1].reshape(height, width)
