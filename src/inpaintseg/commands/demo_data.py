"""`inpaintseg demo-data OUT`: write a synthetic inpainting dataset (the manipulation engine)."""

from __future__ import annotations

import argparse
import sys
import time
from collections import Counter

from inpaintseg.commands import add_command, add_renamed, fraction

EXAMPLES = """\
  inpaintseg demo-data --list-methods
  inpaintseg demo-data --out data/demo
  inpaintseg demo-data --out data/demo --n-train 400 --n-test 100 --img-size 256 --seed 0
  inpaintseg demo-data --out data/mine --photos ~/photos --degrade strong --with-originals
  inpaintseg demo-data --out data/classical --families classical,copy --degrade none
  # leave one family out: train without the learned fills, test on them alone
  inpaintseg demo-data --out data/lofo_learned --exclude-families learned --test-families learned
"""

DESCRIPTION = """\
Write OUT/train/{images,masks}, OUT/test/{images,masks} and a meta.json per split recording, per
image, the photo, crop, mask kind, coverage, method, family, the fill's settings, the post-fill
shortcut breakers and the global degradations applied.

Each sample is a multi-scale random crop of a pristine photo (the photos bundled with scikit-image,
scikit-learn, matplotlib and PyWavelets if installed, or --photos DIR), a random mask (brush
strokes thin/medium/thick, polygons, blobs, ellipses, boxes; 1-50% of the image) filled by one
method: a family is drawn uniformly among the selected ones, then one of its methods
(--list-methods shows them). A share of images (--untouched-fraction) is left untouched (empty
mask), some of them processed as a whole (hard negatives). Then JPEG / resize / blur / noise with
the probabilities of --degrade.

The learned families use small inpainting networks the engine trains itself on first use (the
'demo' set in about a minute of CPU, 'full' in about 9 CPU-minutes, on 2 processes) and caches in
$INPAINTSEG_CACHE_DIR, else $XDG_CACHE_HOME/inpaintseg, else ~/.cache/inpaintseg.

Method selection: --methods/--families (default all) minus --exclude-methods/--exclude-families
choose the train split's methods, and the test split's too unless --test-methods/--test-families
are given. Leave-one-family-out for family F: --exclude-families F --test-families F.
The same arguments always give the same bytes. OUT must be missing, empty, or an earlier demo-data
output (which is overwritten)."""


