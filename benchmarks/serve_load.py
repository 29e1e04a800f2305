"""Load on `inpaintseg serve`: requests/s and latency percentiles next to the bare `model.predict` time.

    python benchmarks/serve_load.py [--model DIR] [--sizes 256x256,2048x1536] [--concurrency 1,4,16]
                                    [--requests 24] [--cell-seconds 90] [--json FILE]

Starts `inpaintseg serve` as a child process on a free loopback port (127.0.0.1 only), measures in the same
run the bare `InpaintModel.predict` time on the decoded image (the same model, in this process, in a
worker thread as the server runs it, while the server is idle, after warming up), then for each image size and concurrency sends requests from that many client threads
(each a keep-alive httpx client) and reports requests/s, p50/p95/p99 latency (send -> whole JSON answer
received and parsed), the ratio p50 / bare predict, errors by status, and the server's resident memory (VmHWM
peak and VmRSS now, from /proc). A last "overload" cell sends more concurrent requests than the server
admits (workers + queue) and expects only 200s and 503s. Bounded: every cell stops after --requests
answers or --cell-seconds, whichever comes first, and the server is stopped at the end (also on Ctrl+C).

Without --model it exports an untrained model with the default training config (width 16, depth 4, resize
256, no TTA, no CRF; --mode crop for native-resolution tiles): untrained weights cost the same time as
trained ones. Uploads are JPEG (quality 95),
as photos are.
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", help="model folder (default: an untrained width-16 resize-256 model)")
    p.add_argument("--mode", choices=("resize", "crop"), default=None,
                   help="input mode of the exported untrained model (default: the training default, resize)")
    p.add_argument("--sizes", default="256x256,2048x1536", help="WxH list (default 256x256,2048x1536)")
    p.add_argument("--concurrency", default="1,4,16", help="client threads per cell (default 1,4,16)")
    p.add_argument("--requests", type=int, default=24, help="answers per cell, at least 2 x concurrency (default 24)")
    p.add_argument("--cell-seconds", type=float, default=90.0, help="time limit of one cell (default 90)")
    p.add_argument("--workers", type=int, default=1, help="serve --workers (default 1)")
    p.add_argument("--queue", type=int, default=16, help="serve --queue (default 16)")
    p.add_argument("--threads", type=int, default=None, help="serve --threads and this process's torch threads")
    p.add_argument("--bare-repeats", type=int, default=5, help="bare predict calls per size; the median (default 5)")
    p.add_argument("--no-overload", action="store_true", help="skip the overload (503) cell")
    p.add_argument("--json", help="also write the results as JSON")
    return p.parse_args(argv)


def export_default_model(folder: Path, mode: str | None = None) -> Path:
    import torch

    from inpaintseg.config import TrainConfig
    from inpaintseg.data.input_spec import input_section
    from inpaintseg.model import build_model
    from inpaintseg.model.io import save_model_dir

    cfg = TrainConfig()
    arch = {"name": "AttentionUNet", "in_channels": 3, "out_channels": 1, "base_channels": cfg.base_channels,
            "depth": cfg.depth, "attention": True}
    torch.manual_seed(0)
    config = {"architecture": arch, "input": input_section(mode or cfg.input_mode, cfg.img_size),
              "postprocess": {"threshold": 0.5, "tta": "none", "crf": "off"}}
    return save_model_dir(folder, build_model(arch), config)


def test_image(width: int, height: int) -> np.ndarray:
    """A photo-like image: smooth gradients, texture and a few edges (JPEG size close to a real photo's)."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    base = np.dstack([128 + 100 * np.sin(xx / 97.0), 128 + 100 * np.cos(yy / 73.0), (xx + yy) % 256])
    base += rng.normal(0, 12, base.shape)
    base[height // 4: height // 2, width // 3: width // 2] *= 0.5
    return np.clip(base, 0, 255).astype(np.uint8)


def jpeg_bytes(rgb: np.ndarray) -> bytes:
    import cv2

    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 95])
    assert ok
    return buf.tobytes()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def proc_memory_mb(pid: int) -> dict[str, float]:
    out = {}
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                out[key] = int(value.split()[0]) / 1024
    except OSError:
        pass
    return out


