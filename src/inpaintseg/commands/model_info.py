"""`inpaintseg model-info`: parameter count and forward GFLOPs of a network width, or of a model folder with its
card (`inpaintseg model-info base`)."""

from __future__ import annotations

import argparse

from inpaintseg.commands import add_command, add_renamed, int_at_least
from inpaintseg.model.spec import INPUT_STEMS, NORMS


def register(subparsers) -> None:
    p = add_command(
        subparsers,
        "model-info",
        help="print the parameters and GFLOPs per image of an Attention U-Net width",
        description="Build the Attention U-Net for the given width and depth (no weights are loaded) and "
        "print its parameter count, the forward GFLOPs for one IMG_SIZE x IMG_SIZE image (FLOPs = 2 x the "
        "multiply-adds of every convolution, counted with torch.utils.flop_counter) and a per-stage "
        "breakdown. A training step costs about 3x the forward FLOPs.",
        examples="  inpaintseg model-info\n"
        "  inpaintseg model-info base                               # the shipped detector and its card\n"
        "  inpaintseg model-info runs/x/model\n"
        "  inpaintseg model-info --base-channels 32 --img-size 512\n"
        "  inpaintseg model-info --base-channels 16 --no-attention   # the plain U-Net ablation\n"
        "  inpaintseg model-info --input-stem rgb+srm+bayar+npr      # cost of the forensic stem\n"
        "  inpaintseg model-info --encoder timm:resnet18             # a timm backbone (the [encoders] extra)\n",
    )
    p.add_argument("model", nargs="?", default=None, metavar="MODEL_DIR",
                   help="a model folder, or base (the shipped detector): print its architecture, training record "
                   "and card; the width flags below are then ignored")
    p.add_argument("--base-channels", type=int_at_least(1), default=16,
                   help="channels of the first stage; stage i has base x 2^i (default 16)")
    p.add_argument("--depth", type=int_at_least(1), default=4,
                   help="number of down-sampling steps (default 4: channels base x 1, 2, 4, 8, 16)")
    p.add_argument("--img-size", type=int_at_least(1), default=256, dest="img_size",
                   help="square input size in pixels for the FLOP count (default 256)")
    add_renamed(p, "--size", "--img-size", dest="img_size", type=int_at_least(1))
    p.add_argument("--in-channels", type=int_at_least(1), default=3, help="input channels (default 3)")
    p.add_argument("--encoder", default="unet", metavar="NAME",
                   help="unet (default) or timm:<name>, e.g. timm:resnet18 (no weights are loaded; depth and "
                   "channels then come from the backbone, --base-channels sizes its full-resolution branch)")
    p.add_argument("--no-attention", action="store_true",
                   help="plain U-Net (no attention gates), the ablation baseline")
    p.add_argument("--input-stem", choices=INPUT_STEMS, default="rgb",
                   help="input stem: rgb, or rgb next to forensic residuals (default rgb)")
    p.add_argument("--norm", choices=NORMS, default="batch",
                   help="normalisation in the conv blocks: batch or group (GroupNorm) (default batch)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from inpaintseg.model import ARCH_NAME, build_model, count_parameters, model_flops, stage_summary
    from inpaintseg.runtime import FORWARD_BYTES_PER_PIXEL_CHANNEL, check_image_side

    # The FLOPs are counted on a real forward pass: its memory grows with the image (1000000 asked for 12 TB).
    check_image_side("--img-size", args.img_size, (args.base_channels + args.in_channels)
                     * FORWARD_BYTES_PER_PIXEL_CHANNEL, "the forward pass that counts the FLOPs")

    if args.model is not None:
        return _run_folder(args)
    arch = {"name": ARCH_NAME, "in_channels": args.in_channels, "base_channels": args.base_channels,
            "depth": args.depth, "attention": not args.no_attention, "input_stem": args.input_stem,
            "encoder": args.encoder, "norm": args.norm}
    if args.encoder != "unet":
        del arch["depth"]
    model = build_model(arch, source="model-info")
    params = count_parameters(model)
    flops = model_flops(model, args.img_size)
    arch = model.architecture()
    kind = "Attention U-Net" if arch["attention"] else "plain U-Net (no attention gates)"
    widths = ", ".join(str(c) for c in model.encoders.channels)
    print(f"{kind}: encoder={args.encoder} base_channels={args.base_channels} depth={model.depth} "
          f"channels=({widths})")
    print(f"architecture: {arch}")
    print(f"parameters: {params:,} ({params * 4 / 2 ** 20:.2f} MiB as float32)")
    print(f"forward GFLOPs per {args.img_size}x{args.img_size} image: {flops / 1e9:.3f}")
    print(f"training step GFLOPs per image (~3x forward): {3 * flops / 1e9:.3f}")
    print()
    print(f"{'stage':<12} {'parameters':>12} {'GFLOPs':>9}")
    for name, stage_params, stage_flops in stage_summary(model, args.img_size):
        print(f"{name:<12} {stage_params:>12,} {stage_flops / 1e9:>9.3f}")
    return 0


def _run_folder(args: argparse.Namespace) -> int:
    from inpaintseg.model import count_parameters, model_flops
    from inpaintseg.model.card import card_lines
    from inpaintseg.model.io import load_model_dir
    from inpaintseg.model.shipped import resolve_model_dir

    folder = resolve_model_dir(args.model)
    network, config = load_model_dir(folder)
    size = config["input"]["size"]
    post = config["postprocess"]
    print(f"model: {folder}")
    print(f"architecture: {network.architecture()}")
    gate = post.get("gate")
    print(f"input: {config['input']['mode']} {size}x{size}; threshold {post['threshold']}, "
          f"image gate {'none' if gate is None else gate}, tta {post.get('tta')}, crf {post.get('crf')}")
    others = _other_tta_lines(config)
    if others:
        print(f"with another --tta (auto threshold and gate, crf off): {'; '.join(others)}")
    print(f"parameters: {count_parameters(network):,}; forward GFLOPs per {size}x{size} tile: "
          f"{model_flops(network, size) / 1e9:.3f}")
    for line in card_lines(config):
        print(line)
    return 0


def _other_tta_lines(config) -> list[str]:
    """What `predict --tta T` resolves to for each other TTA row of the calibration table."""
    from inpaintseg.inference.postprocess import resolve_postprocess

    post = config["postprocess"]
    lines = []
    for row in (post.get("calibration") or {}).get("table") or []:
        if row.get("crf") != "off" or row.get("tta") == post.get("tta"):
            continue
        resolved = resolve_postprocess(config, tta=row["tta"], crf="off")
        gate = "no gate" if resolved.gate is None else f"gate {resolved.gate:g}"
        lines.append(f"{row['tta']}: threshold {resolved.threshold:g}, {gate}")
    return lines
