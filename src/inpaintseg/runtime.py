"""CPU runtime tuning: glibc malloc settings and torch thread count.

PyTorch on CPU allocates and frees many large activation buffers every step. glibc serves blocks
above M_MMAP_THRESHOLD with mmap/munmap, so each step pays fresh page faults and zeroing of every
page, and trims the heap top back to the OS; on our 2-core machine that made training 1.2-2.3x slower
(benchmarks/README.md). Turning mmap off for malloc (M_MMAP_MAX = 0) and raising the trim threshold
keeps freed buffers in the heap for reuse. Setting the environment variables MALLOC_MMAP_MAX_=0 and
MALLOC_TRIM_THRESHOLD_=<bytes> before Python starts has the same effect.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

# From glibc's <malloc.h>.
M_TRIM_THRESHOLD = -1
M_MMAP_MAX = -4
DEFAULT_TRIM_THRESHOLD = 1 << 30  # 1 GiB: keep up to this much freed memory at the heap top


def _glibc():
    """The loaded glibc, or None on other platforms / C libraries (musl, macOS, Windows)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        if not os.confstr("CS_GNU_LIBC_VERSION"):
            return None
    except (ValueError, OSError, AttributeError):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
        libc.mallopt.restype = ctypes.c_int
        return libc
    except (OSError, AttributeError):
        return None


def tune_malloc(trim_threshold: int = DEFAULT_TRIM_THRESHOLD) -> bool:
    """Apply mallopt(M_MMAP_MAX, 0) and mallopt(M_TRIM_THRESHOLD, trim_threshold) on glibc Linux.

    Returns True when both calls succeeded, False elsewhere (nothing is changed there).
    """
    libc = _glibc()
    if libc is None:
        return False
    trim = max(0, min(int(trim_threshold), 2 ** 31 - 1))
    return bool(libc.mallopt(M_MMAP_MAX, 0)) and bool(libc.mallopt(M_TRIM_THRESHOLD, trim))


def available_cpus() -> int:
    """CPUs this process may run on (respects taskset / cgroup affinity)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def tune_cpu_runtime(threads: int | None = None, malloc: bool = True) -> dict:
    """Tune this process for CPU training/inference; harmless to call more than once or on a GPU box.

    - glibc malloc: see `tune_malloc` (skipped when `malloc` is False);
    - torch intra-op threads: `threads`, else $OMP_NUM_THREADS when set, else the CPUs available to
      this process (torch's own default can count CPUs outside the affinity mask).

    Returns what was applied: {"malloc": bool, "threads": int}.
    """
    import torch

    applied_malloc = tune_malloc() if malloc else False
    if threads is None:
        env = os.environ.get("OMP_NUM_THREADS", "")
        threads = int(env) if env.isdigit() and int(env) > 0 else available_cpus()
    threads = max(1, int(threads))
    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)
    return {"malloc": applied_malloc, "threads": threads}
