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
    check_count("--threads", threads)
    if threads is None:
        env = os.environ.get("OMP_NUM_THREADS", "")
        threads = int(env) if env.isdigit() and int(env) > 0 else available_cpus()
    threads = max(1, int(threads))
    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)
    return {"malloc": applied_malloc, "threads": threads}


# ------------------------------------------------------------------------------------------ machine limits
# Every count flag (processes, threads, workers) and image-size flag has an upper bound derived from this
# machine, checked before any work, so a typo such as --num-devices 1000 or --threads 100000 is one message
# instead of hundreds of processes, a libgomp crash or a 12 TB allocation.
PER_CPU = 2  # processes / threads / workers per CPU allowed: more only compete for the same cores
PROCESS_MEMORY = 1 << 29  # 512 MiB: about what one extra torch process holds (interpreter, torch, a model)
# Memory of the U-Net's forward pass per input pixel and per base channel: about 8 float32 values (model-info,
# base 16: peak RSS +1.46 GB from 1024^2 to 2048^2 pixels, ~470 bytes per pixel). Training keeps more for the
# backward pass, so as a training bound it is a lower estimate: a refused size would not have fit anyway.
FORWARD_BYTES_PER_PIXEL_CHANNEL = 8 * 4


def memory_bytes() -> int | None:
    """Physical memory of this machine in bytes (None where the OS does not say)."""
    try:
        return int(os.sysconf("SC_PAGE_SIZE")) * int(os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):
        return None


def _limit_error(flag: str, value: int, bound: int, why: str):
    """`flag` is a CLI flag (the commands' own checks) or a library parameter, which the CLI prints as its flag."""
    from inpaintseg.errors import ConfigError

    return ConfigError(f"{flag} {value}: at most {bound} on this machine ({why}). Lower {flag}.",
                       params=[] if flag.startswith("--") else [flag])


def count_bound(processes: bool = False) -> tuple[int, str]:
    """(the largest count allowed, why): PER_CPU x the CPUs this process may use; for processes also what the
    memory holds at PROCESS_MEMORY each."""
    cpus = available_cpus()
    bound, why = PER_CPU * cpus, f"{PER_CPU} x the {cpus} CPU(s) this process may use"
    memory = memory_bytes()
    if processes and memory is not None and memory // PROCESS_MEMORY < bound:
        bound, why = max(1, memory // PROCESS_MEMORY), (f"{memory / 2 ** 30:.1f} GiB of memory at about "
                                                        f"{PROCESS_MEMORY / 2 ** 30:.1f} GiB per process")
    return bound, why


def check_count(flag: str, value: int | None, processes: bool = False) -> None:
    """ConfigError naming the bound when a thread/worker (or, `processes`, process) count exceeds `count_bound`."""
    if value is None:
        return
    bound, why = count_bound(processes)
    if value > bound:
        raise _limit_error(flag, value, bound, why)


def check_image_side(flag: str, side: int, bytes_per_pixel: float, what: str) -> None:
    """ConfigError when a square image of `side` pixels at about `bytes_per_pixel` (what `what` needs per pixel)
    would not fit in this machine's memory; the message names the largest side that would."""
    memory = memory_bytes()
    if memory is None or side * side * bytes_per_pixel <= memory:
        return
    bound = int((memory / bytes_per_pixel) ** 0.5)
    raise _limit_error(flag, side, bound, f"{what} needs about {side * side * bytes_per_pixel / 2 ** 30:,.0f} GiB "
                       f"at this size, this machine has {memory / 2 ** 30:.1f} GiB")
