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
    from inpaintseg.commands.train import DESCRIPTION, EXAMPLES, configure_parser
    from inpaintseg.errors import InpaintsegError

    parser = argparse.ArgumentParser(
        prog="train_model.py", description=DESCRIPTION,
        epilog="examples (`python train_model.py` takes the same options):\n" + EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    args = configure_parser(parser).parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except InpaintsegError as exc:
        print(f"train_model.py: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("train_model.py: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