def register(subparsers) -> None:
    from inpaintseg.synth.degrade import LEVELS
    from inpaintseg.synth.generators import GENERATOR_SETS

    parser = add_command(
        subparsers,
        "demo-data",
        help="write a synthetic inpainting dataset (many methods in families, degradations, meta.json)",
        description=DESCRIPTION,
        examples=EXAMPLES,
    )
    parser.add_argument("--out", metavar="OUT", default=None, help="output folder (required unless --list-methods)")
    # The output folder was positional before `--out` (one vocabulary); still accepted for one release.
    parser.add_argument("out_positional", nargs="?", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--list-methods", action="store_true", help="print 'name  family  description' per method and exit")
    parser.add_argument("--n-train", type=int, default=400, help="training images (default 400)")
    parser.add_argument("--n-test", type=int, default=100, help="test images (default 100)")
    parser.add_argument("--img-size", type=int, default=256, dest="img_size",
                        help="image side in pixels (default 256)")
    add_renamed(parser, "--size", "--img-size", dest="img_size", type=int)
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    select = parser.add_argument_group("method selection (comma-separated names; see --list-methods)")
    select.add_argument("--methods", metavar="A,B|all", help="methods to use (default all)")
    select.add_argument("--exclude-methods", metavar="A,B", help="methods not to use")
    select.add_argument("--families", metavar="F,G|all", help="families to use (default all)")
    select.add_argument("--exclude-families", metavar="F,G", help="families not to use")
    select.add_argument("--test-methods", metavar="A,B|all",
                        help="the test split uses only these methods (default: the train selection)")
    select.add_argument("--test-families", metavar="F,G|all",
                        help="the test split uses only these families (default: the train selection)")
    parser.add_argument("--degrade", choices=LEVELS, default="default",
                        help="global degradations after the edit: none, default or strong (default: default)")
    parser.add_argument("--photos", metavar="DIR", action="append",
                        help="your own pristine photos (any size/count, searched recursively) instead of the "
                        "bundled ones; repeat to pool several folders; files that are not decodable images are "
                        "named and skipped")
    parser.add_argument("--packaged-photos", action="store_true",
                        help="with --photos: use the bundled photos too")
    parser.add_argument("--untouched-fraction", type=fraction, default=0.1, metavar="F",
                        help="share of images left untouched, empty mask (default 0.1)")
    parser.add_argument("--camera-noise", type=fraction, default=0.0, metavar="P",
                        help="share of pristine photos given a camera's sensor noise before the edit (default 0): "
                        "the authentic region carries it, a generated fill does not")
    parser.add_argument("--fill-noise", type=float, default=1.0, metavar="S",
                        help="multiplier of the probability that a fill gets noise re-injected to hide its "
                        "smoothness (default 1: 0.8 for classical fills, 0.4 for the others; 0: never; up to 2.5)")
    parser.add_argument("--generators", choices=GENERATOR_SETS, default=None,
                        help="learned generator set: demo (default, or $INPAINTSEG_GENERATORS; trains in ~1 CPU-minute), "
                        "full (wider, longer trained; ~9 CPU-minutes) or tiny (seconds; for tests)")
    parser.add_argument("--rebuild-generators", action="store_true",
                        help="retrain the learned generators instead of using the cached ones")
    parser.add_argument("--with-originals", action="store_true",
                        help="also write train/originals/: each pristine crop before the edit, with the same "
                        "global degradations (for paired training)")
    parser.add_argument("--workers", type=int, default=1,
                        help="processes writing samples (default 1; the output is the same for any number)")
    parser.set_defaults(func=run)


def _stderr(message: str) -> None:
    print(f"demo-data: {message}", file=sys.stderr, flush=True)


def run(args: argparse.Namespace) -> int:
    from inpaintseg.errors import InpaintsegError
    from inpaintseg.synth import generate_demo_data, method_table

    if args.list_methods:
        print(method_table())
        return 0
    if args.out is not None and args.out_positional is not None and args.out != args.out_positional:
        raise InpaintsegError(f"two output folders given ({args.out_positional} and --out {args.out}); give one.")
    args.out = args.out or args.out_positional
    if args.out is None:
        raise InpaintsegError("--out is required: the folder to write the dataset to (or pass --list-methods).")
    start = time.perf_counter()
    meta = generate_demo_data(
        args.out, n_train=args.n_train, n_test=args.n_test, size=args.img_size, seed=args.seed,
        methods=args.methods, exclude_methods=args.exclude_methods, families=args.families,
        exclude_families=args.exclude_families, test_methods=args.test_methods, test_families=args.test_families,
        degrade_level=args.degrade, photos_dir=args.photos, packaged_photos=True if args.packaged_photos else None,
        untouched_fraction=args.untouched_fraction, camera_noise=args.camera_noise, fill_noise=args.fill_noise,
        with_originals=args.with_originals,
        generators=args.generators, rebuild_generators=args.rebuild_generators, workers=args.workers,
        warn=_stderr, log=_stderr,
    )
    seconds = time.perf_counter() - start
    total = 0
    for split, split_meta in meta.items():
        images = split_meta["images"]
        total += len(images)
        families = Counter(info["family"] for info in images.values())
        shown = ", ".join(f"{name} {count}" for name, count in sorted(families.items()))
        print(f"{split}: {len(images)} images ({shown})")
    print(f"wrote {total} images (side {args.img_size} before degradations) to {args.out} in {seconds:.1f} s")
    return 0
