"""`inpaintseg demo`: the whole pipeline on built-in demo data, end to end."""

from __future__ import annotations

from pathlib import Path

from inpaintseg.commands import add_command, add_device_argument, add_precision_argument, add_progress_arguments


def register(subparsers) -> None:
    p = add_command(
        subparsers,
        "demo",
        help="demo data -> train -> predict -> submission -> evaluate -> report, in ~10 minutes on a CPU",
        description="Run the whole pipeline on built-in demo data: generate a dataset from photos shipped "
        "with scikit-image/scikit-learn, score the shipped base detector on it zero-shot, fine-tune it on a time "
        "budget (--from-scratch: train a CPU-sized Attention U-Net from random init instead), predict the test "
        "images with the post-processing that validation chose, write submission.csv, evaluate against the "
        "ground truth (next to all-empty and all-full baselines) and write an HTML report.",
        examples="  inpaintseg demo\n"
        "  inpaintseg demo --out demo_out --budget-minutes 3\n"
        "  inpaintseg demo --quiet > demo.log 2>&1        # plain log lines: one per epoch and per 10% of a run\n"
        "  inpaintseg demo --out demo_fp32 --precision 32     # fp32 throughout, to compare with auto\n"
        "  inpaintseg demo --out demo_scratch --from-scratch  # the seed's path: no shipped weights\n",
    )
    p.add_argument("--out", type=Path, default=Path("demo_out"), help="output folder (default demo_out)")
    p.add_argument("--budget-minutes", type=float, default=7.0,
                   help="training wall-clock budget in minutes (default 7)")
    p.add_argument("--n-train", type=int, default=400, help="demo training images (default 400)")
    p.add_argument("--n-test", type=int, default=100, help="demo test images (default 100)")
    p.add_argument("--seed", type=int, default=0, help="seed for data and training (default 0)")
    add_device_argument(p)
    p.add_argument("--from-scratch", action="store_true",
                   help="train a new width-8 network from random init instead of fine-tuning the shipped base "
                   "detector (and skip its zero-shot row)")
    add_progress_arguments(p, epochs=True)
    add_precision_argument(p, "training, calibration and prediction")
    p.set_defaults(func=run)


def run(args) -> int:
    from inpaintseg.demo import run_demo

    return run_demo(out=args.out, budget_minutes=args.budget_minutes, n_train=args.n_train,
                    n_test=args.n_test, seed=args.seed, device=args.device, precision=args.precision,
                    from_scratch=args.from_scratch)
