"""Issue 13 measurements, run by `predict_speed.py --scale` (or alone: `python benchmarks/bench_scale.py`).

- engines: bare forward img/s of PyTorch (channels_last, the predictor's CPU default) vs onnxruntime on the
  exported model.onnx, at batch 1 and 8, 256x256, in alternating ~0.5 s rounds so that load from other
  processes hits both;
- pipeline: the cheapest `predict` (TTA none, CRF off) per engine, whole command vs its model part, the
  bare forward re-measured right before and after every run (same load window), median of 3 ratios;
- big: one 4000x3000 PNG through a crop-mode model (256 tiles, overlap 64) per engine, in a fresh process:
  wall seconds and peak RSS (ru_maxrss), and the tiles' bare forward time as its model part;
- shard: `predict --num-devices 2` vs one process on the same folder (fresh processes, alternated);
- agreement (`--agreement MODEL_DIR IMAGES`): both engines on a real test set with the stored
  post-processing: images and pixels whose mask differs, min/mean Dice between the engines' masks.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
# Peak RSS as VmHWM of the child's own address space: ru_maxrss would report the parent's RSS at fork time
# (it survives fork + exec), which is what the first version of this script measured (2234 MiB for both engines).
RSS_SNIPPET = ("import sys; from inpaintseg import cli; code = cli.main(sys.argv[1:]); "
               "hwm = [l.split()[1] for l in open('/proc/self/status') if l.startswith('VmHWM:')]; "
               "print('MAXRSS_KB', hwm[0] if hwm else ''); sys.exit(code)")


def _engines(model_dir: Path, threads: int):
    from inpaintseg import load_model

    return {name: load_model(model_dir, device="cpu", engine=name, precision="32").engine for name in ("torch", "onnx")}


def forward_rates(engines: dict, batch: int, size: int, seconds: float) -> dict[str, float]:
    """Images/s of engine(x) alone for a fixed normalised batch, engines alternating in ~0.5 s rounds."""
    import torch

    x = torch.randn(batch, 3, size, size, generator=torch.Generator().manual_seed(0))
    spent = dict.fromkeys(engines, 0.0)
    done = dict.fromkeys(engines, 0)
    with torch.inference_mode():
        for engine in engines.values():
            engine(x)
        while min(spent.values()) < seconds:
            for name, engine in engines.items():
                start = time.perf_counter()
                while time.perf_counter() - start < min(0.5, seconds):
                    engine(x)
                    done[name] += batch
                spent[name] += time.perf_counter() - start
    return {name: done[name] / spent[name] for name in engines}


def _run(args: list[str]) -> tuple[float, int | None]:
    """Wall seconds and peak RSS (KiB) of `inpaintseg ARGS` in a fresh process."""
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", RSS_SNIPPET, *args], capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(ROOT / "src")})
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"inpaintseg {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr[-2000:]}")
    rss = [int(line.split()[1]) for line in proc.stdout.splitlines()
           if line.startswith("MAXRSS_KB") and line.split()[1:]]
    return seconds, (rss[0] if rss else None)


def pipeline_rows(model_dir: Path, images: Path, out: Path, n: int, batch: int, size: int, reps: int = 3) -> list:
    """Cheapest setting per engine: whole `predict` (in this process) / (n x bare forward s per image)."""
    from inpaintseg import cli

    engines = _engines(model_dir, 0)
    rows = []
    for name in engines:
        ratios, whole = [], []
        for rep in range(reps):
            before = forward_rates({name: engines[name]}, batch, size, 1.0)[name]
            start = time.perf_counter()
            code = cli.main(["predict", "--quiet", "--model", str(model_dir), "--images", str(images),
                             "--submission", str(out / f"{name}_{rep}.csv"), "--masks-out", str(out / f"m_{name}_{rep}"),
                             "--tta", "none", "--crf", "off", "--precision", "32", "--batch-size", str(batch), "--engine", name])
            seconds = time.perf_counter() - start
            after = forward_rates({name: engines[name]}, batch, size, 1.0)[name]
            assert code == 0
            parts = n * 2.0 / (before + after)
            ratios.append(seconds / parts)
            whole.append(seconds)
        rows.append({"engine": name, "images_per_s": n / statistics.median(whole),
                     "ratios": ratios, "ratio_median": statistics.median(ratios)})
    return rows


def big_image(model_dir: Path, tmp: Path, batch: int, seconds: float) -> list:
    """A 4000x3000 image through a crop-mode copy of the model, per engine: wall s, peak RSS, model part."""
    import json as _json
    import shutil

    from inpaintseg.inference.tiling import tile_windows
    from inpaintseg.fileio import write_png
    from inpaintseg.model.onnx_export import export_onnx

    crop = tmp / "crop_model"
    shutil.copytree(model_dir, crop)
    config = _json.loads((crop / "config.json").read_text())
    config["input"]["mode"] = "crop"
    config.pop("onnx", None)
    (crop / "config.json").write_text(_json.dumps(config))
    (crop / "model.onnx").unlink(missing_ok=True)
    export_onnx(crop)
    folder = tmp / "big"
    rng = np.random.default_rng(0)
    write_png(folder / "big.png", rng.integers(0, 256, (3000, 4000, 3), dtype=np.uint8))
    tile = config["input"]["size"]
    tiles = len(list(tile_windows(3000, 4000, tile, int(round(tile * 0.25)))))
    engines = _engines(crop, 0)
    rows = []
    for name in engines:
        rate = forward_rates({name: engines[name]}, batch, tile, seconds)[name]
        wall, rss = _run(["predict", "--quiet", "--model", str(crop), "--images", str(folder), "--submission",
                          str(tmp / f"big_{name}.csv"), "--masks-out", str(tmp / f"big_masks_{name}"),
                          "--tta", "none", "--crf", "off", "--precision", "32", "--engine", name, "--batch-size", str(batch)])
        rows.append({"engine": name, "seconds": wall, "peak_rss_mib": rss / 1024 if rss else None,
                     "tiles": tiles, "model_part_s": tiles / rate})
    return rows


def sharded(model_dir: Path, images: Path, tmp: Path, reps: int = 2) -> dict:
    """Wall seconds of `predict` in 1 process vs `--num-devices 2`, fresh processes, alternated."""
    times: dict[str, list[float]] = {"1 process": [], "2 processes": []}
    for rep in range(reps):
        for label, extra in (("1 process", []), ("2 processes", ["--num-devices", "2"])):
            wall, _ = _run(["predict", "--quiet", "--model", str(model_dir), "--images", str(images), "--submission",
                            str(tmp / f"shard_{rep}_{len(extra)}.csv"), "--tta", "none", "--crf", "off", "--precision", "32",
                            "--engine", "torch", *extra])
            times[label].append(wall)
    return {k: min(v) for k, v in times.items()}


def agreement(model_dir: Path, images: Path) -> dict:
    """Both engines on a real test set (stored post-processing): masks that differ, Dice between them."""
    from inpaintseg import load_model
    from inpaintseg.inference.pipeline import predict_folder
    from inpaintseg.model.io import ONNX_FILE
    from inpaintseg.model.onnx_export import export_onnx

    if not (model_dir / ONNX_FILE).is_file():
        export_onnx(model_dir)
    masks, seconds = {}, {}
    for name in ("torch", "onnx"):
        model = load_model(model_dir, device="cpu", engine=name, precision="32")
        with tempfile.TemporaryDirectory() as tmp:
            start = time.perf_counter()
            predict_folder(model, images, out=None, masks_out=tmp, progress=False)
            seconds[name] = time.perf_counter() - start
            from inpaintseg.fileio import read_mask

            masks[name] = {p.stem: read_mask(p) for p in Path(tmp).iterdir()}
    dice, pixels, differ = [], 0, 0
    for stem, a in masks["torch"].items():
        b = masks["onnx"][stem]
        total = int(a.sum()) + int(b.sum())
        dice.append(1.0 if total == 0 else 2 * int((a & b).sum()) / total)
        d = int((a != b).sum())
        pixels += d
        differ += d > 0
    return {"images": len(dice), "images_differing": differ, "pixels_differing": pixels,
            "pixels": int(sum(m.size for m in masks["torch"].values())), "min_dice": min(dice),
            "mean_dice": float(np.mean(dice)), "seconds": seconds}


def run_scale(model_dir: Path, images: Path, tmp: Path, args) -> dict:
    """Every section; prints a block and returns the numbers."""
    from inpaintseg.model.onnx_export import export_onnx

    exported = export_onnx(model_dir)
    print(f"\nONNX export: {exported.describe()}")
    engines = _engines(model_dir, 0)
    results: dict = {"export_parity": exported.parity}
    results["engine_forward"] = {b: forward_rates(engines, b, args.size, args.seconds) for b in (1, 8)}
    for b, rates in results["engine_forward"].items():
        print(f"bare forward batch {b}: torch {rates['torch']:.1f} img/s, onnxruntime {rates['onnx']:.1f} img/s "
              f"= {rates['onnx'] / rates['torch']:.2f}x")
    if "pipeline" in args.scale:
        results["pipeline"] = pipeline_rows(model_dir, images, tmp, args.n, args.batch_size, args.size)
        for r in results["pipeline"]:
            print(f"predict tta none, crf off, engine {r['engine']}: {r['images_per_s']:.1f} img/s, whole / model part "
                  f"= {r['ratio_median']:.2f} (runs: {', '.join(f'{x:.2f}' for x in r['ratios'])})")
    if "big" in args.scale:
        results["big"] = big_image(model_dir, tmp, args.batch_size, args.seconds)
        for r in results["big"]:
            print(f"4000x3000 crop mode, engine {r['engine']}: {r['seconds']:.1f} s wall (fresh process, incl. start-up"
                  f"), peak RSS {r['peak_rss_mib']:.0f} MiB, {r['tiles']} tiles, model part {r['model_part_s']:.1f} s")
    if "shard" in args.scale:
        results["shard"] = sharded(model_dir, images, tmp)
        one, two = results["shard"]["1 process"], results["shard"]["2 processes"]
        print(f"predict {args.n} images, fresh processes: 1 process {one:.1f} s, --num-devices 2 {two:.1f} s "
              f"(= {one / two:.2f}x)")
    if args.agreement:
        results["agreement"] = agreement(Path(args.agreement[0]), Path(args.agreement[1]))
        a = results["agreement"]
        print(f"engines on {args.agreement[1]}: {a['images_differing']} of {a['images']} masks differ, "
              f"{a['pixels_differing']} of {a['pixels']} pixels; Dice torch vs onnx min {a['min_dice']:.6f}, "
              f"mean {a['mean_dice']:.6f}; seconds {json.dumps({k: round(v, 1) for k, v in a['seconds'].items()})}")
    return results


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--scale", default="", help="issue-13 sections, comma-separated: pipeline,big,shard (the engine "
                   "forward comparison runs whenever this is non-empty)")
    p.add_argument("--agreement", nargs=2, metavar=("MODEL_DIR", "IMAGES"),
                   help="also compare the two engines' masks of a trained model on a real test set")


def main(argv=None) -> int:
    """The issue-13 sections alone, on the same random-init model and images as predict_speed.py."""
    p = argparse.ArgumentParser(description="issue 13 measurements (see the module docstring)")
    p.add_argument("--n", type=int, default=48)
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--width", type=int, default=16)
    p.add_argument("--depth", type=int, default=4)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--seconds", type=float, default=3.0)
    p.add_argument("--json")
    add_arguments(p)
    args = p.parse_args(argv)
    args.scale = args.scale or "pipeline,big,shard"
    import torch

    from inpaintseg.data.input_spec import input_section
    from inpaintseg.model import build_model
    from inpaintseg.model.io import save_model_dir
    from inpaintseg.runtime import tune_cpu_runtime

    from predict_speed import architecture, make_images

    runtime = tune_cpu_runtime()
    print(f"torch {torch.__version__}, {runtime['threads']} threads; width {args.width}, depth {args.depth}, "
          f"random init (seed 0), batch {args.batch_size}, {args.n} PNGs of {args.size}x{args.size}")
    torch.manual_seed(0)
    model = build_model(architecture(args)).eval()
    with tempfile.TemporaryDirectory(prefix="bench_scale_") as tmp:
        tmp = Path(tmp)
        model_dir = save_model_dir(tmp / "model", model, {
            "architecture": architecture(args), "input": input_section("resize", args.size),
            "postprocess": {"threshold": 0.5, "tta": "none", "crf": "off"}})
        make_images(tmp / "images", args.n, args.size)
        results = run_scale(model_dir, tmp / "images", tmp, args)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2, default=str) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
