"""The method registry: each manipulation method is a small named function plus one `@method` line.

A method takes (ctx, image, mask) and returns a `Fill`: the image with the region replaced (pixels
outside `Fill.mask` are ignored -- the engine copies only the masked pixels -- unless `Fill.whole_frame`), the mask actually
manipulated (usually the one it was given) and a small dict of what it did (recorded in meta.json).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from inpaintseg.errors import InpaintsegError

# Family names in the order --list-methods shows them.
FAMILIES = ("classical", "copy", "learned", "autoencoder", "selfblend")


@dataclass
class Fill:
    image: np.ndarray  # (H, W, 3) uint8
    mask: np.ndarray  # (H, W) uint8 {0, 1}
    info: dict = field(default_factory=dict)
    # True: the whole `image` is the result (a latent-diffusion pipeline that does not paste the known pixels
    # back); the label is still `mask`, where the content was re-generated.
    whole_frame: bool = False


@dataclass
class MethodContext:
    """What a method may use besides the image and mask."""

    rng: np.random.Generator
    donor: Callable[[], tuple[str, np.ndarray]]  # another photo's crop of the same size (for splices)
    generators: Any  # synth.generator_bank.GeneratorBank (lazy)


@dataclass(frozen=True)
class Method:
    name: str
    family: str
    description: str
    fn: Callable[[MethodContext, np.ndarray, np.ndarray], Fill]
    generators: tuple[str, ...] = ()  # learned generators it needs
    requires: tuple[str, str] | None = None  # (module, pip extra) of an optional package it needs

    def missing(self) -> str | None:
        """Why the method cannot run here (its optional package is not installed), or None."""
        if self.requires is None:
            return None
        import importlib.util

        module, extra = self.requires
        if importlib.util.find_spec(module) is not None:
            return None
        return (f"method {self.name!r} needs the optional package {module} (pip install 'inpaintseg[{extra}]'); "
                f"install it or leave the method out (add {self.name} to exclude_methods).")


METHODS: dict[str, Method] = {}


def method(name: str, family: str, description: str, generators: tuple[str, ...] = (),
           requires: tuple[str, str] | None = None):
    """Decorator: register `fn` as method `name` of `family` (`requires`: (module, pip extra) of an optional
    package; without it the method is left out of selections that do not name it)."""
    if family not in FAMILIES:
        raise ValueError(f"unknown family {family!r}; add it to FAMILIES")

    def register(fn):
        if name in METHODS:
            raise ValueError(f"method {name!r} registered twice")
        METHODS[name] = Method(name, family, description, fn, tuple(generators), requires)
        return fn

    return register


def all_methods() -> dict[str, Method]:
    """Every registered method, in registration (= family) order."""
    import inpaintseg.synth.methods  # noqa: F401  (registers the methods)

    return METHODS


def _names(values: Iterable[str] | str | None) -> list[str] | None:
    if values is None:
        return None
    if isinstance(values, str):
        values = values.split(",")
    return [v.strip() for v in values if v.strip()]


def select_methods(methods=None, exclude_methods=None, families=None, exclude_families=None,
                   prefix: str = "") -> list[str]:
    """Method names chosen by name and family (comma-separated strings or lists; "all" = every one).

    Unknown names raise InpaintsegError listing the known ones; an empty selection too. Error
    messages name the parameters as {prefix}methods etc. (prefix "test_" for the test split), listed in the
    error's `params`.
    """
    registry = all_methods()
    known_methods, known_families = list(registry), [f for f in FAMILIES if any(m.family == f for m in registry.values())]

    def check(values, known, kind, param):
        values = _names(values)
        if values is None or values == ["all"]:
            return None
        unknown = [v for v in values if v not in known]
        if unknown:
            raise InpaintsegError(f"{param}: unknown {kind} {', '.join(unknown)}. Known: {', '.join(known)} "
                                  f"(see inpaintseg demo-data --list-methods).", params=[param])
        return values

    chosen_methods = check(methods, known_methods, "method(s)", f"{prefix}methods")
    chosen_families = check(families, known_families, "family(ies)", f"{prefix}families")
    dropped_methods = check(exclude_methods, known_methods, "method(s)", f"{prefix}exclude_methods") or []
    dropped_families = check(exclude_families, known_families, "family(ies)", f"{prefix}exclude_families") or []
    selected = [
        name for name, m in registry.items()
        if (chosen_methods is None or name in chosen_methods)
        and (chosen_families is None or m.family in chosen_families)
        and name not in dropped_methods and m.family not in dropped_families
    ]
    # A method whose optional package is missing: an error when named, else quietly not selected (its absence
    # is in meta.json's method list and in --list-methods).
    for name in [n for n in selected if registry[n].missing()]:
        if chosen_methods is not None and name in chosen_methods:
            raise InpaintsegError(f"{prefix}methods: {registry[name].missing()}",
                                  params=[f"{prefix}methods", "exclude_methods"])
        selected.remove(name)
    if not selected:
        raise InpaintsegError(f"the method selection is empty (after {prefix}methods, {prefix}families "
                              f"and the exclusions). See inpaintseg demo-data --list-methods.",
                              params=[f"{prefix}methods", f"{prefix}families"])
    return selected
