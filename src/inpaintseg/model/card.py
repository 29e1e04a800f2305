"""A model's card in plain lines: what it was trained on, how long, and what it scores.

Reads two optional sections of config.json: `recipe` (written by recipes/base.py: engine arguments, photo
sources, chunks with steps, images seen, machine and wall time) and `card` (the measured scores of
recipes/base_card.py: fresh engine test set next to the baselines, untouched photos, the real rows, robustness).
A model trained by `inpaintseg train` has neither; its card says what its validation gave.
"""

from __future__ import annotations

from collections.abc import Mapping


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.1f} %"


def _num(value: float | None) -> str:
    return "n/a" if value is None or value != value else f"{value:.3f}"


def training_lines(recipe: Mapping, brief: bool = False) -> list[str]:
    chunks = recipe.get("chunks", [])
    engine = recipe.get("engine", {}).get("arguments", {})
    photos = [p.get("package") or p.get("source") for p in recipe.get("photos", [])]
    lines = [f"trained on: {engine.get('n_train', '?')} engine images ({engine.get('size', '?')} px, all families, "
             f"data seed {recipe.get('data_seed', '?')}); photos: {'; '.join(str(p) for p in photos)}",
             f"training: {len(chunks)} chunk(s), {recipe.get('optimizer_steps_total', '?'):,} optimiser steps, "
             f"{recipe.get('images_seen_total', '?'):,} images seen"]
    for c in [] if brief else chunks:
        lines.append(f"  chunk {c.get('chunk')}: {c.get('epochs')} epochs, {c.get('optimizer_steps')} steps, "
                     f"{c.get('train_seconds', 0) / 60:.0f} min on {c.get('machine')} ({c.get('precision')}), "
                     f"{c.get('date')}")
    return lines


def score_lines(card: Mapping, brief: bool = False) -> list[str]:
    lines = []
    for key, what in (("fresh_test", "fresh engine test set"),
                      ("current_engine_test", "test set of the current data engine, methods it never saw included")):
        row = card.get(key)
        if row:
            base = row.get("baselines", {})
            lines.append(f"{what} ({row.get('n')} images): Dice {_num(row.get('dice_mean'))} (all-full "
                         f"{_num(base.get('all-full'))}, all-empty {_num(base.get('all-empty'))}), pixel AUC "
                         f"{_num(row.get('pixel_auc'))}, image AUC {_num(row.get('image_auc'))}")
    untouched = card.get("untouched")
    if untouched:
        lines.append(f"untouched photos ({untouched.get('n')}): false alarms {_pct(untouched.get('false_alarm_rate'))}, "
                     f"mean false-positive area {_pct(untouched.get('fp_area_mean'))}")
    robust = card.get("robustness") or {}
    if robust:
        rows = ", ".join(f"{k} {_num(v)}" for k, v in robust.items() if k not in ("n", "settings"))
        lines.append(f"robustness (Dice, {robust.get('n', '?')} images, {robust.get('settings', 'stored settings')}): {rows}")
    if card.get("real_rows") and card.get("real_settings"):
        lines.append(f"real rows at {card['real_settings']}:")
    for row in card.get("real_rows", []):
        if brief and row["name"].startswith("realinpaint/") and " " not in row["name"]:
            continue  # the brief card keeps the summary rows ("pooled ...", "mean of ..."), not each folder
        lines.append(f"{row['name']} ({row.get('n')} images): Dice {_num(row.get('dice_mean'))}, pixel AUC "
                     f"{_num(row.get('pixel_auc'))}, image AUC {_num(row.get('image_auc'))}")
    for limit in card.get("limits", []):
        lines.append(f"limit: {limit}")
    return lines


def card_lines(config: Mapping, brief: bool = False) -> list[str]:
    """The card of a model from its config.json (empty sections give a short note); `brief` (the service page)
    leaves out the per-chunk lines and the per-folder real rows."""
    lines = []
    if config.get("recipe"):
        lines += training_lines(config["recipe"], brief)
    if config.get("card"):
        lines += score_lines(config["card"], brief)
    if not lines:
        record = (config.get("postprocess") or {}).get("verdicts") or {}
        dice = record.get("model_dice")
        note = f"validation Dice {dice:.3f}" if dice is not None else "no recorded scores"
        lines.append(f"trained by `inpaintseg train` ({note}); no model card")
    return lines
