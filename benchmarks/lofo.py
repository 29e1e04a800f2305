"""Leave-one-family-out benchmark: does the detector find manipulation families it never saw?

For each family F of the data engine (`inpaintseg demo-data --list-methods`), a dataset is generated whose
training split holds every family but F and whose test split holds F alone (`--exclude-families F
--test-families F`), a detector is trained on it and scored on the held-out family. The in-distribution row
trains and tests on all families. Every trained model is also scored on the real manipulations in
`../shared/realworld` (splicing, copy-move, real edits; not inpainting): an honest out-of-domain row.

Every row trains the same network for the same number of epochs on the same number of images (equal
compute per row, which a wall-clock budget on a shared machine would not give), through the product's own
code: `synth.generate_demo_data` -> `train` -> `predict_folder` -> `evaluate`.

    .venv/bin/python benchmarks/lofo.py --out bench_lofo --seeds 0,1,2 --epochs 8
    .venv/bin/python benchmarks/lofo.py --out bench_lofo_stem --input-stem rgb+srm+bayar+npr

Results: OUT/results.json (every number) and OUT/table.md (mean +- std over seeds). Re-running with the same
OUT skips the rows already in results.json.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
REALWORLD = ROOT.parent / "shared" / "realworld"


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=Path("bench_lofo"))
    p.add_argument("--families", default="all", help="families to hold out, comma-separated (default all)")
    p.add_argument("--seeds", default="0", help="comma-separated seeds (data, split and initialisation)")
    p.add_argument("--n-train", type=int, default=400)
    p.add_argument("--n-test", type=int, default=100)
    p.add_argument("--size", type=int, default=128, help="engine crop size = training size (default 128)")
    p.add_argument("--input-mode", default="resize", choices=("resize", "crop"))
    p.add_argument("--epochs", type=int, default=6)
    p.add_argument("--width", type=int, default=8)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--input-stem", default="rgb")
    p.add_argument("--degrade-train", action="store_true", help="train-time degradation preset (config.py)")
    p.add_argument("--generators", default="demo", help="generator set of the learned families (tiny|demo|full)")
    p.add_argument("--degrade", default="default", help="the engine's global degradations (none|default|strong)")
    p.add_argument("--no-realworld", action="store_true", help="skip the ../shared/realworld rows")
    return p.parse_args(argv)


def evaluate_model(model, images: Path, truth: Path, work: Path, meta: Path | None) -> dict:
    from inpaintseg.evaluation.evaluate import evaluate
    from inpaintseg.inference import predict_folder

    predict_folder(model, images, out=None, masks_out=work / "masks", probs_out=work / "probs", progress=False)
    result = evaluate(truth, pred_dir=work / "masks", probs_dir=work / "probs", meta=meta)
    keep = ("dice_mean", "dice_pooled", "pixel_auc", "image_auc", "false_positive", "by_family", "by_method",
            "n_images")
    return {k: result[k] for k in keep if k in result}


def run_row(args, family: str | None, seed: int, work: Path) -> dict:
    from inpaintseg.api import load_model
    from inpaintseg.config import DEGRADE_PRESET, load_config
    from inpaintseg.synth import generate_demo_data
    from inpaintseg.training import train

    data = work / "data"
    t0 = time.perf_counter()
    selection = {"exclude_families": family, "test_families": family} if family else {}
    generate_demo_data(data, n_train=args.n_train, n_test=args.n_test, size=args.size, seed=seed,
                       degrade_level=args.degrade, generators=args.generators, log=None, **selection)
    t1 = time.perf_counter()
    config = load_config(overrides={
        "data": str(data), "out": str(work / "run"), "base_channels": args.width, "img_size": args.size,
        "input_mode": args.input_mode, "batch_size": args.batch_size, "lr": args.lr, "epochs": args.epochs,
        "seed": seed, "input_stem": args.input_stem, "progress_bar": False,
        **(DEGRADE_PRESET if args.degrade_train else {}),
    })
    result = train(config)
    t2 = time.perf_counter()
    model = load_model(result.model_dir, device="cpu")
    row = {"family": family or "all (in distribution)", "seed": seed, "epochs": result.epochs_completed,
           "generate_s": round(t1 - t0, 1), "train_s": round(t2 - t1, 1),
           "postprocess": {k: result.postprocess.get(k) for k in ("tta", "crf", "threshold")},
           "test": evaluate_model(model, data / "test" / "images", data / "test" / "masks", work / "pred",
                                  data / "test" / "meta.json")}
    if not args.no_realworld and REALWORLD.is_dir():
        row["realworld"] = {
            sub.name: evaluate_model(model, sub / "images", sub / "masks", work / f"real_{sub.name}", None)
            for sub in sorted(REALWORLD.iterdir()) if (sub / "images").is_dir()}
    row["seconds"] = round(time.perf_counter() - t0, 1)
    return row


def _stat(values) -> str:
    values = [v for v in values if v is not None and np.isfinite(v)]
    if not values:
        return "-"
    if len(values) == 1:
        return f"{values[0]:.3f}"
    return f"{np.mean(values):.3f} +- {np.std(values, ddof=1):.3f}"


def table(results: dict) -> str:
    rows = {}
    for entry in results["rows"].values():
        rows.setdefault(entry["family"], []).append(entry)
    lines = ["| held-out family (test) | seeds | Dice (mean per image) | pixel AUC | image AUC | FP area on untouched"
             " | realworld Dice (casia2 / hifi) | realworld pixel AUC (casia2 / hifi) |",
             "|---|--:|--:|--:|--:|--:|--:|--:|"]
    for family, entries in rows.items():
        test = [e["test"] for e in entries]
        real = [e.get("realworld", {}) for e in entries]

        def real_stat(key, sub):
            return _stat([r.get(sub, {}).get(key) for r in real])

        lines.append(
            f"| {family} | {len(entries)} | {_stat([t['dice_mean'] for t in test])} | "
            f"{_stat([t.get('pixel_auc') for t in test])} | {_stat([t.get('image_auc') for t in test])} | "
            f"{_stat([t['false_positive']['mean_area_fraction'] for t in test])} | "
            f"{real_stat('dice_mean', 'casia2_gt')} / {real_stat('dice_mean', 'hifi_ifdl_mixed')} | "
            f"{real_stat('pixel_auc', 'casia2_gt')} / {real_stat('pixel_auc', 'hifi_ifdl_mixed')} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    args = parse_args(argv)
    from inpaintseg.io import atomic_write_text
    from inpaintseg.runtime import tune_cpu_runtime
    from inpaintseg.synth.registry import FAMILIES

    tune_cpu_runtime()
    families = list(FAMILIES) if args.families == "all" else [f.strip() for f in args.families.split(",")]
    unknown = sorted(set(families) - set(FAMILIES))
    if unknown:
        raise SystemExit(f"unknown families {unknown}; expected some of {', '.join(FAMILIES)}")
    seeds = [int(s) for s in args.seeds.split(",")]
    args.out.mkdir(parents=True, exist_ok=True)
    results_path = args.out / "results.json"
    results = json.loads(results_path.read_text()) if results_path.is_file() else {"rows": {}}
    results["setup"] = {k: str(v) for k, v in vars(args).items()}
    for seed in seeds:
        for family in [None, *families]:
            key = f"{family or 'all'}-s{seed}"
            if key in results["rows"]:
                continue
            print(f"[lofo] {key}: generating, training, scoring", flush=True)
            results["rows"][key] = run_row(args, family, seed, args.out / key)
            test = results["rows"][key]["test"]
            print(f"[lofo] {key}: test Dice {test['dice_mean']:.4f}, pixel AUC {test.get('pixel_auc')}, "
                  f"{results['rows'][key]['seconds']:.0f} s", flush=True)
            atomic_write_text(results_path, json.dumps(results, indent=1))
    atomic_write_text(args.out / "table.md", table(results))
    print(table(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
