"""Quality benchmark: our Attention U-Net next to peer models under the same wall-clock budget,
ablations that set predict's defaults (TTA x CRF, resize vs crop, threshold), and robustness.

Run outside CI (it trains several models):

    .venv/bin/python benchmarks/quality.py --out bench_quality --budget-minutes 10

Peers (MONAI AttentionUnet, segmentation-models-pytorch Unet/ResNet-34 from scratch) are imported when
installed and skipped, with a line in the table, when not: see benchmarks/README.md for the optional
peer environment. The timm rows (`timm-resnet18`, `timm-resnet34`, `timm-convnext_tiny`: our decoder on a timm
backbone, `--encoder timm:<name>`) need the [encoders] extra (`make install-encoders`, run with
.venv-enc/bin/python); they start from random init unless `--encoder-weights-dir DIR` holds `<name>.safetensors`
or `<name>.pth` (a timm state dict), and are skipped with a line when timm is missing. Results go to OUT/results.json and OUT/tables.md (the tables of docs/benchmarks.md).

Every row is trained by the same code path (`inpaintseg.training.train` with the network passed in),
on the same seeded demo dataset, with an epoch count sized to the budget from each network's measured
training speed (so each cosine schedule completes) and a hard stop at the budget; then calibrated on
its validation split and evaluated on the test split with `inpaintseg.evaluation.evaluate`.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from inpaintseg import fileio  # noqa: E402
from inpaintseg.errors import InpaintsegError  # noqa: E402
from inpaintseg.precision import PRECISIONS  # noqa: E402
from bench_common import ROBUSTNESS, perturbed_folder  # noqa: E402

TIMM_ROWS = {"timm-resnet18": "resnet18", "timm-resnet34": "resnet34", "timm-convnext_tiny": "convnext_tiny"}
ROWS = ("ours", "plain", "monai", "smp", "ours-crop", *TIMM_ROWS)
ROW_LABELS = {
    "ours": "AttentionUNet (ours, resize)",
    "plain": "same network without attention gates (plain U-Net)",
    "monai": "MONAI AttentionUnet, same channels",
    "smp": "smp Unet, ResNet-34 encoder from scratch",
    "ours-crop": "AttentionUNet (ours, crop mode)",
    **{row: f"our decoder on timm {name}" for row, name in TIMM_ROWS.items()},
}


# ------------------------------------------------------------------------------------- networks
def build_network(row: str, width: int, input_stem: str = "rgb", weights_dir: Path | None = None):
    """The network of a row, or a string saying why it is unavailable (`input_stem`: our rows' stem;
    `weights_dir`: where the timm rows find `<name>.safetensors` / `<name>.pth`)."""
    from inpaintseg.model import AttentionUNet

    if row in TIMM_ROWS:
        name = TIMM_ROWS[row]
        try:
            import timm  # noqa: F401
        except ImportError:
            return "timm not installed (the [encoders] extra: make install-encoders)"
        found = [weights_dir / f"{name}{ext}" for ext in (".safetensors", ".pth")] if weights_dir else []
        weights = next((str(f) for f in found if f.is_file()), None)
        network = AttentionUNet(base_channels=width, input_stem=input_stem, encoder=f"timm:{name}", depth=None,
                                encoder_weights=weights)
        network.weights_source = weights or "random init"
        return network
    if row in ("ours", "ours-crop"):
        return AttentionUNet(base_channels=width, input_stem=input_stem)
    if row == "plain":
        return AttentionUNet(base_channels=width, attention=False, input_stem=input_stem)
    if row == "monai":
        try:
            from monai.networks.nets import AttentionUnet
        except ImportError:
            return "not installed (pip install monai, see benchmarks/README.md)"
        return AttentionUnet(spatial_dims=2, in_channels=3, out_channels=1,
                             channels=tuple(width * 2 ** i for i in range(5)), strides=(2, 2, 2, 2))
    if row == "smp":
        try:
            import segmentation_models_pytorch as smp
        except ImportError:
            return "not installed (optional peer environment, see benchmarks/README.md)"
        return smp.Unet("resnet34", encoder_weights=None, in_channels=3, classes=1)
    raise ValueError(row)


def network_gflops(network, size: int) -> float | None:
    """Forward GFLOPs for one size x size image (torch's FlopCounterMode), None when it cannot count."""
    from inpaintseg.model import model_flops

    try:
        return round(model_flops(network.to("cpu"), size) / 1e9, 3)
    except Exception:  # noqa: BLE001 - a peer network the counter cannot trace
        return None


# ------------------------------------------------------------------------------------ evaluation
def predict_folder(network, model_config: dict, post, images: Path, out: Path, device: str,
                   batch_size: int, precision: str = "auto") -> float:
    """Predict every image of `images` with the given post-processing through the library's folder
    pipeline (`inpaintseg.predict_folder`); write masks and probability PNGs under `out`; return images/s."""
    from inpaintseg.api import InpaintModel
    from inpaintseg.inference import predict_folder as library_predict_folder

    model = InpaintModel(network, model_config, device=device, batch_size=batch_size, precision=precision)
    t0 = time.perf_counter()
    result = library_predict_folder(model, images, out=None, masks_out=out / "masks", probs_out=out / "probs",
                                    threshold=post.threshold, tta=post.tta, crf=post.crf, progress=False)
    if result.failures:
        raise InpaintsegError("; ".join(message for _, message in result.failures))
    return result.n_images / (time.perf_counter() - t0)


def evaluate_folder(truth: Path, pred: Path, meta: Path | None, threshold: float) -> dict:
    from inpaintseg.evaluation.evaluate import evaluate

    result = evaluate(truth, pred_dir=pred / "masks", probs_dir=pred / "probs", meta=meta, score_threshold=threshold)
    result.pop("per_image", None)
    return result


def summarise(result: dict) -> dict:
    keys = ("dice_mean", "dice_pooled", "iou_mean", "f1", "pixel_auc", "image_auc")
    out = {k: result.get(k) for k in keys}
    out["fp_area_untouched"] = result["false_positive"]["mean_area_fraction"]
    out["by_method"] = {m: v["dice_mean"] for m, v in result.get("by_method", {}).items()}
    return out


def run_ablations(network, model_config: dict, images: Path, truth: Path, meta: Path, out: Path, device: str,
                  batch_size: int) -> dict:
    """TTA none/flip/d4 x CRF off/gaussian/seed, each at its own validation-calibrated threshold, plus
    the default TTA/CRF at threshold 0.5. Probabilities are computed once per TTA mode and reused for
    the CRF variants; predict images/s = images / (forward time + CRF time)."""
    from inpaintseg.inference import TTA_CHOICES, Predictor, crf as crf_mod, resolve_postprocess
    from inpaintseg.inference.pipeline import to_png8

    post = model_config.get("postprocess", {})
    table = {(r["tta"], r["crf"]): r for r in post.get("calibration", {}).get("table", [])}
    paths = sorted(p for p in images.iterdir() if fileio.is_image_file(p))
    ablations = {}
    default = resolve_postprocess(model_config)
    for tta in TTA_CHOICES:
        predictor = Predictor(network, model_config, device=device, tta=tta, batch_size=batch_size,
                              precision=post.get("calibration", {}).get("precision", "32"))
        images_rgb, probs, t0 = [], [], time.perf_counter()
        for start in range(0, len(paths), batch_size):
            batch = [fileio.read_image(p) for p in paths[start:start + batch_size]]
            images_rgb += batch
            probs += predictor.predict_proba_batch(batch)
        forward_seconds = time.perf_counter() - t0
        for crf in crf_mod.CRF_CHOICES:
            t1 = time.perf_counter()
            maps = probs if crf == "off" else [crf_mod.refine(im, p, crf_mod.CRF_PRESETS[crf])
                                               for im, p in zip(images_rgb, probs)]
            seconds = forward_seconds + time.perf_counter() - t1
            threshold = table.get((tta, crf), {}).get("threshold", default.threshold)
            settings = [(f"tta={tta} crf={crf}", threshold)]
            if (tta, crf) == (default.tta, default.crf):
                settings.append(("threshold 0.5 (default tta/crf)", 0.5))
            for name, t in settings:
                folder = out / name.replace(" ", "_").replace("=", "-").replace("/", "-").replace("(", "").replace(")", "")
                for sub in ("masks", "probs"):
                    (folder / sub).mkdir(parents=True, exist_ok=True)
                for p, m in zip(paths, maps):
                    fileio.write_png(folder / "masks" / f"{p.stem}.png", (m >= t).astype(np.uint8) * np.uint8(255))
                    fileio.write_png(folder / "probs" / f"{p.stem}.png", to_png8(m))
                ablations[name] = {**summarise(evaluate_folder(truth, folder, meta, t)), "threshold": t,
                                   "predict_images_per_s": len(paths) / seconds}
                print(f"[ablation] {name}: Dice {ablations[name]['dice_mean']:.4f} at t={t:g}", flush=True)
    return ablations


# ------------------------------------------------------------------------------------------ main
def train_row(row: str, network, args, data: Path, work: Path, device: str):
    """Train one row with the demo's planner: epochs sized to the budget from this network's measured speed
    on the real data at the chosen precision (`--precision`, default auto), calibration included."""
    from inpaintseg.config import DEGRADE_PRESET, load_config
    from inpaintseg.training import train
    from inpaintseg.training.budget import plan_training

    config = load_config(overrides={
        "data": str(data), "out": str(work / row / "run"), "base_channels": args.width, "img_size": args.size,
        "input_mode": "crop" if row == "ours-crop" else "resize", "batch_size": args.batch_size, "lr": args.lr,
        "seed": args.seed, "max_time_minutes": args.budget_minutes * 1.25, "precision": args.precision,
        "accelerator": "cuda" if device.startswith("cuda") else "cpu", "progress_bar": False,
        "input_stem": args.input_stem, "loss": args.loss, "paired_batches": args.paired_batches,
        **({"encoder": network.architecture()["encoder"]} if row in TIMM_ROWS else {}),
        **(DEGRADE_PRESET if args.degrade_train else {}),
    })
    plan = plan_training(config, args.budget_minutes * 60, model=network, predict_precision=args.precision)
    print(f"[{row}] {plan.precision_choice.describe()}; {plan.describe()}", flush=True)
    t0 = time.perf_counter()
    result = train(plan.config, model=network, precision_choice=plan.precision_choice,
                   predict_precision=args.precision)
    seconds = time.perf_counter() - t0
    return result, {"train_images_per_s": plan.train_rate, "epochs_planned": plan.config.epochs,
                    "epochs_done": result.epochs_completed, "train_seconds": round(seconds, 1),
                    "planned_seconds": round(plan.planned_seconds, 1), "precision": plan.config.precision,
                    "predict_precision": result.postprocess.get("calibration", {}).get("precision")}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("bench_quality"))
    parser.add_argument("--n-train", type=int, default=2000)
    parser.add_argument("--n-test", type=int, default=300)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--width", type=int, default=16, help="base channels of our network and MONAI's")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--budget-minutes", type=float, default=10.0, help="training wall-clock budget per row")
    parser.add_argument("--rows", default=",".join(ROWS), help=f"comma-separated subset of {','.join(ROWS)}")
    parser.add_argument("--no-ablations", action="store_true")
    parser.add_argument("--no-robustness", action="store_true")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--input-stem", default="rgb", help="input stem of our rows (rgb, rgb+srm, rgb+bayar, "
                        "rgb+npr, rgb+srm+bayar+npr)")
    parser.add_argument("--degrade-train", action="store_true",
                        help="train our rows with the degradation preset (inpaintseg.config.DEGRADE_PRESET)")
    parser.add_argument("--loss", default="bce-dice", help="loss of the training rows: bce-dice, focal-dice, lovasz")
    parser.add_argument("--encoder-weights-dir", type=Path, default=None,
                        help="folder with <name>.safetensors / <name>.pth weights for the timm rows")
    parser.add_argument("--paired-batches", action="store_true",
                        help="pair each training image with its original (needs DATA/train/originals/)")

    parser.add_argument("--precision", default="auto", choices=PRECISIONS,
                        help="training, calibration and prediction precision (default auto)")
    args = parser.parse_args(argv)

    from inpaintseg.synth import generate_demo_data
    from inpaintseg.inference import resolve_device, resolve_postprocess
    from inpaintseg.runtime import tune_cpu_runtime

    device = resolve_device(args.device)
    if device == "cpu":
        tune_cpu_runtime()
    args.out.mkdir(parents=True, exist_ok=True)
    data = args.out / "data"
    if not (data / "test" / "meta.json").is_file():
        print(f"generating {args.n_train}+{args.n_test} demo images in {data}", flush=True)
        generate_demo_data(data, n_train=args.n_train, n_test=args.n_test, size=args.size, seed=args.seed)
    test_images, truth, meta = data / "test" / "images", data / "test" / "masks", data / "test" / "meta.json"
    results_path = args.out / "results.json"
    results = json.loads(results_path.read_text()) if results_path.is_file() else {}
    results["setup"] = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}
    results["setup"]["device"] = device
    results.setdefault("rows", {})

    def save():
        fileio.atomic_write_text(results_path, json.dumps(results, indent=2))

    trained = {}
    for row in [r.strip() for r in args.rows.split(",") if r.strip()]:
        if row not in ROWS:
            parser.error(f"unknown row {row!r}; expected some of {','.join(ROWS)}")
        network = build_network(row, args.width, args.input_stem, args.encoder_weights_dir)
        if isinstance(network, str):
            results["rows"][row] = {"label": ROW_LABELS[row], "skipped": network}
            print(f"[{row}] skipped: {network}", flush=True)
            save()
            continue
        work = args.out / "rows"
        shutil.rmtree(work / row, ignore_errors=True)
        result, timing = train_row(row, network, args, data, work, device)
        model_config = result.model_config
        post = resolve_postprocess(model_config)
        pred = work / row / "pred"
        timing["predict_images_per_s"] = predict_folder(result.network, model_config, post, test_images, pred,
                                                        device, args.batch_size, args.precision)
        evaluation = evaluate_folder(truth, pred, meta, post.threshold)
        params = sum(p.numel() for p in result.network.parameters())
        gflops = network_gflops(result.network, args.size)
        label = ROW_LABELS[row] + (f" ({network.weights_source})" if row in TIMM_ROWS else "")
        results["rows"][row] = {"label": label, "params": params, "gflops": gflops, **timing,
                                "postprocess": {"tta": post.tta, "crf": post.crf, "threshold": post.threshold},
                                "val": result.metrics, **summarise(evaluation)}
        print(f"[{row}] test Dice {evaluation['dice_mean']:.4f} (pooled {evaluation['dice_pooled']:.4f})", flush=True)
        trained[row] = (result, model_config)
        save()

    if "ours" in trained and not args.no_ablations:
        result, model_config = trained["ours"]
        results["ablations"] = run_ablations(result.network, model_config, test_images, truth, meta,
                                             args.out / "ablations", device, args.batch_size)
        results["ablations"]["threshold calibrated (default tta/crf)"] = {
            **results["rows"]["ours"], "predict_images_per_s": None}
        save()

    if "ours" in trained and not args.no_robustness:
        result, model_config = trained["ours"]
        post = resolve_postprocess(model_config)
        robustness = {"clean": results["rows"]["ours"]["dice_mean"]}
        for kind in ROBUSTNESS:
            images = perturbed_folder(test_images, kind, args.out / "robustness" / kind / "images")
            pred = args.out / "robustness" / kind / "pred"
            predict_folder(result.network, model_config, post, images, pred, device, args.batch_size, args.precision)
            robustness[kind] = evaluate_folder(truth, pred, meta, post.threshold)["dice_mean"]
            print(f"[robustness] {kind}: Dice {robustness[kind]:.4f}", flush=True)
        results["robustness"] = robustness
        save()

    fileio.atomic_write_text(args.out / "tables.md", tables_markdown(results))
    print(tables_markdown(results))
    return 0