def warm_up(call, min_calls: int = 5, max_calls: int = 25, max_seconds: float = 60.0) -> int:
    """Call until the time per call settles (the last three within 1.5x of each other; two calls suffice once
    30 s have passed, for slow models) or the limits: the first calls in a fresh process are several times
    slower on this machine. Returns the calls made."""
    times: list[float] = []
    start = time.perf_counter()
    while len(times) < max_calls and time.perf_counter() - start < max_seconds:
        t0 = time.perf_counter()
        call()
        times.append(time.perf_counter() - t0)
        if len(times) >= min_calls and max(times[-3:]) <= 1.5 * min(times[-3:]):
            break
        if len(times) >= 2 and time.perf_counter() - start > 30 and max(times[-2:]) <= 1.5 * min(times[-2:]):
            break
    return len(times)


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


def run_cell(url: str, data: bytes, concurrency: int, n_requests: int, seconds: float) -> dict:
    import httpx

    latencies: list[float] = []
    statuses: dict[int, int] = {}
    lock = threading.Lock()
    issued = [0]
    deadline = time.monotonic() + seconds

    def client() -> None:
        with httpx.Client(timeout=max(seconds, 30)) as http:
            while True:
                with lock:
                    if issued[0] >= n_requests or time.monotonic() > deadline:
                        return
                    issued[0] += 1
                start = time.perf_counter()
                try:
                    response = http.post(url + "/api/v1/predict", files={"image": ("bench.jpg", data)})
                    status = response.status_code
                    if status == 200:
                        response.json()
                except httpx.HTTPError:
                    status = -1
                elapsed = time.perf_counter() - start
                with lock:
                    statuses[status] = statuses.get(status, 0) + 1
                    if status == 200:
                        latencies.append(elapsed)

    start = time.perf_counter()
    with cf.ThreadPoolExecutor(concurrency) as pool:
        for f in [pool.submit(client) for _ in range(concurrency)]:
            f.result()
    wall = time.perf_counter() - start
    ok = statuses.get(200, 0)
    return {"concurrency": concurrency, "answers": sum(statuses.values()), "ok": ok, "statuses": statuses,
            "wall_s": wall, "requests_per_s": ok / wall if wall else 0.0,
            "p50_s": percentile(latencies, 50), "p95_s": percentile(latencies, 95), "p99_s": percentile(latencies, 99)}


