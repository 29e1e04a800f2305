"""The real row: a model folder scored on real deep-generative inpaintings (`../shared/realinpaint`, issue 24).

    .venv/bin/python benchmarks/realinpaint.py --model runs/x/model                 # every folder, every pair
    .venv/bin/python benchmarks/realinpaint.py --model runs/x/model --limit 3 --json real.json
    .venv/bin/python benchmarks/realinpaint.py --baseline smoothness                 # the non-learned floor

Per folder of the data (`<folder>/images/<name>.png`, `masks/<name>.png` with 255 = inpainted,
`originals/<name>.png` when known; see its README) the model predicts every image through the product's own
inference (`inpaintseg.load_model` -> `InpaintModel.predict_batch`: the model's input mode, its stored
TTA/CRF/threshold unless overridden, probabilities back at native resolution), and the table gives:

- n: edited images; n_orig: distinct originals (pairs that share an original count it once);
- Dice: mean per-image Dice of "probability >= the model's threshold" against the mask;
- pixel AUC: ROC AUC of the probabilities of all edited images' pixels of the folder pooled (binned,
  `metrics.PixelHistogram`), and the mean of the per-image pixel AUCs in the JSON;
- image AUC: edited images (positives) against the distinct originals (negatives), by the model's image score
  (`metrics.image_score`); nan when the folder has no originals;
- false alarms on the originals: the share flagged manipulated at the model's image threshold, and the mean
  share of their pixels at or above the pixel threshold (false-positive area).

Two summary rows cover the folders that have originals: "pooled" (every image and original of those folders
together) and "mean of folders" (the unweighted mean of the folder values). The data is for measurement only:
never train, calibrate or tune a setting on it (its README says why).

`--baseline smoothness` scores a non-learned detector instead of a model, the floor a learned one should
beat: a pixel is "filled" where the local noise level (RMS of the grey image minus its 3x3 median, over a
15x15 window) is below the image's median level; probability sigmoid(4 (d - ln 2)) of the log deficit d, so
p >= 0.5 where the image is at least twice as smooth as usual there (the Dice threshold 0.5; image score
`metrics.image_score`, image threshold 0.5). Generated fills are often smoother than a photo's sensor noise.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from inpaintseg import fileio  # noqa: E402
from inpaintseg.errors import DataError, InpaintsegError  # noqa: E402
from inpaintseg.metrics import PixelHistogram, mask_counts, mask_dice, pixel_auc, roc_auc  # noqa: E402

REALINPAINT = ROOT.parent / "shared" / "realinpaint"
POOLED, FOLDER_MEAN = "pooled (folders with originals)", "mean of folders with originals"

# predict(list of uint8 RGB arrays) -> one (probability float32 (H, W), image score) per array
PredictFn = Callable[[Sequence[np.ndarray]], Sequence[tuple[np.ndarray, float]]]


@dataclass
class Pair:
    name: str
    image: Path
    mask: Path
    original: Path | None


@dataclass
class Tally:
    """What a set of edited images and originals adds up to (per folder, and pooled over folders)."""

    dice: list[float] = field(default_factory=list)
    image_pixel_auc: list[float] = field(default_factory=list)
    edited_scores: list[float] = field(default_factory=list)   # edited images that have an original
    original_scores: list[float] = field(default_factory=list)
    original_flagged: list[int] = field(default_factory=list)
    original_fp_area: list[float] = field(default_factory=list)
    pixels: PixelHistogram = field(default_factory=PixelHistogram)

    def add(self, other: Tally) -> None:
        for name in ("dice", "image_pixel_auc", "edited_scores", "original_scores", "original_flagged",
                     "original_fp_area"):
            getattr(self, name).extend(getattr(other, name))
        self.pixels.positive += other.pixels.positive
        self.pixels.negative += other.pixels.negative

    def row(self) -> dict:
        originals = len(self.original_scores)
        return {
            "n": len(self.dice), "n_originals": originals,
            "dice_mean": _mean(self.dice), "pixel_auc": self.pixels.auc(),
            "pixel_auc_image_mean": _mean([a for a in self.image_pixel_auc if not math.isnan(a)]),
            "image_auc": roc_auc(self.edited_scores + self.original_scores,
                                 [1] * len(self.edited_scores) + [0] * originals),
            "false_alarm_rate": _mean(self.original_flagged), "false_alarm_area": _mean(self.original_fp_area),
        }


def _mean(values: Sequence[float]) -> float:
    return float(np.mean(values)) if len(values) else float("nan")


# ------------------------------------------------------------------------------------------ the data
def list_folders(data: Path, only: Sequence[str] | None = None) -> list[Path]:
    """The generator folders of the data (those with images/), sorted; `only` picks some by name."""
    if not data.is_dir():
        raise DataError(f"{data}: real-inpainting folder not found. Pass --data DIR (the default is "
                        f"../shared/realinpaint beside the repository).")
    folders = sorted(p for p in data.iterdir() if (p / "images").is_dir())
    if only:
        unknown = sorted(set(only) - {p.name for p in folders})
        if unknown:
            raise DataError(f"--folders: {', '.join(unknown)} not in {data} (it has: "
                            f"{', '.join(p.name for p in folders)}).")
        folders = [p for p in folders if p.name in only]
    if not folders:
        raise DataError(f"{data}: no <folder>/images/ inside; expected the layout of ../shared/realinpaint.")
    return folders


def list_pairs(folder: Path, limit: int | None = None) -> list[Pair]:
    """The folder's (image, mask, original-or-None) triples sorted by name, the first `limit` of them."""
    pairs = []
    for image in sorted((p for p in (folder / "images").iterdir() if fileio.is_image_file(p)), key=lambda p: p.stem):
        mask = folder / "masks" / f"{image.stem}.png"
        if not mask.is_file():
            raise DataError(f"{image}: no mask {mask}. Each images/<name> needs masks/<name>.png (255 = inpainted).")
        originals = sorted((folder / "originals").glob(f"{image.stem}.*")) if (folder / "originals").is_dir() else []
        pairs.append(Pair(image.stem, image, mask, next((p for p in originals if fileio.is_image_file(p)), None)))
    return pairs[:limit] if limit else pairs


