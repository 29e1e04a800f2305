#!/usr/bin/env python
"""Train with the seed's settings: `python train_model.py` reads ./train/{images,masks}.

The same as `inpaintseg train` (same options, same run function): `--data DIR` points at a folder
holding train/ (default: the current folder, the seed's layout), `--out RUN_DIR` names the run
folder (default runs/<timestamp>), and every setting of `inpaintseg train --help` works here too.
"""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    from inpaintseg.cli import run_guarded
    from inpaintseg.commands.train import DESCRIPTION, EXAMPLES, configure_parser

    parser = argparse.ArgumentParser(
        prog="train_model.py", description=DESCRIPTION,
        epilog="examples (`python train_model.py` takes the same options):\n" + EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    args = configure_parser(parser).parse_args(argv)
    return run_guarded("train_model.py", args.func, args)


if __name__ == "__main__":
    sys.exit(main())
