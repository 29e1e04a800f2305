"""BatchNorm folding at inference (issue 23): forward speed of the predictor's engine with and without
Conv+BatchNorm folded, interleaved in one process, and the largest probability difference between the two.

    python benchmarks/bn_fold.py [--width 8] [--depth 4] [--size 256] [--batch-size 8] [--rounds 7]
                                 [--precisions 32,bf16-mixed] [--model MODEL_DIR] [--json FILE]

The model is the predictor's: `TorchEngine` (channels_last on CPU, eval mode, under `torch.inference_mode`),
unfolded vs `fold_bn=True`, on one fixed random batch. Without `--model`, an untrained model whose BatchNorm
running statistics and affine parameters are randomised (a fresh model's mean 0 / var 1 would hide errors);
with `--model` (e.g. `base`, the shipped detector), that folder's trained weights and real statistics. The
two engines run one forward pass each per round, alternately (`timing.time_rounds`), after one warm-up round;
the ratio is median(unfolded) / median(folded) per precision, of wall seconds and of process CPU seconds
(with one thread the CPU seconds do not depend on the share of the machine a loaded run gets). Probability differences are given folded vs
unfolded at the same precision and each vs unfolded fp32. The load average before and after is printed:
on a shared machine only the ratio means anything.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--width", type=int, default=8, help="base_channels (default 8, the demo's)")
    p.add_argument("--depth", type=int, default=4, help="depth (default 4)")
    p.add_argument("--size", type=int, default=256, help="input side in pixels (default 256)")
    p.add_argument("--batch-size", type=int, default=8, help="images per forward pass (default 8)")
    p.add_argument("--rounds", type=int, default=7, help="timed rounds (default 7)")
    p.add_argument("--precisions", default="32,bf16-mixed", help="comma-separated (default 32,bf16-mixed)")
    p.add_argument("--model", help="a model folder (or base) instead of a randomised untrained model")
    p.add_argument("--json", help="also write the results as JSON")
    return p.parse_args(argv)


def randomise_batchnorm(model, seed: int = 0) -> None:
    """Non-trivial running statistics and affine parameters in every BatchNorm2d."""
    import torch

    generator = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            n = m.num_features
            m.running_mean.copy_(torch.randn(n, generator=generator) * 0.5)
            m.running_var.copy_(torch.rand(n, generator=generator) * 2 + 0.2)
            m.weight.data.copy_(torch.rand(n, generator=generator) + 0.5)
            m.bias.data.copy_(torch.randn(n, generator=generator) * 0.2)


def main(argv=None) -> int:
    args = parse_args(argv)
    import torch

    from inpaintseg.inference.engines import TorchEngine
    from inpaintseg.model import build_model
    from inpaintseg.precision import autocast_context, cpu_info
    from inpaintseg.runtime import tune_cpu_runtime
    from inpaintseg.timing import time_rounds

    runtime = tune_cpu_runtime()
    load_before = os.getloadavg()
    torch.manual_seed(0)
    if args.model:
        from inpaintseg.model.io import load_model_dir

        model = load_model_dir(args.model)[0].eval()
    else:
        model = build_model({"name": "AttentionUNet", "base_channels": args.width, "depth": args.depth}).eval()
        randomise_batchnorm(model)
    plain = TorchEngine(model, "cpu", fold_bn=False)
    folded = TorchEngine(model, "cpu", fold_bn=True)   # the default
    x = torch.randn(args.batch_size, 3, args.size, args.size, generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        reference = torch.sigmoid(plain(x).float())   # unfolded fp32
    results = {}
    for precision in args.precisions.split(","):
        def step(engine, precision=precision):
            start = time.process_time()
            with torch.inference_mode(), autocast_context("cpu", precision):
                logits = engine(x).float()
            return logits, time.process_time() - start

        timings = time_rounds({"unfolded": lambda: step(plain), "folded": lambda: step(folded)},
                              warmup=1, rounds=args.rounds)
        probs = {name: torch.sigmoid(timings.values[name][0][0]) for name in ("unfolded", "folded")}
        median = {name: timings.median(name) for name in ("unfolded", "folded")}
        cpu = {name: [v[1] for v in timings.values[name]] for name in ("unfolded", "folded")}
        cpu_median = {name: statistics.median(v) for name, v in cpu.items()}
        results[precision] = {"seconds": timings.seconds, "median_s": median,
                              "speedup": median["unfolded"] / median["folded"],
                              "cpu_seconds": cpu, "cpu_median_s": cpu_median,
                              "cpu_speedup": cpu_median["unfolded"] / cpu_median["folded"],
                              "max_abs_prob_diff": (probs["unfolded"] - probs["folded"]).abs().max().item(),
                              "max_abs_prob_diff_vs_fp32": {name: (p - reference).abs().max().item()
                                                            for name, p in probs.items()}}
    load_after = os.getloadavg()

    print(f"torch {torch.__version__}, {runtime['threads']} threads; CPU: {cpu_info().describe()}")
    name = args.model or f"untrained, randomised BatchNorm, width {args.width} depth {args.depth}"
    print(f"model {name}, batch {args.batch_size} at {args.size}x{args.size}, channels_last, "
          f"{folded.folded} BatchNorm layers folded; load average before {load_before[0]:.1f}, after "
          f"{load_after[0]:.1f}")
    for precision, r in results.items():
        print(f"{precision:>10}: wall unfolded {r['median_s']['unfolded']:.3f} s, folded {r['median_s']['folded']:.3f} s "
              f"-> {r['speedup']:.3f}x; CPU unfolded {r['cpu_median_s']['unfolded']:.3f} s, folded "
              f"{r['cpu_median_s']['folded']:.3f} s -> {r['cpu_speedup']:.3f}x (medians of {args.rounds}); max |prob diff| folded vs unfolded "
              f"{r['max_abs_prob_diff']:.2e}; vs unfolded fp32: unfolded {r['max_abs_prob_diff_vs_fp32']['unfolded']:.2e}, "
              f"folded {r['max_abs_prob_diff_vs_fp32']['folded']:.2e}")
    if args.json:
        from inpaintseg.fileio import atomic_write_text

        atomic_write_text(args.json, json.dumps({"args": vars(args), "runtime": runtime, "folded": folded.folded,
                                                 "load_before": load_before, "load_after": load_after,
                                                 "results": results}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
