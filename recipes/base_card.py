"""The numbers of a model's card (docs/model-card.md): measured, never typed.

    python recipes/base_card.py --model base --fresh WORK/fresh/test --out WORK/card --write

Scores, through the product's own predict and evaluate:
- the fresh engine test set (another seed than the training data: recipes/base.py writes it): Dice next to the
  all-empty / all-full baselines, pixel and image AUC, Dice per family and per method;
- its untouched photos: the share left with a non-empty mask by the stored post-processing, image gate included
  (false-alarm rate), the share labelled manipulated, and the mean false-positive area;
- robustness: the same test images after JPEG 90/70/50 and a down-then-up rescale 0.5/0.75;
- the real rows: ../shared/realinpaint (real deep-generative inpaintings, per folder, image AUC against the
  originals; benchmarks/realinpaint.py) and ../shared/realworld (real splices / copy-moves), when present.
`--write` stores them as the `card` section of the model's config.json (what `model-info` and the service show).
"""

from __future__ import annotations

import argparse
import csv
import importlib.util
import json
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
ROBUSTNESS = ("jpeg90", "jpeg70", "jpeg50", "down0.5", "down0.75")


def _module(path: Path, name: str):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def _predict(model, images: Path, out: Path) -> Path:
    from inpaintseg.inference import predict_folder

    out.mkdir(parents=True, exist_ok=True)
    predict_folder(model, images, out=out / "submission.csv", probs_out=out / "probs", scores_out=out / "scores.csv",
                   progress=False)
    return out


def _evaluate(truth: Path, pred: Path, threshold: float, meta: Path | None = None) -> dict:
    from inpaintseg.evaluation.evaluate import evaluate

    return evaluate(truth, submission=pred / "submission.csv", probs_dir=pred / "probs", meta=meta,
                    score_threshold=threshold)


def untouched_rates(pred: Path, meta: dict) -> dict:
    """Over the untouched images of a prediction folder (`_predict`): the false-alarm rate (share with a
    non-empty mask: what a user sees), the share labelled manipulated (image score >= the stored image
    threshold) and the mean FP area."""
    untouched = {stem for stem, info in meta["images"].items() if info.get("method") == "none"}
    with open(pred / "scores.csv", newline="") as fh:
        rows = [r for r in csv.DictReader(fh) if r["ImageId"] in untouched]
    with open(pred / "submission.csv", newline="") as fh:
        flagged = {r["ImageId"] for r in csv.DictReader(fh) if r["ImageId"] in untouched and r["EncodedPixels"]}
    n = len(rows)
    return {"n": n, "false_alarm_rate": len(flagged) / max(n, 1),
            "labelled_rate": sum(int(r["predicted_label"]) for r in rows) / max(n, 1),
            "fp_area_mean": sum(float(r["manipulated_fraction"]) for r in rows) / max(n, 1)}


def fresh_rows(model, fresh: Path, out: Path) -> tuple[dict, dict]:
    from inpaintseg.evaluation.evaluate import baseline_submissions, evaluate

    threshold = model.postprocess().image_threshold
    pred = _predict(model, fresh / "images", out / "fresh")
    result = _evaluate(fresh / "masks", pred, threshold, fresh / "meta.json")
    baselines = {name: round(evaluate(fresh / "masks", submission=path)["dice_mean"], 4)
                 for name, path in baseline_submissions(fresh / "masks", out).items()}
    row = {"n": result["n_images"], "dice_mean": round(result["dice_mean"], 4),
           "dice_pooled": round(result["dice_pooled"], 4), "pixel_auc": result.get("pixel_auc"),
           "image_auc": result.get("image_auc"), "baselines": baselines,
           "by_family": {k: round(v["dice_mean"] if isinstance(v, dict) else v, 4)
                         for k, v in result.get("by_family", {}).items()},
           "by_method": {k: round(v["dice_mean"] if isinstance(v, dict) else v, 4)
                         for k, v in result.get("by_method", {}).items()}}
    meta = json.loads((fresh / "meta.json").read_text())
    return row, untouched_rates(pred, meta)


def robustness_rows(model, fresh: Path, out: Path, limit: int | None) -> dict:
    """Dice after each degradation of the first `limit` test images, next to the same images clean."""
    import shutil

    bench = _module(REPO / "benchmarks" / "bench_common.py", "bench_common")
    subset = out / "subset"
    for sub in ("images", "masks"):
        (subset / sub).mkdir(parents=True, exist_ok=True)
        for path in sorted((fresh / sub).glob("*.png"))[:limit]:
            shutil.copy2(path, subset / sub / path.name)
    rows = {}
    for kind in ("clean", *ROBUSTNESS):
        images = subset / "images" if kind == "clean" else bench.perturbed_folder(
            subset / "images", kind, out / "perturbed" / kind)
        pred = _predict(model, images, out / "robust" / kind)
        rows[kind] = round(_evaluate(subset / "masks", pred, model.postprocess().image_threshold)["dice_mean"], 4)
    rows["n"] = len(list((subset / "images").glob("*.png")))
    return rows


def resolved_postprocess(model, tta: str, crf: str) -> dict:
    """The post-processing `predict --tta --crf` would use with `model`: those settings with the threshold and
    gate calibrated for them."""
    resolved = model.postprocess(tta=tta, crf=crf)
    return {"tta": resolved.tta, "crf": resolved.crf, "threshold": resolved.threshold, "gate": resolved.gate}


