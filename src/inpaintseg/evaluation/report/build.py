"""`write_report`: predict a set of images the way `inpaintseg predict` does (`predict_folder`, the model's
stored post-processing, DenseCRF included), score them with `evaluate_detailed` (the code behind
`inpaintseg evaluate`) and render what that returned. No number on the page is computed anywhere else:
``REPORT_DIR/evaluation.json`` is the evaluation rendered, equal to `inpaintseg evaluate --json` on the files
in ``REPORT_DIR/predictions/``.
"""

from __future__ import annotations

import datetime
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from inpaintseg import __version__, fileio
from inpaintseg.data.split import even_subset
from inpaintseg.errors import InpaintsegError, name_list
from inpaintseg.evaluation.report import explain, figures
from inpaintseg.evaluation.report.headline import headline
from inpaintseg.evaluation.report.page import (breakdown_table, esc, figure, key_values, metrics_table, page,
                                               table)
from inpaintseg.run_dir import METRICS_FILE, MODEL_DIR, REPORT_DIR, SPLIT_FILE, read_metric_rows

REPORT_FILE = "report.html"
EVALUATION_FILE = "evaluation.json"
BASELINES_FILE = "baselines.json"
PREDICTIONS_DIR = "predictions"
GALLERY_DIR = "gallery"
N_EXPLAIN = 3  # images in the DenseCRF figure


@dataclass
class PredictionFiles:
    """Predictions already written by `predict_folder` with the model's stored post-processing (the demo
    passes its own so the test images are not predicted twice)."""

    submission: Path
    masks_dir: Path
    probs_dir: Path


@dataclass
class Sample:
    stem: str
    image_path: Path
    mask_path: Path | None


def _pick_images(run_dir: Path, model_config: dict, images_dir, truth_dir):
    """(samples, truth folder or None, description, meta.json or None) of the images to report on."""
    from inpaintseg.data import pair_files, select_stems
    from inpaintseg.data.datamodule import dataset_root
    from inpaintseg.synth.engine import META_FILE

    def found(images: Path, masks: Path | None, description: str, meta: Path):
        samples = [Sample(s.stem, s.image_path, s.mask_path) for s in pair_files(images, masks)]
        return samples, masks, description, meta if meta.is_file() else None

    if images_dir is not None:
        images_dir = Path(images_dir)
        return found(images_dir, Path(truth_dir) if truth_dir else None, str(images_dir),
                     images_dir.parent / META_FILE)
    if truth_dir is not None:
        raise InpaintsegError("truth_dir needs images_dir (the images whose masks these are).",
                              params=["truth_dir", "images_dir"])
    root = dataset_root(model_config.get("data", {}).get("data_dir", ""))
    test_images, test_masks = root / "test" / "images", root / "test" / "masks"
    if test_images.is_dir() and test_masks.is_dir():
        return found(test_images, test_masks, f"test split {test_images}", root / "test" / META_FILE)
    split_file = run_dir / SPLIT_FILE
    train_images, train_masks = root / "train" / "images", root / "train" / "masks"
    if split_file.is_file() and train_images.is_dir() and train_masks.is_dir():
        samples, masks, _, meta = found(train_images, train_masks, "", root / "train" / META_FILE)
        stems = json.loads(split_file.read_text())["val"]
        select_stems([s for s in pair_files(train_images, train_masks)], stems, str(split_file))  # names unknown ones
        return [s for s in samples if s.stem in set(stems)], masks, f"validation split of {root}", meta
    raise InpaintsegError(
        f"{run_dir}: found no images to report on (looked for {test_images} with {test_masks}, and the "
        f"validation split in {split_file}). Pass images_dir (and truth_dir to score them).",
        params=["images_dir", "truth_dir"])