# ------------------------------------------------------------------------------------------ scoring
def _mask(probs: np.ndarray, score: float, threshold: float, gate: float | None) -> np.ndarray:
    """The mask predict writes: probability >= threshold, empty when the score is below the image gate."""
    if gate is not None and score < gate:
        return np.zeros(probs.shape, dtype=bool)
    return probs >= threshold


def score_folder(folder: Path, predict: PredictFn, threshold: float, score_threshold: float,
                 limit: int | None = None, batch_size: int = 8, gate: float | None = None) -> Tally:
    """Predict a folder's edited images and distinct originals with `predict`; tally the metrics.
    `threshold`: the pixel threshold (mask = probability >= it); `score_threshold`: the image-level one;
    `gate`: the image gate (`inference.gate`: a score below it leaves the mask empty; None = no gate)."""
    pairs = list_pairs(folder, limit)
    tally = Tally()
    for start in range(0, len(pairs), batch_size):
        batch = pairs[start:start + batch_size]
        images = [fileio.read_image(p.image) for p in batch]
        for pair, image, (probs, score) in zip(batch, images, predict(images)):
            truth = fileio.read_mask(pair.mask)
            if truth.shape != probs.shape:
                raise DataError(f"{pair.mask}: mask is {truth.shape[1]}x{truth.shape[0]} but its image "
                                f"{pair.image.name} is {image.shape[1]}x{image.shape[0]}; they must match.")
            tally.dice.append(mask_dice(_mask(probs, score, threshold, gate), truth))
            tally.image_pixel_auc.append(pixel_auc(probs, truth))
            tally.pixels.update(probs, truth)
            if pair.original is not None:
                tally.edited_scores.append(float(score))
    originals = _distinct_originals([p.original for p in pairs if p.original is not None])
    for start in range(0, len(originals), batch_size):
        batch = originals[start:start + batch_size]
        for probs, score in predict(batch):
            tally.original_scores.append(float(score))
            tally.original_flagged.append(int(score >= score_threshold))
            _, fp, _, tn = mask_counts(_mask(probs, score, threshold, gate), np.zeros(probs.shape, bool))
            tally.original_fp_area.append(fp / max(fp + tn, 1))
    return tally