def pin_postprocess(model, post: dict) -> None:
    """Make `post` (`resolved_postprocess`) the model's stored post-processing, for the rows scored after."""
    model.config = model.config.updated({"postprocess": post})


def realworld_rows(model, out: Path) -> list[dict]:
    rows = []
    for folder in sorted((SHARED / "realworld").glob("*/images")):
        name = folder.parent.name
        pred = _predict(model, folder, out / "realworld" / name)
        result = _evaluate(folder.parent / "masks", pred, model.postprocess().image_threshold)
        rows.append({"name": f"realworld/{name}", "n": result["n_images"], "dice_mean": round(result["dice_mean"], 4),
                     "pixel_auc": result.get("pixel_auc"), "image_auc": None})
    return rows


def realinpaint_rows(model) -> list[dict]:
    script = REPO / "benchmarks" / "realinpaint.py"
    data = SHARED / "realinpaint"
    if not script.is_file() or not data.is_dir():
        return []
    bench = _module(script, "realinpaint_bench")
    predict, _ = bench.model_predictor(model)
    post = model.postprocess()
    result = bench.score_data(data, predict, post.threshold, post.image_threshold, gate=post.gate)
    rows = []
    for name, row in [*result["folders"].items(), *result["summary"].items()]:
        rows.append({"name": f"realinpaint/{name}", **{k: _finite(v) for k, v in row.items()}})
    return rows


def _finite(value):
    return None if isinstance(value, float) and value != value else value


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="base", help="model folder or base (default base)")
    p.add_argument("--fresh", type=Path, required=True, help="the fresh engine test split (images/, masks/, meta.json)")
    p.add_argument("--out", type=Path, required=True, help="work folder for predictions")
    p.add_argument("--current-engine", type=Path, default=None, metavar="DIR",
                   help="also score a test split of the current engine version (when the model was trained on an "
                   "older one: its new methods are then unseen)")
    p.add_argument("--parts", default="fresh,robustness,real",
                   help="what to measure (comma-separated: fresh, robustness, real); --write merges them into the "
                   "card already stored")
    p.add_argument("--robust-limit", type=int, default=None, help="robustness on the first N test images only")
    p.add_argument("--tta", default="auto", help="TTA for the robustness and real rows (default: the stored one)")
    p.add_argument("--crf", default="auto", help="CRF for the robustness and real rows (default: the stored one)")
    p.add_argument("--write", action="store_true", help="store the card in the model's config.json")
    args = p.parse_args(argv)
    from inpaintseg.api import load_model
    from inpaintseg.model.io import update_model_config
    from inpaintseg.model.shipped import resolve_model_dir

    started = time.perf_counter()
    parts = set(args.parts.split(","))
    model = load_model(args.model, device="cpu")
    card = {}
    if "fresh" in parts:
        card["fresh_test"], card["untouched"] = fresh_rows(model, args.fresh, args.out)
        print(f"fresh: {json.dumps(card['fresh_test'])}\nuntouched: {json.dumps(card['untouched'])}", flush=True)
        if args.current_engine is not None:
            current, current_untouched = fresh_rows(model, args.current_engine, args.out / "current")
            card["current_engine_test"] = {**current, "untouched": current_untouched}
            print(f"current engine: {json.dumps(current)}", flush=True)
    fast = load_model(args.model, device="cpu")
    if (args.tta, args.crf) != ("auto", "auto"):
        # The rows below at cheaper settings than the stored ones (recorded): on CPU the stored TTA x CRF costs
        # minutes per large real image.
        pin_postprocess(fast, resolved_postprocess(fast, args.tta, args.crf))
    post = fast.postprocess()
    settings = (f"tta {post.tta}, crf {post.crf}, threshold {post.threshold}"
                + ("" if post.gate is None else f", gate {post.gate}"))
    if "robustness" in parts:
        card["robustness"] = {**robustness_rows(fast, args.fresh, args.out, args.robust_limit), "settings": settings}
        print(f"robustness: {json.dumps(card['robustness'])}", flush=True)
    if "real" in parts:
        card["real_rows"] = realinpaint_rows(fast) + realworld_rows(fast, args.out)
        card["real_settings"] = settings
        for row in card["real_rows"]:
            print(f"real: {json.dumps(row)}", flush=True)
    card.update(measured=time.strftime("%Y-%m-%d", time.gmtime()), machine=_machine())
    command = "python recipes/base_card.py " + " ".join(sys.argv[1:] if argv is None else argv)
    card.setdefault("commands", []).append(command.replace(str(args.out.parent), "WORK"))
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"card-{'-'.join(sorted(parts))}.json").write_text(json.dumps(card, indent=2))
    if args.write:
        folder = resolve_model_dir(args.model)
        stored = json.loads((folder / "config.json").read_text()).get("card") or {}
        card["commands"] = stored.get("commands", []) + card["commands"]
        update_model_config(folder, {"card": card})
    print(f"card: {args.out} ({time.perf_counter() - started:.0f} s)")
    return 0


def _machine() -> str:
    sys.path.insert(0, str(REPO / "recipes"))
    from base import machine

    return machine()


if __name__ == "__main__":
    sys.exit(main())
