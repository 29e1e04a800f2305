"""Training-step speed of the Attention U-Net on CPU, next to MONAI's AttentionUnet and a matmul peak.

One training step = forward + BCEDiceLoss backward + Adam step on a random batch (default 16 images of
256x256). For each width we print images/s, the achieved GFLOP/s (training FLOPs ~= 3x the forward
FLOPs counted by `inpaintseg.model.model_flops`) and that as a share of the fp32 `torch.mm` peak
measured in the same run. MONAI's `AttentionUnet` with channels (w, 2w, 4w, 8w, 16w) runs beside ours
when `import monai` works (see benchmarks/README.md for the optional .venv-bench); otherwise its column
says why it was skipped. `--precisions 32,bf16-mixed` (the default) times every model in fp32 and under
bf16 autocast (`inpaintseg.precision.autocast_context`, as Lightning's "bf16-mixed" does) and prints
the bf16/fp32 ratio of the same run.

The model steps of one width are interleaved (ours, MONAI, ours, MONAI, ...) so that load from other
processes hits both alike. The table reports the fastest timed step (the least disturbed by other
processes on a shared machine, as `timeit` does) and, beside it, the median.

    python benchmarks/train_speed.py                      # widths 16, 32, 64
    python benchmarks/train_speed.py --widths 16 --steps 3 --compare-malloc
    python benchmarks/train_speed.py --widths 16 --steps 3 --precisions 32,bf16-mixed --no-monai
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys

from bench_common import matmul_peak_gflops


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--widths", default="16,32,64", help="comma-separated base widths (default 16,32,64)")
    p.add_argument("--steps", type=int, default=2, help="timed steps per model (default 2)")
    p.add_argument("--warmup", type=int, default=1, help="untimed warm-up steps per model (default 1)")
    p.add_argument("--batch-size", type=int, default=16, help="images per step (default 16)")
    p.add_argument("--size", type=int, default=256, help="square image size (default 256)")
    p.add_argument("--depth", type=int, default=4, help="U-Net depth (default 4)")
    p.add_argument("--malloc", choices=("tuned", "default"), default="tuned",
                   help="tuned: inpaintseg.runtime.tune_cpu_runtime() (mallopt) at start; default: glibc "
                        "as is (default tuned)")
    p.add_argument("--compare-malloc", action="store_true",
                   help="also time our model at the first width in two fresh processes, glibc default "
                        "vs tuned malloc, and print the ratio")
    p.add_argument("--memory-format", choices=("channels_last", "contiguous"), default="channels_last",
                   help="memory format of both models and the batch (default channels_last, the faster "
                        "one on CPU)")
    p.add_argument("--no-monai", action="store_true", help="skip MONAI even when it is installed")
    p.add_argument("--precisions", default="32,bf16-mixed",
                   help="comma-separated precisions to time each model at: 32, bf16-mixed (default both)")
    p.add_argument("--json", action="store_true", help=argparse.SUPPRESS)  # child mode for --compare-malloc
    args = p.parse_args(argv)
    try:
        args.widths = [int(w) for w in args.widths.split(",") if w.strip()]
    except ValueError:
        p.error(f"--widths: expected numbers like 16,32,64, got {args.widths!r}")
    for name in ("steps", "batch_size", "size", "depth"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be >= 1")
    if not args.widths or min(args.widths) < 1:
        p.error("--widths must list widths >= 1")
    args.precisions = [x.strip() for x in args.precisions.split(",") if x.strip()]
    if not args.precisions or not set(args.precisions) <= {"32", "bf16-mixed"}:
        p.error(f"--precisions: expected 32 and/or bf16-mixed, got {args.precisions}")
    return args


def setup_runtime(malloc: str) -> dict:
    """Apply the runtime tuning (or only the thread count) before torch allocates anything big."""
    from inpaintseg.runtime import tune_cpu_runtime

    return tune_cpu_runtime(malloc=(malloc == "tuned"))


def build_ours(width: int, depth: int):
    from inpaintseg.model import AttentionUNet

    return AttentionUNet(in_channels=3, out_channels=1, base_channels=width, depth=depth)


def build_monai(width: int, depth: int):
    """MONAI's AttentionUnet at the same channels, or (None, reason)."""
    try:
        from monai.networks.nets import AttentionUnet
    except Exception as exc:  # ImportError, or a broken optional install
        return None, f"skipped: import monai failed ({type(exc).__name__})"
    channels = tuple(width * 2 ** i for i in range(depth + 1))
    model = AttentionUnet(spatial_dims=2, in_channels=3, out_channels=1, channels=channels,
                          strides=(2,) * depth)
    return model, ""


class Trainer:
    """One model (a copy), its Adam optimiser and a fixed random batch at one precision; `step()` runs one
    training step (`timing.time_rounds` times it)."""

    def __init__(self, model, batch_size: int, size: int, channels_last: bool, precision: str = "32",
                 seed: int = 0) -> None:
        import copy

        import torch

        from inpaintseg.losses import BCEDiceLoss

        generator = torch.Generator().manual_seed(seed)
        fmt = torch.channels_last if channels_last else torch.contiguous_format
        self.precision = precision
        self.model = copy.deepcopy(model).train().to(memory_format=fmt)
        self.x = torch.randn(batch_size, 3, size, size, generator=generator).contiguous(memory_format=fmt)
        self.y = (torch.rand(batch_size, 1, size, size, generator=generator) > 0.8).float()
        self.loss_fn = BCEDiceLoss()
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=1e-3)

    def step(self) -> None:
        from inpaintseg.precision import autocast_context

        self.optimizer.zero_grad(set_to_none=True)
        with autocast_context("cpu", self.precision):
            loss = self.loss_fn(self.model(self.x), self.y)
        loss.backward()
        self.optimizer.step()