def main(argv=None) -> int:
    args = parse_args(argv)
    sys.path.insert(0, str(REPO / "src"))

    import inpaintseg
    from inpaintseg.runtime import tune_cpu_runtime
    from inpaintseg.service.server import wait_until_ready

    sizes = [tuple(int(v) for v in s.lower().split("x")) for s in args.sizes.split(",")]
    levels = [int(c) for c in args.concurrency.split(",")]
    runtime = tune_cpu_runtime(args.threads)
    tmp = tempfile.TemporaryDirectory(prefix="serve_load_")
    model_dir = Path(args.model) if args.model else export_default_model(Path(tmp.name) / "model", args.mode)
    model = inpaintseg.load_model(model_dir, device="cpu")
    print(f"serve_load: model {model_dir} ({model.input['mode']} {model.input['size']}, "
          f"{model.postprocess().describe()}); {os.cpu_count()} CPUs, {runtime.get('threads')} torch threads; "
          f"load average {os.getloadavg()[0]:.1f}", file=sys.stderr)

    images = {size: test_image(*size) for size in sizes}
    uploads = {size: jpeg_bytes(img) for size, img in images.items()}
    # The pixels the server will see; bare predict runs on them in this process while the server is idle,
    # right before and right after each size's cells (the machine's load drifts), after warming up.
    from inpaintseg.fileio import decode_image_bytes

    decoded = {size: decode_image_bytes(data, "bench.jpg") for size, data in uploads.items()}
    bare_samples: dict = {size: [] for size in sizes}

    def measure_bare_in_thread(size) -> None:
        warm_up(lambda: model.predict(decoded[size]))
        for _ in range(args.bare_repeats):
            t0 = time.perf_counter()
            model.predict(decoded[size])
            bare_samples[size].append(time.perf_counter() - t0)

    bare_thread = cf.ThreadPoolExecutor(1)  # as the server runs it: in a worker thread

    def measure_bare(size) -> None:
        bare_thread.submit(measure_bare_in_thread, size).result()

    port = free_port()
    cmd = [sys.executable, "-m", "inpaintseg.cli", "serve", "--model", str(model_dir), "--port", str(port),
           "--device", "cpu", "--workers", str(args.workers), "--queue", str(args.queue)]
    if args.threads:
        cmd += ["--threads", str(args.threads)]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO / "src"), os.environ.get("PYTHONPATH", "")])}
    env.pop("INPAINTSEG_TOKEN", None)
    server = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}"
    rows = []
    try:
        if not wait_until_ready(url, server, timeout=120):
            raise SystemExit(f"serve_load: the server did not start:\n{server.stderr.read()}")
        idle = proc_memory_mb(server.pid)
        print(f"serve_load: server pid {server.pid} up, RSS {idle.get('VmRSS', 0):.0f} MB", file=sys.stderr)
        cells = [(size, c, max(args.requests, 2 * c)) for size in sizes for c in levels]
        if not args.no_overload:
            over = 2 * (args.workers + args.queue)
            cells.append((sizes[0], over, 2 * over))
        for size, concurrency, n in cells:
            if not bare_samples[size] or concurrency == levels[0]:
                measure_bare(size)
            warm_up(lambda: run_cell(url, uploads[size], 1, 1, args.cell_seconds))  # not counted
            row = run_cell(url, uploads[size], concurrency, n, args.cell_seconds)
            if concurrency == levels[-1]:
                measure_bare(size)
            mem = proc_memory_mb(server.pid)
            bare = statistics.median(bare_samples[size])
            row.update({"size": f"{size[0]}x{size[1]}", "bare_predict_s": bare, "bare_samples_s": list(bare_samples[size]),
                        "p50_over_bare": row["p50_s"] / bare, "server_rss_mb": mem.get("VmRSS"),
                        "server_peak_rss_mb": mem.get("VmHWM"),
                        "overload": concurrency > args.workers + args.queue})
            rows.append(row)
            errors = {k: v for k, v in row["statuses"].items() if k != 200}
            print(f"serve_load: {row['size']} c={concurrency:<3} {row['ok']}/{row['answers']} ok "
                  f"{row['requests_per_s']:.2f} req/s p50 {row['p50_s'] * 1000:.0f} ms p95 {row['p95_s'] * 1000:.0f} "
                  f"p99 {row['p99_s'] * 1000:.0f} ms (x{row['p50_over_bare']:.2f} bare) other {errors or '-'} "
                  f"RSS {mem.get('VmRSS', 0):.0f} MB peak {mem.get('VmHWM', 0):.0f} MB", file=sys.stderr)
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
        tmp.cleanup()

    print("\n| image | concurrency | ok / answers | other statuses | req/s | p50 ms | p95 ms | p99 ms | bare predict ms "
          "| p50 / bare | server RSS (peak) MB |")
    print("|---|--:|--:|---|--:|--:|--:|--:|--:|--:|--:|")
    for r in rows:
        other = ", ".join(f"{k}: {v}" for k, v in sorted(r["statuses"].items()) if k != 200) or "-"
        print(f"| {r['size']} | {r['concurrency']}{' (overload)' if r['overload'] else ''} | {r['ok']} / "
              f"{r['answers']} | {other} | {r['requests_per_s']:.2f} | {r['p50_s'] * 1000:.0f} | "
              f"{r['p95_s'] * 1000:.0f} | {r['p99_s'] * 1000:.0f} | {r['bare_predict_s'] * 1000:.0f} | "
              f"{r['p50_over_bare']:.2f} | {r['server_rss_mb'] or 0:.0f} ({r['server_peak_rss_mb'] or 0:.0f}) |")
    if args.json:
        Path(args.json).write_text(json.dumps({"rows": rows, "idle_rss_mb": idle}, indent=1, default=str))
    unexpected = [r for r in rows for k in r["statuses"] if k not in (200, 503) or (k == 503 and not r["overload"])]
    return 1 if unexpected else 0


if __name__ == "__main__":
    sys.exit(main())