def _header(model, run_dir: Path, post, source: str, n_images: int, device: str, score_threshold: float) -> str:
    import torch

    config = model.config
    arch = config.get("architecture", {})
    data, training = config.get("data", {}), config.get("training", {})
    params = sum(p.numel() for p in model.network.parameters())
    shape = ", ".join(f"{k} {arch[k]}" for k in ("encoder", "base_channels", "depth", "attention") if k in arch)
    inp = config.get("input", {})
    rows = [
        ("model", f"{arch.get('name', '?')} ({shape}; {params:,} parameters); input {inp.get('mode')} "
                  f"{inp.get('size')}; {run_dir / MODEL_DIR}"),
        ("trained on", f"{data.get('data_dir', '?')}: {data.get('n_train', '?')} train / {data.get('n_val', '?')} "
                       "validation images"),
        ("training", f"{training.get('epochs_completed', '?')} epoch{'' if training.get('epochs_completed') == 1 else 's'}"
                     f" (best epoch {training.get('best_epoch', '?')}),"
                     f" {training.get('seconds', '?')} s on {training.get('accelerator', '?')} x"
                     f"{training.get('world_size', 1)}, precision {training.get('precision', '?')}, batch "
                     f"{training.get('batch_size', '?')}, lr {training.get('lr', '?')}"),
        ("versions at training", f"inpaintseg {training.get('inpaintseg', '?')}, torch {training.get('torch', '?')}, "
                                 f"lightning {training.get('lightning', '?')}"),
        ("this report", f"{datetime.datetime.now().astimezone().isoformat(timespec='seconds')}; device {device}; "
                        f"inpaintseg {__version__}, torch {torch.__version__}"),
        ("images", f"{n_images} from {source}"),
        ("post-processing", f"{post.describe()} (as `inpaintseg predict` applies it)"),
        ("image-level decision", f"manipulated when the image score (mean of the top 1% probabilities) >= "
                                 f"{score_threshold:g}"),
    ]
    return "<h2>Run</h2>" + key_values(rows)


def run_folder(path: Path) -> Path:
    """The training run folder of ``path``: itself, or its parent when ``path`` is the run's model/ folder."""
    from inpaintseg.model.io import CONFIG_FILE

    if not path.is_dir():
        raise InpaintsegError(f"{path}: run folder not found. Pass the folder a training run wrote "
                              "(`inpaintseg train --out`).")
    if not (path / MODEL_DIR).is_dir() and (path / CONFIG_FILE).is_file() and path.name == MODEL_DIR:
        return path.parent  # runs/x/model -> runs/x
    if not (path / MODEL_DIR).is_dir():
        hint = [p.parent for p in sorted(path.glob(f"*/{MODEL_DIR}/{CONFIG_FILE}"))[:3]]
        raise InpaintsegError(f"{path}: not a training run folder (no {MODEL_DIR}/ folder in it)."
                              + (f" Did you mean {' or '.join(map(str, hint))}?" if hint else
                                 " Pass the folder a training run wrote (`inpaintseg train --out`)."))
    return path


def _run_and_model(value, images_dir, out_dir) -> tuple[Path, Path]:
    """(run folder, model folder): a training run's, or for the shipped `base` detector its package folder for
    both (it has no training curves; the images and the output folder must then be given)."""
    from inpaintseg.model.shipped import is_shipped_name, shipped_dir

    if is_shipped_name(value):
        if images_dir is None or out_dir is None:
            raise InpaintsegError(f"{value} is the shipped detector, not a training run: pass the images to report "
                                  "on (images_dir, with truth_dir for scores) and an output folder (out_dir).",
                                  params=["images_dir", "truth_dir", "out_dir"])
        folder = shipped_dir(str(value))
        return folder, folder
    run_dir = run_folder(Path(value))
    return run_dir, run_dir / MODEL_DIR


def report_title(model, run_dir: Path) -> str:
    """'inpaintseg report: model RUN (AttentionUNet, resize 256, trained on 216 images of DATA)'."""
    config = model.config
    arch, inp, data = config.get("architecture", {}), config.get("input", {}), config.get("data", {})
    trained = (f", trained on {data.get('n_train')} images of '{Path(str(data['data_dir'])).name}'"
               if data.get("data_dir") and data.get("n_train") else "")
    return (f"inpaintseg report: model '{run_dir.resolve().name}' ({arch.get('name', '?')}, input "
            f"{inp.get('mode', '?')} {inp.get('size', '?')}{trained})")


