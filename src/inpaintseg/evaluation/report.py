"""An offline HTML report for a training run: curves, overlays, DenseCRF and TTA figures, PR curve.

`write_report(run_dir)` reads `RUN_DIR/metrics.csv` and `RUN_DIR/model/`, predicts a set of images
that have ground truth (the dataset's `test/` split when it has masks, otherwise the run's validation
split) and writes `RUN_DIR/report/report.html` with PNG figures beside it. Everything is relative to
the report folder, so the folder can be zipped and opened anywhere without a network.
"""

from __future__ import annotations

import html
import io as _stdio
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from inpaintseg import io
from inpaintseg.data.split import even_subset
from inpaintseg.errors import InpaintsegError
from inpaintseg.metrics import mask_dice
from inpaintseg.run_dir import METRICS_FILE, MODEL_DIR, REPORT_DIR, SPLIT_FILE, read_metric_rows

REPORT_FILE = "report.html"
N_CRF_EXAMPLES = 4


@dataclass
class Scored:
    """Per-image result used to pick examples: Dice at the run's threshold and the image score."""

    stem: str
    image_path: Path
    mask_path: Path
    dice: float
    score: float
    manipulated: bool


# --------------------------------------------------------------------------------------- images
def _pick_images(run_dir: Path, model_config: dict, images_dir, masks_dir):
    """The (images, masks, description) to report on."""
    from inpaintseg.data import pair_files, select_stems

    if images_dir is not None:
        if masks_dir is None:
            raise InpaintsegError("--images needs --masks (the report compares predictions with ground truth).")
        return pair_files(images_dir, masks_dir), f"{images_dir}"
    data_dir = Path(model_config.get("data", {}).get("data_dir", ""))
    test_images, test_masks = data_dir / "test" / "images", data_dir / "test" / "masks"
    if test_images.is_dir() and test_masks.is_dir():
        return pair_files(test_images, test_masks), f"test split {test_images}"
    split_file = run_dir / SPLIT_FILE
    train_images, train_masks = data_dir / "train" / "images", data_dir / "train" / "masks"
    if split_file.is_file() and train_images.is_dir() and train_masks.is_dir():
        stems = json.loads(split_file.read_text())["val"]
        samples = select_stems(pair_files(train_images, train_masks), stems, str(split_file))
        return samples, f"validation split of {data_dir}"
    raise InpaintsegError(
        f"{run_dir}: found no images with ground truth to report on (looked for {test_images} with "
        f"{test_masks}, and the validation split in {split_file}). Pass --images DIR --masks DIR.")


def _even_subset(items: list, limit: int) -> list:
    return [items[i] for i in even_subset(len(items), limit)]


