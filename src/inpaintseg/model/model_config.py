"""`ModelConfig`: a model folder's config.json as a small frozen dataclass tree, validated once at load.

    config = ModelConfig.from_dict(json.loads(text), source=path)   # ModelLoadError naming the file and key
    config.input.size, config.input.mode, config.postprocess.threshold, config.postprocess.tta
    config.to_dict() == the dict it was read from (unknown keys included, at every level)

Typed where the code decides something: `format_version`, `architecture` (its values are checked when the
network is built, `model.spec.check_architecture`, so it is kept as the read-only mapping `build_model` takes),
`input` (`InputConfig`) and `postprocess` (`PostprocessConfig`). Sections that are only recorded or displayed
(metrics, data, training, recipe, card, onnx, ...) stay raw: `section(name)` / `config[name]` give their JSON
form, for display code. Keys this version does not know survive a load/save round trip (forward
compatibility): each level keeps them in `extra` and `to_dict` writes them back in their original order.

The post-processing *vocabulary* (TTA modes, CRF variants and bounds) belongs to `inference`, a higher layer:
`inference.postprocess.check_postprocess_section` checks those values of a loaded config (`api.load_model`).
"""

from __future__ import annotations

import copy
import dataclasses
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

from inpaintseg.data.input_spec import check_input_section
from inpaintseg.errors import ModelLoadError

FORMAT_VERSION = 1
SUPPORTED_FORMAT_VERSIONS = (1,)
REQUIRED_SECTIONS = ("format_version", "architecture", "input", "postprocess")
INPUT_KEYS = ("mode", "size", "mean", "std")
POSTPROCESS_KEYS = ("threshold", "gate", "tta", "crf", "crf_params", "calibration", "verdicts")


def _frozen(value: Any) -> Any:
    """A deep copy as read-only mappings and tuples, so a ModelConfig cannot be changed through its sections."""
    if isinstance(value, Mapping):
        return MappingProxyType({k: _frozen(v) for k, v in value.items()})
    if isinstance(value, (list, tuple)):
        return tuple(_frozen(v) for v in value)
    return value


def thawed(value: Any) -> Any:
    """The plain JSON form (dicts and lists) of a value made by `_frozen`."""
    if isinstance(value, Mapping):
        return {k: thawed(v) for k, v in value.items()}
    if isinstance(value, tuple):
        return [thawed(v) for v in value]
    return copy.deepcopy(value)


def _extra(section: Mapping, known: tuple[str, ...]) -> Mapping:
    return _frozen({k: v for k, v in section.items() if k not in known})


def _in_order(out: dict, order: tuple[str, ...]) -> dict:
    """`out` with the keys of `order` (the file's key order) first, in that order; others after, as they are."""
    rank = {key: i for i, key in enumerate(order)}
    return dict(sorted(out.items(), key=lambda item: rank.get(item[0], len(rank))))


def _check_number(value: Any, low: float, high: float) -> bool:
    return (not isinstance(value, bool) and isinstance(value, (int, float)) and math.isfinite(value)
            and low <= value <= high)


@dataclass(frozen=True)
class InputConfig:
    """The `input` section (`data.input_spec`): resize or crop, the network input side, the normalisation."""

    mode: str
    size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    extra: Mapping = field(default_factory=lambda: MappingProxyType({}))
    order: tuple[str, ...] = field(default=(), compare=False, repr=False)  # the file's key order

    @classmethod
    def from_dict(cls, section: Any, fail: Callable[[str], Any]) -> InputConfig:
        """Validate an `input` section (`fail(problem)` raises); values are kept as the file has them."""
        check_input_section(section, fail)
        return cls(mode=section["mode"], size=section["size"], mean=tuple(section["mean"]),
                   std=tuple(section["std"]), extra=_extra(section, INPUT_KEYS), order=tuple(section))

    @classmethod
    def of(cls, config: Any, fail: Callable[[str], Any]) -> InputConfig:
        """The input of a `ModelConfig`, or of a mapping holding an "input" section (validated, `fail` raises)."""
        if isinstance(config, ModelConfig):
            return config.input
        return cls.from_dict(config.get("input") if isinstance(config, Mapping) else None, fail)

    def to_dict(self) -> dict:
        return _in_order({"mode": self.mode, "size": self.size, "mean": list(self.mean), "std": list(self.std),
                          **thawed(self.extra)}, self.order)