def _distinct_originals(paths: Sequence[Path]) -> list[np.ndarray]:
    """The originals' pixels, each distinct image once (several pairs of a folder may share an original:
    counting it once per pair would weight that photo more in the image AUC and the false alarms)."""
    seen, out = set(), []
    for path in paths:
        pixels = fileio.read_image(path)
        key = hashlib.sha1(pixels.tobytes() + str(pixels.shape).encode()).hexdigest()
        if key not in seen:
            seen.add(key)
            out.append(pixels)
    return out


def score_data(data: Path, predict: PredictFn, threshold: float, score_threshold: float,
               limit: int | None = None, folders: Sequence[str] | None = None, batch_size: int = 8,
               log: Callable[[str], None] | None = None, gate: float | None = None) -> dict:
    """Every folder's row, plus the pooled and mean-of-folders rows over the folders with originals."""
    rows, pooled, with_originals = {}, Tally(), []
    for folder in list_folders(data, folders):
        t0 = time.perf_counter()
        tally = score_folder(folder, predict, threshold, score_threshold, limit, batch_size, gate)
        rows[folder.name] = {**tally.row(), "seconds": round(time.perf_counter() - t0, 1)}
        if tally.original_scores:
            pooled.add(tally)
            with_originals.append(rows[folder.name])
        if log:
            log(f"{folder.name}: {format_row(rows[folder.name])}")
    summary = {}
    if with_originals:
        summary[POOLED] = pooled.row()
        summary[FOLDER_MEAN] = {key: _mean([r[key] for r in with_originals if not math.isnan(r[key])])
                                for key in ("dice_mean", "pixel_auc", "pixel_auc_image_mean", "image_auc",
                                            "false_alarm_rate", "false_alarm_area")}
        summary[FOLDER_MEAN].update(n=sum(r["n"] for r in with_originals),
                                    n_originals=sum(r["n_originals"] for r in with_originals))
    return {"folders": rows, "summary": summary}


# ------------------------------------------------------------------------------------------ output
def _fmt(value: float, digits: int = 3) -> str:
    return "n/a" if value is None or math.isnan(value) else f"{value:.{digits}f}"


def format_row(row: dict) -> str:
    return (f"n {row['n']}, Dice {_fmt(row['dice_mean'])}, pixel AUC {_fmt(row['pixel_auc'])}, "
            f"image AUC {_fmt(row['image_auc'])}, false alarms {_fmt(row['false_alarm_rate'], 2)}")


def markdown_table(result: dict) -> str:
    lines = ["| folder | n | originals | Dice | pixel AUC | image AUC | flagged originals | FP area on originals |",
             "|---|--:|--:|--:|--:|--:|--:|--:|"]
    for name, row in [*result["folders"].items(), *result["summary"].items()]:
        bold = "**" if name in result["summary"] else ""
        lines.append(f"| {bold}{name}{bold} | {row['n']} | {row['n_originals']} | {_fmt(row['dice_mean'])} | "
                     f"{_fmt(row['pixel_auc'])} | {_fmt(row['image_auc'])} | {_fmt(row['false_alarm_rate'], 2)} | "
                     f"{_fmt(row['false_alarm_area'], 4)} |")
    return "\n".join(lines)


def _jsonable(value):
    """nan (a folder without originals has no image AUC) -> null: standard JSON has no NaN."""
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


def model_predictor(model, tta=None, crf=None, threshold=None, score_threshold=None,
                    gate=None) -> tuple[PredictFn, object]:
    """A `PredictFn` over an `InpaintModel` (its stored post-processing unless overridden) and the
    resolved `PostProcess` (thresholds, gate)."""
    post = model.postprocess(threshold=threshold, tta=tta, crf=crf, score_threshold=score_threshold, gate=gate)

    def predict(images):
        return [(p.probability, p.score) for p in model.predict_batch(images, threshold=post.threshold,
                                                                       tta=post.tta, crf=post.crf)]
    return predict, post


