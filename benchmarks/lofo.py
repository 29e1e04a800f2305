"""Leave-one-family-out benchmark: does the detector find manipulation families it never saw?

For each family F of the data engine (`inpaintseg demo-data --list-methods`), a dataset is generated whose
training split holds every family but F and whose test split holds F alone (`--exclude-families F
--test-families F`), a detector is trained on it and scored on the held-out family. The in-distribution row
trains and tests on all families. Every trained model is also scored on the real manipulations in
`../shared/realworld` (splicing, copy-move, real edits; not inpainting): an honest out-of-domain row; and on the
real deep-generative inpaintings of `../shared/realinpaint` (`realinpaint.py`: the real row of issue 24).

Every row trains the same network for the same number of epochs on the same number of images (equal
compute per row, which a wall-clock budget on a shared machine would not give), through the product's own
code: `synth.generate_demo_data` -> `train` -> `predict_folder` -> `evaluate`.

    .venv/bin/python benchmarks/lofo.py --out bench_lofo --seeds 0,1,2 --epochs 8
    .venv/bin/python benchmarks/lofo.py --out bench_lofo_stem --input-stem rgb+srm+bayar+npr

The in-distribution row is also scored on its test images degraded at test time (JPEG 90/70/50, down-up
rescale 0.5/0.75, noise; `bench_common.ROBUSTNESS`), masks unchanged: the robustness rows.

Results: OUT/results.json (every number) and OUT/table.md (mean +- std over seeds). Re-running with the same
OUT skips the rows already in results.json. Comparing configurations (model selection, issue 10):

    .venv/bin/python benchmarks/lofo.py --compare bench_lofo_rgb bench_lofo_stem bench_lofo_degrade [--families learned]

prints one line per OUT folder: in-distribution Dice, the leave-one-family-out mean (per seed the mean over
held-out families, then mean +- std over seeds), robustness as a fraction of clean Dice, FP area, image AUC,
realworld pixel AUC and training images/s.
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
from bench_common import ROBUSTNESS, perturbed_folder  # noqa: E402
import realinpaint  # noqa: E402
REALWORLD = ROOT.parent / "shared" / "realworld"


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=Path("bench_lofo"))
    p.add_argument("--families", default="all",
                   help="families to hold out, comma-separated (default all); with --compare: only these "
                        "held-out families count")
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
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="any other training setting (configs/default.yaml key), e.g. --set attention=false "
                        "--set loss=focal-dice --set paired_batches=true; repeatable")
    p.add_argument("--generators", default="demo", help="generator set of the learned families (tiny|demo|full)")
    p.add_argument("--degrade", default="default", help="the engine's global degradations (none|default|strong)")
    p.add_argument("--photos", nargs="+", default=None, metavar="DIR",
                   help="extra pristine photo folders, pooled with the packaged photos (default: packaged only)")
    p.add_argument("--no-realworld", action="store_true", help="skip the ../shared/realworld rows")
    p.add_argument("--no-realinpaint", action="store_true", help="skip the ../shared/realinpaint rows")
    p.add_argument("--no-robustness", action="store_true", help="skip the test-time degradation rows")
    p.add_argument("--no-in-distribution", action="store_true",
                   help="only the held-out rows (e.g. more seeds of one held-out family)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: $OMP_NUM_THREADS or all)")
    p.add_argument("--compare", nargs="+", type=Path, metavar="OUT",
                   help="print the model-selection table of these finished OUT folders and exit")
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
    overrides = parse_overrides(args.overrides)
    generate_demo_data(data, n_train=args.n_train, n_test=args.n_test, size=args.size, seed=seed,
                       degrade_level=args.degrade, generators=args.generators, log=None,
                       with_originals=bool(overrides.get("paired_batches")), **selection,
                       photos_dir=args.photos, packaged_photos=True if args.photos else None)
    t1 = time.perf_counter()
    config = load_config(overrides={
        "data": str(data), "out": str(work / "run"), "base_channels": args.width, "img_size": args.size,
        "input_mode": args.input_mode, "batch_size": args.batch_size, "lr": args.lr, "epochs": args.epochs,
        "seed": seed, "input_stem": args.input_stem, "progress_bar": False,
        **(DEGRADE_PRESET if args.degrade_train else {}), **overrides,
    })
    result = train(config)
    t2 = time.perf_counter()
    model = load_model(result.model_dir, device="cpu")
    row = {"family": family or IN_DISTRIBUTION, "seed": seed, "epochs": result.epochs_completed,
           "photos": args.photos,
           "generate_s": round(t1 - t0, 1), "train_s": round(t2 - t1, 1),
           "postprocess": {k: result.postprocess.get(k) for k in ("tta", "crf", "threshold")},
           "test": evaluate_model(model, data / "test" / "images", data / "test" / "masks", work / "pred",
                                  data / "test" / "meta.json")}
    if family is None and not args.no_robustness:
        row["robustness"] = {
            kind: evaluate_model(model, perturbed_folder(data / "test" / "images", kind, work / "degraded" / kind),
                                 data / "test" / "masks", work / f"pred_{kind}", data / "test" / "meta.json")
            for kind in ROBUSTNESS}
    row["train_images_per_s"] = fit_images_per_s(work / "run")
    if not args.no_realworld and REALWORLD.is_dir():
        row["realworld"] = {
            sub.name: evaluate_model(model, sub / "images", sub / "masks", work / f"real_{sub.name}", None)
            for sub in sorted(REALWORLD.iterdir()) if (sub / "images").is_dir()}
    if not args.no_realinpaint and realinpaint.REALINPAINT.is_dir():
        predict, post = realinpaint.model_predictor(model)
        row["realinpaint"] = realinpaint._jsonable(realinpaint.score_data(
            realinpaint.REALINPAINT, predict, post.threshold, post.image_threshold, batch_size=args.batch_size,
            gate=post.gate))
    row["seconds"] = round(time.perf_counter() - t0, 1)
    return row


def real_summary(entries: list[dict], key: str, row: str = realinpaint.POOLED) -> str:
    """mean +- std over seeds of a realinpaint summary value (pooled image AUC, mean-of-folders pixel AUC)."""
    return _stat([(e.get("realinpaint") or {}).get("summary", {}).get(row, {}).get(key) for e in entries])


IN_DISTRIBUTION = "all (in distribution)"


def parse_overrides(pairs: list[str]) -> dict:
    """["attention=false", "loss=focal-dice"] -> {"attention": False, "loss": "focal-dice"} (YAML scalars;
    the training config validates keys and values)."""
    import yaml

    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise SystemExit(f"--set {pair!r}: expected KEY=VALUE, e.g. --set attention=false")
        out[key.strip()] = yaml.safe_load(value)
    return out


def fit_images_per_s(run_dir: Path) -> float | None:
    """Training throughput of a finished run: the median over epochs of metrics.csv's train_images_per_second
    (training images of the epoch / its training seconds, as the run itself measured them: validation,
    calibration and data generation excluded; the median drops the first epoch's warm-up)."""
    from inpaintseg.run_dir import METRICS_FILE, read_metric_rows

    rates = [float(r["train_images_per_second"]) for r in read_metric_rows(run_dir / METRICS_FILE)
             if r.get("train_images_per_second")]
    return round(float(np.median(rates)), 1) if rates else None


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
             " | realworld Dice (casia2 / hifi) | realworld pixel AUC (casia2 / hifi) | realinpaint image AUC (pooled)"
             " / pixel AUC (mean of folders) |",
             "|---|--:|--:|--:|--:|--:|--:|--:|--:|"]
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
            f"{real_stat('pixel_auc', 'casia2_gt')} / {real_stat('pixel_auc', 'hifi_ifdl_mixed')} | "
            f"{real_summary(entries, 'image_auc')} / {real_summary(entries, 'pixel_auc', realinpaint.FOLDER_MEAN)} |")
    return "\n".join(lines) + "\n"