@dataclass(frozen=True)
class PostprocessConfig:
    """The `postprocess` section: the stored threshold, TTA and CRF choices, the CRF parameters, and the
    records of validation calibration and of the image-level verdicts. None = the key is absent (a model
    folder from before calibration); the records stay read-only mappings (`thawed` gives plain dicts)."""

    threshold: float | None = None
    gate: float | None = None  # image gate (inference.gate): a mask stays empty when the image score is below it
    tta: str | None = None
    crf: str | None = None
    crf_params: Mapping | None = None
    calibration: Mapping | None = None
    verdicts: Mapping | None = None
    extra: Mapping = field(default_factory=lambda: MappingProxyType({}))
    present: frozenset[str] | None = field(default=None, repr=False)  # typed keys the file has (see keys_present)
    order: tuple[str, ...] = field(default=(), compare=False, repr=False)  # the file's key order

    @classmethod
    def from_dict(cls, section: Any, fail: Callable[[str], Any] | None = None) -> PostprocessConfig:
        """A postprocess section. With `fail` (loading a config.json) it must be an object with a threshold in
        [0, 1] and records that are objects; without (a partial dict from a Python caller) a section that is
        not an object reads as empty and values are taken as they are (`resolve_postprocess` checks them)."""
        if not isinstance(section, Mapping):
            if fail is not None:
                fail("\"postprocess\" must be an object with a \"threshold\"")
            section = {}
        if fail is not None:
            if "threshold" not in section:
                fail("\"postprocess\" must be an object with a \"threshold\"")
            if not _check_number(section["threshold"], 0.0, 1.0):
                fail(f"postprocess.threshold must be a number in [0, 1], got {section['threshold']!r}")
            if section.get("gate") is not None and not _check_number(section["gate"], 0.0, 1.0):
                fail(f"postprocess.gate must be a number in [0, 1] or null, got {section['gate']!r}")
            for key in ("tta", "crf"):
                if key in section and not isinstance(section[key], str):
                    fail(f"postprocess.{key} must be a string, got {section[key]!r}")
            for key in ("crf_params", "calibration", "verdicts"):
                if section.get(key) is not None and not isinstance(section[key], Mapping):
                    fail(f"postprocess.{key} must be an object, got {type(section[key]).__name__}")
        return cls(**{key: _frozen(section[key]) if key in section else None for key in POSTPROCESS_KEYS},
                   extra=_extra(section, POSTPROCESS_KEYS),
                   present=frozenset(key for key in POSTPROCESS_KEYS if key in section), order=tuple(section))

    @classmethod
    def of(cls, config: Any) -> PostprocessConfig:
        """The postprocess of a `ModelConfig`, or of a mapping holding a "postprocess" section (read leniently:
        Python callers pass partial dicts such as {"postprocess": {"threshold": 0.4}})."""
        if isinstance(config, ModelConfig):
            return config.postprocess
        return cls.from_dict(config.get("postprocess") if isinstance(config, Mapping) else None)

    @property
    def calibrated(self) -> bool:
        """Whether validation calibration wrote this section (it records its table under "calibration")."""
        return "calibration" in self.keys_present

    def table_row(self, tta: str, crf: str) -> Mapping | None:
        """The calibration table's row for (tta, crf); None when calibration did not measure that pair."""
        for row in (self.calibration or {}).get("table") or ():
            if isinstance(row, Mapping) and row.get("tta") == tta and row.get("crf") == crf:
                return row
        return None

    def table_value(self, tta: str, crf: str, key: str) -> Any:
        """``key`` of the (tta, crf) row -- threshold, gate, gate_threshold, false_alarm_gate, ... (see
        `inference.gate.table_fields`); None when the row or the key is absent. Unchecked: callers check."""
        row = self.table_row(tta, crf)
        return None if row is None else row.get(key)

    def to_dict(self) -> dict:
        return _in_order({**{key: thawed(getattr(self, key)) for key in POSTPROCESS_KEYS if key in self.keys_present},
                          **thawed(self.extra)}, self.order)

    @property
    def keys_present(self) -> frozenset[str]:
        """The typed keys the section has: those set to a value, and those the file had (null included)."""
        return (self.present or frozenset()) | {key for key in POSTPROCESS_KEYS if getattr(self, key) is not None}


