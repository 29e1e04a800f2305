"""`inpaintseg report RUN_DIR`: an offline HTML report with PNG figures."""

from __future__ import annotations

from pathlib import Path

from inpaintseg.commands import (add_command, add_device_argument, add_progress_arguments, add_renamed,
                                 int_at_least)


def register(subparsers) -> None:
    p = add_command(
        subparsers,
        "report",
        help="write RUN_DIR/report/report.html: evaluation next to baselines, curves, worst/best examples",
        description="Write an offline HTML report (PNG figures) for a training run. The images are predicted "
        "the way `inpaintseg predict` does (the model's stored TTA, DenseCRF and threshold) into "
        "REPORT/predictions/ and scored by the code of `inpaintseg evaluate` (REPORT/evaluation.json is its "
        "--json): the run's header, the evaluation table next to the all-empty and all-full baselines, Dice per "
        "method/family (with a meta.json), pixel PR and ROC curves, image-level ROC and score histogram, Dice "
        "vs threshold, the worst and best manipulated images and the false alarms on untouched images as "
        "colour-blind-safe TP/FP/FN overlays with their probability maps, the validation calibration (the chosen "
        "row marked), training curves, DenseCRF and TTA figures. Without --truth (images only), it shows the "
        "predictions and scores.",
        examples="  inpaintseg report runs/20261124-101500\n"
        "  inpaintseg report runs/demo --images data/test/images --truth data/test/masks --examples 8\n"
        "  inpaintseg report runs/demo --images new_photos/ --out new_photos_report   # predictions only\n",
    )
    p.add_argument("run_dir", metavar="RUN_DIR",
                   help="training run folder (holds model/ and metrics.csv); its model/ folder works too; or base (the "
                   "shipped detector: give --images, --truth and --out)")
    p.add_argument("--images", type=Path, metavar="DIR", help="images to report on (default: the run's "
                   "test/images if it has masks, else its validation split)")
    p.add_argument("--truth", type=Path, metavar="MASKS_DIR", help="truth masks for --images; without them the "
                   "report shows predictions only")
    add_renamed(p, "--masks", "--truth", dest="truth", type=Path)
    p.add_argument("--meta", type=Path, metavar="FILE", help="meta.json with a method (and family) per image "
                   "(default: meta.json beside the images folder, when present)")
    p.add_argument("--out", type=Path, metavar="DIR", help="output folder (default RUN_DIR/report)")
    p.add_argument("--max-images", type=int_at_least(1), default=200,
                   help="images predicted and scored, an even subset when there are more (default 200)")
    p.add_argument("--examples", type=int_at_least(1), default=6,
                   help="images in each gallery: worst, best, false alarms (default 6)")
    add_device_argument(p)
    add_progress_arguments(p)
    p.set_defaults(func=run)


def run(args) -> int:
    from inpaintseg.evaluation.report import write_report

    out = write_report(args.run_dir, images_dir=args.images, truth_dir=args.truth, out_dir=args.out,
                       max_images=args.max_images, device=args.device, n_examples=args.examples, meta=args.meta)
    print(f"report written: {out}")
    return 0
