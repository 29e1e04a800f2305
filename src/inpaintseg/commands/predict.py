"""`inpaintseg predict`: masks, probability maps, image scores and an RLE submission for a folder.

`add_predict_arguments` is shared with the repository's `main.py`, which predicts ./test/images
with the newest run's model.
"""

from __future__ import annotations

import argparse
import sys

from inpaintseg.commands import (MODEL_HELP, add_command, add_device_argument, add_max_pixels_argument,
                                 add_precision_argument, add_progress_arguments, add_renamed, int_at_least,
                                 rle_order_argument, threshold, threshold_or_auto)
from inpaintseg.inference.pipeline import SUBMISSION_FILE
from inpaintseg.inference.postprocess import CRF_OPTIONS, GATE_OPTIONS, TTA_OPTIONS
from inpaintseg.inference.predictor import DEFAULT_BATCH_SIZE


def gate_choice(text: str) -> str | float:
    """An argparse type: one of `GATE_OPTIONS` or an image-score gate in (0, 1)."""
    return text if text in GATE_OPTIONS else threshold(text)


def add_predict_arguments(p: argparse.ArgumentParser, model_required: bool = True,
                          images_default: str | None = None, out_default: str = SUBMISSION_FILE) -> None:
    """The predict options; `main.py` reuses them with a default model and images folder."""
    p.add_argument("--model", required=model_required, default=None, metavar="MODEL_DIR",
                   help=MODEL_HELP
                   + ("" if model_required else "; default: the newest runs/*/model"))
    p.add_argument("--images", required=images_default is None, default=images_default, metavar="DIR|FILE|GLOB",
                   help="folder of images to predict, one image file, or a quoted glob pattern such as "
                   "'shots/*.jpg'" + (f" (default {images_default})" if images_default else ""))
    p.add_argument("--submission", default=out_default, metavar="CSV",
                   help=f"submission CSV to write: ImageId,EncodedPixels (default {out_default})")
    add_renamed(p, "--out", "--submission", dest="submission", metavar="CSV")
    rle_order_argument(p, "written")
    p.add_argument("--masks-out", metavar="DIR", help="also write each mask as a 0/255 PNG named <stem>.png")
    p.add_argument("--probs-out", metavar="DIR",
                   help="also write each probability map as an 8-bit grey PNG (value = round(p x 255))")
    p.add_argument("--overlays-out", metavar="DIR",
                   help="also write each probability map as a heat map over its image (viridis, opacity grows "
                   "with p, white outline = the mask), a PNG at the image's native size")
    p.add_argument("--scores-out", metavar="CSV",
                   help="also write image-level scores: ImageId,score,manipulated_fraction,predicted_label "
                   "(score = mean of the top 1%% pixel probabilities; label = score >= --score-threshold)")
    p.add_argument("--tta", choices=TTA_OPTIONS, default="auto",
                   help="test-time augmentation: none, flip (4 flips), d4 (8 flips/rotations), flip+scales / "
                   "d4+scales (those views at scales 0.75, 1 and 1.25), or auto = what validation calibration "
                   "stored in config.json (default auto)")
    p.add_argument("--crf", nargs="?", const="on", choices=CRF_OPTIONS, default="auto",
                   help="DenseCRF refinement: off, gaussian (smoothness only), seed (gaussian + bilateral colour "
                   "term), auto = the calibrated choice in config.json (default); a bare --crf (= on) uses the "
                   "calibrated variant if calibration chose one, else gaussian")
    p.add_argument("--no-crf", dest="crf", action="store_const", const="off", help="same as --crf off")
    p.add_argument("--threshold", type=threshold_or_auto, default="auto", metavar="auto|FLOAT",
                   help="pixel threshold: a pixel is manipulated when its probability is >= it; auto = the one "
                   "stored with the model (default)")
    p.add_argument("--gate", type=gate_choice, default="auto", metavar="auto|off|few-false-alarms|FLOAT",
                   help="image gate: an image whose score is below it gets an empty mask (its probability map is "
                   "kept); auto = the gate calibration chose, if it chose one (default); few-false-alarms = the "
                   "lowest gate that kept <= 10%% of the untouched calibration images flagged, with its threshold")
    p.add_argument("--score-threshold", type=threshold_or_auto, default="auto", metavar="auto|FLOAT",
                   help="image-level threshold: predicted_label = image score >= it; auto = the larger of the "
                   "pixel threshold and the gate (default)")
    p.add_argument("--batch-size", type=int_at_least(1), default=DEFAULT_BATCH_SIZE,
                   help=f"images (or tiles, for crop models) per forward pass (default {DEFAULT_BATCH_SIZE})")
    add_device_argument(p)
    add_precision_argument(p, "the forward pass")
    p.add_argument("--crf-workers", type=int_at_least(0), default=1,
                   help="processes running DenseCRF beside the model (pydensecrf holds the GIL, so threads "
                   "would not overlap); 0 = run it inline (default 1)")
    p.add_argument("--threads", type=int_at_least(1), default=None,
                   help="torch CPU threads (default: $OMP_NUM_THREADS or every CPU available)")
    add_progress_arguments(p)
    add_max_pixels_argument(p)
    add_scale_arguments(p)


