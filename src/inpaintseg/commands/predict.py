"""`inpaintseg predict`: masks, probability maps, image scores and an RLE submission for a folder.

`add_predict_arguments` is shared with the repository's `main.py`, which predicts ./test/images
with the newest run's model.
"""

from __future__ import annotations

import argparse
import csv
import io as _stdio
import sys
from pathlib import Path

from inpaintseg.commands import add_command, int_at_least, threshold_or_auto

TTA_OPTIONS = ("auto", "none", "flip", "d4")
CRF_OPTIONS = ("auto", "off", "gaussian", "seed", "on")
# Listing problems of the images folder that predict tolerates: stray non-image entries are skipped
# (and named); 0-byte files go through like any undecodable image (named at the end, exit 1).
TOLERATED_PROBLEMS = ("entries that are not image files", "empty (0-byte) files")


def add_predict_arguments(p: argparse.ArgumentParser, model_required: bool = True,
                          images_default: str | None = None, out_default: str = "submission.csv") -> None:
    """The predict options; `main.py` reuses them with a default model and images folder."""
    p.add_argument("--model", required=model_required, default=None, metavar="MODEL_DIR",
                   help="model folder holding weights.safetensors and config.json (e.g. runs/<run>/model)"
                   + ("" if model_required else "; default: the newest runs/*/model"))
    p.add_argument("--images", required=images_default is None, default=images_default, metavar="DIR",
                   help="folder of images to predict" + (f" (default {images_default})" if images_default else ""))
    p.add_argument("--out", default=out_default, metavar="CSV",
                   help=f"submission CSV to write: ImageId,EncodedPixels, row-major RLE (default {out_default})")
    p.add_argument("--masks-out", metavar="DIR", help="also write each mask as a 0/255 PNG named <stem>.png")
    p.add_argument("--probs-out", metavar="DIR",
                   help="also write each probability map as an 8-bit grey PNG (value = round(p x 255))")
    p.add_argument("--scores-out", metavar="CSV",
                   help="also write image-level scores: ImageId,score,manipulated_fraction,predicted_label "
                   "(score = mean of the top 1%% pixel probabilities; label = score >= threshold)")
    p.add_argument("--tta", choices=TTA_OPTIONS, default="auto",
                   help="test-time augmentation: none, flip (4 flips), d4 (8 flips/rotations), or auto = what "
                   "validation calibration stored in config.json (default auto)")
    p.add_argument("--crf", nargs="?", const="on", choices=CRF_OPTIONS, default="auto",
                   help="DenseCRF refinement: off, gaussian (smoothness only), seed (gaussian + bilateral colour "
                   "term), auto = the calibrated choice in config.json (default); a bare --crf (= on) uses the "
                   "calibrated variant if calibration chose one, else gaussian")
    p.add_argument("--no-crf", dest="crf", action="store_const", const="off", help="same as --crf off")
    p.add_argument("--threshold", type=threshold_or_auto, default="auto", metavar="auto|FLOAT",
                   help="probability threshold for the masks; auto = the one stored with the model (default)")
    p.add_argument("--batch-size", type=int_at_least(1), default=8,
                   help="images (or tiles, for crop models) per forward pass (default 8)")
    p.add_argument("--device", default="auto", help="auto (cuda when available), cpu, cuda or cuda:N (default auto)")
    p.add_argument("--crf-workers", type=int_at_least(0), default=1,
                   help="processes running DenseCRF beside the model (pydensecrf holds the GIL, so threads "
                   "would not overlap); 0 = run it inline (default 1)")
    p.add_argument("--threads", type=int_at_least(1), default=None,
                   help="torch CPU threads (default: $OMP_NUM_THREADS or every CPU available)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def register(subparsers) -> None:
    p = add_command(
        subparsers,
        "predict",
        help="predict masks for a folder of images and write an RLE submission",
        description="Predict a binary inpainting mask for every image in --images at the image's original "
        "size and write the RLE submission CSV. TTA, DenseCRF and the threshold default to the choices "
        "measured on the validation split at the end of training (stored in the model's config.json); "
        "the choice used is printed. An image that cannot be decoded is named at the end and the exit "
        "status is 1, but every other image is still predicted and written.",
        examples="  inpaintseg predict --model runs/20250101-120000/model --images data/test/images\n"
        "  inpaintseg predict --model runs/x/model --images test/images --out sub.csv \\\n"
        "      --masks-out pred_masks --probs-out pred_probs --scores-out scores.csv\n"
        "  inpaintseg predict --model runs/x/model --images test/images --tta d4 --no-crf --threshold 0.4\n",
    )
    add_predict_arguments(p)
    p.set_defaults(func=run)


def list_images(images_dir: Path) -> tuple[list[Path], list[str]]:
    """Image files of a folder sorted by stem, and notes on skipped entries; DataError when unusable."""
    from inpaintseg.data import problems_message, scan_pairs
    from inpaintseg.errors import DataError

    scan = scan_pairs(images_dir)
    fatal = [p for p in scan.problems if p.title not in TOLERATED_PROBLEMS]
    if fatal:
        raise DataError(problems_message(fatal))
    if not scan.samples:
        raise DataError(f"{images_dir}: no image files to predict (supported: .png, .jpg, .jpeg, .bmp, "
                        ".tif, .tiff, .webp). Point --images at the folder that holds the test images.")
    notes = [p.message() for p in scan.problems if p.title == "entries that are not image files"]
    return [s.image_path for s in scan.samples], notes


def _check_outputs(args) -> None:
    from inpaintseg.errors import InpaintsegError

    for flag, value in (("--out", args.out), ("--scores-out", args.scores_out)):
        if value and Path(value).is_dir():
            raise InpaintsegError(f"{flag} {value}: is a folder; expected a CSV file path (e.g. {value}/out.csv).")
    for flag, value in (("--masks-out", args.masks_out), ("--probs-out", args.probs_out)):
        if value and Path(value).exists() and not Path(value).is_dir():
            raise InpaintsegError(f"{flag} {value}: is a file; expected a folder for the PNGs. "
                                  "Pass a folder path (it is created when missing).")


def _scores_csv(rows: list[tuple[str, float, float, int]]) -> str:
    buffer = _stdio.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(("ImageId", "score", "manipulated_fraction", "predicted_label"))
    for stem, score, fraction, label in sorted(rows):
        writer.writerow((stem, f"{score:.6f}", f"{fraction:.6f}", label))
    return buffer.getvalue()


def _drain(writes: list, keep: int) -> list:
    """Re-raise errors of finished writes; wait until at most `keep` are pending (bounds memory)."""
    while len(writes) > keep:
        writes.pop(0).result()
    for w in [w for w in writes if w.done()]:
        w.result()
    return [w for w in writes if not w.done()]


def run(args: argparse.Namespace) -> int:
    import concurrent.futures as cf

    import numpy as np

    from inpaintseg import inference, io, rle
    from inpaintseg.crf import require_pydensecrf
    from inpaintseg.errors import name_list
    from inpaintseg.model_io import load_model_dir
    from inpaintseg.runtime import tune_cpu_runtime

    # Every check that can fail happens before any work.
    device = inference.resolve_device(args.device)
    model, config = load_model_dir(args.model, device="cpu")
    paths, notes = list_images(Path(args.images))
    post = inference.resolve_postprocess(config, tta=args.tta, crf=args.crf, threshold=args.threshold)
    if post.crf != "off":
        require_pydensecrf()
    _check_outputs(args)
    runtime = tune_cpu_runtime(args.threads) if device == "cpu" else {}

    predictor = inference.Predictor(model, config, device=device, tta=post.tta, batch_size=args.batch_size)
    quiet = args.quiet
    log = (lambda *a: None) if quiet else (lambda *a: print(*a, file=sys.stderr))
    mode = config["input"]["mode"]
    log(f"predict: {len(paths)} images from {args.images}; model {args.model} "
        f"(input {mode} {config['input']['size']}); device {device}"
        + (f", {runtime['threads']} threads" if runtime else ""))
    log(f"predict: using {post.describe()}")
    for note in notes:
        log(f"predict: skipped {note}")

    encoded: dict[str, str] = {}
    scores: list[tuple[str, float, float, int]] = []
    failures: list[str] = []
    masks_dir = Path(args.masks_out) if args.masks_out else None
    probs_dir = Path(args.probs_out) if args.probs_out else None
    for folder in (masks_dir, probs_dir):
        if folder:
            folder.mkdir(parents=True, exist_ok=True)

    # PNG encoding and fsync release the GIL: a writer thread overlaps them with the model.
    with cf.ThreadPoolExecutor(1) as writer:
        writes: list[cf.Future] = []
        for result in inference.predict_paths(predictor, paths, post, crf_workers=args.crf_workers,
                                              progress=not quiet, keep_probs=True):
            if result.error is not None:
                failures.append((result.path.name, result.error))
                continue
            encoded[result.stem] = rle.rle_encode(result.mask)
            score = inference.image_score(result.probs)
            fraction = float(result.mask.mean()) if result.mask.size else 0.0
            scores.append((result.stem, score, fraction, int(score >= post.threshold)))
            if masks_dir:
                writes.append(writer.submit(io.write_png, masks_dir / f"{result.stem}.png", result.mask * np.uint8(255)))
            if probs_dir:
                probs8 = np.rint(result.probs * 255.0).astype(np.uint8)
                writes.append(writer.submit(io.write_png, probs_dir / f"{result.stem}.png", probs8))
            writes = _drain(writes, keep=16)
        _drain(writes, keep=0)

    rle.write_submission(args.out, encoded)
    log(f"predict: wrote {args.out} ({len(encoded)} rows)")
    if masks_dir:
        log(f"predict: wrote {len(encoded)} masks to {masks_dir}")
    if probs_dir:
        log(f"predict: wrote {len(encoded)} probability maps to {probs_dir}")
    if args.scores_out:
        io.atomic_write_text(args.scores_out, _scores_csv(scores))
        log(f"predict: wrote {args.scores_out}")
    if failures:
        print(f"predict: {len(failures)} of {len(paths)} images could not be predicted and are not in "
              f"{args.out}: {name_list(name for name, _ in failures)}", file=sys.stderr)
        for _, msg in failures[:20]:
            print(f"  - {msg}", file=sys.stderr)
        return 1
    return 0
