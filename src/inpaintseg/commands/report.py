"""`inpaintseg report RUN_DIR`: an offline HTML report with PNG figures."""

from __future__ import annotations

from pathlib import Path

from inpaintseg.commands import add_command


def register(subparsers) -> None:
    p = add_command(
        subparsers,
        "report",
        help="write RUN_DIR/report/report.html: curves, overlays, CRF and TTA figures",
        description="Write an offline HTML report (PNG figures) for a training run: loss and metric curves, "
        "predicted vs ground-truth overlays for the best, median and worst images, DenseCRF before/after, "
        "TTA aggregation and a precision-recall curve.",
        examples="  inpaintseg report runs/20261124-101500\n"
        "  inpaintseg report runs/demo --images data/test/images --masks data/test/masks\n",
    )
    p.add_argument("run_dir", type=Path, help="training run folder (holds model/ and metrics.csv)")
    p.add_argument("--images", type=Path, help="images to show (default: the run's test/images if it has "
                   "masks, else its validation split)")
    p.add_argument("--masks", type=Path, help="ground-truth masks for --images")
    p.add_argument("--out", type=Path, help="output folder (default RUN_DIR/report)")
    p.add_argument("--max-images", type=int, default=200, help="images evaluated to pick examples (default 200)")
    p.add_argument("--device", default="auto", help="cpu, cuda or auto (default)")
    p.set_defaults(func=run)


def run(args) -> int:
    from inpaintseg.evaluation.report import write_report

    out = write_report(args.run_dir, images_dir=args.images, masks_dir=args.masks, out_dir=args.out,
                       max_images=args.max_images, device=args.device)
    print(f"report written: {out}")
    return 0
