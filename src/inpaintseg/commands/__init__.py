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


def add_precision_argument(parser: argparse.ArgumentParser, what: str) -> None:
    """`--precision auto|32|bf16-mixed|16-mixed` for commands that run the network (same names as train's)."""
    from inpaintseg.precision import PRECISIONS

    parser.add_argument("--precision", choices=PRECISIONS, default="auto",
                        help=f"numeric precision of {what}: auto (default) = bf16 autocast on a CPU where a "
                        "short probe of this model measures it faster than fp32 (cached per machine), else 32; "
                        "32 or bf16-mixed force one (16-mixed: CUDA only). The choice is printed")