def _gallery_entry(out_dir: Path, kind: str, sample: Sample, pred_masks: Path, probs_dir: Path, threshold: float,
                   caption: str) -> str:
    from inpaintseg.inference.overlays import heatmap_overlay

    gallery = out_dir / GALLERY_DIR
    gallery.mkdir(parents=True, exist_ok=True)
    image = fileio.read_image(sample.image_path)
    truth = fileio.read_mask(sample.mask_path) if sample.mask_path else None
    pred = fileio.read_mask(pred_masks / f"{sample.stem}.png")
    probs = fileio.read_image(probs_dir / f"{sample.stem}.png")[:, :, 0].astype(np.float32) / 255.0
    name = f"{kind}_{sample.stem}"
    figures.gallery_figure(gallery / f"{name}.png", image, pred, truth, probs, f"{sample.stem}: {caption}", threshold)
    fileio.write_png(gallery / f"{name}_overlay.png", figures.confusion_overlay(image, pred, truth))
    fileio.write_png(gallery / f"{name}_heatmap.png", heatmap_overlay(image, probs, threshold))
    h, w = image.shape[:2]
    links = (f"{esc(sample.stem)} ({w}x{h}): {esc(caption)}. Full size: <a href='{GALLERY_DIR}/{esc(name)}"
             f"_overlay.png'>overlay</a>, <a href='{GALLERY_DIR}/{esc(name)}_heatmap.png'>heat map</a>")
    return figure(f"{GALLERY_DIR}/{name}.png", links)


def _gallery(out_dir: Path, title: str, note: str, entries: list[str]) -> str:
    if not entries:
        return f"<h3>{esc(title)}</h3><p class='note'>none</p>"
    return f"<h3>{esc(title)}</h3><p class='note'>{note}</p><div class='gallery'>{''.join(entries)}</div>"


def _calibration(model_config: dict, post) -> str:
    calib = model_config.get("postprocess", {}).get("calibration", {}).get("table", [])
    if not calib:
        return ""
    return ("<h2>Validation calibration</h2><p class='note'>Measured on the validation split at the end of "
            "training; the highlighted row is the choice stored with the model (a costlier step is chosen only when "
            "it gains more than 0.005 Dice).</p>"
            + table(calib, chosen=lambda r: r.get("tta") == post.tta and r.get("crf") == post.crf))


def _evaluation_sections(out_dir: Path, evaluation, baselines: dict, post, score_threshold: float) -> list[str]:
    from inpaintseg.evaluation.evaluate import summary_rows

    summary = evaluation.summary
    rows = [r for r in summary_rows(summary) if not r[0].startswith("by_")]
    base_rows = {name: summary_rows(result) for name, result in baselines.items()}
    warnings = "".join(f"<p class='warning'>{esc(w)}</p>" for w in summary.get("warnings", []))
    parts = ["<h2>Evaluation</h2>" + warnings
             + f"<p class='note'>Computed by <code>inpaintseg evaluate</code>'s code on the files in "
               f"{PREDICTIONS_DIR}/ (this folder's {EVALUATION_FILE} is its --json). {esc(summary['dice_rule'])}. "
               "Baselines: every mask empty, every mask full.</p>" + metrics_table(rows, base_rows)]
    parts.append("<h3>Breakdowns</h3><p class='note'>Mean Dice per group of images; Dice and AUC are scores from "
                 "0 to 1, shares of images or pixels are percentages.</p><div class='breakdowns'>"
                 + "".join(breakdown_table(key, value) for key, value in summary.items() if key.startswith("by_"))
                 + "</div>")
    figs = []
    if evaluation.histogram is not None and summary.get("pixel_average_precision") is not None \
            and summary.get("pixel_auc") is not None:
        figs.append(figure(figures.pixel_pr_roc(out_dir / "pixel_pr_roc.png", evaluation.histogram, summary,
                                                post.threshold).name))
    scores = np.array([r.score for r in evaluation.images])
    manipulated = np.array([r.manipulated for r in evaluation.images])
    figs.append(figure(figures.image_roc_histogram(out_dir / "image_roc_scores.png", scores, manipulated, summary,
                                                   score_threshold).name))
    if "dice_vs_threshold" in summary:
        figs.append(figure(figures.dice_vs_threshold(out_dir / "dice_vs_threshold.png", summary["dice_vs_threshold"],
                                                     post.threshold).name))
    parts.append("<h3>Curves</h3>" + "".join(figs))
    return parts


