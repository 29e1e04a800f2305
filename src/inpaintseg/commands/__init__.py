"""One module per CLI subcommand; see `inpaintseg.cli`. The helpers here keep one vocabulary across commands
(README "Commands"): the progress switch, renamed flags kept as hidden aliases, shared value types."""

import argparse
import re
import sys


# A library parameter whose flag is not `--` + the name with dashes (`n_train` -> `--n-train`); the training
# settings' own (TrainConfig's `flag=`: accelerator -> --device, devices -> --num-devices) come from `config`.
PARAMETER_FLAGS = {"size": "--img-size", "degrade_level": "--degrade", "photos_dir": "--photos",
                   "images_dir": "--images", "truth_dir": "--truth", "pred_dir": "--pred", "out_dir": "--out",
                   "n_examples": "--examples"}


def parameter_flag(name: str) -> str:
    """The CLI flag that sets the library parameter `name`."""
    if name in PARAMETER_FLAGS:
        return PARAMETER_FLAGS[name]
    from inpaintseg.config import TrainConfig

    meta = TrainConfig.__dataclass_fields__.get(name)
    return (meta and meta.metadata.get("flag")) or "--" + name.replace("_", "-")


def flag_message(exc: BaseException) -> str:
    """The error's message with each parameter it lists in `params` (`errors.InpaintsegError`) written as the
    CLI flag that sets it: the library names its parameters, the CLI's user its flags."""
    text = str(exc)
    for name in getattr(exc, "params", ()):
        flag = parameter_flag(name)
        # the name as a word, not part of a path (runs/out, out/x) or a file name (out.csv)
        text = re.sub(rf"(?<![\w./\\-]){re.escape(name)}(?![\w/\\-]|\.\w)", flag, text)
    return text


MODEL_HELP = ("model folder holding weights.safetensors and config.json (e.g. runs/<run>/model), or base: the "
              "detector shipped with inpaintseg")


def add_command(subparsers, name: str, help: str, description: str, examples: str) -> argparse.ArgumentParser:
    """Add a subcommand parser whose --help ends with usage examples."""
    return subparsers.add_parser(
        name,
        help=help,
        description=description,
        epilog="examples:\n" + examples,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )


