"""Engine A/B by fine-tuning (issue 24 item 5): does a change to the data engine move the real row?

Training from scratch at this machine's budget leaves every model at chance on real inpaintings
(`lofo.py`), so a change meant for the real row cannot show there. This benchmark judges it where a
difference can appear: for each seed and each *arm* (a set of engine settings), it generates engine data
with the arm's settings (the same data seed for every arm), fine-tunes the start model (default: the shipped
`base`) for the same number of epochs on it (equal optimiser steps per arm; the start is never kept), and
scores the result at the start's post-processing for `--tta none` (its threshold and image gate, the same
for every arm) on:

- the engine test folders given with `--test NAME=DIR` (the in-distribution rows: e.g. the recipe's fresh
  test set), with the untouched images' false-alarm rate;
- `../shared/realinpaint` (the real row: pooled image AUC of edited images against their originals, mean of
  folders pixel AUC, originals flagged) and `../shared/realworld` (pixel AUC), measurement only.

The start model itself is scored once as the reference row ("start"). An arm is `NAME` or
`NAME:key=value,key=value` with `inpaintseg.synth.EngineSettings` fields (the demo-data flags' names with
underscores):

    python benchmarks/engine_ab.py --out /tmp/ab --seeds 0,1,2 --arm plain --arm camera:camera_noise=0.5 \\
        --test fresh=WORK/fresh/test --photos /usr/share/backgrounds/mate/nature

Writes OUT/results.jsonl (one line per run; a re-run with the same OUT skips the runs already there) and
prints per arm the mean +- std over seeds.
"""

from __future__ import annotations

import argparse
import functools
import importlib.util
import json
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))
from bench_common import parse_named_settings  # noqa: E402

SHARED = REPO.parent / "shared"
REAL_POOLED, REAL_MEAN = "realinpaint/pooled (folders with originals)", "realinpaint/mean of folders with originals"
COLUMNS = (  # (header, key in a run's "scores")
    ("real image AUC", "real_image_auc"), ("real pixel AUC (mean)", "real_pixel_auc"),
    ("real originals flagged", "real_false_alarm_rate"), ("realworld pixel AUC", "realworld_pixel_auc"))


@functools.cache
def _card():
    spec = importlib.util.spec_from_file_location("base_card", REPO / "recipes" / "base_card.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def parse_arm(text: str, parser: argparse.ArgumentParser) -> tuple[str, dict]:
    name, settings = parse_named_settings(text, parser, "--arm")
    if not name or name == "start":
        parser.error(f"--arm {text!r}: give each arm a name other than 'start' (the reference row)")
    return name, settings


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, required=True, help="folder for data, runs and results.jsonl")
    p.add_argument("--arm", action="append", default=[], metavar="NAME[:key=value,...]",
                   help="engine settings of one arm (repeatable; default: one arm 'plain' with the defaults)")
    p.add_argument("--init-from", default="base", metavar="MODEL_DIR|base", help="the start model (default base)")
    p.add_argument("--seeds", default="0", help="comma-separated seeds: data seed offset and training seed")
    p.add_argument("--data-seed", type=int, default=500, help="engine seed of seed 0's data (default 500)")
    p.add_argument("--n-train", type=int, default=2000, help="engine training images per run (default 2000)")
    p.add_argument("--epochs", type=int, default=4, help="fine-tuning epochs per run (default 4)")
    p.add_argument("--lr", type=float, default=5e-4, help="fine-tuning learning rate (default 5e-4, the demo's)")
    p.add_argument("--size", type=int, default=256, help="engine crop size (default 256)")
    p.add_argument("--photos", nargs="+", default=None, metavar="DIR", help="extra pristine photo folders")
    p.add_argument("--test", action="append", default=[], metavar="NAME=DIR",
                   help="an engine test folder (images/, masks/, meta.json) scored as an in-distribution row")
    p.add_argument("--workers", type=int, default=2, help="data engine processes (default 2)")
    p.add_argument("--no-realworld", action="store_true", help="skip ../shared/realworld")
    p.add_argument("--no-realinpaint", action="store_true", help="skip ../shared/realinpaint (quick checks only)")
    args = p.parse_args(argv)
    args.seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    args.arm = [parse_arm(a, p) for a in (args.arm or ["plain"])]
    tests = {}
    for item in args.test:
        name, sep, folder = item.partition("=")
        if not sep or not (Path(folder) / "images").is_dir() or not (Path(folder) / "meta.json").is_file():
            p.error(f"--test {item!r}: expected NAME=DIR with DIR/images and DIR/meta.json (an engine test split)")
        tests[name] = Path(folder)
    args.test = tests
    return args


