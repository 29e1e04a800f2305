"""Where a CPU training step's time goes, and what the ecosystem's switches change (issue 23).

For each width: one training batch of the real data path (PNG decode + augmentation + normalisation + collate,
main process), then forward (loss included), backward and Adam step timed apart on that batch, and Lightning's
overhead per step (`Trainer.fit` on an in-memory copy of the batch minus the same steps run by hand). Then A/B
variants against the baseline (contiguous fp32, Adam's default foreach step, all cores), **interleaved** (one step
of each variant per round, several rounds, median), so load from other processes hits all alike:

- ``channels_last``: model and batch in channels-last (oneDNN's preferred layout);
- ``fused_adam``: `torch.optim.Adam(fused=True)`;
- ``threads1``: torch.set_num_threads(1) (the other core left to the loader / other work);
- ``compile``: torch.compile (inductor), compile time reported apart;
- ``uint8`` (data side): the batch kept uint8 until it is normalised in torch (what `InpaintDataset` would
  do with normalisation on the device), timed against the float32 path.

The fp32 peak is the best 2048x2048 `torch.mm` of the run (`bench_common.matmul_peak_gflops`); training FLOPs are
3 x the forward FLOPs of `inpaintseg.model.model_flops`. Restricting oneDNN/ATen to AVX2 stands in for a CPU
without AVX-512 (labelled; the same binary on a real AVX2 CPU may differ):

    python benchmarks/step_breakdown.py --data DATA --widths 8,16 --rounds 5
    ONEDNN_MAX_CPU_ISA=AVX2 ATEN_CPU_CAPABILITY=avx2 python benchmarks/step_breakdown.py --data DATA --json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

from bench_common import matmul_peak_gflops

VARIANTS = ("baseline", "channels_last", "fused_adam", "threads1", "compile")


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", required=True, help="dataset root with train/images and train/masks")
    p.add_argument("--widths", default="8,16", help="comma-separated base widths (default 8,16)")
    p.add_argument("--size", type=int, default=256, help="training image size (default 256)")
    p.add_argument("--batch-size", type=int, default=8, help="images per step (default 8, the demo's)")
    p.add_argument("--rounds", type=int, default=5, help="interleaved rounds per variant (default 5)")
    p.add_argument("--variants", default=",".join(VARIANTS), help=f"subset of {','.join(VARIANTS)}")
    p.add_argument("--lightning-steps", type=int, default=6, help="steps for the Lightning overhead (default 6)")
    p.add_argument("--loader", action="store_true", help="also time steps with their DataLoader batch, "
                   "0 vs 1 worker")
    p.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    args = p.parse_args(argv)
    args.widths = [int(w) for w in args.widths.split(",") if w.strip()]
    args.variants = [v for v in args.variants.split(",") if v]
    unknown = sorted(set(args.variants) - set(VARIANTS))
    if unknown:
        p.error(f"--variants: unknown {unknown}; choose from {','.join(VARIANTS)}")
    return args


def real_batches(data: str, size: int, batch_size: int, n: int):
    """`n` training batches of the real data path in the main process, and the seconds each took."""

    from inpaintseg.data import InpaintDataModule

    dm = InpaintDataModule(data, img_size=size, batch_size=batch_size, num_workers=0)
    dm.setup("fit")
    loader = dm.train_dataloader()
    batches, seconds = [], []
    it = iter(loader)
    for _ in range(n):
        t0 = time.perf_counter()
        batch = next(it)
        seconds.append(time.perf_counter() - t0)
        batches.append({"image": batch["image"].clone(), "mask": batch["mask"].clone()})
    return dm, batches, seconds


def uint8_vs_float(dm, rounds: int) -> dict:
    """Seconds per batch to turn decoded, augmented uint8 images into the model's input: numpy float32
    normalisation + collate (today's path) vs uint8 collate + torch normalisation (on the device)."""
    import torch

    from inpaintseg.data.transforms import IMAGENET_MEAN, IMAGENET_STD, normalize

    import cv2

    raw = [cv2.resize(load(dm, i)[0], (dm.img_size, dm.img_size), interpolation=cv2.INTER_AREA)
           for i in range(dm.batch_size)]  # decoded, resized uint8 images of one batch
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1) * 255
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1) * 255
    times = {"float32": [], "uint8": []}
    for _ in range(rounds):
        t0 = time.perf_counter()
        torch.stack([torch.from_numpy(normalize(r).transpose(2, 0, 1).copy()) for r in raw])
        times["float32"].append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        x = torch.stack([torch.from_numpy(r).permute(2, 0, 1) for r in raw])
        (x.float() - mean) / std
        times["uint8"].append(time.perf_counter() - t0)
    return {k: statistics.median(v) for k, v in times.items()}


