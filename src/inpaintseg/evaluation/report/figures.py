"""The report's figures (matplotlib, Agg): training curves, pixel PR + ROC, image-level ROC + score histogram,
Dice vs threshold, and the gallery's TP/FP/FN overlays with their probability maps.

Overlay colours come from the Okabe-Ito palette, which stays distinguishable with every common colour-vision
deficiency: true positives yellow, false positives reddish purple ("magenta"), false negatives sky blue
("cyan"). Probability maps use viridis (perceptually uniform, colour-blind safe) with a colour bar.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np

from inpaintseg import fileio

TP_RGB = (240, 228, 66)    # Okabe-Ito yellow
FP_RGB = (204, 121, 167)   # Okabe-Ito reddish purple
FN_RGB = (86, 180, 233)    # Okabe-Ito sky blue
OVERLAY_ALPHA = 0.6
PROB_CMAP = "viridis"
DPI = 100


def pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, path: Path) -> Path:
    """Write a figure as PNG atomically and close it."""
    plt = pyplot()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI, bbox_inches="tight")
    plt.close(fig)
    fileio.atomic_write_bytes(path, buffer.getvalue())
    return path


def confusion_overlay(image: np.ndarray, pred: np.ndarray, truth: np.ndarray | None,
                      alpha: float = OVERLAY_ALPHA) -> np.ndarray:
    """Tint TP/FP/FN pixels of an RGB image (TP_RGB, FP_RGB, FN_RGB); without truth, the prediction is
    tinted as FP_RGB would be wrong, so it uses TP_RGB. Shape: (H, W, 3), (H, W), (H, W) -> (H, W, 3) uint8."""
    out = image.astype(np.float32)
    pred = pred.astype(bool)
    if truth is None:
        groups = ((pred, TP_RGB),)
    else:
        truth = truth.astype(bool)
        groups = ((pred & truth, TP_RGB), (pred & ~truth, FP_RGB), (~pred & truth, FN_RGB))
    for where, colour in groups:
        out[where] = out[where] * (1 - alpha) + np.array(colour, np.float32) * alpha
    return np.rint(out).astype(np.uint8)


def _legend_handles(with_truth: bool):
    from matplotlib.patches import Patch

    if not with_truth:
        return [Patch(color=np.array(TP_RGB) / 255, label="predicted")]
    return [Patch(color=np.array(c) / 255, label=name) for c, name in
            ((TP_RGB, "true positive"), (FP_RGB, "false positive"), (FN_RGB, "false negative"))]


def gallery_figure(path: Path, image: np.ndarray, pred: np.ndarray, truth: np.ndarray | None, probs: np.ndarray,
                   title: str, threshold: float) -> Path:
    """Two panels side by side: the TP/FP/FN overlay (or the prediction alone) and the probability map with
    a colour bar and the threshold contour."""
    plt = pyplot()
    h, w = image.shape[:2]
    panel = 5.0
    fig, axes = plt.subplots(1, 2, figsize=(2 * panel * min(max(w / h, 0.5), 2.0) + 1.2, panel),
                             gridspec_kw={"wspace": 0.05})
    axes[0].imshow(confusion_overlay(image, pred, truth))
    axes[0].legend(handles=_legend_handles(truth is not None), loc="lower left", fontsize=8, framealpha=0.8)
    axes[0].set_title(title, fontsize=10)
    shown = axes[1].imshow(probs, cmap=PROB_CMAP, vmin=0, vmax=1)
    axes[1].set_title(f"probability (threshold {threshold:g}: white mark on the bar)", fontsize=10)
    bar = fig.colorbar(shown, ax=axes[1], fraction=0.046, pad=0.02, label="probability manipulated")
    bar.ax.axhline(threshold, color="white", lw=2)
    for ax in axes:
        ax.axis("off")
    return save_figure(fig, path)


def training_curves(out_dir: Path, rows: list[dict]) -> list[str]:
    plt = pyplot()

    def column(name):
        return [float(r[name]) if r.get(name) not in (None, "") else np.nan for r in rows]

    epochs = column("epoch")
    fig, axes = plt.subplots(1, 2, figsize=(12, 3.8))
    for key in ("train_loss", "val_loss"):
        axes[0].plot(epochs, column(key), marker="o", ms=3, label=key.replace("_", " "))
    axes[0].set_xlabel("epoch"), axes[0].set_ylabel("BCE + Dice loss"), axes[0].set_title("Loss")
    for key in ("val_dice", "val_iou", "val_f1"):
        if key in rows[0]:
            axes[1].plot(epochs, column(key), marker="o", ms=3, label=key.replace("_", " "))
    axes[1].set_xlabel("epoch"), axes[1].set_ylim(0, 1), axes[1].set_title("Validation metrics (threshold 0.5)")
    for ax in axes:
        ax.legend(), ax.grid(alpha=0.3)
    return [save_figure(fig, out_dir / "training_curves.png").name]


def pixel_pr_roc(path: Path, histogram, summary: dict, threshold: float) -> Path:
    """Pixel precision-recall (with average precision and the prevalence line) beside the pixel ROC."""
    plt = pyplot()
    curves = histogram.curves()
    tp, fp, fn, tn = histogram.counts_at(threshold)
    fig, (pr, roc) = plt.subplots(1, 2, figsize=(11, 4.8))
    pr.plot(curves["recall"], curves["precision"], lw=1.5, color="#0072B2", label="model")
    prevalence = summary["pixel_prevalence"]
    pr.axhline(prevalence, ls="--", color="grey", label=f"prevalence {prevalence:.3f} (random guess)")
    pr.plot([tp / max(tp + fn, 1)], [tp / max(tp + fp, 1)], "o", color="#D55E00", label=f"threshold {threshold:g}")
    pr.set_title(f"Pixel precision-recall (average precision {summary['pixel_average_precision']:.3f})")
    pr.set_xlabel("recall (pixels)"), pr.set_ylabel("precision (pixels)")
    roc.plot(curves["fpr"], curves["tpr"], lw=1.5, color="#0072B2", label="model")
    roc.plot([0, 1], [0, 1], ls="--", color="grey", label="chance")
    roc.plot([fp / max(fp + tn, 1)], [tp / max(tp + fn, 1)], "o", color="#D55E00", label=f"threshold {threshold:g}")
    roc.set_title(f"Pixel ROC (AUC {summary['pixel_auc']:.3f})")
    roc.set_xlabel("false-positive rate (pixels)"), roc.set_ylabel("true-positive rate (pixels)")
    for ax in (pr, roc):
        ax.set_xlim(0, 1), ax.set_ylim(0, 1.02), ax.grid(alpha=0.3), ax.legend(fontsize=8, loc="lower right"
                                                                               if ax is roc else "upper right")
    return save_figure(fig, path)


def image_roc_histogram(path: Path, scores: np.ndarray, manipulated: np.ndarray, summary: dict,
                        score_threshold: float) -> Path:
    """Image-level ROC of the image score beside the score histograms of manipulated and untouched images."""
    from inpaintseg.metrics import roc_curve

    plt = pyplot()
    fig, (roc, hist) = plt.subplots(1, 2, figsize=(11, 4.2))
    if manipulated.any() and (~manipulated).any():
        fpr, tpr, _ = roc_curve(scores, manipulated)
        roc.plot(fpr, tpr, marker="o", ms=3, color="#0072B2", label="model")
        roc.plot([0, 1], [0, 1], ls="--", color="grey", label="chance")
        auc = summary["image_auc"]
        roc.set_title("Image-level ROC" + (f" (AUC {auc:.3f})" if auc is not None else ""))
        roc.legend(fontsize=8, loc="lower right")
    else:
        roc.set_title("Image-level ROC: needs manipulated and untouched images")
    roc.set_xlabel("false-positive rate (untouched images flagged)"), roc.set_ylabel("true-positive rate")
    roc.set_xlim(0, 1), roc.set_ylim(0, 1.02), roc.grid(alpha=0.3)
    bins = np.linspace(0, 1, 26)
    hist.hist(scores[manipulated], bins=bins, alpha=0.7, color="#E69F00", label=f"manipulated ({manipulated.sum()})")
    hist.hist(scores[~manipulated], bins=bins, alpha=0.7, color="#56B4E9", label=f"untouched ({(~manipulated).sum()})")
    hist.axvline(score_threshold, color="black", ls="--", label=f"score threshold {score_threshold:g}")
    hist.set_xlabel("image score (mean of the top 1% probabilities)"), hist.set_ylabel("images")
    hist.set_title("Image score by truth"), hist.legend(fontsize=8), hist.grid(alpha=0.3)
    return save_figure(fig, path)


def dice_vs_threshold(path: Path, curve: dict, threshold: float) -> Path:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6.5, 4))
    ax.plot(curve["thresholds"], curve["dice_mean"], color="#0072B2")
    ax.axvline(threshold, color="#D55E00", ls="--", label=f"threshold used {threshold:g}")
    ax.plot([curve["best_threshold"]], [curve["best_dice_mean"]], "o", color="#009E73",
            label=f"best {curve['best_dice_mean']:.3f} at {curve['best_threshold']:.2f}")
    ax.set_xlabel("pixel threshold"), ax.set_ylabel("mean Dice per image"), ax.set_xlim(0, 1), ax.set_ylim(0, 1)
    ax.set_title("Dice vs threshold (from the 8-bit probability maps)"), ax.grid(alpha=0.3), ax.legend(fontsize=8)
    return save_figure(fig, path)


def score_histogram(path: Path, scores: np.ndarray, score_threshold: float) -> Path:
    """Prediction-only report: the distribution of image scores."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6.5, 4))
    ax.hist(scores, bins=np.linspace(0, 1, 26), color="#0072B2", alpha=0.8)
    ax.axvline(score_threshold, color="black", ls="--", label=f"score threshold {score_threshold:g}")
    ax.set_xlabel("image score (mean of the top 1% probabilities)"), ax.set_ylabel("images")
    ax.set_title("Image scores"), ax.legend(fontsize=8), ax.grid(alpha=0.3)
    return save_figure(fig, path)
