"""The post-processing of a prediction run (TTA, CRF, threshold), resolved from the CLI/API choices and the
model's calibration record, with where each choice came from."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from inpaintseg.errors import ConfigError
from inpaintseg.metrics import DEFAULT_THRESHOLD, check_threshold, image_score
from inpaintseg.inference import crf as crf_mod
from inpaintseg.inference.tta import TTA_CHOICES
from inpaintseg.model.model_config import PostprocessConfig, thawed

TTA_OPTIONS = ("auto", *TTA_CHOICES)  # what predict/the API accept: auto = the calibrated choice
FEW_FALSE_ALARMS = "few-false-alarms"  # the gate calibration measured for the false-alarm target
GATE_OPTIONS = ("auto", "off", FEW_FALSE_ALARMS)  # and a number in (0, 1)
CRF_OPTIONS = ("auto", *crf_mod.CRF_CHOICES, "on")  # on = the calibrated variant, else gaussian


@dataclass
class PostProcess:
    """The resolved post-processing of a prediction run, with where each choice came from."""

    tta: str
    crf: str
    crf_params: dict | None
    threshold: float
    sources: dict[str, str]
    score_threshold: float | None = None  # the image-level decision; None = max(threshold, gate)
    gate: float | None = None  # the image gate (inference.gate); None = no gate

    def gated(self, score: float) -> bool:
        """Whether the gate empties the mask of an image with this score (the score is below it)."""
        return self.gate is not None and score < self.gate

    def binarize(self, probs: np.ndarray, score: float | None = None) -> np.ndarray:
        """The mask: uint8 {0, 1}, 1 where the probability is >= the threshold; all 0 when the image score
        (``score``, else computed from ``probs``) is below the gate."""
        if self.gate is not None and self.gated(image_score(probs) if score is None else score):
            return np.zeros(probs.shape, dtype=np.uint8)
        return (probs >= self.threshold).astype(np.uint8)

    @property
    def image_threshold(self) -> float:
        """The image-level label's threshold: --score-threshold, else the larger of the pixel threshold and the
        gate (so a label of 1 comes with a non-empty mask)."""
        if self.score_threshold is not None:
            return self.score_threshold
        return self.threshold if self.gate is None else max(self.threshold, self.gate)

    def label(self, score: float) -> int:
        """The image-level label of an image score (1 = manipulated): score >= `image_threshold`."""
        return int(score >= self.image_threshold)

    def describe(self) -> str:
        crf = self.crf if self.crf == "off" else f"{self.crf} ({_crf_summary(self.crf_params)})"
        score = "" if self.score_threshold is None else f", score threshold={self.score_threshold:g} [--score-threshold]"
        gate = "off" if self.gate is None else f"{self.gate:g}"
        return (f"tta={self.tta} [{self.sources['tta']}], crf={crf} [{self.sources['crf']}], "
                f"threshold={self.threshold:g} [{self.sources['threshold']}], "
                f"gate={gate} [{self.sources.get('gate', 'default')}]{score}")


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


def check_postprocess_section(post) -> None:
    """Validate the stored choices of a config.json `postprocess` section (a `PostprocessConfig` or its dict; a
    ConfigError naming the field): tta and crf among the known choices, every stored crf_params entry a known
    variant within the CRF bounds. (The section's structure is checked by `ModelConfig.from_dict`.)"""
    post = post if isinstance(post, PostprocessConfig) else PostprocessConfig.from_dict(post)
    if post.tta is not None and post.tta not in TTA_CHOICES:
        raise ConfigError(f"postprocess.tta is {post.tta!r}; expected one of {', '.join(TTA_CHOICES)}.")
    if post.crf is not None and post.crf not in crf_mod.CRF_CHOICES:
        raise ConfigError(f"postprocess.crf is {post.crf!r}; expected one of {', '.join(crf_mod.CRF_CHOICES)}.")
    params = post.crf_params
    if params is None:
        return
    if not isinstance(params, Mapping):
        raise ConfigError(f"postprocess.crf_params must be an object, got {type(params).__name__}.")
    for variant, values in params.items():
        if variant not in crf_mod.CRF_VARIANTS:
            raise ConfigError(f"postprocess.crf_params has an unknown variant {variant!r}; expected "
                              f"{', '.join(crf_mod.CRF_VARIANTS)}.")
        crf_mod.validate_params(thawed(values), f"postprocess.crf_params.{variant}")


def resolve_postprocess(model_config, tta: str = "auto", crf: str = "auto",
                        threshold: str | float = "auto", gate: str | float = "auto") -> PostProcess:
    """Turn the CLI/API choices into concrete ones, following the model's stored postprocess for ``auto``.

    ``model_config``: a `ModelConfig`, or a mapping with a "postprocess" section (read leniently). ``crf="on"``
    (a bare ``--crf``) means the CRF variant stored by calibration when it chose one, otherwise ``gaussian``
    (the variant that does not rely on colour edges, which inpainting hides). Without a calibration record,
    ``auto`` means tta=none, crf=off, threshold=0.5. ``gate``: "auto" = the image gate calibration chose for
    the resolved TTA and CRF (none when it chose none), "off", "few-false-alarms" (the lowest gate that kept the
    untouched calibration images' false-alarm rate at its target, with its threshold, even where calibration
    preferred another for Dice), or a number in (0, 1). ``threshold``: "auto" = the one chosen for the resolved
    TTA, CRF and gate (`_auto_threshold`), or a number in (0, 1).
    """
    post = PostprocessConfig.of(model_config)
    stored = "stored by validation calibration" if post.calibrated else "stored in config.json"
    sources: dict[str, str] = {}
    tta = _resolve_tta(post, tta, stored, sources)
    crf = _resolve_crf(post, crf, stored, sources)
    params = None
    if crf != "off":
        stored_params = post.crf_params or {}
        params = thawed(stored_params[crf]) if crf in stored_params else crf_mod.CRF_PRESETS[crf]
        params = crf_mod.validate_params(params, f"postprocess.crf_params.{crf}")
    if gate == FEW_FALSE_ALARMS:
        gate_value, value = _few_false_alarms(post, tta, crf, sources)
        sources["threshold"] = f"chosen with the {FEW_FALSE_ALARMS} gate"
    else:
        gate_value = _resolve_gate(post, gate, tta, crf, stored, sources)
        value, sources["threshold"] = _auto_threshold(post, tta, crf, gate_value is not None, stored)
    if threshold != "auto":
        value, sources["threshold"] = threshold, "--threshold"
    value = check_threshold(value, "threshold", "" if threshold != "auto" else " (from config.json)")
    return PostProcess(tta=tta, crf=crf, crf_params=params, threshold=value, sources=sources, gate=gate_value)


def _resolve_tta(post: PostprocessConfig, tta: str, stored: str, sources: dict[str, str]) -> str:
    if tta == "auto":
        tta = "none" if post.tta is None else post.tta
        sources["tta"] = stored if post.tta is not None else "default: no calibration record"
    else:
        sources["tta"] = "--tta"
    if tta not in TTA_CHOICES:
        if sources["tta"] == "--tta":  # the caller's value, not the model's: name the argument
            raise ConfigError(f"tta must be one of {', '.join(TTA_CHOICES)} or 'auto', got {tta!r}.", params=["tta"])
        raise ConfigError(f"model config: the stored TTA mode (postprocess section) {tta!r} is not one of "
                          f"{', '.join(TTA_CHOICES)}. Pass tta explicitly or fix config.json.", params=["tta"])
    return tta


def _resolve_crf(post: PostprocessConfig, crf: str, stored: str, sources: dict[str, str]) -> str:
    """The CRF choice; "off" in place of a stored CRF when pydensecrf2 is missing."""
    stored_crf = "off" if post.crf is None else post.crf
    if crf == "auto" and stored_crf in crf_mod.CRF_VARIANTS and not crf_mod.crf_available():
        # A stored CRF is a refinement, not part of the model: without pydensecrf2 (a plain `pip install`)
        # predict without it, at the threshold calibration chose for the same TTA without CRF.
        crf = "off"
        sources["crf"] = f"stored {stored_crf} skipped: pydensecrf2 not installed, pip install 'inpaintseg[crf]'"
    elif crf == "auto":
        crf = stored_crf
        sources["crf"] = stored if post.crf is not None else "default: no calibration record"
    elif crf == "on":
        crf = stored_crf if stored_crf in crf_mod.CRF_VARIANTS else "gaussian"
        sources["crf"] = "--crf (stored variant)" if stored_crf in crf_mod.CRF_VARIANTS else "--crf (gaussian)"
    else:
        sources["crf"] = "--crf" if crf != "off" else "--crf off"
    if crf not in crf_mod.CRF_CHOICES:
        if sources["crf"].startswith("--crf"):
            raise ConfigError(f"crf must be one of {', '.join(crf_mod.CRF_CHOICES)}, 'on' or 'auto', got {crf!r}.",
                              params=["crf"])
        raise ConfigError(f"model config: the stored CRF variant (postprocess section) {crf!r} is not one of "
                          f"{', '.join(crf_mod.CRF_CHOICES)}. Pass crf explicitly or fix config.json.",
                          params=["crf"])
    return crf


def _auto_threshold(post: PostprocessConfig, tta: str, crf: str, gated: bool, stored: str) -> tuple[float, str]:
    """The ``auto`` threshold and its source. The stored threshold was chosen for the stored TTA x CRF with the
    stored gate; any other (tta, crf) -- a --tta, a skipped CRF -- or the stored pair without its gate reads its
    calibration-table row: the threshold chosen with the row's gate when a gate applies and the row records one,
    else the row's ungated threshold. No row: the stored threshold."""
    if post.threshold is None:
        default = (DEFAULT_THRESHOLD, "default: no calibration record")
    else:
        default = (post.threshold, stored)
    if (tta, crf) == _stored_pair(post) and (gated or post.gate is None):
        return default
    with_gate = gated and post.table_value(tta, crf, "gate_threshold") is not None
    value = post.table_value(tta, crf, "gate_threshold" if with_gate else "threshold")
    if value is None:
        return default
    return value, f"{stored} (tta {tta}, crf {crf}, {'with its gate' if with_gate else 'no gate'})"


def _stored_pair(post: PostprocessConfig) -> tuple[str, str]:
    """The (tta, crf) the stored threshold and gate were chosen with; absent keys mean none and off."""
    return ("none" if post.tta is None else post.tta), ("off" if post.crf is None else post.crf)


def _resolve_gate(post: PostprocessConfig, gate: str | float, tta: str, crf: str, stored: str,
                  sources: dict[str, str]) -> float | None:
    """The image gate: ``auto`` = the one calibrated for this TTA x CRF (the stored gate for the stored pair,
    else the calibration table's row, which has a gate only where one beat plain thresholding)."""
    if gate == "off":
        sources["gate"] = "--gate off"
        return None
    if gate != "auto":
        sources["gate"] = "--gate"
        return check_threshold(gate, "gate")
    if (tta, crf) == _stored_pair(post):
        value, source = post.gate, stored
    else:
        value, source = post.table_value(tta, crf, "gate"), f"{stored} (tta {tta}, crf {crf})"
    sources["gate"] = source if value is not None else "none calibrated"
    return None if value is None else check_threshold(value, "gate", " (from config.json)")


def _few_false_alarms(post: PostprocessConfig, tta: str, crf: str, sources: dict[str, str]) -> tuple[float, float]:
    """(gate, threshold) of the false-alarm-target row: the calibration record's for the stored TTA x CRF, the
    table row's for another; a ConfigError naming ``gate`` when the model has none for this TTA x CRF."""
    from inpaintseg.inference.gate import MIN_UNTOUCHED

    record = (post.calibration or {}).get("gate") or {}
    row = record.get("false_alarm_target_gate")
    if (tta, crf) == _stored_pair(post) and row and record.get("n_untouched", 0) >= MIN_UNTOUCHED:
        sources["gate"] = (f"{FEW_FALSE_ALARMS}: {row.get('false_alarm_rate', 0):.0%} of {record['n_untouched']} "
                           "untouched calibration images flagged")
        return _target_gate(row["gate"]), row["threshold"]
    gate = post.table_value(tta, crf, "false_alarm_gate")
    if gate is None or post.table_value(tta, crf, "false_alarm_threshold") is None:
        raise ConfigError(f"gate {FEW_FALSE_ALARMS!r} needs the false-alarm row of the model's gate calibration "
                          f"for tta {tta} and crf {crf}, measured on >= {MIN_UNTOUCHED} untouched images; this "
                          "model has none for these settings. Pass a number instead, or --gate auto.",
                          params=["gate"])
    sources["gate"] = f"{FEW_FALSE_ALARMS}: the calibration table's target gate for tta {tta}, crf {crf}"
    return _target_gate(gate), post.table_value(tta, crf, "false_alarm_threshold")


def _target_gate(value) -> float | None:
    """A false-alarm-target gate: 0 means plain thresholding already met the target (no gate)."""
    return None if value == 0 else check_threshold(value, "gate", " (from config.json)")
