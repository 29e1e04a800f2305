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
        "      --meta data/test/meta.json --json eval.json\n"
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
    p.add_argument("--score-threshold", type=threshold, default=0.5, metavar="FLOAT",
                   help="image-level decision: manipulated when the image score (from --probs) is >= it "
                   "(default 0.5)")
    add_renamed(p, "--threshold", "--score-threshold", dest="score_threshold", type=threshold)
    add_progress_arguments(p)
    add_max_pixels_argument(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import sys

    from inpaintseg.evaluation.evaluate import evaluate, format_table
    from inpaintseg.io import atomic_write_text
    from inpaintseg.outputs import check_outputs

    check_outputs({"--json": args.json}, inputs=(args.truth, args.pred, args.probs, args.submission, args.meta))
    result = evaluate(args.truth, pred_dir=args.pred, submission=args.submission, probs_dir=args.probs,
                      meta=args.meta, score_threshold=args.score_threshold, progress=True,
                      rle_order=args.rle_order)
    print(format_table(result))
    for warning in result["warnings"]:
        print(f"evaluate: warning: {warning}", file=sys.stderr)
    if args.json:
        atomic_write_text(args.json, json.dumps(result, indent=2) + "\n")
        print(f"wrote {args.json}")
    return 0