def write_report(run_dir: str | os.PathLike, images_dir=None, truth_dir=None, out_dir=None, max_images: int = 200,
                 device: str = "auto", n_examples: int = 6, meta=None, predictions: PredictionFiles | None = None,
                 progress: bool = True, masks_dir=None) -> Path:
    """Write RUN_DIR/report/report.html (or OUT_DIR/report.html); return its path. ``masks_dir`` is the old
    name of ``truth_dir``."""
    from inpaintseg.api import load_model
    from inpaintseg.evaluation.evaluate import baseline_submissions, evaluate_detailed
    from inpaintseg.outputs import check_outputs

    truth_dir = truth_dir if truth_dir is not None else masks_dir
    run_dir, model_dir = _run_and_model(run_dir, images_dir, out_dir)
    _check_counts(max_images=max_images, n_examples=n_examples)
    out_dir = Path(out_dir) if out_dir is not None else run_dir / REPORT_DIR
    check_outputs(folders={"out_dir": out_dir}, inputs=(images_dir, truth_dir, meta, model_dir))
    model = load_model(model_dir, device=device)
    post = model.postprocess()
    score_threshold = post.image_threshold
    samples, truth, source, found_meta = _pick_images(run_dir, model.config, images_dir, truth_dir)
    samples = [samples[i] for i in even_subset(len(samples), max_images)]
    meta = meta if meta is not None else found_meta
    pred_dir = out_dir / PREDICTIONS_DIR
    out_dir.mkdir(parents=True, exist_ok=True)

    if predictions is None:
        predictions = _predict_samples(model, samples, pred_dir, progress)
    sections = [_header(model, run_dir, post, source, len(samples), model.device, score_threshold)]
    lead = 0
    by_stem = {s.stem: s for s in samples}
    stems = [s.stem for s in samples]

    if truth is not None:
        evaluation = evaluate_detailed(truth, submission=predictions.submission, probs_dir=predictions.probs_dir,
                                       meta=meta, score_threshold=score_threshold, progress=progress, stems=stems)
        fileio.atomic_write_text(out_dir / EVALUATION_FILE, json.dumps(evaluation.summary, indent=2) + "\n")
        baselines = {name: evaluate_detailed(truth, submission=path, stems=stems).summary
                     for name, path in baseline_submissions(truth, pred_dir, stems).items()}
        fileio.atomic_write_text(out_dir / BASELINES_FILE, json.dumps(baselines, indent=2) + "\n")
        sections.insert(0, headline(evaluation.summary, baselines, score_threshold))
        lead = 1
        sections += _evaluation_sections(out_dir, evaluation, baselines, post, score_threshold)
        sections.append(verdict_section(model, [(r.score, r.manipulated) for r in evaluation.images]))
        sections.append(_examples(out_dir, evaluation, by_stem, predictions, post.threshold, n_examples, model))
    else:
        sections.append(_predictions_only(out_dir, pred_dir / "scores.csv", by_stem, predictions, post.threshold,
                                          score_threshold, n_examples))
    sections.append(_calibration(model.config, post))
    sections += _training_and_explain(out_dir, run_dir, model, post, samples, truth is not None)
    path = out_dir / REPORT_FILE
    fileio.atomic_write_text(path, page(report_title(model, run_dir), sections, lead))
    return path


def _check_counts(**counts) -> None:
    """Each count (parameter name -> value) a whole number >= 1, else an error naming the parameter."""
    for name, value in counts.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise InpaintsegError(f"{name} must be a positive integer, got {value!r}.", params=[name])


def _predict_samples(model, samples: list[Sample], pred_dir: Path, progress: bool) -> PredictionFiles:
    """Predict the samples into PRED_DIR (submission, masks, probability maps, scores) as `inpaintseg predict`
    does; an error naming the images that could not be predicted."""
    from inpaintseg.inference.pipeline import SUBMISSION_FILE, predict_folder

    predictions = PredictionFiles(pred_dir / SUBMISSION_FILE, pred_dir / "masks", pred_dir / "probs")
    done = predict_folder(model, [s.image_path for s in samples], out=predictions.submission,
                          masks_out=predictions.masks_dir, probs_out=predictions.probs_dir,
                          scores_out=pred_dir / "scores.csv", progress=progress)
    if done.failures:
        raise InpaintsegError(f"{len(done.failures)} image(s) could not be predicted: "
                              f"{name_list(m for _, m in done.failures)}. Fix or remove them and run again.")
    return predictions


