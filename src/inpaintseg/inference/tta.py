"""Test-time augmentation views: flips and 90-degree rotations, each inverted exactly (no resampling)."""

from __future__ import annotations

from dataclasses import dataclass

from inpaintseg.errors import ConfigError

TTA_CHOICES = ("none", "flip", "d4")


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