def time_models(models: dict, args) -> dict:
    """Seconds per timed step of each (model, precision) (a list), steps interleaved across them."""
    from inpaintseg.timing import time_rounds

    channels_last = args.memory_format == "channels_last"
    trainers = {(name, p): Trainer(m, args.batch_size, args.size, channels_last, p)
                for name, m in models.items() for p in args.precisions}
    return time_rounds({key: t.step for key, t in trainers.items()}, args.warmup, args.steps).seconds


def measure_width(width: int, args, use_monai: bool) -> dict:
    from inpaintseg.model import count_parameters, model_flops

    ours = build_ours(width, args.depth)
    models = {"ours": ours}
    monai_note = "skipped: --no-monai"
    if use_monai:
        monai_model, monai_note = build_monai(width, args.depth)
        if monai_model is not None:
            models["monai"] = monai_model
    flops = {name: 3 * model_flops(m, args.size) for name, m in models.items()}   # per image
    params = {name: count_parameters(m) for name, m in models.items()}
    seconds = time_models(models, args)
    row = {"width": width, "monai_note": monai_note}
    for name in models:
        row[name] = {}
        for precision in args.precisions:
            times = seconds[(name, precision)]
            best, median = min(times), statistics.median(times)
            row[name][precision] = {"sec_per_step": best, "images_per_s": args.batch_size / best,
                                    "median_images_per_s": args.batch_size / median,
                                    "train_gflop_per_image": flops[name] / 1e9, "params": params[name],
                                    "gflops": flops[name] * args.batch_size / best / 1e9}
    return row


def compare_malloc(args) -> dict:
    """Our model at the first width in two fresh processes: glibc default vs tuned malloc."""
    results = {}
    for mode in ("default", "tuned"):
        env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
        cmd = [sys.executable, os.path.abspath(__file__), "--json", "--no-monai", "--malloc", mode,
               "--widths", str(args.widths[0]), "--steps", str(args.steps), "--warmup", str(args.warmup),
               "--batch-size", str(args.batch_size), "--size", str(args.size), "--depth", str(args.depth)]
        cmd += ["--memory-format", args.memory_format, "--precisions", args.precisions[0]]
        out = subprocess.run(cmd, env=env, check=True, capture_output=True, text=True).stdout
        row = json.loads(out.strip().splitlines()[-1])["rows"][0]
        results[mode] = row["ours"][args.precisions[0]]["images_per_s"]
    return results


def print_table(rows: list[dict], peak: float, args, runtime: dict) -> None:
    import torch

    print(f"torch {torch.__version__}, {runtime['threads']} threads, malloc tuned: {runtime['malloc']}, "
          f"memory format: {args.memory_format}, {platform.processor() or platform.machine()}")
    print(f"training step = forward + BCEDice backward + Adam; batch {args.batch_size}, "
          f"{args.size}x{args.size}, fastest (and median) of {args.steps} steps after {args.warmup} warm-up")
    print(f"fp32 torch.mm peak (2048^2, best of 5, max of start/end): {peak:.1f} GFLOP/s")
    from inpaintseg.precision import cpu_info

    print(f"CPU: {cpu_info().describe()}")
    print()
    header = (f"{'width':>5} | {'model':<6} | {'precision':<10} | {'params':>10} | {'GFLOP/img':>9} | "
              f"{'s/step':>7} | {'img/s':>6} | {'median':>6} | {'GFLOP/s':>7} | {'% peak':>6} | "
              f"{'x fp32':>6} | {'ours/MONAI':>10}")
    print(header)
    print("-" * len(header))
    for row in rows:
        for name, label in (("ours", "ours"), ("monai", "MONAI")):
            if row.get(name) is None:
                print(f"{row['width']:>5} | {label:<6} | {row['monai_note']}")
                continue
            for precision, r in row[name].items():
                fp32 = row[name].get("32")
                x_fp32 = f"{r['images_per_s'] / fp32['images_per_s']:.2f}x" if fp32 else "-"
                monai = (row.get("monai") or {}).get(precision)
                vs = f"{r['images_per_s'] / monai['images_per_s']:.2f}x" if monai and name == "ours" else ""
                print(f"{row['width']:>5} | {label:<6} | {precision:<10} | {r['params']:>10,} | "
                      f"{r['train_gflop_per_image']:>9.1f} | {r['sec_per_step']:>7.2f} | {r['images_per_s']:>6.2f} | "
                      f"{r['median_images_per_s']:>6.2f} | {r['gflops']:>7.1f} | "
                      f"{100 * r['gflops'] / peak:>5.1f}% | {x_fp32:>6} | {vs:>10}")


def main(argv=None) -> int:
    args = parse_args(argv)
    runtime = setup_runtime(args.malloc)
    peak_start = matmul_peak_gflops()
    rows = [measure_width(w, args, use_monai=not args.no_monai) for w in args.widths]
    peak = max(peak_start, matmul_peak_gflops())
    if args.json:
        print(json.dumps({"rows": rows, "peak_gflops": peak, "runtime": runtime}))
        return 0
    print_table(rows, peak, args, runtime)
    if args.compare_malloc:
        speeds = compare_malloc(args)
        print()
        print(f"malloc, our model at width {args.widths[0]} (fresh process each): glibc default "
              f"{speeds['default']:.2f} img/s, tuned (M_MMAP_MAX=0, large M_TRIM_THRESHOLD) "
              f"{speeds['tuned']:.2f} img/s -> tuned/default = {speeds['tuned'] / speeds['default']:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