# -------------------------------------------------------------------------------------- figures
def _figure_saver(out_dir: Path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    def save(fig, name: str) -> str:
        buf = _stdio.BytesIO()
        fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
        plt.close(fig)
        io.atomic_write_bytes(out_dir / name, buf.getvalue())
        return name

    return plt, save


def _overlay(image: np.ndarray, mask: np.ndarray, colour=(255, 0, 0), alpha: float = 0.45) -> np.ndarray:
    """Tint the mask's pixels of an RGB image and draw the mask outline. Shape: (H,W,3),(H,W) -> (H,W,3)."""
    import cv2

    out = image.astype(np.float32)
    m = mask.astype(bool)
    out[m] = out[m] * (1 - alpha) + np.array(colour, np.float32) * alpha
    out = out.astype(np.uint8)
    contours, _ = cv2.findContours(m.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    thickness = max(1, round(max(image.shape[:2]) / 256))
    cv2.drawContours(out, contours, -1, colour, thickness)
    return out


def _curves(plt, save, rows: list[dict]) -> list[str]:
    def column(name):
        return [float(r[name]) if r.get(name) not in (None, "") else np.nan for r in rows]

    epochs = column("epoch")
    names = []
    fig, ax = plt.subplots(figsize=(6, 3.5))
    for key in ("train_loss", "val_loss"):
        ax.plot(epochs, column(key), marker="o", ms=3, label=key.replace("_", " "))
    ax.set_xlabel("epoch"), ax.set_ylabel("BCE + Dice loss"), ax.set_title("Loss"), ax.legend()
    ax.grid(alpha=0.3)
    names.append(save(fig, "loss_curves.png"))
    fig, ax = plt.subplots(figsize=(6, 3.5))
    for key in ("val_dice", "val_iou", "val_f1"):
        if key in rows[0]:
            ax.plot(epochs, column(key), marker="o", ms=3, label=key.replace("_", " "))
    ax.set_xlabel("epoch"), ax.set_ylim(0, 1), ax.set_title("Validation metrics (threshold 0.5)")
    ax.legend(), ax.grid(alpha=0.3)
    names.append(save(fig, "metric_curves.png"))
    return names


def _examples_figure(plt, save, picked: list[tuple[str, Scored]], predictor, threshold: float) -> str:
    fig, axes = plt.subplots(len(picked), 4, figsize=(13, 3.3 * len(picked)), squeeze=False)
    for row, (label, s) in zip(axes, picked):
        image, truth = io.read_image(s.image_path), io.read_mask(s.mask_path)
        probs = predictor.predict_proba(image)
        pred = probs >= threshold
        panels = [(image, f"{label}: {s.stem}"), (_overlay(image, truth, (0, 200, 0)), "ground truth"),
                  (_overlay(image, pred, (255, 0, 0)), f"prediction (Dice {s.dice:.3f})"),
                  (probs, f"probability (score {s.score:.2f})")]
        for ax, (panel, title) in zip(row, panels):
            ax.imshow(panel, cmap="magma" if panel.ndim == 2 else None, vmin=0, vmax=1 if panel.ndim == 2 else None)
            ax.set_title(title, fontsize=9), ax.axis("off")
    return save(fig, "examples.png")


def _crf_figure(plt, save, samples: list[Scored], predictor, threshold: float) -> tuple[str | None, list[dict]]:
    from inpaintseg.inference import crf

    if not crf.crf_available():
        return None, []
    variants = list(crf.CRF_VARIANTS)
    fig, axes = plt.subplots(len(samples), 2 + len(variants), figsize=(3.3 * (2 + len(variants)), 3.3 * len(samples)),
                             squeeze=False)
    table = []
    for row, s in zip(axes, samples):
        image, truth = io.read_image(s.image_path), io.read_mask(s.mask_path)
        probs = predictor.predict_proba(image)
        base = mask_dice(probs >= threshold, truth)
        entry = {"stem": s.stem, "no CRF": base}
        row[0].imshow(_overlay(image, truth, (0, 200, 0))), row[0].set_title(f"{s.stem}: truth", fontsize=9)
        row[1].imshow(_overlay(image, probs >= threshold)), row[1].set_title(f"no CRF: Dice {base:.3f}", fontsize=9)
        for ax, name in zip(row[2:], variants):
            refined = crf.refine(image, probs, crf.CRF_PRESETS[name])
            d = mask_dice(refined >= threshold, truth)
            entry[f"CRF {name}"] = d
            ax.imshow(_overlay(image, refined >= threshold))
            ax.set_title(f"CRF {name}: Dice {d:.3f} ({d - base:+.3f})", fontsize=9)
        for ax in row:
            ax.axis("off")
        table.append(entry)
    return save(fig, "crf_effect.png"), table


def _numpy_view(view, image: np.ndarray, inverse: bool = False) -> np.ndarray:
    """Apply (or undo) a TTA view to an (H, W, ...) array; axes 2/3 of the tensor view are 0/1 here."""
    axes = tuple(a - 2 for a in view.flip)
    if not inverse:
        out = np.flip(image, axis=axes) if axes else image
        return np.ascontiguousarray(np.rot90(out, view.rot, axes=(0, 1)))
    out = np.rot90(image, -view.rot, axes=(0, 1))
    return np.ascontiguousarray(np.flip(out, axis=axes) if axes else out)


def _view_name(view) -> str:
    parts = {(3,): "h-flip", (2,): "v-flip", (2, 3): "hv-flip"}.get(tuple(view.flip), "")
    rot = f"rot{90 * view.rot}" if view.rot else ""
    return " + ".join(p for p in (parts, rot) if p) or "identity"


def _tta_figure(plt, save, sample: Scored, model, model_config: dict, device: str, tta: str) -> str:
    """Each view's probability map (mapped back to the original frame) and their mean."""
    from inpaintseg.inference import Predictor, tta_views

    mode = tta if tta != "none" else "flip"
    single = Predictor(model, model_config, device=device, tta="none")
    image, truth = io.read_image(sample.image_path), io.read_mask(sample.mask_path)
    maps = []
    for view in tta_views(mode):
        probs = single.predict_proba(_numpy_view(view, image))
        maps.append((_view_name(view), _numpy_view(view, probs, inverse=True)))
    mean = np.mean([m for _, m in maps], axis=0)
    panels = maps + [("mean of views", mean)]
    cols = min(5, len(panels) + 1)
    rows = int(np.ceil((len(panels) + 1) / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(3 * cols, 3 * rows), squeeze=False)
    flat = axes.ravel()
    flat[0].imshow(_overlay(image, truth, (0, 200, 0))), flat[0].set_title(f"{sample.stem}: truth", fontsize=9)
    for ax, (name, m) in zip(flat[1:], panels):
        ax.imshow(m, cmap="magma", vmin=0, vmax=1)
        ax.set_title(f"{name} (Dice {mask_dice(m >= 0.5, truth):.3f})", fontsize=9)
    for ax in flat:
        ax.axis("off")
    return save(fig, "tta_views.png")


def _pr_figure(plt, save, histogram, threshold: float) -> tuple[str, dict]:
    tp = np.cumsum(histogram.positive[::-1])[::-1]
    fp = np.cumsum(histogram.negative[::-1])[::-1]
    n_pos = max(int(histogram.positive.sum()), 1)
    precision = tp / np.maximum(tp + fp, 1)
    recall = tp / n_pos
    t_best, f1_best = histogram.best_f1()
    ctp, cfp, cfn, _ = histogram.counts_at(threshold)
    p_at = ctp / max(ctp + cfp, 1)
    r_at = ctp / max(ctp + cfn, 1)
    fig, ax = plt.subplots(figsize=(4.5, 4.5))
    ax.plot(recall, precision, lw=1.5)
    ax.plot([r_at], [p_at], "o", color="C3", label=f"threshold {threshold:g}")
    ax.set_xlabel("recall (pixels)"), ax.set_ylabel("precision (pixels)"), ax.set_xlim(0, 1), ax.set_ylim(0, 1)
    ax.set_title(f"Pixel precision-recall (AUC-ROC {histogram.auc():.3f})"), ax.grid(alpha=0.3), ax.legend()
    summary = {"pixel_auc": histogram.auc(), "best_f1": f1_best, "best_f1_threshold": t_best,
               "precision_at_threshold": p_at, "recall_at_threshold": r_at}
    return save(fig, "precision_recall.png"), summary


# -------------------------------------------------------------------------------------- report
def _table(rows: list[dict], digits: int = 3) -> str:
    if not rows:
        return "<p>(none)</p>"
    keys = list(rows[0])
    head = "".join(f"<th>{html.escape(str(k))}</th>" for k in keys)

    def cell(v):
        return f"{v:.{digits}f}" if isinstance(v, float) else html.escape(str(v))

    body = "".join("<tr>" + "".join(f"<td>{cell(r.get(k, ''))}</td>" for k in keys) + "</tr>" for r in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def write_report(run_dir: str | os.PathLike, images_dir=None, masks_dir=None, out_dir=None,
                 max_images: int = 200, device: str = "auto") -> Path:
    """Write RUN_DIR/report/report.html (or OUT_DIR/report.html); return its path."""
    from inpaintseg.inference import Predictor, resolve_device, resolve_postprocess
    from inpaintseg.metrics import PixelHistogram, image_score
    from inpaintseg.model.io import load_model_dir

    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise InpaintsegError(f"{run_dir}: run folder not found. Pass the --out folder of `inpaintseg train`.")
    if isinstance(max_images, bool) or not isinstance(max_images, int) or max_images < 1:
        raise InpaintsegError(f"--max-images must be a positive integer, got {max_images!r}.")
    model, model_config = load_model_dir(run_dir / MODEL_DIR)
    device = resolve_device(device)
    post = resolve_postprocess(model_config)
    out_dir = Path(out_dir) if out_dir is not None else run_dir / REPORT_DIR
    out_dir.mkdir(parents=True, exist_ok=True)
    plt, save = _figure_saver(out_dir)

    sections: list[str] = []
    metrics_file = run_dir / METRICS_FILE
    rows = read_metric_rows(metrics_file) if metrics_file.is_file() else []
    if rows:
        loss_png, metric_png = _curves(plt, save, rows)
        sections.append(f"<h2>Training curves</h2><img src='{loss_png}'><img src='{metric_png}'>")
    else:
        sections.append(f"<h2>Training curves</h2><p>{html.escape(str(metrics_file))} is missing.</p>")

    samples, source = _pick_images(run_dir, model_config, images_dir, masks_dir)
    samples = _even_subset(samples, max_images)
    predictor = Predictor(model, model_config, device=device, tta=post.tta)
    histogram = PixelHistogram(1024)
    scored: list[Scored] = []
    for s in samples:
        image, truth = io.read_image(s.image_path), io.read_mask(s.mask_path)
        probs = predictor.predict_proba(image)
        histogram.update(probs, truth)
        scored.append(Scored(s.stem, s.image_path, s.mask_path, mask_dice(probs >= post.threshold, truth),
                             image_score(probs), bool(truth.any())))
    dice = np.array([s.dice for s in scored])
    summary = {"images": len(scored), "mean Dice (per image)": float(dice.mean()) if len(dice) else float("nan"),
               "threshold": post.threshold, "tta": post.tta, "crf": post.crf}
    sections.append(
        f"<h2>Predictions</h2><p>{len(scored)} images from {html.escape(source)}; post-processing "
        f"{html.escape(post.describe())}. Dice uses the competition rule (empty truth and empty prediction "
        f"count 1.0). CRF is not applied in these figures unless chosen above.</p>" + _table([summary]))

    by_dice = sorted(scored, key=lambda s: s.dice)
    if by_dice:
        picked = [("best", by_dice[-1]), ("median", by_dice[len(by_dice) // 2]), ("worst", by_dice[0])]
        name = _examples_figure(plt, save, picked, predictor, post.threshold)
        sections.append("<h2>Predicted vs ground truth</h2><p>Green: ground truth. Red: prediction at "
                        f"threshold {post.threshold:g}. Best, median and worst image by Dice.</p><img src='{name}'>")

    manipulated = [s for s in by_dice if s.manipulated]
    crf_samples = _even_subset(manipulated, N_CRF_EXAMPLES)
    if crf_samples:
        name, crf_rows = _crf_figure(plt, save, crf_samples, Predictor(model, model_config, device=device, tta="none"),
                                     post.threshold)
        if name is None:
            sections.append("<h2>DenseCRF effect</h2><p>pydensecrf is not installed "
                            "(<code>pip install pydensecrf2</code>), so this section is empty.</p>")
        else:
            calib = model_config.get("postprocess", {}).get("calibration", {}).get("table", [])
            sections.append("<h2>DenseCRF effect</h2><p>The same probability map (no TTA) before and after "
                            "DenseCRF with the Gaussian-only preset and the seed's bilateral preset, with "
                            "each image's Dice change.</p>" + f"<img src='{name}'>" + _table(crf_rows)
                            + ("<h3>Validation calibration (chooses TTA and CRF)</h3>" + _table(calib) if calib else ""))
        tta_png = _tta_figure(plt, save, crf_samples[len(crf_samples) // 2], model, model_config, device, post.tta)
        sections.append("<h2>TTA aggregation</h2><p>Each view's probability map, mapped back to the original "
                        f"frame, and their mean (the prediction with TTA).</p><img src='{tta_png}'>")

    if histogram.positive.sum() and histogram.negative.sum():
        name, pr = _pr_figure(plt, save, histogram, post.threshold)
        sections.append(f"<h2>Precision-recall</h2><img src='{name}'>" + _table([pr]))

    page = (
        "<!doctype html><html><head><meta charset='utf-8'><title>inpaintseg report</title>"
        "<style>body{font-family:sans-serif;max-width:1300px;margin:auto;padding:1em}img{max-width:100%}"
        "table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ccc;padding:3px 8px;"
        "text-align:right}</style></head><body>"
        f"<h1>inpaintseg report: {html.escape(run_dir.name)}</h1>"
        f"<p>Model: {html.escape(json.dumps(model_config.get('architecture', {})))}; input "
        f"{html.escape(json.dumps(model_config.get('input', {})))}.</p>" + "".join(sections) + "</body></html>")
    report_path = out_dir / REPORT_FILE
    io.atomic_write_text(report_path, page)
    return report_path