def compare(folders: list[Path], only: list[str] | None = None) -> str:
    """One line per finished OUT folder: the model-selection table of issue 10. `only`: only these
    held-out families count (so that folders holding different families out compare like with like)."""
    head = ("| configuration | seeds | in-dist Dice | LOFO mean Dice | held-out Dice per family | pixel AUC "
            "in-dist / LOFO | FP area (in-dist) | image AUC (in-dist) | JPEG 70 / 50 (x clean) | rescale 0.5 / 0.75 "
            "(x clean) | noise 5 (x clean) | realworld pixel AUC (casia2 / hifi) | realinpaint image AUC (pooled) / pixel "
            "AUC (mean of folders) | train img/s |")
    lines = [head, "|---|" + "--:|" * (head.count("|") - 2)]
    for folder in folders:
        results = json.loads((folder / "results.json").read_text())
        setup = results.get("setup", {})
        extra = setup.get("overrides", "[]")
        name = (f"{folder.name} (stem {setup.get('input_stem')}, degrade-train {setup.get('degrade_train')}"
                f"{', ' + extra if extra != '[]' else ''})")
        rows = list(results["rows"].values())
        ind = [r for r in rows if r["family"] == IN_DISTRIBUTION]
        held = [r for r in rows if r["family"] != IN_DISTRIBUTION and (only is None or r["family"] in only)]
        seeds = sorted({r["seed"] for r in rows})
        families = sorted({r["family"] for r in held})
        held_by_seed = {s: [r["test"]["dice_mean"] for r in held if r["seed"] == s] for s in seeds}
        # per seed: mean over the held-out families, for the seeds that have every one of them
        lofo = [np.mean(d) for d in held_by_seed.values() if families and len(d) == len(families)]
        per_family = ", ".join(
            f"{f} {np.mean([r['test']['dice_mean'] for r in held if r['family'] == f]):.2f}" for f in families)

        def ratio(kind):
            return _stat([r["robustness"][kind]["dice_mean"] / r["test"]["dice_mean"]
                          for r in ind if "robustness" in r and r["test"]["dice_mean"] > 0])

        def real(sub):
            return _stat([r.get("realworld", {}).get(sub, {}).get("pixel_auc") for r in ind])

        lines.append(
            f"| {name} | {len(seeds)} | {_stat([r['test']['dice_mean'] for r in ind])} | {_stat(lofo)} | "
            f"{per_family or '-'} | {_stat([r['test'].get('pixel_auc') for r in ind])} / "
            f"{_stat([r['test'].get('pixel_auc') for r in held])} | "
            f"{_stat([r['test']['false_positive']['mean_area_fraction'] for r in ind])} | "
            f"{_stat([r['test'].get('image_auc') for r in ind])} | {ratio('jpeg70')} / {ratio('jpeg50')} | "
            f"{ratio('down0.5')} / {ratio('down0.75')} | {ratio('noise5')} | {real('casia2_gt')} / "
            f"{real('hifi_ifdl_mixed')} | {real_summary(ind, 'image_auc')} / "
            f"{real_summary(ind, 'pixel_auc', realinpaint.FOLDER_MEAN)} | "
            f"{_stat([r.get('train_images_per_s') for r in rows])} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    args = parse_args(argv)
    chosen = None if args.families == "all" else [f.strip() for f in args.families.split(",")]
    if args.compare:
        print(compare(args.compare, chosen))
        return 0
    from inpaintseg.fileio import atomic_write_text
    from inpaintseg.runtime import tune_cpu_runtime
    from inpaintseg.synth.registry import FAMILIES

    tune_cpu_runtime(args.threads)
    families = chosen or list(FAMILIES)
    unknown = sorted(set(families) - set(FAMILIES))
    if unknown:
        raise SystemExit(f"unknown families {unknown}; expected some of {', '.join(FAMILIES)}")
    seeds = [int(s) for s in args.seeds.split(",")]
    args.out.mkdir(parents=True, exist_ok=True)
    results_path = args.out / "results.json"
    results = json.loads(results_path.read_text()) if results_path.is_file() else {"rows": {}}
    results["setup"] = {k: str(v) for k, v in vars(args).items()}
    for seed in seeds:
        for family in ([] if args.no_in_distribution else [None]) + families:
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
