"""The `inpaintseg` command line: argument parsing only.

Each subcommand lives in `inpaintseg.commands.<name>` and exposes `register(subparsers)`, which adds
its parser and sets `func` to a callable `run(args) -> int`. Heavy imports (torch, lightning) happen
inside `run`, so `inpaintseg --help` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from inpaintseg import __version__
from inpaintseg.errors import InpaintsegError

# Order is the order shown in --help.
COMMAND_MODULES = (
    "demo",
    "demo_data",
    "check_data",
    "model_info",
    "train",
    "predict",
    "export",
    "evaluate",
    "report",
    "serve",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="inpaintseg",
        description="Find AI-inpainted regions in images: train an Attention U-Net, predict masks, "
        "write RLE submissions, evaluate and report.",
        epilog="Run `inpaintseg COMMAND --help` for a command's options and examples.",
    )
    parser.add_argument("--version", action="version", version=f"inpaintseg {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        module = importlib.import_module(f"inpaintseg.commands.{name}")
        module.register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    return run_guarded(f"inpaintseg {args.command}", args.func, args)


EXIT_OK, EXIT_PROBLEMS, EXIT_USER_ERROR, EXIT_INTERRUPTED = 0, 1, 2, 130


def run_guarded(prog: str, func, args) -> int:
    """Run a command function under its --max-pixels (when it has one) and its progress switch (``--quiet`` /
    ``--progress``, applied here once for every command). Exit status: what the command returns (0 = done, 1 = done
    but some inputs had problems, each named); 2 = a user error or an environment fault (the message, no
    traceback); 130 = interrupted (Ctrl-C; the message says how to go on)."""
    from inpaintseg.fileio import pixel_limit_scope
    from inpaintseg.progress import set_progress_mode

    set_progress_mode(getattr(args, "progress_mode", None) or "auto")
    try:
        with pixel_limit_scope(getattr(args, "max_pixels", None)):
            return int(func(args) or 0)
    except InpaintsegError as exc:
        from inpaintseg.commands import flag_message

        print(f"{prog}: error: {flag_message(exc)}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt as exc:
        hint = str(exc)
        print(f"{prog}: interrupted" + (f": {hint}" if hint else ""), file=sys.stderr)
        return EXIT_INTERRUPTED


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
