"""Explanatory figures of the report: what DenseCRF and TTA do to a few images. They run the network
again on those images (one view at a time) to show intermediate maps; no reported number comes from here
except each figure's own per-image Dice."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from inpaintseg import fileio
from inpaintseg.evaluation.report.figures import PROB_CMAP, confusion_overlay, pyplot, save_figure
from inpaintseg.metrics import mask_dice


def crf_effect(path: Path, samples: list, predictor, threshold: float) -> list[dict] | None:
    """The same probability map (no TTA) before and after each DenseCRF preset, as TP/FP/FN overlays;
    returns the per-image Dice table, or None when pydensecrf is not installed. ``samples``: (stem, image
    path, mask path)."""
    from inpaintseg.inference import crf

    if not crf.crf_available():
        return None
    plt = pyplot()
    variants = list(crf.CRF_VARIANTS)
    fig, axes = plt.subplots(len(samples), 1 + len(variants), figsize=(4 * (1 + len(variants)), 4 * len(samples)),
                             squeeze=False)
    table = []
    for row, (stem, image_path, mask_path) in zip(axes, samples):
        image, truth = fileio.read_image(image_path), fileio.read_mask(mask_path)
        probs = predictor.predict_proba(image)
        base = mask_dice(probs >= threshold, truth)
        entry = {"image": stem, "no CRF": base}
        row[0].imshow(confusion_overlay(image, probs >= threshold, truth))
        row[0].set_title(f"{stem}, no CRF: Dice {base:.3f}", fontsize=9)
        for ax, name in zip(row[1:], variants):
            refined = crf.refine(image, probs, crf.CRF_PRESETS[name])
            d = mask_dice(refined >= threshold, truth)
            entry[f"CRF {name}"] = d
            ax.imshow(confusion_overlay(image, refined >= threshold, truth))
            ax.set_title(f"CRF {name}: Dice {d:.3f} ({d - base:+.3f})", fontsize=9)
        for ax in row:
            ax.axis("off")
        table.append(entry)
    save_figure(fig, path)
    return table


def numpy_view(view, image: np.ndarray, inverse: bool = False) -> np.ndarray:
    """Apply (or undo) a TTA view to an (H, W, ...) array; axes 2/3 of the tensor view are 0/1 here."""
    axes = tuple(a - 2 for a in view.flip)
    if not inverse:
        out = np.flip(image, axis=axes) if axes else image
        return np.ascontiguousarray(np.rot90(out, view.rot, axes=(0, 1)))
    out = np.rot90(image, -view.rot, axes=(0, 1))
    return np.ascontiguousarray(np.flip(out, axis=axes) if axes else out)


def view_name(view) -> str:
    parts = {(3,): "h-flip", (2,): "v-flip", (2, 3): "hv-flip"}.get(tuple(view.flip), "")
    rot = f"rot{90 * view.rot}" if view.rot else ""
    return " + ".join(p for p in (parts, rot) if p) or "identity"


def tta_views(path: Path, sample, model, device: str, tta: str, threshold: float) -> Path:
    """Each view's probability map (mapped back to the original frame) and their mean."""
    from inpaintseg.inference import Predictor
    from inpaintseg.inference import tta_views as views_of

    plt = pyplot()
    stem, image_path, mask_path = sample
    mode = tta if tta != "none" else "flip"
    single = Predictor(model.network, model.config, device=device, tta="none")
    image, truth = fileio.read_image(image_path), fileio.read_mask(mask_path)
    maps = []
    for view in views_of(mode):
        probs = single.predict_proba(numpy_view(view, image))
        maps.append((view_name(view), numpy_view(view, probs, inverse=True)))
    mean = np.mean([m for _, m in maps], axis=0)
    panels = maps + [("mean of views", mean)]
    cols = min(5, len(panels) + 1)
    rows = int(np.ceil((len(panels) + 1) / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 3.2 * rows), squeeze=False)
    flat = axes.ravel()
    flat[0].imshow(confusion_overlay(image, mean >= threshold, truth))
    flat[0].set_title(f"{stem}: mean of views vs truth", fontsize=9)
    for ax, (name, m) in zip(flat[1:], panels):
        shown = ax.imshow(m, cmap=PROB_CMAP, vmin=0, vmax=1)
        ax.set_title(f"{name} (Dice {mask_dice(m >= threshold, truth):.3f})", fontsize=9)
    fig.colorbar(shown, ax=list(flat), fraction=0.02, pad=0.01, label="probability")
    for ax in flat:
        ax.axis("off")
    return save_figure(fig, path)
