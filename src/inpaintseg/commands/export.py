"""`inpaintseg export`: write a model folder's network in another format (ONNX) beside its weights."""

from __future__ import annotations

import argparse

from inpaintseg.commands import MODEL_HELP, add_command, int_at_least

FORMATS = ("onnx",)


def register(subparsers) -> None:
    from inpaintseg.model.onnx_export import ONNX_OPSET, PARITY_TOLERANCE

    p = add_command(
        subparsers,
        "export",
        help="export a model folder to ONNX (model.onnx, for predict --engine onnx)",
        description="Trace the model folder's network to MODEL_DIR/model.onnx (dynamic batch, height and "
        "width; input 'image' = the normalised batch, output 'logits'), run it with onnxruntime on a few "
        "seeded images of several sizes and print the largest |probability difference| against PyTorch. "
        f"The file is written only when that difference is at most {PARITY_TOLERANCE:g}; the opset and "
        "checksums of model.onnx and of the weights it came from are recorded in config.json, so a stale "
        "model.onnx (the model retrained since) is refused. Needs the [onnx] extra (installed by make).",
        examples="  inpaintseg export --model runs/x/model --format onnx\n"
        "  inpaintseg predict --model runs/x/model --images test/images --engine onnx\n",
    )
    p.add_argument("--model", required=True, metavar="MODEL_DIR", help=MODEL_HELP)
    p.add_argument("--format", choices=FORMATS, default="onnx", help="export format (default onnx)")
    p.add_argument("--opset", type=int_at_least(13), default=ONNX_OPSET,
                   help=f"ONNX opset version (default {ONNX_OPSET})")
    p.add_argument("--int8", metavar="IMAGES",
                   help="also write model.int8.onnx (static int8 quantisation; predict --engine onnx-int8), with "
                   "ranges calibrated on half of these images (a folder, file or glob) and written only when its "
                   "masks on the other half agree with fp32 (mean Dice >= 0.995)")
    p.add_argument("--threads", type=int_at_least(1), default=None,
                   help="CPU threads for the parity check (default: every CPU available)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from inpaintseg.model.onnx_export import export_onnx
    from inpaintseg.runtime import tune_cpu_runtime

    if args.int8:  # a bad --int8 value is refused before model.onnx is written
        from inpaintseg.inference.quantize import calibration_paths

        calibration_paths(args.int8)
    tune_cpu_runtime(args.threads)
    result = export_onnx(args.model, opset=args.opset, threads=args.threads)
    print(f"export: wrote {result.describe()}")
    print(f"export: recorded opset {result.opset} and checksums in {args.model}/config.json; "
          f"predict with --engine onnx (or auto)")
    if args.int8:
        from inpaintseg.inference.quantize import quantize_int8

        int8 = quantize_int8(args.model, args.int8, threads=args.threads)
        print(f"export: wrote {int8.describe()}; predict with --engine onnx-int8")
    return 0