def add_scale_arguments(p: argparse.ArgumentParser) -> None:
    """The engine, other input forms, resuming and sharding (issue 13)."""
    import os

    from inpaintseg.inference.engines import ENGINES

    p.add_argument("--engine", choices=ENGINES, default="auto",
                   help="what runs the network: torch, onnx (MODEL_DIR/model.onnx through onnxruntime; make it with "
                   "`inpaintseg export`; fp32 only), onnx-int8 (its int8 quantisation, `export --int8 IMAGES`), or "
                   "auto = onnx when a model.onnx matching the weights is there, the device is the CPU and "
                   "--precision is not bf16-mixed/16-mixed, else torch (default auto)")
    p.add_argument("--recursive", action="store_true",
                   help="--images DIR: also predict the images in its sub-folders (ImageId = relative path without "
                   "extension, e.g. cats/a); a glob pattern: ** crosses folders")
    p.add_argument("--resume", action="store_true",
                   help="continue an interrupted run: images already in <submission>.part (rows are appended as "
                   "images finish) are not predicted again; the final CSVs equal an uninterrupted run's. Refused "
                   "when the part file was written with other settings (model, engine, precision, thresholds, "
                   "TTA, CRF, --rle-order, output folders)")
    p.add_argument("--num-devices", type=int_at_least(1), default=1,
                   help="processes per node sharing the images (one per GPU on a CUDA machine; on a CPU each gets "
                   "its share of the cores); rank 0 merges their part files into one submission (default 1)")
    p.add_argument("--devices", dest="num_devices", type=int_at_least(1), help=argparse.SUPPRESS)  # as train
    p.add_argument("--num-nodes", type=int_at_least(1), default=1,
                   help="machines running this same command (with --node-rank and $MASTER_ADDR/$MASTER_PORT; "
                   "outputs on a shared filesystem) (default 1)")
    p.add_argument("--node-rank", type=int_at_least(0), default=int(os.environ.get("NODE_RANK", "0") or 0),
                   help="this machine's index among --num-nodes (default $NODE_RANK or 0)")


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
        "  inpaintseg predict --model runs/x/model --images test/images --submission sub.csv \\\n"
        "      --masks-out pred_masks --probs-out pred_probs --scores-out scores.csv --overlays-out overlays\n"
        "  inpaintseg predict --model runs/x/model --images test/images --rle-order column   # Kaggle's order\n"
        "  inpaintseg predict --model runs/x/model --images test/images --tta d4 --no-crf --threshold 0.4\n"
        "  inpaintseg predict --model runs/x/model --images 'shots/**/*.jpg' --recursive --engine onnx --resume\n"
        "  inpaintseg predict --model runs/x/model --images big/ --recursive --num-devices 2   # 2 processes\n",
    )
    add_predict_arguments(p)
    p.set_defaults(func=run)


