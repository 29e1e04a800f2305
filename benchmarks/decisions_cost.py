"""The base recipe's held-out image decisions: one prediction pass per TTA row vs one shared pass (issue 23).

`recipes/base.py` measures the image gate of every TTA row on a held-out engine set. `folder_curves_many`
predicts each image once for all rows (each distinct view runs once, `Predictor.predict_proba_modes`); the
baseline is `folder_curves` once per row, as the recipe did before. Both run in this process on the same
images, in the order --order gives, and the largest difference between their Dice curves is printed (0 up to
the precision's rounding: the two must choose the same gates).

    python benchmarks/decisions_cost.py --model base --folder WORK/verdict_data/test --max-images 60
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROWS = "flip+scales,none,flip,d4,d4+scales"


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True, help="model folder, or `base`")
    p.add_argument("--folder", required=True, type=Path, help="folder with images/ and masks/ (PNG, same names)")
    p.add_argument("--max-images", type=int, default=60, help="first N images by name (default 60)")
    p.add_argument("--tta", default=ROWS, help=f"comma-separated TTA rows, CRF off (default {ROWS})")
    p.add_argument("--precision", default="auto", help="auto (default), 32 or bf16-mixed")
    p.add_argument("--order", default="per-row,shared", help="runs in this order (default per-row,shared)")
    p.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    args = p.parse_args(argv)
    if args.max_images < 1:
        p.error("--max-images must be at least 1")
    if sorted(args.order.split(",")) != ["per-row", "shared"]:
        p.error(f"--order {args.order!r}: expected per-row,shared or shared,per-row")
    if not (args.folder / "images").is_dir() or not (args.folder / "masks").is_dir():
        p.error(f"--folder {args.folder}: expected images/ and masks/ inside it")
    return args


def subset(folder: Path, n: int, out: Path) -> int:
    """The first `n` images (by name) of `folder` and their masks copied under `out`; how many."""
    names = sorted(p.name for p in (folder / "images").iterdir() if p.suffix == ".png")[:n]
    for sub in ("images", "masks"):
        (out / sub).mkdir(parents=True)
        for name in names:
            shutil.copy(folder / sub / name, out / sub / name)
    return len(names)


def main(argv=None) -> int:
    import numpy as np

    from inpaintseg.api import load_model
    from inpaintseg.inference.gate import folder_curves, folder_curves_many
    from inpaintseg.precision_probe import cpu_info
    from inpaintseg.runtime import tune_cpu_runtime

    args = parse_args(argv)
    tune_cpu_runtime()
    pairs = [(tta, "off") for tta in args.tta.split(",")]
    model = load_model(args.model, device="cpu", precision=args.precision)
    runs = {"per-row": lambda folder: {pair: folder_curves(model, folder, *pair) for pair in pairs},
            "shared": lambda folder: folder_curves_many(model, folder, pairs)}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        n = subset(args.folder, args.max_images, folder)
        model.predict_batch([next((folder / "images").iterdir())], tta="none")  # warm-up and precision probe
        seconds, results = {}, {}
        for name in args.order.split(","):
            start = time.perf_counter()
            results[name] = runs[name](folder)
            seconds[name] = time.perf_counter() - start
    by_pair = {tuple(pair): curves for pair, (curves, _) in results["shared"].items()}
    diff = max(float(np.abs(by_pair[pair] - curves).max()) for pair, (curves, _) in results["per-row"].items())
    record = {"images": n, "rows": [tta for tta, _ in pairs], "seconds": seconds,
              "ratio": seconds["per-row"] / seconds["shared"], "max_curve_difference": diff,
              "precision": model.precision_choice.precision, "cpu": cpu_info().describe()}
    print(f"{record['cpu']}, precision {record['precision']}")
    print(f"{n} images, {len(pairs)} TTA rows: one pass per row {seconds['per-row']:.1f} s, shared "
          f"{seconds['shared']:.1f} s, ratio {record['ratio']:.2f}x; max |Dice curve difference| {diff:.2e}")
    if args.json:
        Path(args.json).write_text(json.dumps(record, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
