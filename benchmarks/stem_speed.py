"""Training-step cost of each input stem, as a ratio to the rgb stem measured in the same run.

One training step = forward + BCEDiceLoss backward + Adam step + the weight constraint (`constrain_`, the
Bayar projection), on a fixed random batch (default 16 images of 256x256, width 16, depth 4). The stems'
steps are interleaved (rgb, rgb+srm, ..., rgb, rgb+srm, ...) so that load from other processes hits all
alike; the table reports the fastest timed step (the least disturbed, as `timeit` does), the median, and
the ratio of each stem's images/s to rgb's (the target: >= 0.85).

    python benchmarks/stem_speed.py                          # CPU (or CUDA when present), width 16, 256 px
    python benchmarks/stem_speed.py --steps 5 --device cuda --batch-size 32
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--width", type=int, default=16, help="base channels (default 16)")
    p.add_argument("--depth", type=int, default=4, help="U-Net depth (default 4)")
    p.add_argument("--size", type=int, default=256, help="square image size (default 256)")
    p.add_argument("--batch-size", type=int, default=16, help="images per step (default 16)")
    p.add_argument("--steps", type=int, default=3, help="timed steps per stem (default 3)")
    p.add_argument("--warmup", type=int, default=1, help="untimed warm-up steps per stem (default 1)")
    p.add_argument("--device", default="auto", help="auto (cuda when present), cpu or cuda (default auto)")
    p.add_argument("--stems", default=None, help="comma-separated subset of the stems (default: all)")
    p.add_argument("--json", type=Path, default=None, help="also write the rows to this JSON file")
    args = p.parse_args(argv)
    for name in ("width", "depth", "size", "batch_size", "steps"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be >= 1")
    return args


class StemStep:
    """One model with its Adam optimiser on a fixed batch; `step()` runs one training step, `sync()` waits
    for the GPU (`timing.time_rounds` times the steps)."""

    def __init__(self, stem: str, args, device: str) -> None:
        import torch

        from inpaintseg.losses import BCEDiceLoss
        from inpaintseg.model import build_model

        generator = torch.Generator().manual_seed(0)
        self.device = device
        self.fmt = torch.channels_last if device == "cpu" else torch.contiguous_format  # measured faster on CPU
        model = build_model({"name": "AttentionUNet", "base_channels": args.width, "depth": args.depth,
                             "input_stem": stem})
        self.model = model.train().to(device).to(memory_format=self.fmt)
        x = torch.randn(args.batch_size, 3, args.size, args.size, generator=generator)
        self.x = x.to(device).contiguous(memory_format=self.fmt)
        self.y = (torch.rand(args.batch_size, 1, args.size, args.size, generator=generator) > 0.8).float().to(device)
        self.loss_fn = BCEDiceLoss()
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=1e-3)

    def sync(self) -> None:
        import torch

        if self.device.startswith("cuda"):
            torch.cuda.synchronize()

    def step(self) -> None:
        self.optimizer.zero_grad(set_to_none=True)
        self.loss_fn(self.model(self.x), self.y).backward()
        self.optimizer.step()
        self.model.constrain_()


def main(argv=None) -> int:
    args = parse_args(argv)
    import torch

    from inpaintseg.inference import resolve_device
    from inpaintseg.model import INPUT_STEMS, count_parameters, model_flops
    from inpaintseg.runtime import tune_cpu_runtime
    from inpaintseg.timing import time_rounds

    device = resolve_device(args.device)
    runtime = tune_cpu_runtime() if device == "cpu" else {}
    stems = INPUT_STEMS if args.stems is None else tuple(s.strip() for s in args.stems.split(",") if s.strip())
    unknown = [s for s in stems if s not in INPUT_STEMS]
    if unknown or "rgb" not in stems:
        print(f"--stems: expected a subset of {','.join(INPUT_STEMS)} including rgb, got {args.stems!r}",
              file=sys.stderr)
        return 2
    steppers = {stem: StemStep(stem, args, device) for stem in stems}
    sync = next(iter(steppers.values())).sync
    timings = time_rounds({stem: s.step for stem, s in steppers.items()}, args.warmup, args.steps, sync=sync)
    rows = []
    for stem, s in steppers.items():
        best, median = timings.fastest(stem), timings.median(stem)
        cpu_model = s.model.to("cpu").to(memory_format=torch.contiguous_format)
        rows.append({"stem": stem, "params": count_parameters(cpu_model),
                     "train_gflop_per_image": 3 * model_flops(cpu_model, args.size) / 1e9,
                     "images_per_s": args.batch_size / best, "median_images_per_s": args.batch_size / median})
    base = next(r for r in rows if r["stem"] == "rgb")
    for r in rows:
        r["ratio_vs_rgb"] = r["images_per_s"] / base["images_per_s"]
        r["median_ratio_vs_rgb"] = r["median_images_per_s"] / base["median_images_per_s"]

    where = torch.cuda.get_device_name(0) if device.startswith("cuda") else \
        f"{platform.processor() or platform.machine()}, {runtime.get('threads')} threads"
    print(f"torch {torch.__version__}, {device} ({where}); width {args.width}, depth {args.depth}, batch "
          f"{args.batch_size}, {args.size}x{args.size}; fastest (median) of {args.steps} interleaved steps "
          f"after {args.warmup} warm-up")
    header = f"{'stem':<18} | {'params':>9} | {'GFLOP/img':>9} | {'img/s':>7} | {'median':>7} | {'vs rgb':>6} | {'median vs rgb':>13}"
    print(header)
    print("-" * len(header))
    for r in rows:
        print(f"{r['stem']:<18} | {r['params']:>9,} | {r['train_gflop_per_image']:>9.2f} | {r['images_per_s']:>7.2f} | "
              f"{r['median_images_per_s']:>7.2f} | {r['ratio_vs_rgb']:>6.2f} | {r['median_ratio_vs_rgb']:>13.2f}")
    if args.json:
        args.json.write_text(json.dumps({"device": device, "where": where, "args": {k: str(v) for k, v in vars(args).items()},
                                         "rows": rows}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