def load(dm, index):
    from inpaintseg.data.dataset import load_sample

    return load_sample(dm.train_set.samples[index])


class Stepper:
    """One variant: its own model copy and optimiser; `step` times forward(+loss), backward, optimiser."""

    def __init__(self, model, batch: dict, variant: str, lr: float = 2e-3):
        import copy

        import torch

        from inpaintseg.losses import build_loss

        self.variant = variant
        self.model = copy.deepcopy(model).train()
        self.x, self.y = batch["image"], batch["mask"]
        if variant == "channels_last":
            self.model = self.model.to(memory_format=torch.channels_last)
            self.x = self.x.contiguous(memory_format=torch.channels_last)
        self.opt = torch.optim.Adam(self.model.parameters(), lr=lr, fused=variant == "fused_adam")
        self.loss = build_loss("bce-dice")
        self.threads = 1 if variant == "threads1" else torch.get_num_threads()
        self.compile_seconds = None
        self.forward = self.model
        if variant == "compile":
            self.forward = torch.compile(self.model)
            t0 = time.perf_counter()
            self.step()
            self.step()  # the first backward compiles too
            self.compile_seconds = time.perf_counter() - t0

    def step(self) -> tuple[float, float, float]:
        import torch

        saved = torch.get_num_threads()
        torch.set_num_threads(self.threads)
        try:
            t0 = time.perf_counter()
            loss = self.loss(self.forward(self.x), self.y)
            t1 = time.perf_counter()
            self.opt.zero_grad(set_to_none=True)
            loss.backward()
            t2 = time.perf_counter()
            self.opt.step()
            t3 = time.perf_counter()
        finally:
            torch.set_num_threads(saved)
        return t1 - t0, t2 - t1, t3 - t2


def lightning_overhead(model, batch: dict, steps: int) -> dict:
    """Seconds per step of Trainer.fit on `steps` copies of `batch` vs the same steps by hand."""
    import copy
    import logging
    import warnings

    import lightning as L
    import torch

    from inpaintseg.losses import build_loss
    from inpaintseg.training.module import SegmentationModule

    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore")
    data = [dict(batch) for _ in range(steps)]
    loader = torch.utils.data.DataLoader(data, batch_size=None)
    module = SegmentationModule(copy.deepcopy(model), build_loss("bce-dice"), lr=2e-3, epochs=1)
    trainer = L.Trainer(accelerator="cpu", max_epochs=1, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0,
                        num_sanity_val_steps=0)
    trainer.fit(module, loader)  # warm-up (and Lightning's first-fit set-up)
    module2 = SegmentationModule(copy.deepcopy(model), build_loss("bce-dice"), lr=2e-3, epochs=1)
    trainer = L.Trainer(accelerator="cpu", max_epochs=1, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0,
                        num_sanity_val_steps=0)
    t0 = time.perf_counter()
    trainer.fit(module2, loader)
    lightning = (time.perf_counter() - t0) / steps
    manual = Stepper(model, batch, "baseline")
    t0 = time.perf_counter()
    for _ in range(steps):
        manual.step()
    by_hand = (time.perf_counter() - t0) / steps
    return {"lightning_s_per_step": lightning, "manual_s_per_step": by_hand, "overhead_s": lightning - by_hand}


def loader_workers(dm, model, rounds: int, workers=(0, 1)) -> dict:
    """Seconds per training step including its batch from the real DataLoader, for each worker count:
    persistent loaders side by side, one step of each per round (median). On 2 cores a worker competes with
    the model's threads for the same cores."""
    import torch

    its, steppers = {}, {}
    for w in workers:
        loader = torch.utils.data.DataLoader(dm.train_set, batch_size=dm.batch_size, shuffle=True, num_workers=w,
                                             persistent_workers=w > 0, drop_last=True)
        its[w] = iter(loader)
        steppers[w] = Stepper(model, next(its[w]), "baseline")
    times = {w: [] for w in workers}
    for _ in range(rounds):
        for w in workers:
            t0 = time.perf_counter()
            batch = next(its[w])
            s = steppers[w]
            s.x, s.y = batch["image"], batch["mask"]
            s.step()
            times[w].append(time.perf_counter() - t0)
    return {f"workers{w}": statistics.median(t) for w, t in times.items()}


