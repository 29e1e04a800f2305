"""Validation calibration: the adaptive search (the default) vs the full search, on a trained model (issue 23).

Reads a run folder (RUN/model + RUN/split.json), takes its validation images at their original size, and runs
`calibrate_postprocessing` twice at the same precision: adaptive (``tolerance`` 0.01) and full (``tolerance``
None), in the order given by --order (alternate runs share the load from other processes). Prints the seconds,
the images and forward passes each used, both choices and the full table's Dice of the adaptive choice, i.e.
how much Dice the early stop cost on these images.

    python benchmarks/calibration_cost.py RUN --max-images 300 --json out.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run", help="run folder with model/ and split.json")
    p.add_argument("--max-images", type=int, default=300, help="validation images at most (default 300)")
    p.add_argument("--tta-modes", default=None, help="comma-separated TTA modes (default: all)")
    p.add_argument("--precision", default="32", help="model precision (default 32)")
    p.add_argument("--input-size", type=int, default=None,
                   help="override the model's input size (resize mode; a cheaper stand-in on a loaded machine)")
    p.add_argument("--crf-max-images", type=int, default=64, help="CRF images at most (default 64)")
    p.add_argument("--order", default="adaptive,full", help="runs in this order (default adaptive,full)")
    p.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    return p.parse_args(argv)


def main(argv=None) -> int:
    import torch

    from inpaintseg.data import LazySamples
    from inpaintseg.data.pairing import pair_files
    from inpaintseg.data.dataset import select_stems
    from inpaintseg.inference import calibrate_postprocessing
    from inpaintseg.inference.tta import TTA_CHOICES
    from inpaintseg.model.io import load_model_dir
    from inpaintseg.runtime import tune_cpu_runtime

    args = parse_args(argv)
    tune_cpu_runtime()
    run = Path(args.run)
    network, config = load_model_dir(run / "model")[:2]
    split = json.loads((run / "split.json").read_text())
    data = Path(config["data"]["data_dir"]) / "train"
    samples = LazySamples(select_stems(pair_files(data / "images", data / "masks"), split["val"], str(data)))
    modes = tuple(args.tta_modes.split(",")) if args.tta_modes else TTA_CHOICES
    if args.input_size:
        config = {**config, "input": {**config["input"], "size": args.input_size}}

    class Counting(torch.nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner, self.pixels = inner, 0

        def forward(self, x):
            self.pixels += x.shape[0] * x.shape[2] * x.shape[3]
            return self.inner(x)

    results = {}
    for kind in args.order.split(","):
        model = Counting(network)
        t0 = time.perf_counter()
        post = calibrate_postprocessing(model, config, samples, batch_size=8, tta_modes=modes,
                                        max_images=args.max_images, crf_max_images=args.crf_max_images,
                                        precision=args.precision,
                                        tolerance=None if kind == "full" else 0.01,
                                        report=lambda line: print(line, file=sys.stderr, flush=True))
        seconds = time.perf_counter() - t0
        cal = post["calibration"]
        results[kind] = {"seconds": round(seconds, 1), "tta": post["tta"], "crf": post["crf"],
                         "threshold": post["threshold"], "n_images": cal["n_images"],
                         "n_crf_images": cal["n_crf_images"], "forward_megapixels": round(model.pixels / 1e6, 1),
                         "search": cal["search"], "table": cal["table"]}
        print(f"{kind}: {seconds:.1f} s, {cal['n_images']} images ({cal['n_crf_images']} CRF), "
              f"{model.pixels / 1e6:.0f} Mpx forward, choice tta={post['tta']} crf={post['crf']} "
              f"threshold={post['threshold']}", flush=True)
    if "full" in results and "adaptive" in results:
        rows = {(r["tta"], r["crf"]): r for r in results["full"]["table"]}
        a, f = results["adaptive"], results["full"]
        key = (a["tta"], a["crf"])
        if key in rows:
            loss = rows[(f["tta"], f["crf"])]["dice"] - rows[key]["dice"]
            print(f"full-search Dice of the adaptive choice: {rows[key]['dice']:.4f} vs the full choice "
                  f"{rows[(f['tta'], f['crf'])]['dice']:.4f} (cost {loss:+.4f}); time {a['seconds']:.0f} s vs "
                  f"{f['seconds']:.0f} s ({f['seconds'] / max(a['seconds'], 1e-9):.1f}x)")
            results["dice_cost"] = round(loss, 5)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
