"""Predict ./test/images with the newest training run's model and write ./submission.csv.

The original project's entry point, kept thin: it picks the model folder of the newest run
(the `runs/*/model/config.json` modified last) and runs `inpaintseg predict` with the same options
(`python main.py --help`). Any option can be overridden, e.g.
`python main.py --model runs/20250101-120000/model --tta d4 --submission my_submission.csv`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from inpaintseg.cli import run_guarded
from inpaintseg.commands.predict import add_predict_arguments
from inpaintseg.commands.predict import run as run_predict
from inpaintseg.run_dir import DEFAULT_RUNS_ROOT, newest_model_dir


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="main.py",
        description="Predict ./test/images with the newest run's model (runs/*/model) and write "
        "./submission.csv. Same options as `inpaintseg predict`.",
    )
    add_predict_arguments(parser, model_required=False, images_default="test/images")
    parser.add_argument("--runs", default=str(DEFAULT_RUNS_ROOT), metavar="DIR",
                        help=f"folder of training runs searched for the newest model (default {DEFAULT_RUNS_ROOT})")
    return parser


def main(argv: list[str] | None = None) -> int:
    return run_guarded("main.py", predict_newest, build_parser().parse_args(argv))


def predict_newest(args: argparse.Namespace) -> int:
    if args.model is None:
        args.model = str(newest_model_dir(Path(args.runs)))
    print(f"main.py: model {args.model}, images {args.images}, submission {args.submission}", file=sys.stderr)
    return run_predict(args)


if __name__ == "__main__":
    sys.exit(main())