def resume_hint(args: argparse.Namespace) -> str:
    """What Ctrl-C prints: where the finished rows are and the command that continues (cli.run_guarded)."""
    from inpaintseg.inference import journal

    target = journal.part_target(args.submission, args.scores_out)
    if target is None or not journal.part_files(target):
        return "nothing was saved; run the command again"
    return (f"the images finished so far are saved in {journal.part_path(target)}; run the same command with "
            "--resume to continue (only the remaining images are predicted)")


def run(args: argparse.Namespace) -> int:
    from inpaintseg.prediction import plan_prediction

    plan = plan_prediction(  # every check that can fail happens here, before any work
        args.model, args.images, out=args.submission, masks_out=args.masks_out, probs_out=args.probs_out,
        scores_out=args.scores_out, overlays_out=args.overlays_out, threshold=args.threshold, tta=args.tta,
        crf=args.crf, gate=args.gate, score_threshold=args.score_threshold, rle_order=args.rle_order, resume=args.resume,
        crf_workers=args.crf_workers, device=args.device, batch_size=args.batch_size, precision=args.precision,
        engine=args.engine, recursive=args.recursive, threads=args.threads, num_devices=args.num_devices,
        num_nodes=args.num_nodes, node_rank=args.node_rank)
    print_plan(plan, args)
    try:
        result = plan.run()
    except KeyboardInterrupt:
        raise KeyboardInterrupt(resume_hint(args)) from None
    if result is None:
        _log(f"predict: node {args.node_rank} finished its shards; node 0 merges {args.submission}")
        return 0
    return print_result(result, plan.model, args.submission)


def _log(*a) -> None:
    print(*a, file=sys.stderr, flush=True)


def print_plan(plan, args: argparse.Namespace) -> None:
    """What is used: always printed (also with --quiet, which only turns progress bars into plain lines)."""
    model, runtime, processes = plan.model, plan.runtime, plan.processes
    _log(f"predict: {len(plan.inputs.paths)} images from {args.images}; model {args.model} "
         f"(input {model.input['mode']} {model.input['size']}); device {model.device}"
         + (f", {runtime['threads']} threads" if runtime else ""))
    _log(f"predict: using {plan.post.describe()}; RLE {args.rle_order}-major")
    _log(f"predict: {model.describe_precision()}")
    _log(f"predict: {model.engine_choice.describe()}"
         + (f"; {processes} processes ({args.num_devices} per node x {args.num_nodes} nodes)"
            if processes > 1 else ""))
    for note in plan.inputs.notes:
        _log(f"predict: skipped {note}")


def print_result(result, model, submission) -> int:
    """What was written, the verdict counts and the images that failed; the exit status (1: some failed)."""
    from inpaintseg.errors import name_list

    for note in result.notes:
        _log(f"predict: {note}")
    n = len(result.encoded)
    _log(f"predict: wrote {submission} ({n} rows)")
    for key, what in (("masks", "masks"), ("probs", "probability maps"), ("overlays", "heat-map overlays")):
        if key in result.written:
            _log(f"predict: wrote {n} {what} to {result.written[key]}")
    if "scores" in result.written:
        _log(f"predict: wrote {result.written['scores']} (score, verdict and false-alarm rate per image)")
    if result.verdicts:
        levels: dict[str, int] = {}
        for verdict in result.verdicts.values():
            levels[verdict.level] = levels.get(verdict.level, 0) + 1
        _log("predict: verdicts: " + ", ".join(f"{k} {level}" for level, k in sorted(levels.items())))
    if model.quality_warning:
        _log(f"predict: note: {model.quality_warning}")
    if result.failures:
        print(f"predict: {len(result.failures)} of {result.n_images} images could not be predicted and are not "
              f"in {submission}: {name_list(name for name, _ in result.failures)}", file=sys.stderr)
        for _, msg in result.failures[:20]:
            print(f"  - {msg}", file=sys.stderr)
        return 1
    return 0