@dataclass(frozen=True)
class ModelConfig:
    """A model folder's config.json (docs/architecture.md, "Model folder"); build it with `from_dict`."""

    format_version: int
    architecture: Mapping
    input: InputConfig
    postprocess: PostprocessConfig
    sections: Mapping = field(default_factory=lambda: MappingProxyType({}))  # every other top-level key, raw
    order: tuple[str, ...] = field(default=(), compare=False, repr=False)  # the file's key order

    @classmethod
    def from_dict(cls, config: Any, source: str | Path = "config.json") -> ModelConfig:
        """Validate a parsed config.json: ModelLoadError naming `source` (the file), the key, the problem and
        the fix. The architecture's values are checked when the network is built (`model.io`)."""
        def fail(problem: str) -> None:
            raise ModelLoadError(f"{source}: {problem}. Fix the file or re-export the model.")

        if not isinstance(config, Mapping):
            fail(f"expected a JSON object, got {type(config).__name__}")
        missing = [k for k in REQUIRED_SECTIONS if k not in config]
        if missing:
            fail(f"missing required key(s) {', '.join(missing)}; expected {', '.join(REQUIRED_SECTIONS)}")
        version = config["format_version"]
        if isinstance(version, bool) or not isinstance(version, int):
            fail(f"format_version must be an integer, got {version!r}")
        if version not in SUPPORTED_FORMAT_VERSIONS:
            newer = " (written by a newer inpaintseg: upgrade this one)" if version > FORMAT_VERSION else ""
            raise ModelLoadError(f"{source}: format_version {version} is not supported{newer}; this version "
                                 f"reads {', '.join(map(str, SUPPORTED_FORMAT_VERSIONS))}.")
        if not isinstance(config["architecture"], Mapping):
            fail(f"\"architecture\" must be an object, got {type(config['architecture']).__name__}")
        inp = InputConfig.from_dict(config["input"], fail)
        post = PostprocessConfig.from_dict(config["postprocess"], fail)
        return cls(format_version=version, architecture=_frozen(config["architecture"]), input=inp,
                   postprocess=post, sections=_extra(config, REQUIRED_SECTIONS), order=tuple(config))

    def to_dict(self) -> dict:
        """The JSON form: equal to the dict `from_dict` read, unknown keys included, in the file's key order."""
        out = {"format_version": self.format_version, "architecture": thawed(self.architecture),
               "input": self.input.to_dict(), "postprocess": self.postprocess.to_dict(), **thawed(self.sections)}
        return _in_order(out, self.order)

    def section(self, name: str, default: Any = None) -> Any:
        """A top-level section's JSON form (a fresh copy), or `default` when the file has no such key."""
        if name == "format_version":
            return self.format_version
        if name == "architecture":
            return thawed(self.architecture)
        if name in ("input", "postprocess"):
            return getattr(self, name).to_dict()
        return thawed(self.sections[name]) if name in self.sections else default

    # Read-only mapping access for code that only displays sections (the model card, the service's model page).
    def __getitem__(self, name: str) -> Any:
        if name not in self:
            raise KeyError(name)
        return self.section(name)

    def get(self, name: str, default: Any = None) -> Any:
        return self.section(name, default)

    def __contains__(self, name: object) -> bool:
        return name in REQUIRED_SECTIONS or name in self.sections

    def keys(self) -> list[str]:
        return list(self.to_dict())

    def items(self) -> list[tuple[str, Any]]:
        return list(self.to_dict().items())

    def __iter__(self):
        return iter(self.keys())

    def updated(self, updates: Mapping, source: str | Path = "config.json") -> ModelConfig:
        """A new ModelConfig with `updates` merged in and validated: a top-level key whose old and new values
        are both objects is updated key by key (so {"postprocess": {"threshold": 0.4}} keeps the other
        postprocess keys); any other value replaces the old one."""
        config = self.to_dict()
        for key, value in updates.items():
            if isinstance(value, Mapping) and isinstance(config.get(key), dict):
                config[key] = {**config[key], **thawed(value)}
            else:
                config[key] = thawed(value)
        return ModelConfig.from_dict(config, source)

    def replace(self, **changes: Any) -> ModelConfig:
        """`dataclasses.replace` for the typed fields (e.g. postprocess=...)."""
        return dataclasses.replace(self, **changes)


def record_of(config: Any, name: str) -> dict | None:
    """A raw top-level section ("onnx", "int8", ...) of a ModelConfig or of a config mapping, as a plain dict;
    None when it is absent or not an object."""
    if isinstance(config, ModelConfig):
        record = config.section(name)
    else:
        record = thawed(config.get(name)) if isinstance(config, Mapping) else None
    return record if isinstance(record, dict) else None


def as_model_config(config: Any, source: str | Path = "model config") -> ModelConfig:
    """`config` itself when it is a ModelConfig, else a mapping validated by `ModelConfig.from_dict`."""
    return config if isinstance(config, ModelConfig) else ModelConfig.from_dict(config, source)
