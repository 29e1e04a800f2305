"""`inpaintseg demo-data OUT`: write the built-in synthetic inpainting dataset."""

from __future__ import annotations

import argparse
import time
from collections import Counter

from inpaintseg.commands import add_command, add_renamed

EXAMPLES = """\
  inpaintseg demo-data --out data/demo
  inpaintseg demo-data --out data/demo --n-train 400 --n-test 100 --img-size 256 --seed 0
  inpaintseg demo-data --out /tmp/tiny --n-train 16 --n-test 4 --img-size 64
"""


def register(subparsers) -> None:
    parser = add_command(
        subparsers,
        "demo-data",
        help="write a synthetic inpainting dataset made from photos shipped with scikit-image/scikit-learn",
        description=(
            "Write OUT/train/{images,masks}, OUT/test/{images,masks} and a meta.json per split.\n"
            "Each sample is a random crop of a photo bundled with scikit-image or scikit-learn\n"
            "(nothing is downloaded) whose random masked region is filled by OpenCV Telea, OpenCV\n"
            "Navier-Stokes or an exemplar patch copy; 10% of images (one in each block of 10) are\n"
            "left untouched (empty mask). The same arguments always give the same bytes.\n"
            "OUT must be missing, empty, or an earlier demo-data output (which is overwritten)."
        ),
        examples=EXAMPLES,
    )
    parser.add_argument("--out", metavar="OUT", default=None, help="output folder (required)")
    # The output folder was positional before `--out` (one vocabulary); still accepted for one release.
    parser.add_argument("out_positional", nargs="?", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--n-train", type=int, default=400, help="training images (default 400)")
    parser.add_argument("--n-test", type=int, default=100, help="test images (default 100)")
    parser.add_argument("--img-size", type=int, default=256, dest="img_size",
                        help="image side in pixels (default 256)")
    add_renamed(parser, "--size", "--img-size", dest="img_size", type=int)
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from inpaintseg.demo_data import generate_demo_data

    from inpaintseg.errors import InpaintsegError

    if args.out is None and args.out_positional is None:
        raise InpaintsegError("give the output folder: inpaintseg demo-data --out DIR")
    if args.out is not None and args.out_positional is not None and args.out != args.out_positional:
        raise InpaintsegError(f"two output folders given ({args.out_positional} and --out {args.out}); give one.")
    args.out = args.out or args.out_positional
    start = time.perf_counter()
    meta = generate_demo_data(
        args.out, n_train=args.n_train, n_test=args.n_test, size=args.img_size, seed=args.seed
    )
    seconds = time.perf_counter() - start
    total = 0
    for split, split_meta in meta.items():
        images = split_meta["images"]
        total += len(images)
        methods = Counter(info["method"] for info in images.values())
        shown = ", ".join(f"{name} {count}" for name, count in sorted(methods.items()))
        print(f"{split}: {len(images)} images ({shown})")
    print(f"wrote {total} images of {args.img_size}x{args.img_size} to {args.out} in {seconds:.1f} s")
    return 0
