"""`inpaintseg evaluate`: score predicted masks (or a submission) against truth masks."""

from __future__ import annotations

import argparse
import json

from inpaintseg.commands import (add_command, add_max_pixels_argument, add_progress_arguments, add_renamed,
                                 rle_order_argument, threshold)


def register(subparsers) -> None:
    p = add_command(
        subparsers,
        "evaluate",
        help="score predicted masks or a submission against truth masks",
        description="Compare predictions with the truth masks and print a table: Dice as the competition "
        "scores it (mean over images of per-image Dice; an image with empty truth and empty prediction "
        "counts 1.0), pooled Dice and IoU, pixel precision/recall/F1, image-level AUC and accuracy "
        "(manipulated vs untouched), the false-positive area on untouched images; with --probs also the "
        "best-threshold F1 and the pixel ROC AUC; with --meta the Dice per inpainting method and per "
        "method family. Ids are file stems; missing or extra ids and size mismatches are errors that name the images.",
        examples="  inpaintseg evaluate --truth data/test/masks --pred pred_masks\n"
        "  inpaintseg evaluate --truth data/test/masks --submission submission.csv --probs pred_probs \\\n"
        "      --model runs/x/model --meta data/test/meta.json --json eval.json\n"
        "  inpaintseg evaluate --truth data/test/masks --submission kaggle.csv --rle-order column\n",
    )
    p.add_argument("--truth", required=True, metavar="MASKS_DIR", help="folder of truth masks (<stem>.png)")
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--pred", metavar="MASKS_DIR", help="folder of predicted masks (from predict --masks-out)")
    source.add_argument("--submission", metavar="CSV", help="submission CSV (ImageId,EncodedPixels)")
    rle_order_argument(p, "read from --submission (a warning says when the other order fits much better)")
    p.add_argument("--probs", metavar="DIR", help="8-bit probability PNGs (from predict --probs-out)")
    p.add_argument("--meta", metavar="FILE", help="demo data's test/meta.json: adds Dice per inpainting method and family")
    p.add_argument("--json", metavar="FILE", help="also write every metric (and per-image Dice) as JSON")
    p.add_argument("--model", metavar="MODEL_DIR",
                   help="the model (or run) folder that made the predictions: its image threshold decides "
                   "manipulated vs untouched, as in predict, the report and the service")
    p.add_argument("--score-threshold", type=threshold, default=None, metavar="FLOAT",
                   help="image-level decision: manipulated when the image score (from --probs) is >= it "
                   "(default: --model's threshold, else the score_threshold column of the scores.csv beside "
                   "--submission / --probs, else 0.5)")
    add_renamed(p, "--threshold", "--score-threshold", dest="score_threshold", type=threshold)
    add_progress_arguments(p)
    add_max_pixels_argument(p)
    p.set_defaults(func=run)


def choose_score_threshold(args: argparse.Namespace) -> tuple[float, str]:
    """(image threshold, where it came from): --score-threshold, --model's, a scores.csv beside the predictions,
    else the default."""
    from pathlib import Path

    from inpaintseg.evaluation.evaluate import (DEFAULT_SCORE_THRESHOLD, model_score_threshold,
                                                scores_file_threshold)

    if args.score_threshold is not None:
        return args.score_threshold, "--score-threshold"
    if args.model:
        return model_score_threshold(args.model), f"the model's, {args.model}"
    for near in (args.submission, args.probs, args.pred):
        if near:
            scores = Path(near).parent / "scores.csv"
            value = scores_file_threshold(scores) if scores.is_file() else None
            if value is not None:
                return value, f"from {scores}"
    return DEFAULT_SCORE_THRESHOLD, "default; pass --model MODEL_DIR to use the model's"


def run(args: argparse.Namespace) -> int:
    import sys

    from inpaintseg.evaluation.evaluate import evaluate, format_table
    from inpaintseg.fileio import atomic_write_text
    from inpaintseg.outputs import check_outputs

    check_outputs({"--json": args.json}, inputs=(args.truth, args.pred, args.probs, args.submission, args.meta))
    score_threshold, source = choose_score_threshold(args)
    if args.probs:
        print(f"evaluate: image threshold {score_threshold:g} ({source})", file=sys.stderr)
    result = evaluate(args.truth, pred_dir=args.pred, submission=args.submission, probs_dir=args.probs,
                      meta=args.meta, score_threshold=score_threshold, progress=True, rle_order=args.rle_order)
    print(format_table(result))
    for warning in result["warnings"]:
        print(f"evaluate: warning: {warning}", file=sys.stderr)
    if args.json:
        atomic_write_text(args.json, json.dumps(result, indent=2) + "\n")
        print(f"wrote {args.json}")
    return 0