SMOOTHNESS_WINDOW = 15
SMOOTHNESS_SLOPE = 4.0


def smoothness_map(image: np.ndarray) -> np.ndarray:
    """The smoothness baseline's probability map (module docstring). Shape: (H, W, 3) uint8 -> (H, W) float32."""
    import cv2

    grey = image.astype(np.float32).mean(axis=2)
    residual = grey - cv2.medianBlur(grey, 3)
    level = 0.5 * np.log(cv2.blur(residual * residual, (SMOOTHNESS_WINDOW, SMOOTHNESS_WINDOW)) + 1e-3)
    deficit = np.median(level) - level  # > 0: smoother than the image's usual noise
    return (1.0 / (1.0 + np.exp(-SMOOTHNESS_SLOPE * (deficit - math.log(2.0))))).astype(np.float32)


def smoothness_predictor() -> PredictFn:
    from inpaintseg.metrics import image_score

    def predict(images):
        return [(probs, image_score(probs)) for probs in map(smoothness_map, images)]
    return predict


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--model", type=Path, help="model folder (weights.safetensors + config.json)")
    source.add_argument("--baseline", choices=("smoothness",),
                        help="score a non-learned detector instead of a model (module docstring)")
    p.add_argument("--data", type=Path, default=REALINPAINT, help=f"real-inpainting folder (default {REALINPAINT})")
    p.add_argument("--folders", default=None, help="comma-separated subset of the data's folders")
    p.add_argument("--limit", type=int, default=None, help="first N pairs per folder (quick runs)")
    p.add_argument("--json", type=Path, default=None, help="write every number here (JSON)")
    p.add_argument("--tta", default=None, help="override the model's stored TTA (none|flip|d4)")
    p.add_argument("--crf", default=None, help="override the model's stored CRF (off|gaussian|seed|on)")
    p.add_argument("--threshold", default=None, help="override the model's pixel threshold")
    p.add_argument("--score-threshold", default=None,
                   help="image-level threshold of the false alarms (default: as predict, the larger of the pixel "
                   "threshold and the gate)")
    p.add_argument("--gate", default=None, help="override the model's image gate (off or a number)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--precision", default="auto")
    args = p.parse_args(argv)
    if args.limit is not None and args.limit < 1:
        p.error(f"--limit must be >= 1, got {args.limit}")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    from inpaintseg.api import load_model

    try:
        if args.baseline:
            predict, threshold, score_threshold, gate = smoothness_predictor(), 0.5, 0.5, None
            setup = {"baseline": args.baseline, "threshold": threshold, "score_threshold": score_threshold}
            print(f"baseline {args.baseline}; data {args.data}", flush=True)
        else:
            model = load_model(args.model, device=args.device, batch_size=args.batch_size, precision=args.precision)
            predict, post = model_predictor(model, args.tta, args.crf, args.threshold, args.score_threshold,
                                            args.gate)
            threshold, score_threshold, gate = post.threshold, post.image_threshold, post.gate
            setup = {"model": str(args.model), "precision": model.precision,
                     "postprocess": {"tta": post.tta, "crf": post.crf, "threshold": post.threshold,
                                     "score_threshold": score_threshold}}
            print(f"model {args.model}: {post.describe()}; data {args.data}"
                  + (f", first {args.limit} pairs per folder" if args.limit else ""), flush=True)
        folders = [f.strip() for f in args.folders.split(",") if f.strip()] if args.folders else None
        t0 = time.perf_counter()
        result = score_data(args.data, predict, threshold, score_threshold, args.limit, folders,
                            args.batch_size, log=lambda line: print(line, flush=True), gate=gate)
    except InpaintsegError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    result["setup"] = {**setup, "data": str(args.data), "limit": args.limit,
                       "seconds": round(time.perf_counter() - t0, 1)}
    print(markdown_table(result))
    if args.json:
        fileio.atomic_write_text(args.json, json.dumps(_jsonable(result), indent=2))
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
