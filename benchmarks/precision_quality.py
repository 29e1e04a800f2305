"""Does bf16 prediction change the masks? A trained model folder, fp32 vs bf16 autocast, same images.

    python benchmarks/precision_quality.py --model RUN/model --data DATA/test [--tta none] [--batch-size 8]

Runs `inpaintseg.inference.Predictor` on every image of DATA/images twice, once as is (fp32) and once
with the network's forward pass under `inpaintseg.precision.autocast_context(..., "bf16-mixed")`
(probabilities are fp32 after the sigmoid either way), thresholds both at the model's stored threshold
and prints: mean per-image Dice against DATA/masks for each precision and their difference (target:
within 0.005), the Dice between the fp32 and bf16 masks, the share of pixels whose mask differs, the
largest |probability difference|, and the forward-pass time of each run.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", required=True, type=Path, help="model folder (weights.safetensors + config.json)")
    p.add_argument("--data", required=True, type=Path, help="folder with images/ and masks/")
    p.add_argument("--tta", default="none", help="TTA mode of both runs (default none)")
    p.add_argument("--batch-size", type=int, default=8)
    return p.parse_args(argv)


def autocast_wrapper(model, precision: str):
    """The network with its forward pass under autocast at `precision` (logits out, any dtype)."""
    import torch

    from inpaintseg.precision import autocast_context

    class Autocast(torch.nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, x):
            with autocast_context(x.device, precision):
                return self.inner(x)

    return Autocast(model)


def dice(a: np.ndarray, b: np.ndarray) -> float:
    """Dice of two boolean masks; both empty -> 1.0 (the competition's rule)."""
    total = int(a.sum()) + int(b.sum())
    return 1.0 if total == 0 else 2.0 * int((a & b).sum()) / total


def main(argv=None) -> int:
    args = parse_args(argv)
    from inpaintseg.data import load_sample, pair_files
    from inpaintseg.inference import Predictor
    from inpaintseg.model.io import load_model_dir
    from inpaintseg.precision import cpu_info
    from inpaintseg.runtime import tune_cpu_runtime

    runtime = tune_cpu_runtime()
    model, config = load_model_dir(args.model)
    threshold = float(config["postprocess"]["threshold"])
    samples = pair_files(args.data / "images", args.data / "masks")
    loaded = [load_sample(s) for s in samples]
    images, truths = [im for im, _ in loaded], [m.astype(bool) for _, m in loaded]
    probs, seconds = {}, {}
    for precision in ("32", "bf16-mixed"):
        network = model if precision == "32" else autocast_wrapper(model, precision)
        predictor = Predictor(network, config, "cpu", tta=args.tta, batch_size=args.batch_size)
        predictor.predict_proba_batch(images[: args.batch_size])  # warm-up
        start = time.perf_counter()
        probs[precision] = [p for i in range(0, len(images), args.batch_size)
                            for p in predictor.predict_proba_batch(images[i:i + args.batch_size])]
        seconds[precision] = time.perf_counter() - start
    masks = {p: [x >= threshold for x in probs[p]] for p in probs}
    dices = {p: float(np.mean([dice(m, t) for m, t in zip(masks[p], truths)])) for p in masks}
    agreement = float(np.mean([dice(a, b) for a, b in zip(masks["32"], masks["bf16-mixed"])]))
    differ = sum(int((a != b).sum()) for a, b in zip(masks["32"], masks["bf16-mixed"])) / sum(m.size for m in truths)
    max_diff = max(float(np.abs(a - b).max()) for a, b in zip(probs["32"], probs["bf16-mixed"]))
    print(f"{len(images)} images from {args.data}, model {args.model} ({config['architecture']}), TTA {args.tta}, "
          f"threshold {threshold:g}, {runtime['threads']} threads, CPU {cpu_info().describe()}")
    for p in ("32", "bf16-mixed"):
        print(f"{p:>10}: mean Dice {dices[p]:.4f}, prediction {seconds[p]:.1f} s ({len(images) / seconds[p]:.1f} img/s)")
    print(f"Dice bf16 - fp32: {dices['bf16-mixed'] - dices['32']:+.4f}; mean Dice between the fp32 and bf16 masks "
          f"{agreement:.4f}; pixels whose mask differs {100 * differ:.3f}%; largest |prob diff| {max_diff:.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