def _f(v, digits=3):
    return "n/a" if v is None else f"{v:.{digits}f}"


def tables_markdown(results: dict) -> str:
    lines = ["| model | params | GFLOPs/img | Dice (mean) | Dice (pooled) | IoU | pixel F1 | pixel AUC | image AUC | "
             "FP area on untouched | train img/s | epochs | predict img/s | post-processing |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for row, r in results.get("rows", {}).items():
        if "skipped" in r:
            lines.append(f"| {r['label']} | skipped: {r['skipped']} |" + " |" * 12)
            continue
        p = r["postprocess"]
        lines.append(
            f"| {r['label']} | {r['params'] / 1e6:.2f} M | {_f(r.get('gflops'), 2)} | {_f(r['dice_mean'])} | "
            f"{_f(r['dice_pooled'])} | "
            f"{_f(r['iou_mean'])} | {_f(r['f1'])} | {_f(r['pixel_auc'])} | {_f(r['image_auc'])} | "
            f"{_f(r['fp_area_untouched'], 4)} | {r['train_images_per_s']:.1f} | {r['epochs_done']} | "
            f"{r['predict_images_per_s']:.1f} | tta {p['tta']}, crf {p['crf']}, t={p['threshold']:g} |")
    methods = sorted({m for r in results.get("rows", {}).values() for m in r.get("by_method", {})})
    if methods:
        lines += ["", "Dice (mean per image) by inpainting method of the demo data:", "",
                  "| model | " + " | ".join(methods) + " |", "|---|" + "---|" * len(methods)]
        for r in results["rows"].values():
            if "by_method" in r:
                lines.append(f"| {r['label']} | " + " | ".join(_f(r['by_method'].get(m)) for m in methods) + " |")
    if results.get("ablations"):
        lines += ["", "Ablations with our network (test split):", "",
                  "| setting | Dice (mean) | Dice (pooled) | pixel AUC | predict img/s |", "|---|---|---|---|---|"]
        for name, r in results["ablations"].items():
            rate = r.get("predict_images_per_s")
            lines.append(f"| {name} | {_f(r['dice_mean'])} | {_f(r['dice_pooled'])} | {_f(r.get('pixel_auc'))} | "
                         f"{'' if rate is None else f'{rate:.1f}'} |")
    if results.get("robustness"):
        rb = results["robustness"]
        lines += ["", "Robustness (our network, default post-processing; Dice mean per image):", "",
                  "| " + " | ".join(rb) + " |", "|" + "---|" * len(rb), "| " + " | ".join(_f(v) for v in rb.values()) + " |"]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