def _level_order(level: str) -> int:
    from inpaintseg.inference.verdicts import LEVELS, OLD_LEVELS

    order = (*LEVELS, *OLD_LEVELS)
    return order.index(level) if level in order else len(order)


def verdict_section(model, scored: list[tuple[float, bool]]) -> str:
    """How the images fall into the verdict levels (`InpaintModel.verdict`), untouched and manipulated apart,
    and the stored cut-offs with their false-alarm rates on validation."""
    record = (model.config.get("postprocess") or {}).get("verdicts") or {}
    counts: dict[str, list[int]] = {}
    for score, manipulated in scored:
        counts.setdefault(model.verdict(score).level, [0, 0])[int(manipulated)] += 1
    n_unt = sum(not m for _, m in scored) or 1
    n_man = sum(m for _, m in scored) or 1
    rows = [{"verdict": level, "untouched images": f"{u} ({100 * u / n_unt:.0f}%)",
             "manipulated images": f"{m} ({100 * m / n_man:.0f}%)"}
            for level, (u, m) in sorted(counts.items(), key=lambda item: _level_order(item[0]))]
    if record.get("cutoffs"):
        c = record["cutoffs"]
        from inpaintseg.inference.verdicts import false_alarm_rate

        note = (f"Levels chosen on {record['n_untouched']} untouched and {record['n_manipulated']} manipulated "
                f"validation images: likely manipulated from image score {c['likely_manipulated']:.2f} (false-alarm "
                f"rate there {100 * false_alarm_rate(record, c['likely_manipulated']):.0f}%), likely untouched "
                f"below {c['uncertain']:.2f}, uncertain between (cut-offs at <= 5% false alarms / misses on "
                "validation). The rates rest on the validation split's untouched images, so few of them make a "
                "coarse estimate: compare the untouched column below.")
    else:
        from inpaintseg.inference.verdicts import NO_TABLE_NOTE

        note = "Note: " + esc(NO_TABLE_NOTE)
    return f"<h2>Verdicts</h2><p class='note'>{note}</p>" + table(rows)


