"""Progress reporting shared by every long command (prediction, calibration, demo-data)."""

from __future__ import annotations


def progress_bar(total: int, desc: str, enabled: bool = True, unit: str = "img"):
    """A tqdm bar on stderr (a no-op object when ``enabled`` is False)."""
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit=unit, disable=not enabled, dynamic_ncols=True)
