"""One module per CLI subcommand; see `inpaintseg.cli`."""

import argparse


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


def threshold(text: str) -> float:
    """An argparse type: a probability threshold strictly between 0 and 1."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number in (0, 1), got {text!r}") from None
    if not 0.0 < value < 1.0:
        raise argparse.ArgumentTypeError(f"expected a threshold in (0, 1), got {value}")
    return value


def threshold_or_auto(text: str) -> str | float:
    """An argparse type: 'auto' or a threshold in (0, 1)."""
    return "auto" if text == "auto" else threshold(text)


def add_max_pixels_argument(p: argparse.ArgumentParser) -> None:
    """--max-pixels: the pixel limit of every image and mask read (checked from the header, before decoding).
    `inpaintseg.cli.run_guarded` applies it for the command's duration."""
    from inpaintseg.io import DEFAULT_MAX_PIXELS

    p.add_argument("--max-pixels", type=int_at_least(1), default=None, metavar="N",
                   help=f"refuse images and masks of more than N pixels, read from the file header before "
                   f"decoding (default {DEFAULT_MAX_PIXELS:_}); a larger file is named, the others go on")