def _examples(out_dir: Path, evaluation, by_stem: dict, predictions: PredictionFiles, threshold: float,
              n: int, model=None) -> str:
    manipulated = sorted((r for r in evaluation.images if r.manipulated), key=lambda r: (r.dice, r.stem))
    n_worst = min(n, (len(manipulated) + 1) // 2) if len(manipulated) < 2 * n else n  # few images: split them
    worst = manipulated[:n_worst]
    best = list(reversed(manipulated[n_worst:]))[:n]
    alarms = sorted((r for r in evaluation.images if not r.manipulated and r.fp > 0),
                    key=lambda r: (-r.false_positive_fraction, r.stem))[:n]

    def entries(kind: str, results: list, caption) -> list[str]:
        return [_gallery_entry(out_dir, kind, by_stem[r.stem], predictions.masks_dir, predictions.probs_dir,
                               threshold, caption(r)) for r in results]

    def verdict(r) -> str:
        if model is None:
            return ""
        v = model.verdict(r.score)
        return f" ({v.level}" + ("" if v.false_alarm_rate is None else
                                 f"; false-alarm rate {100 * v.false_alarm_rate:.0f}%") + ")"

    def dice_caption(r):
        return f"Dice {r.dice:.3f}, image score {r.score:.3f}{verdict(r)}"

    legend = ("Left: the prediction at threshold {t:g} against the truth, true positives yellow, false positives "
              "reddish purple, false negatives sky blue (Okabe-Ito colours, safe for colour-blind readers). "
              "Right: the probability map. Click a figure to enlarge it; the caption links the overlay and the heat map "
              "at the image's native size.").format(t=threshold)
    n_untouched = sum(not r.manipulated for r in evaluation.images)
    n_marked = sum(not r.manipulated and r.fp > 0 for r in evaluation.images)
    alarm_title = (f"False alarms: {n_marked} of {n_untouched} untouched images "
                   f"({100 * n_marked / max(n_untouched, 1):.0f}%) have any predicted pixel"
                   + (f"; the {len(alarms)} with the largest marked area" if alarms and len(alarms) < n_marked else ""))
    return ("<h2>Examples</h2>"
            + _gallery(out_dir, f"Worst {len(worst)} manipulated images (lowest Dice)", legend,
                       entries("worst", worst, dice_caption))
            + _gallery(out_dir, f"Best {len(best)} manipulated images (highest Dice)", legend,
                       entries("best", best, dice_caption))
            + _gallery(out_dir, alarm_title,
                       "Untouched images (empty truth) where the model marked pixels, largest area first.",
                       entries("false_alarm", alarms,
                               lambda r: f"{r.false_positive_fraction:.2%} of pixels marked, image score "
                                         f"{r.score:.3f}{verdict(r)}")))


def _predictions_only(out_dir: Path, scores_csv: Path, by_stem: dict, predictions: PredictionFiles,
                      threshold: float, score_threshold: float, n: int) -> str:
    import csv

    with open(scores_csv, newline="", encoding="utf-8") as f:
        rows = [{"image": r["ImageId"], "score": float(r["score"]),
                 "marked area": f"{100 * float(r['manipulated_fraction']):.2f}%",
                 "predicted manipulated": "yes" if float(r["score"]) >= score_threshold else "no",
                 "verdict": r.get("verdict", ""),
                 "false-alarm rate": f"{100 * float(r['false_alarm_rate']):.0f}%" if r.get("false_alarm_rate") else "n/a"}
                for r in csv.DictReader(f)]
    rows.sort(key=lambda r: -r["score"])
    scores = np.array([r["score"] for r in rows])
    hist = figures.score_histogram(out_dir / "image_scores.png", scores, score_threshold).name
    top = [_gallery_entry(out_dir, "top", by_stem[r["image"]], predictions.masks_dir, predictions.probs_dir,
                          threshold, f"image score {r['score']:.3f}") for r in rows[:n]]
    flagged = sum(r["predicted manipulated"] == "yes" for r in rows)
    return ("<h2>Predictions (no truth masks given: nothing is scored)</h2>"
            f"<p>{flagged} of {len(rows)} images predicted manipulated (image score >= {score_threshold:g}).</p>"
            + figure(hist) + _gallery(out_dir, f"The {len(top)} highest-scoring images",
                                      "Left: the predicted mask (yellow). Right: the probability map.", top)
            + "<h3>Every image, highest score first</h3>" + table(rows[:500], digits=4))


def _training_and_explain(out_dir: Path, run_dir: Path, model, post, samples: list[Sample], scored: bool) -> list[str]:
    sections = []
    metrics_file = run_dir / METRICS_FILE
    rows = read_metric_rows(metrics_file) if metrics_file.is_file() else []
    if rows:
        sections.append("<h2>Training curves</h2>" + "".join(figure(n) for n in figures.training_curves(out_dir, rows)))
    else:
        sections.append(f"<h2>Training curves</h2><p>{esc(metrics_file)} is missing.</p>")
    with_truth = [s for s in samples if s.mask_path is not None and fileio.read_mask(s.mask_path).any()] if scored else []
    picked = [(s.stem, s.image_path, s.mask_path) for s in (with_truth[i] for i in even_subset(len(with_truth),
                                                                                                N_EXPLAIN))]
    if picked:
        crf_rows = explain.crf_effect(out_dir / "crf_effect.png", picked, model.predictor("none"), post.threshold)
        if crf_rows is None:
            sections.append("<h2>DenseCRF effect</h2><p>pydensecrf is not installed "
                            "(<code>pip install 'inpaintseg[crf]'</code>), so this section is empty.</p>")
        else:
            sections.append("<h2>DenseCRF effect</h2><p class='note'>The same probability map (no TTA) before and "
                            "after DenseCRF with each preset, with each image's Dice change.</p>"
                            + figure("crf_effect.png") + table(crf_rows))
        tta_png = explain.tta_views(out_dir / "tta_views.png", picked[len(picked) // 2], model, model.device,
                                    post.tta, post.threshold)
        sections.append("<h2>TTA aggregation</h2><p class='note'>Each view's probability map, mapped back to the "
                        "original frame, and their mean (the prediction with TTA).</p>" + figure(tta_png.name))
    return sections
