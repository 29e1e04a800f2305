"""Test-time augmentation: dihedral views (flips and 90-degree rotations, each inverted exactly, no
resampling) and, for the ``+scales`` modes, the same views at several scales (the input is resized by
each factor and the probabilities resized back, so those views are inverted by resampling)."""

from __future__ import annotations

from dataclasses import dataclass

from inpaintseg.errors import ConfigError

# Cheapest first (forward cost in full-size passes: 1, 4, 8, 4 x 3.125, 8 x 3.125): validation
# calibration takes a costlier mode only when it gains more than its margin over the cheaper choice.
TTA_CHOICES = ("none", "flip", "d4", "flip+scales", "d4+scales")
SCALES_SUFFIX = "+scales"
TTA_SCALES = (0.75, 1.0, 1.25)


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
    """The dihedral views of a TTA mode: none = 1, flip = 4 (identity, horizontal, vertical, both), d4 = 8;
    "flip+scales" / "d4+scales" have the views of flip / d4 (at each of `tta_scales`)."""
    if mode in TTA_CHOICES and mode.endswith(SCALES_SUFFIX):
        mode = mode[:-len(SCALES_SUFFIX)]
    if mode == "none":
        return [View()]
    if mode == "flip":
        return [View(), View(flip=(3,)), View(flip=(2,)), View(flip=(2, 3))]
    if mode == "d4":
        return [View(rot=k) for k in range(4)] + [View(flip=(3,), rot=k) for k in range(4)]
    raise ConfigError(f"unknown TTA mode {mode!r}; expected one of {', '.join(TTA_CHOICES)}.")


def tta_scales(mode: str) -> tuple[float, ...]:
    """The input scales of a TTA mode: `TTA_SCALES` for the "+scales" modes, else (1.0,)."""
    tta_views(mode)  # validates
    return TTA_SCALES if mode.endswith(SCALES_SUFFIX) else (1.0,)


def view_key(view: View) -> tuple:
    """What a view does to pixel positions (two Views that move pixels alike have the same key, e.g.
    `flip`'s vertical flip and `d4`'s horizontal flip + half turn)."""
    import torch  # noqa: PLC0415

    probe = view.apply(torch.arange(6.0).view(1, 1, 2, 3))
    return tuple(probe.shape), tuple(probe.flatten().tolist())


def tta_plan(modes) -> tuple[list[tuple[float, View]], list[set[int]]]:
    """The distinct (scale, view) forward passes that several TTA modes need, and for each mode the set
    of passes it averages; each mode's set has exactly len(tta_views) x len(tta_scales) passes."""
    jobs: list[tuple[float, View]] = []
    index: dict[tuple, int] = {}
    members: list[set[int]] = []
    for mode in modes:
        mine = set()
        for scale in tta_scales(mode):
            for view in tta_views(mode):
                key = (scale, view_key(view))
                if key not in index:
                    index[key] = len(jobs)
                    jobs.append((scale, view))
                mine.add(index[key])
        members.append(mine)
    return jobs, members


def tta_cost(mode: str) -> float:
    """Forward cost of a mode in full-size passes: views x sum of scale^2 (none 1, flip 4, d4 8, ...)."""
    return len(tta_views(mode)) * sum(scale * scale for scale in tta_scales(mode))
