"""RLE encoding speed: the vectorised codec against a naive pure-Python encoder, same run.

    python benchmarks/rle_speed.py [--n 10000] [--size 256] [--naive-n 50]

Masks are realistic (ellipses and brush strokes covering about 1-40% of the image, 10% empty).
A pool of distinct masks is cycled to reach --n without holding 10,000 masks in memory. Prints
masks/s for encode and decode, and the speed-up over the naive encoder (timed on --naive-n masks).
"""

from __future__ import annotations

import argparse
import time

import cv2
import numpy as np

from inpaintseg.rle import rle_decode, rle_encode


def make_masks(n: int, size: int, seed: int = 0) -> list[np.ndarray]:
    """Shape: -> n masks of (size, size) uint8 in {0, 1}."""
    rng = np.random.default_rng(seed)
    masks = []
    for i in range(n):
        mask = np.zeros((size, size), np.uint8)
        if i % 10:
            for _ in range(rng.integers(1, 4)):
                center = tuple(int(v) for v in rng.integers(0, size, 2))
                axes = tuple(int(v) for v in rng.integers(size // 20, size // 4, 2))
                cv2.ellipse(mask, center, axes, float(rng.uniform(0, 180)), 0, 360, 1, -1)
            points = rng.integers(0, size, (4, 2)).astype(np.int32)
            cv2.polylines(mask, [points], False, 1, int(rng.integers(3, size // 16 + 4)))
        masks.append(mask)
    return masks


def naive_encode(mask: np.ndarray) -> str:
    """Pixel-by-pixel pure-Python row-major encoder: the baseline."""
    out: list[int] = []
    start = None
    for i, value in enumerate(mask.ravel().tolist() + [0], start=1):
        if value and start is None:
            start = i
        elif not value and start is not None:
            out += [start, i - start]
            start = None
    return " ".join(map(str, out))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=10000, help="masks to encode (default 10000)")
    parser.add_argument("--size", type=int, default=256, help="mask side (default 256)")
    parser.add_argument("--pool", type=int, default=200, help="distinct masks cycled (default 200)")
    parser.add_argument("--naive-n", type=int, default=50, help="masks for the naive baseline (default 50)")
    args = parser.parse_args()

    pool = make_masks(args.pool, args.size)
    coverage = float(np.mean([m.mean() for m in pool]))

    start = time.perf_counter()
    encoded = [rle_encode(pool[i % len(pool)]) for i in range(args.n)]
    encode_s = time.perf_counter() - start

    start = time.perf_counter()
    for rle in encoded:
        rle_decode(rle, (args.size, args.size))
    decode_s = time.perf_counter() - start

    start = time.perf_counter()
    for i in range(args.naive_n):
        assert naive_encode(pool[i % len(pool)]) == encoded[i % len(pool)]
    naive_s = time.perf_counter() - start

    fast_rate = args.n / encode_s
    naive_rate = args.naive_n / naive_s
    print(f"{args.n} masks of {args.size}x{args.size}, mean coverage {coverage:.1%}")
    print(f"encode (numpy):  {encode_s:7.2f} s  {fast_rate:9.0f} masks/s")
    print(f"decode (numpy):  {decode_s:7.2f} s  {args.n / decode_s:9.0f} masks/s")
    print(f"encode (naive):  {naive_s:7.2f} s  {naive_rate:9.0f} masks/s  (on {args.naive_n} masks)")
    print(f"speed-up over naive encoder: {fast_rate / naive_rate:.0f}x; "
          f"naive would take {args.n / naive_rate:.0f} s for {args.n} masks")


if __name__ == "__main__":
    main()