def int_at_least(minimum: int):
    """An argparse type: a whole number >= `minimum`, with a message saying what came."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"expected a number >= {minimum}, got {value}")
        return value

    return parse


def number_in(low: float | None = None, high: float | None = None, *, open_low: bool = False,
              open_high: bool = False, what: str = "a number"):
    """An argparse type: a number within [low, high] (`open_low`/`open_high`: the bound itself excluded;
    None: unbounded), with a message saying what range was expected and what came. Accepts 50e6."""
    if low is not None and high is not None:
        expected = f"{what} in {'(' if open_low else '['}{low:g}, {high:g}{')' if open_high else ']'}"
    elif low is not None:
        expected = f"{what} {'>' if open_low else '>='} {low:g}"
    else:
        expected = f"{what} {'<' if open_high else '<='} {high:g}"

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}") from None
        too_low = low is not None and (value <= low if open_low else value < low)
        too_high = high is not None and (value >= high if open_high else value > high)
        if too_low or too_high or value != value:  # NaN is in no range
            raise argparse.ArgumentTypeError(f"expected {expected}, got {text}")
        return value

    return parse


threshold = number_in(0.0, 1.0, open_low=True, open_high=True, what="a threshold")
"""An argparse type: a probability threshold strictly between 0 and 1."""
fraction = number_in(0.0, 1.0, what="a fraction")
"""An argparse type: a fraction in [0, 1]."""
positive_number = number_in(0.0, open_low=True)
"""An argparse type: a number > 0."""


def threshold_or_auto(text: str) -> str | float:
    """An argparse type: 'auto' or a threshold in (0, 1)."""
    return "auto" if text == "auto" else threshold(text)


def pixel_count(text: str) -> int:
    """An argparse type: a whole number of pixels >= 1; 50000000, 50_000_000 and 50e6 are the same."""
    value = positive_number(text.replace("_", ""))
    if not value.is_integer():
        raise argparse.ArgumentTypeError(f"expected a whole number of pixels, got {text}")
    return int(value)


def pixels_text(n: int) -> str:
    """How every --help spells a pixel count: '100,000,000 (100 megapixels)'."""
    return f"{n:,} ({n / 1e6:g} megapixels)"


def add_max_pixels_argument(p: argparse.ArgumentParser, default: int | None = None, what: str = "") -> None:
    """--max-pixels N: the pixel limit of every image read (checked from the header, before decoding); one type
    and one spelling in every command. ``default`` None: `fileio.DEFAULT_MAX_PIXELS`, applied for the command's
    duration by `inpaintseg.cli.run_guarded`."""
    from inpaintseg.fileio import DEFAULT_MAX_PIXELS

    shown = DEFAULT_MAX_PIXELS if default is None else default
    p.add_argument("--max-pixels", type=pixel_count, default=default, metavar="N",
                   help=f"refuse images of more than N pixels (50e6 works), read from the file header before "
                   f"decoding (default {pixels_text(shown)}); " + (what or "a larger file is named, the others go on"))


DEVICE_HELP = "auto (CUDA when available, else the CPU), cpu, cuda or cuda:N (default auto)"


def device_name(text: str) -> str:
    """An argparse type: auto, cpu, cuda or cuda:N (checked against the machine when the model loads)."""
    kind, _, index = text.partition(":")
    if text in ("auto", "cpu", "cuda") or (kind == "cuda" and index.isdigit()):
        return text
    raise argparse.ArgumentTypeError(f"expected auto, cpu, cuda or cuda:N, got {text!r}")


def add_device_argument(p: argparse.ArgumentParser) -> None:
    """--device: where the network runs, one spelling in every command that loads a model."""
    p.add_argument("--device", type=device_name, default="auto", metavar="DEVICE", help=DEVICE_HELP)


def add_progress_arguments(parser: argparse.ArgumentParser, epochs: bool = False) -> None:
    """``--quiet`` / ``--progress``: the one progress switch of every long command (`inpaintseg.progress`);
    ``epochs``: the command trains, so it also reports one line per epoch."""
    group = parser.add_mutually_exclusive_group()
    lines = "one plain line per epoch and per 10%% of each stage" if epochs else "one plain line per 10%% of a run"
    group.add_argument("--quiet", dest="progress_mode", action="store_const", const="lines",
                       help=f"no progress bars: {lines} (what a log file gets by default); the lines saying "
                       "what is used still print")
    group.add_argument("--progress", dest="progress_mode", action="store_const", const="bar",
                       help="progress bars even when stderr is not a terminal")
    parser.set_defaults(progress_mode="auto")


class _RenamedFlag(argparse.Action):
    """An old spelling of a flag: stores into the new flag's dest and says once that it was renamed."""

    def __init__(self, option_strings, dest, new_name: str = "", **kwargs):
        self.new_name = new_name
        super().__init__(option_strings, dest, **kwargs)

    def __call__(self, parser, namespace, values, option_string=None):
        print(f"{parser.prog}: note: {option_string} is now {self.new_name} (the old spelling still works in this "
              "release)", file=sys.stderr)
        setattr(namespace, self.dest, self.const if self.nargs == 0 else values)


def add_renamed(parser: argparse.ArgumentParser, old: str, new: str, dest: str, **kwargs) -> None:
    """Accept ``old`` as a hidden alias of ``new`` (same ``dest``; for one release)."""
    parser.add_argument(old, dest=dest, action=_RenamedFlag, new_name=new, help=argparse.SUPPRESS, **kwargs)


def rle_order_argument(parser: argparse.ArgumentParser, verb: str) -> None:
    """``--rle-order row|column`` (predict writes, evaluate reads)."""
    parser.add_argument("--rle-order", choices=("row", "column"), default="row",
                        help=f"pixel order of the RLE {verb}: row = left to right, then top to bottom (this "
                        "competition's convention, the default); column = top to bottom, then left to right "
                        "(Kaggle's older convention)")

def add_precision_argument(parser: argparse.ArgumentParser, what: str) -> None:
    """`--precision auto|32|bf16-mixed|16-mixed` for commands that run the network (same names as train's)."""
    from inpaintseg.precision import PRECISIONS

    parser.add_argument("--precision", choices=PRECISIONS, default="auto",
                        help=f"numeric precision of {what}: auto (default) = bf16 autocast on a CPU where a "
                        "short probe of this model measures it faster than fp32 (cached per machine), else 32; "
                        "32 or bf16-mixed force one (16-mixed: CUDA only). The choice is printed")
