"""Pieces shared by the benchmark scripts (run as `python benchmarks/<name>.py`)."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

# Test-time degradations of the robustness rows (quality.py, lofo.py): each image degraded, masks unchanged.
ROBUSTNESS = ("jpeg90", "jpeg70", "jpeg50", "down0.5", "down0.75", "noise5")


def parse_named_settings(text: str, parser, flag: str) -> tuple[str, dict]:
    """`NAME` or `NAME:key=value,key=value` (values read as YAML scalars) -> (name, {key: value}); a malformed
    item is the parser's error naming `flag`."""
    import yaml

    name, _, rest = text.partition(":")
    settings = {}
    for item in filter(None, rest.split(",")):
        key, sep, value = item.partition("=")
        if not sep:
            parser.error(f"{flag} {text!r}: expected key=value after the name, got {item!r}")
        settings[key.strip()] = yaml.safe_load(value)
    return name.strip(), settings


def matmul_peak_gflops(n: int = 2048, reps: int = 5) -> float:
    """Best fp32 torch.mm GFLOP/s (2 n^3 FLOPs per product) on n x n matrices: the peak that the
    benchmarks report achieved GFLOP/s against, measured in the same run."""
    import torch

    a, b = torch.randn(n, n), torch.randn(n, n)
    torch.mm(a, b)
    best = float("inf")
    for _ in range(reps):
        start = time.perf_counter()
        torch.mm(a, b)
        best = min(best, time.perf_counter() - start)
    return 2 * n ** 3 / best / 1e9


def perturb(image: np.ndarray, kind: str, rng: np.random.Generator) -> np.ndarray:
    """A degraded copy of an RGB uint8 image, same size: JPEG at quality N (`jpegN`), down-scaled by f
    and back up (`downF`, area down, bilinear up), or Gaussian noise of sigma N grey levels (`noiseN`)."""
    import cv2

    from inpaintseg.data.transforms import jpeg_round_trip

    if kind.startswith("jpeg"):
        return jpeg_round_trip(image, int(kind[4:]))
    if kind.startswith("down"):
        h, w = image.shape[:2]
        f = float(kind[4:])
        small = cv2.resize(image, (max(1, round(w * f)), max(1, round(h * f))), interpolation=cv2.INTER_AREA)
        return cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)
    if kind.startswith("noise"):
        return np.clip(image + rng.normal(0, float(kind[5:]), image.shape), 0, 255).astype(np.uint8)
    raise ValueError(f"unknown degradation {kind!r}; expected one of {', '.join(ROBUSTNESS)}")


def perturbed_folder(images: Path, kind: str, out: Path) -> Path:
    """Every image of `images` degraded by `kind` (seeded), written as PNG under `out`."""
    from inpaintseg import fileio

    rng = np.random.default_rng(0)
    out.mkdir(parents=True, exist_ok=True)
    for p in sorted(images.iterdir()):
        if fileio.is_image_file(p):
            fileio.write_png(out / f"{p.stem}.png", perturb(fileio.read_image(p), kind, rng))
    return out
