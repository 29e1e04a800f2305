"""Speed of `inpaintseg predict` at 256x256 next to its parts, measured in the same run.

    python benchmarks/predict_speed.py [--n 48] [--width 16] [--batch-size 8] [--json FILE] [--forward-only]

Parts, each measured alone:
- the fp32 `torch.mm` peak (GFLOP/s, 2048^2 matrices, best of 5, max of the runs at start and end);
- the bare forward pass of an untrained (random-init) Attention U-Net built with `build_model`, in
  eval mode under `torch.inference_mode`, batch `--batch-size`, contiguous vs channels_last, each in
  fp32 and under bf16 autocast (`inpaintseg.precision.autocast_context`; fp32 and bf16 timed in
  alternating rounds so that load from other processes hits both), with the bf16/fp32 ratio and the
  largest |sigmoid difference| between the two on the same batch; GFLOP/s (FLOPs from `model_flops`)
  as a share of the fp32 matmul peak;
- DenseCRF alone on one core (`crf.refine`, "seed" and "gaussian" presets).
Then the whole `predict` command (decode PNGs, resize, TTA, CRF, RLE, write submission + masks)
on `--n` random 256x256 PNGs for TTA none/flip/d4 x CRF off/gaussian, reported as images/s and as a
ratio to the sum of its parts (views x forward time + CRF time): the target is <= 1.3x. The predict
runs are fp32 (`--forward-only` skips them and the CRF timing).
`--scale pipeline,big,shard` adds issue 13's measurements (`bench_scale.py`: PyTorch vs onnxruntime,
whole/parts per engine, a 4000x3000 image's seconds and peak RSS, 2 processes vs 1).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import bench_scale
from bench_common import matmul_peak_gflops


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=48, help="images in the predict runs (default 48)")
    p.add_argument("--size", type=int, default=256, help="image side and model input size (default 256)")
    p.add_argument("--width", type=int, default=16, help="model base_channels (default 16)")
    p.add_argument("--depth", type=int, default=4, help="model depth (default 4)")
    p.add_argument("--batch-size", type=int, default=8, help="forward batch (default 8)")
    p.add_argument("--seconds", type=float, default=3.0, help="time spent on each bare measurement (default 3)")
    p.add_argument("--crf-workers", type=int, default=1, help="predict --crf-workers (default 1)")
    p.add_argument("--json", help="also write the results as JSON")
    p.add_argument("--forward-only", action="store_true", help="only the matmul peak and the bare forward passes")
    bench_scale.add_arguments(p)  # issue 13: --scale pipeline,big,shard and --agreement MODEL_DIR IMAGES
    return p.parse_args(argv)


def architecture(args) -> dict:
    return {"name": "AttentionUNet", "in_channels": 3, "out_channels": 1, "base_channels": args.width,
            "depth": args.depth, "attention": True}


PRECISIONS = ("32", "bf16-mixed")


def bare_forward_rates(model, args, channels_last: bool) -> tuple[dict, float]:
    """Images/s of model(x) alone on a fixed batch (no decoding, resizing, TTA or sigmoid) per
    precision, and the largest |sigmoid(fp32 logits) - sigmoid(bf16 logits)| on that batch."""
    import torch

    from inpaintseg.precision import autocast_context, forward_probs

    fmt = torch.channels_last if channels_last else torch.contiguous_format
    model = model.to(memory_format=fmt).eval()
    x = torch.randn(args.batch_size, 3, args.size, args.size,
                    generator=torch.Generator().manual_seed(0)).contiguous(memory_format=fmt)
    seconds = dict.fromkeys(PRECISIONS, 0.0)
    counts = dict.fromkeys(PRECISIONS, 0)
    with torch.inference_mode():
        for precision in PRECISIONS:  # warm-up
            with autocast_context("cpu", precision):
                model(x)
        while min(seconds.values()) < args.seconds:  # alternating rounds of ~0.5 s each
            for precision in PRECISIONS:
                with autocast_context("cpu", precision):
                    start = time.perf_counter()
                    while time.perf_counter() - start < min(0.5, args.seconds):
                        model(x)
                        counts[precision] += args.batch_size
                    seconds[precision] += time.perf_counter() - start
    probs = {p: forward_probs(model, x, p) for p in PRECISIONS}
    diff = (probs["32"] - probs["bf16-mixed"]).abs().max().item()
    return {p: counts[p] / seconds[p] for p in PRECISIONS}, diff


def crf_seconds(args, preset: str, reps: int = 5) -> float:
    """Mean seconds of one DenseCRF refinement at size x size (one core: it holds the GIL)."""
    from inpaintseg.inference import crf

    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (args.size, args.size, 3), dtype=np.uint8)
    probs = rng.random((args.size, args.size)).astype(np.float32)
    crf.refine(image, probs, crf.CRF_PRESETS[preset])
    start = time.perf_counter()
    for _ in range(reps):
        crf.refine(image, probs, crf.CRF_PRESETS[preset])
    return (time.perf_counter() - start) / reps


def make_images(folder: Path, n: int, size: int) -> None:
    from inpaintseg.fileio import write_png

    rng = np.random.default_rng(0)
    for i in range(n):
        write_png(folder / f"img_{i:04d}.png", rng.integers(0, 256, (size, size, 3), dtype=np.uint8))


def time_predict(model_dir: Path, images: Path, out: Path, args, tta: str, crf: str) -> float:
    """Wall seconds of the whole `inpaintseg predict` command, in this process."""
    from inpaintseg import cli

    start = time.perf_counter()
    code = cli.main(["predict", "--quiet", "--model", str(model_dir), "--images", str(images),
                     "--submission", str(out / "submission.csv"), "--masks-out", str(out / "masks"),
                     "--tta", tta, "--crf", crf, "--batch-size", str(args.batch_size),
                     "--crf-workers", str(args.crf_workers)])
    seconds = time.perf_counter() - start
    if code != 0:
        raise SystemExit(f"predict failed with exit status {code}")
    return seconds


def main(argv=None) -> int:
    args = parse_args(argv)
    import torch

    from inpaintseg.data.input_spec import input_section
    from inpaintseg.inference.crf import CRF_VARIANTS
    from inpaintseg.model import build_model, model_flops
    from inpaintseg.model.io import save_model_dir
    from inpaintseg.runtime import tune_cpu_runtime

    runtime = tune_cpu_runtime()
    peak = matmul_peak_gflops()
    torch.manual_seed(0)
    model = build_model(architecture(args)).eval()
    gflop_per_image = model_flops(model, args.size) / 1e9
    measured = {cl: bare_forward_rates(model, args, cl) for cl in (False, True)}
    all_rates = {cl: m[0] for cl, m in measured.items()}
    rates = {cl: r["32"] for cl, r in all_rates.items()}  # the predict command below runs fp32
    prob_diff = max(m[1] for m in measured.values())
    crf_s = {} if args.forward_only else {preset: crf_seconds(args, preset) for preset in CRF_VARIANTS}

    views = {"none": 1, "flip": 4, "d4": 8}
    rows = []
    with tempfile.TemporaryDirectory(prefix="predict_speed_") as tmp:
        tmp = Path(tmp)
        model_dir = save_model_dir(tmp / "model", model, {
            "architecture": architecture(args),
            "input": input_section("resize", args.size),
            "postprocess": {"threshold": 0.5, "tta": "none", "crf": "off"}})
        make_images(tmp / "images", args.n, args.size)
        forward_s = 1.0 / rates[True]  # predict runs channels_last on CPU
        for crf in () if args.forward_only else ("off", "gaussian"):
            for tta in ("none", "flip", "d4"):
                seconds = time_predict(model_dir, tmp / "images", tmp / f"out_{tta}_{crf}", args, tta, crf)
                parts = args.n * (views[tta] * forward_s + (crf_s[crf] if crf != "off" else 0.0))
                rows.append({"tta": tta, "crf": crf, "seconds": seconds, "images_per_s": args.n / seconds,
                             "sum_of_parts_s": parts, "ratio_to_parts": seconds / parts})
        scale = bench_scale.run_scale(model_dir, tmp / "images", tmp, args) if (args.scale or args.agreement) else {}
    peak = max(peak, matmul_peak_gflops())

    print(f"torch {torch.__version__}, {runtime['threads']} threads; model width {args.width} depth {args.depth} "
          f"(random init), {gflop_per_image:.2f} GFLOP/image at {args.size}x{args.size}, batch {args.batch_size}")
    from inpaintseg.precision import cpu_info

    print(f"fp32 torch.mm peak: {peak:.1f} GFLOP/s; CPU: {cpu_info().describe()}")
    for cl, by_precision in all_rates.items():
        name = "channels_last" if cl else "contiguous"
        for precision, rate in by_precision.items():
            print(f"bare forward ({name:>13}, {precision:>10}): {rate:6.1f} img/s = "
                  f"{rate * gflop_per_image:6.1f} GFLOP/s = {100 * rate * gflop_per_image / peak:5.1f}% of "
                  f"fp32 peak = {rate / by_precision['32']:.2f}x fp32")
    print(f"largest |probability difference| fp32 vs bf16 (random weights, same batch): {prob_diff:.4f}")
    for preset, s in crf_s.items():
        print(f"DenseCRF alone ({preset}, 5 iterations, one core): {1000 * s:.1f} ms/image")
    if args.forward_only:
        rows = []
    else:
        print(f"\npredict on {args.n} PNGs of {args.size}x{args.size} (decode, resize, TTA, CRF, RLE, write "
              f"submission + mask PNGs; --crf-workers {args.crf_workers}):")
        print(f"{'tta':>5} {'crf':>9} | {'img/s':>6} | {'seconds':>7} | {'sum of parts':>12} | {'ratio':>5}")
    for r in rows:
        print(f"{r['tta']:>5} {r['crf']:>9} | {r['images_per_s']:6.1f} | {r['seconds']:7.2f} | "
              f"{r['sum_of_parts_s']:12.2f} | {r['ratio_to_parts']:5.2f}")
    if args.json:
        from inpaintseg.fileio import atomic_write_text

        atomic_write_text(args.json, json.dumps({
            "runtime": runtime, "peak_gflops": peak, "gflop_per_image": gflop_per_image,
            "forward_img_per_s": {"contiguous": rates[False], "channels_last": rates[True]},
            "forward_img_per_s_by_precision": {"contiguous": all_rates[False], "channels_last": all_rates[True]},
            "max_prob_diff_fp32_bf16": prob_diff,
            "crf_seconds": crf_s, "predict": rows, "scale": scale}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
