"""`inpaintseg train`: train the Attention U-Net on DATA/train/{images,masks} and export RUN_DIR/model/."""

from __future__ import annotations

import argparse
import sys

from inpaintseg.commands import add_command, add_max_pixels_argument, add_progress_arguments

DESCRIPTION = """\
Train the Attention U-Net with PyTorch Lightning (the seed's settings by default: Adam lr 1e-3,
cosine annealing over 50 epochs, batch 16, 256x256 inputs, 10% validation, BCE + Dice loss).

Settings come from the defaults, then a YAML file (--config), then the flags below. The run
folder gets config.yaml, split.json, metrics.csv (one row per epoch), checkpoints/{best,last}.ckpt
(for --resume only) and the exported model in model/ (weights.safetensors + config.json, with the
threshold that maximises validation Dice)."""

EXAMPLES = """\
  inpaintseg train --data .                              # seed layout: ./train/images, ./train/masks
  inpaintseg train --data data --epochs 10 --out runs/quick
  inpaintseg train --data data --config configs/default.yaml --batch-size 8 --input-mode crop
  inpaintseg train --data data --max-time-minutes 5      # time budget; the best model is exported
  inpaintseg train --resume runs/quick                   # continue a killed run
  inpaintseg train --data data/train --epochs 10          # the train/ folder itself also works
  inpaintseg train --data data --num-devices 2 --precision 16-mixed   # DDP on 2 GPUs
  inpaintseg train --data data --quiet > train.log 2>&1  # one plain line per epoch, no bars
  inpaintseg train --print-config --lr 3e-4 > my.yaml    # write a config file to edit
  inpaintseg train --data data --encoder timm:resnet18 --encoder-weights imagenet   # needs [encoders] + internet
  inpaintseg train --data data --encoder timm:resnet18 --encoder-weights resnet18.safetensors \\
      --freeze-encoder-epochs 2 --encoder-lr-mult 0.1
  inpaintseg train --data new_data --init-from runs/quick/model --lr 1e-4 --epochs 5   # fine-tune
"""


def configure_parser(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add the train options to `parser` (shared by `inpaintseg train` and train_model.py)."""
    from inpaintseg.config import add_config_arguments

    parser.add_argument("--config", metavar="FILE", help="YAML file of settings (see configs/default.yaml); "
                        "flags given on the command line override it")
    parser.add_argument("--resume", metavar="RUN_DIR", help="continue the run in RUN_DIR from its last "
                        "checkpoint, with its saved config (only run-control and hardware flags may change)")
    parser.add_argument("--print-config", action="store_true",
                        help="print the effective configuration as YAML and exit")
    add_config_arguments(parser)
    add_max_pixels_argument(parser)

    add_progress_arguments(parser, epochs=True)
    parser.set_defaults(func=run)
    return parser


def register(subparsers) -> None:
    parser = add_command(subparsers, "train", help="train a model on a dataset folder",
                         description=DESCRIPTION, examples=EXAMPLES)
    configure_parser(parser)


def run(args: argparse.Namespace) -> int:
    import yaml

    from inpaintseg.config import load_config, overrides_from_args
    from inpaintseg.run_dir import resume_config

    overrides = overrides_from_args(args)
    if args.resume:
        if args.config:
            from inpaintseg.errors import ConfigError

            raise ConfigError("--resume uses the run folder's own config.yaml; drop --config "
                              "(or start a new run with --config and --out).")
        config = resume_config(args.resume, overrides)
    else:
        from inpaintseg.config import load_yaml
        from inpaintseg.training.finetune import inherit_input, resolve_init_from

        config = resolve_init_from(load_config(args.config, overrides), explicit=overrides)
        in_file = set(load_yaml(args.config)) if args.config else set()
        config, inherited = inherit_input(config, given=set(overrides) | in_file)
        if inherited:
            print(f"train: input from --init-from {config.init_from}: "
                  + ", ".join(f"{k} {v}" for k, v in inherited.items())
                  + " (set --input-mode / --img-size to change)", file=sys.stderr)
    if args.print_config:
        sys.stdout.write(yaml.safe_dump(config.to_dict(), sort_keys=False))
        return 0

    from inpaintseg.run_dir import resume_point
    from inpaintseg.training import train

    if args.resume:
        note = resume_point(args.resume).note
        if note:
            print(f"train: {note}", file=sys.stderr)
    result = train(config, resume=bool(args.resume))
    if result.is_primary:
        print(result.summary())
    return 0
