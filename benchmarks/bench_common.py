"""Pieces shared by the benchmark scripts (run as `python benchmarks/<name>.py`)."""

from __future__ import annotations

import time


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
