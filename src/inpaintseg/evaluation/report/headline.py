"""The report's opening: a headline paragraph that states the conclusion (better or worse than the trivial
baselines, by how much, where the model fails most, how its image-level decision fares) from the evaluation
summary it renders, so the headline and the tables below can never disagree."""

from __future__ import annotations

from inpaintseg.evaluation.report.page import BREAKDOWN_LABELS, esc

MIN_GROUP = 2  # a breakdown group needs this many images to be called the model's weakest


def _versus(model: float, name: str, value: float) -> str:
    if abs(model - value) < 5e-4:
        return f"level with {name} ({value:.3f})"
    return f"{'better' if model > value else 'worse'} than {name} ({value:.3f}) by {abs(model - value):.3f}"


def weakest_group(summary: dict) -> tuple[str, str, dict] | None:
    """(breakdown, group, {"n", "dice_mean"}) with the lowest mean Dice among groups of >= MIN_GROUP images."""
    groups = [(key, name, info) for key, table in summary.items() if key.startswith("by_")
              for name, info in table.items() if info.get("n", 0) >= MIN_GROUP]
    return min(groups, key=lambda g: (g[2]["dice_mean"], g[0], g[1])) if groups else None


def headline(summary: dict, baselines: dict, score_threshold: float) -> str:
    """The headline section's HTML (module docstring)."""
    n, n_man, n_unt = summary["n_images"], summary["n_manipulated"], summary["n_untouched"]
    dice = summary["dice_mean"]
    empty = baselines.get("all-empty", {}).get("dice_mean")
    full = baselines.get("all-full", {}).get("dice_mean")
    trivial = [(name, value) for name, value in (("every mask empty", empty), ("every mask full", full))
               if value is not None]
    best_name, best_value = max(trivial, key=lambda t: t[1]) if trivial else (None, None)
    if best_value is None:
        conclusion = ""
    elif dice > best_value + 5e-4:
        conclusion = "<strong>The model beats both trivial answers.</strong>"
    else:
        conclusion = (f"<strong>The model does not beat the trivial answer '{best_name}'</strong> "
                      f"(mean Dice {dice:.3f} vs {best_value:.3f}): on these images its masks are weaker evidence "
                      "than that answer.")
    comparisons = "; ".join(_versus(dice, name, value) for name, value in trivial)
    paragraphs = [f"On {n} images ({n_man} manipulated, {n_unt} untouched) the model's mean Dice (the competition "
                  f"score, 0 to 1) is <strong>{dice:.3f}</strong>: {comparisons}. {conclusion}"]
    weakest = weakest_group(summary)
    if weakest is not None:
        key, name, info = weakest
        paragraphs.append(f"It fails most on {esc(BREAKDOWN_LABELS.get(key, key))} <strong>{esc(name)}</strong>: "
                          f"mean Dice {info['dice_mean']:.3f} over {info['n']} images (see the breakdowns).")
    fp = summary["false_positive"]
    flagged = summary.get("manipulated_images_flagged")
    image_level = [f"At the image threshold {score_threshold:g}"]
    if flagged is not None and n_man:
        image_level.append(f"it flags {flagged} of {n_man} manipulated images ({100 * flagged / n_man:.0f}%)")
    if fp.get("images_flagged_manipulated") is not None and n_unt:
        k = fp["images_flagged_manipulated"]
        image_level.append(f"and {k} of {n_unt} untouched images ({100 * k / n_unt:.0f}%, false alarms)")
    auc = summary.get("image_auc")
    paragraphs.append(" ".join(image_level) + (f"; image ROC AUC {auc:.3f}." if auc is not None else "."))
    return "<section class='headline'><h2>Headline</h2>" + "".join(f"<p>{p}</p>" for p in paragraphs) + "</section>"