def measure_width(width: int, batch: dict, args, dm=None) -> dict:
    import torch

    from inpaintseg.model import build_model, model_flops

    torch.manual_seed(0)
    model = build_model({"name": "AttentionUNet", "base_channels": width})
    flops = 3 * model_flops(model, args.size) * args.batch_size
    steppers = {}
    for v in args.variants:
        steppers[v] = Stepper(model, batch, v)
        steppers[v].step()  # warm-up
        print(f"width {width}: {v} ready" + (f" (compile {steppers[v].compile_seconds:.0f} s)"
                                             if steppers[v].compile_seconds else ""), file=sys.stderr, flush=True)
    times = {v: [] for v in args.variants}
    for r in range(args.rounds):
        for v, s in steppers.items():
            times[v].append(s.step())
        print(f"width {width} round {r + 1}: " + ", ".join(f"{v} {sum(t[-1]):.2f} s" for v, t in times.items()),
              file=sys.stderr, flush=True)
    rows = {}
    for v, ts in times.items():
        parts = [statistics.median(t[i] for t in ts) for i in range(3)]
        total = statistics.median(sum(t) for t in ts)
        rows[v] = {"forward_s": parts[0], "backward_s": parts[1], "optimizer_s": parts[2], "step_s": total,
                   "images_per_s": args.batch_size / total, "gflops": flops / total / 1e9,
                   "compile_s": steppers[v].compile_seconds}
    base = rows.get("baseline", {}).get("step_s")
    for row in rows.values():
        row["speedup_vs_baseline"] = base / row["step_s"] if base else None
    out = {"width": width, "train_gflop_per_step": flops / 1e9, "variants": rows,
           "lightning": lightning_overhead(model, batch, args.lightning_steps)}
    if dm is not None and args.loader:
        out["loader_s_per_step"] = loader_workers(dm, model, args.rounds)
    return out


def main(argv=None) -> int:
    import torch

    from inpaintseg.runtime import tune_cpu_runtime

    args = parse_args(argv)
    tune_cpu_runtime()
    peak = matmul_peak_gflops()
    dm, batches, load_seconds = real_batches(args.data, args.size, args.batch_size, max(3, args.rounds))
    result = {"cpu_capability": torch.backends.cpu.get_cpu_capability(),
              "isa_env": {k: os.environ.get(k) for k in ("ONEDNN_MAX_CPU_ISA", "ATEN_CPU_CAPABILITY")},
              "threads": torch.get_num_threads(), "peak_gflops_fp32": peak, "batch_size": args.batch_size,
              "size": args.size, "data_s_per_batch": statistics.median(load_seconds),
              "uint8_vs_float_s_per_batch": uint8_vs_float(dm, args.rounds), "widths": []}
    for width in args.widths:
        result["widths"].append(measure_width(width, batches[0], args, dm))
    result["peak_gflops_fp32"] = max(peak, matmul_peak_gflops())
    print_report(result)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(result, fh, indent=1)
    return 0


def print_report(r: dict) -> None:
    print(f"cpu capability {r['cpu_capability']} (env {r['isa_env']}), {r['threads']} threads, fp32 mm peak "
          f"{r['peak_gflops_fp32']:.0f} GFLOP/s; batch {r['batch_size']} x {r['size']}px")
    print(f"data (decode+augment+normalise+collate, main process): {r['data_s_per_batch']:.3f} s/batch; "
          f"normalise+collate float32 {r['uint8_vs_float_s_per_batch']['float32'] * 1e3:.1f} ms vs uint8 + torch "
          f"{r['uint8_vs_float_s_per_batch']['uint8'] * 1e3:.1f} ms")
    for w in r["widths"]:
        lt = w["lightning"]
        print(f"\nwidth {w['width']}: {w['train_gflop_per_step']:.1f} GFLOP per step; Lightning "
              f"{lt['lightning_s_per_step']:.3f} s/step vs by hand {lt['manual_s_per_step']:.3f} "
              f"(overhead {lt['overhead_s'] * 1e3:+.0f} ms)")
        if "loader_s_per_step" in w:
            print("step with its DataLoader batch: " + ", ".join(f"{k} {v:.3f} s" for k, v in
                                                                 w["loader_s_per_step"].items()))
        print("variant        | fwd s | bwd s | opt s | step s | img/s | % peak | x base | compile s")
        for name, v in w["variants"].items():
            comp = f"{v['compile_s']:.0f}" if v["compile_s"] else "-"
            print(f"{name:<14} | {v['forward_s']:.3f} | {v['backward_s']:.3f} | {v['optimizer_s']:.3f} | "
                  f"{v['step_s']:.3f}  | {v['images_per_s']:5.1f} | {100 * v['gflops'] / r['peak_gflops_fp32']:5.1f}% | "
                  f"{v['speedup_vs_baseline']:.2f}  | {comp}")


if __name__ == "__main__":
    sys.exit(main())