def score(model, post: dict, tests: dict, work: Path, realworld: bool, realinpaint: bool = True) -> dict:
    """The rows of one model at `post`: per engine test folder Dice / AUCs / untouched false alarms, and
    the real rows."""
    card = _card()
    card.pin_postprocess(model, post)
    scores = {}
    for name, folder in tests.items():
        row, untouched = card.fresh_rows(model, folder, work / name)
        scores[name] = {"dice_mean": row["dice_mean"], "pixel_auc": row["pixel_auc"],
                        "image_auc": row["image_auc"], "false_alarm_rate": untouched["false_alarm_rate"],
                        "all_full": row["baselines"].get("all-full")}
    real = {r["name"]: r for r in card.realinpaint_rows(model)} if realinpaint else {}
    if REAL_POOLED in real:
        scores["real_image_auc"] = real[REAL_POOLED]["image_auc"]
        scores["real_false_alarm_rate"] = real[REAL_POOLED]["false_alarm_rate"]
        scores["real_pixel_auc"] = real[REAL_MEAN]["pixel_auc"]
        scores["real_folders"] = {k.split("/", 1)[1]: {"pixel_auc": v["pixel_auc"], "image_auc": v["image_auc"]}
                                  for k, v in real.items() if k not in (REAL_POOLED, REAL_MEAN)}
    if realworld:
        rows = card.realworld_rows(model, work)
        if rows:
            scores["realworld_pixel_auc"] = statistics.mean(r["pixel_auc"] for r in rows)
    return scores


def run_arm(args, name: str, settings: dict, seed: int, post: dict) -> dict:
    from inpaintseg.api import load_model
    from inpaintseg.config import load_config
    from inpaintseg.model.shipped import resolve_model_dir
    from inpaintseg.synth import generate_demo_data
    from inpaintseg.training import train

    work = args.out / f"{name}-seed{seed}"
    t0 = time.perf_counter()
    generate_demo_data(work / "data", n_train=args.n_train, n_test=1, size=args.size, seed=args.data_seed + seed,
                       generators="demo", workers=args.workers, log=None, photos_dir=args.photos,
                       packaged_photos=True if args.photos else None, **settings)
    t1 = time.perf_counter()
    config = load_config(REPO / "configs" / "base.yaml", overrides={
        "data": str(work / "data"), "out": str(work / "run"), "init_from": str(resolve_model_dir(args.init_from)),
        "img_size": args.size, "lr": args.lr, "epochs": args.epochs, "seed": seed, "calibrate": False,
        "keep_start": False})
    result = train(config)
    t2 = time.perf_counter()
    scores = score(load_model(result.model_dir, device="cpu"), post, args.test, work / "score",
                   not args.no_realworld, not args.no_realinpaint)
    return {"arm": name, "seed": seed, "settings": settings, "init_from": str(args.init_from),
            "data_seed": args.data_seed + seed, "n_train": args.n_train, "photos": args.photos,
            "epochs": result.epochs_completed, "generate_s": round(t1 - t0), "train_s": round(t2 - t1),
            "scores": scores}


def summarise(rows: list[dict], tests: list[str]) -> list[str]:
    keys = [(f"{t} Dice", (t, "dice_mean")) for t in tests] + [(f"{t} image AUC", (t, "image_auc")) for t in tests] \
        + [(f"{t} untouched flagged", (t, "false_alarm_rate")) for t in tests] + [(h, (k,)) for h, k in COLUMNS]
    lines = ["arm | seeds | " + " | ".join(h for h, _ in keys)]
    for arm in dict.fromkeys(r["arm"] for r in rows):
        runs = [r for r in rows if r["arm"] == arm]
        cells = []
        for _, path in keys:
            values = []
            for r in runs:
                value = r["scores"]
                for part in path:
                    value = value.get(part) if isinstance(value, dict) else None
                if isinstance(value, (int, float)):
                    values.append(float(value))
            std = f" +- {statistics.stdev(values):.3f}" if len(values) > 1 else ""
            cells.append(f"{statistics.mean(values):.3f}{std}" if values else "n/a")
        lines.append(f"{arm} | {len(runs)} | " + " | ".join(cells))
    return lines


def main(argv=None) -> int:
    args = parse_args(argv)
    from inpaintseg.api import load_model

    args.out.mkdir(parents=True, exist_ok=True)
    results = args.out / "results.jsonl"
    rows = [json.loads(line) for line in results.read_text().splitlines()] if results.is_file() else []
    done = {(r["arm"], r["seed"]) for r in rows}
    start = load_model(args.init_from, device="cpu")
    post = _card().resolved_postprocess(start, "none", "off")  # the start's --tta none threshold and gate, every row

    def record(row: dict) -> None:
        rows.append(row)
        with open(results, "a") as fh:
            fh.write(json.dumps(row) + "\n")
        print(f"{row['arm']} seed {row['seed']}: {json.dumps(row['scores'])}", file=sys.stderr, flush=True)

    if ("start", 0) not in done:
        record({"arm": "start", "seed": 0, "settings": {}, "postprocess": post,
                "scores": score(start, post, args.test, args.out / "start" / "score", not args.no_realworld,
                                not args.no_realinpaint)})
    for seed in args.seeds:  # seeds outermost: a cut-short run still compares every arm
        for name, settings in args.arm:
            if (name, seed) not in done:
                record(run_arm(args, name, settings, seed, post))
    print("\n".join(summarise(rows, list(args.test))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
