"""Steps to quality (issue 23): train from scratch on one fixed engine dataset and record validation Dice and
pixel AUC against optimiser steps and CPU seconds, for several configurations and seeds.

Each run is `inpaintseg.training.train` (the library's training, calibration off) with a callback that every
``--eval-every`` optimiser steps scores the current network on a fixed validation subset (the run's own split,
at the training size): mean per-image Dice at 0.5 and at the best threshold of the grid, and pixel AUC; next to
it the all-full baseline's Dice on the same images (the issue's target is Dice >= all-full + 0.15). Time spent
scoring is not counted: `cpu_s` is this process's CPU time (all threads) in training, `wall_s` its wall time.

A configuration is ``NAME`` or ``NAME:key=value,key=value`` with TrainConfig keys (the CLI flags' names with
underscores), on top of the common settings (--width, --size, --batch-size, --lr, --minutes):

    python benchmarks/learning_curve.py --data DATA --out /tmp/lc --seeds 0,1,2 --minutes 7 \\
        --config base --config onecycle:lr_schedule=onecycle --config curriculum:curriculum_epochs=3 \\
        --config ds:deep_supervision=0.5 --config srm:input_stem=rgb+srm --config small:small_mask_power=0.5

Writes OUT/curves.jsonl (one line per scoring point) and OUT/summary.json (per configuration: the last point's
mean and std over seeds), and prints the summary table.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

from bench_common import parse_named_settings  # benchmarks/ is the script's folder, so on sys.path


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", required=True, help="engine dataset root (inpaintseg demo-data output)")
    p.add_argument("--out", required=True, help="folder for the runs, curves.jsonl and summary.json")
    p.add_argument("--config", action="append", default=[], metavar="NAME[:k=v,...]",
                   help="a configuration to run (repeatable; default: base)")
    p.add_argument("--seeds", default="0", help="comma-separated seeds (default 0; the issue asks for 0,1,2)")
    p.add_argument("--minutes", type=float, default=7.0, help="training wall-clock budget per run (default 7)")
    p.add_argument("--epochs", type=int, default=20, help="epochs the schedules span (default 20)")
    p.add_argument("--width", type=int, default=8, help="base channels (default 8, the demo's)")
    p.add_argument("--size", type=int, default=256, help="training size (default 256)")
    p.add_argument("--batch-size", type=int, default=8, help="batch size (default 8)")
    p.add_argument("--lr", type=float, default=2e-3, help="learning rate (default 2e-3, the demo's)")
    p.add_argument("--precision", default="32", help="training precision (default 32: the fp32-only CPU case)")
    p.add_argument("--eval-every", type=int, default=20, help="optimiser steps between scorings (default 20)")
    p.add_argument("--eval-images", type=int, default=48, help="validation images scored (default 48)")
    args = p.parse_args(argv)
    args.seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    args.config = [parse_named_settings(c, p, "--config") for c in (args.config or ["base"])]
    return args


class CurveRecorder:
    """Lightning callback: score the network every `every` optimiser steps (built lazily: lightning import)."""

    @staticmethod
    def create(every: int, n_images: int, sink):
        import lightning as L
        import numpy as np
        import torch

        from inpaintseg.metrics import dice_per_threshold, pixel_auc

        class _Recorder(L.Callback):
            def __init__(self):
                self.images = None
                self.excluded_wall = self.excluded_cpu = 0.0
                self.wall0 = self.cpu0 = None

            def on_train_start(self, trainer, pl_module):
                val = trainer.datamodule.val_set
                items = [val[i] for i in range(min(n_images, len(val)))]
                self.images = torch.stack([it["image"] for it in items])
                self.masks = [it["mask"][0].numpy() for it in items]
                full = [np.ones_like(m) for m in self.masks]
                self.full_dice = float(dice_per_threshold(full, self.masks, [0.5]).mean())
                self.wall0, self.cpu0 = time.perf_counter(), time.process_time()
                self._score(trainer, pl_module)

            def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
                if trainer.global_step % every == 0:
                    self._score(trainer, pl_module)

            def on_train_end(self, trainer, pl_module):
                if trainer.global_step % every:
                    self._score(trainer, pl_module)  # the final point

            def _score(self, trainer, pl_module):
                w, c = time.perf_counter(), time.process_time()
                model = pl_module.model
                was_training = model.training
                model.eval()
                with torch.no_grad():
                    probs = torch.cat([torch.sigmoid(model(self.images[i:i + 8]).float())
                                       for i in range(0, len(self.images), 8)])[:, 0].numpy()
                model.train(was_training)
                curve = dice_per_threshold(list(probs), self.masks).mean(axis=0)
                sink({"step": int(trainer.global_step), "epoch": int(trainer.current_epoch),
                      "wall_s": round(w - self.wall0 - self.excluded_wall, 2),
                      "cpu_s": round(c - self.cpu0 - self.excluded_cpu, 2),
                      "dice_at_0.5": round(float(curve[49]), 4), "dice_best": round(float(curve.max()), 4),
                      "pixel_auc": round(pixel_auc(probs, np.stack(self.masks)), 4),
                      "all_full_dice": round(self.full_dice, 4)})
                self.excluded_wall += time.perf_counter() - w
                self.excluded_cpu += time.process_time() - c

        return _Recorder()


def run_one(args, name: str, changes: dict, seed: int, lines: list) -> None:
    from inpaintseg.config import TrainConfig
    from inpaintseg.training import train

    out = Path(args.out) / f"{name}-seed{seed}"
    values = {"data": args.data, "out": str(out), "base_channels": args.width, "img_size": args.size,
              "batch_size": args.batch_size, "lr": args.lr, "epochs": args.epochs, "seed": seed,
              "precision": args.precision, "max_time_minutes": args.minutes, "calibrate": False,
              "progress_bar": False, "accelerator": "cpu", **changes}
    config = TrainConfig.from_dict(values, source=f"--config {name}")

    def sink(point: dict) -> None:
        point = {"config": name, "seed": seed, **point}
        lines.append(point)
        with open(Path(args.out) / "curves.jsonl", "a") as fh:
            fh.write(json.dumps(point) + "\n")
        print(f"{name} seed {seed}: step {point['step']:>4} cpu {point['cpu_s']:>6.0f} s  dice@0.5 "
              f"{point['dice_at_0.5']:.3f} best {point['dice_best']:.3f} AUC {point['pixel_auc']:.3f} "
              f"(all-full {point['all_full_dice']:.3f})", file=sys.stderr, flush=True)

    train(config, callbacks=[CurveRecorder.create(args.eval_every, args.eval_images, sink)])


def summarise(lines: list) -> dict:
    last = {}
    for point in lines:
        last[(point["config"], point["seed"])] = point
    summary = {}
    for name in dict.fromkeys(k[0] for k in last):
        points = [p for (c, _), p in last.items() if c == name]
        row = {"seeds": len(points), "steps": statistics.mean(p["step"] for p in points),
               "cpu_s": statistics.mean(p["cpu_s"] for p in points)}
        for key in ("dice_at_0.5", "dice_best", "pixel_auc", "all_full_dice"):
            values = [p[key] for p in points]
            row[key] = round(statistics.mean(values), 4)
            row[key + "_std"] = round(statistics.stdev(values), 4) if len(values) > 1 else None
        summary[name] = row
    return summary


def main(argv=None) -> int:
    args = parse_args(argv)
    Path(args.out).mkdir(parents=True, exist_ok=True)
    lines: list = []
    for seed in args.seeds:  # seeds outermost: a cut-short benchmark still compares every configuration
        for name, changes in args.config:
            run_one(args, name, changes, seed, lines)
    summary = summarise(lines)
    (Path(args.out) / "summary.json").write_text(json.dumps(summary, indent=1))
    print("config | seeds | steps | CPU s | Dice@0.5 | best-thr Dice | pixel AUC | all-full Dice")
    for name, r in summary.items():
        print(f"{name} | {r['seeds']} | {r['steps']:.0f} | {r['cpu_s']:.0f} | {r['dice_at_0.5']:.3f} | "
              f"{r['dice_best']:.3f} | {r['pixel_auc']:.3f} | {r['all_full_dice']:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
