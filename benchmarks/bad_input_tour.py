"""The bad-input tour of issue 11: every case through the real CLI (a subprocess each), checking the exit code,
that stderr holds no traceback, and that no input file was changed.

    python benchmarks/bad_input_tour.py [--keep DIR]

Prints one line per case (PASS/FAIL, exit code, the first line of the message) and a summary; exits 1 when a
case fails. Everything is tiny (32x32 images, a width-4 network); about two minutes on 2 CPU cores.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import time
import zlib
from pathlib import Path

import cv2
import numpy as np

TINY_TRAIN = ["--epochs", "2", "--batch-size", "2", "--base-channels", "4", "--depth", "2", "--img-size", "32",
              "--num-workers", "0", "--no-progress-bar", "--no-calibrate"]
RESULTS: list[tuple[str, bool, int, str]] = []


def cli(*args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONWARNINGS="ignore")
    return subprocess.run([sys.executable, "-m", "inpaintseg.cli", *args], capture_output=True, text=True,
                          timeout=timeout, env=env)


def digest(folder: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(folder.rglob("*")):
        h.update(str(p.relative_to(folder)).encode())
        if p.is_file() and not p.is_symlink():
            h.update(p.read_bytes())
    return h.hexdigest()


def check(name: str, proc, expected: int, *, contains: str = "", unchanged: Path | None = None,
          before: str | None = None, extra: bool = True) -> None:
    err = proc.stderr + proc.stdout
    ok = proc.returncode == expected and "Traceback" not in err and contains in err and extra
    if unchanged is not None:
        ok = ok and digest(unchanged) == before
    lines = [line for line in proc.stderr.splitlines() if "error" in line or "could not" in line or
             "interrupted" in line or "FAILED" in line] or proc.stdout.splitlines()[-1:] or [""]
    RESULTS.append((name, ok, proc.returncode, lines[0][:150]))
    print(f"{'PASS' if ok else 'FAIL'}  exit {proc.returncode:>3} (want {expected:>3})  {name}: {lines[0][:150]}",
          flush=True)
    if not ok:
        print(err[-2000:])


def header_png(path: Path, width: int, height: int) -> None:
    data = cv2.imencode(".png", np.zeros((1, 1), np.uint8))[1].tobytes()
    ihdr = bytearray(data[16:29])
    struct.pack_into(">II", ihdr, 0, width, height)
    path.write_bytes(data[:16] + bytes(ihdr) + struct.pack(">I", zlib.crc32(b"IHDR" + bytes(ihdr))) + data[33:])


def dataset(root: Path, n_train: int = 8, n_test: int = 3, size: int = 32) -> Path:
    rng = np.random.default_rng(0)
    for split, n in (("train", n_train), ("test", n_test)):
        for i in range(n):
            image = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
            mask = np.zeros((size, size), np.uint8)
            mask[4:4 + i % 12 + 4, 6:18] = 255 if i % 4 else 0
            (root / split / "images").mkdir(parents=True, exist_ok=True)
            (root / split / "masks").mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(root / split / "images" / f"{split}_{i:02d}.png"), image)
            cv2.imwrite(str(root / split / "masks" / f"{split}_{i:02d}.png"), mask)
    return root


def model_folder(work: Path) -> Path:
    run = work / "base_run"
    proc = cli("train", "--data", str(dataset(work / "base_data")), "--out", str(run), *TINY_TRAIN)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return run / "model"


def copy_model(model: Path, dest: Path, edit=None) -> Path:
    shutil.copytree(model, dest)
    if edit:
        config = json.loads((dest / "config.json").read_text())
        edit(config)
        (dest / "config.json").write_text(json.dumps(config))
    return dest


def interrupt(args: list[str], wait_for, timeout: float = 120) -> subprocess.Popen:
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONWARNINGS="ignore")
    proc = subprocess.Popen([sys.executable, "-m", "inpaintseg.cli", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env, start_new_session=True)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None and not wait_for():
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C does: the whole process group
    out, err = proc.communicate(timeout=120)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def tour(work: Path) -> None:
    model = model_folder(work)
    data = dataset(work / "data")
    images, truth = data / "test" / "images", data / "test" / "masks"
    snap = digest(data)
    blocker = work / "blocker"
    blocker.write_text("a file where a folder should be")

    # 1 outputs inside inputs
    for flag, target in (("--masks-out", images), ("--probs-out", images), ("--masks-out", truth),
                         ("--out", images / "s.csv")):
        extra = [] if flag == "--out" else ["--out", str(work / "s.csv")]
        check(f"1 predict {flag} {target.relative_to(work)}", cli("predict", "--quiet", "--model", str(model),
              "--images", str(images), flag, str(target), *extra), 2, contains="input folder",
              unchanged=data, before=snap)
    check("1 evaluate --json inside --truth", cli("evaluate", "--quiet", "--truth", str(truth), "--pred", str(truth),
          "--json", str(truth / "e.json")), 2, unchanged=data, before=snap)
    check("1 train --out inside train/images", cli("train", "--data", str(data), "--out",
          str(data / "train" / "images" / "run"), *TINY_TRAIN), 2, unchanged=data, before=snap)

    # 2 / 3 header bombs and the pixel limit
    bomb = dataset(work / "bomb")
    header_png(bomb / "test" / "images" / "bomb.png", 65535, 65535)
    header_png(bomb / "test" / "images" / "huge.png", 30000, 30000)
    header_png(bomb / "train" / "images" / "train_03.png", 65535, 65535)
    proc = cli("predict", "--quiet", "--model", str(model), "--images", str(bomb / "test" / "images"),
               "--out", str(work / "bomb.csv"))
    rows = (work / "bomb.csv").read_text().count("\n") - 1 if (work / "bomb.csv").exists() else -1
    check("2 predict with a 65535^2 header + a 30000^2 header (3 good images)", proc, 1, contains="bomb.png",
          extra=rows == 3)
    check("2 check-data with header bombs", cli("check-data", str(bomb)), 1, contains="pixel limit")
    check("2 train with a header bomb refuses before starting", cli("train", "--data", str(bomb), "--out",
          str(work / "bomb_run"), *TINY_TRAIN), 2, contains="train_03.png",
          extra=not (work / "bomb_run" / "config.yaml").exists())
    check("3 check-data --max-pixels 1000 (32x32 images)", cli("check-data", str(data), "--max-pixels", "1000"), 1,
          contains="over the pixel limit")

    # 4 odd names
    odd = work / "odd"
    rng = np.random.default_rng(1)
    stems = [" lead", "trail ", "new\nline", "x" * 245, 'q"uo,te']
    for stem in stems:
        (odd / "images").mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(odd / "images" / f"{stem}.png"), rng.integers(0, 256, (24, 24, 3), dtype=np.uint8))
    proc = cli("predict", "--quiet", "--model", str(model), "--images", str(odd / "images"), "--out",
               str(work / "odd.csv"), "--masks-out", str(work / "odd_masks"))
    from inpaintseg.rle import read_submission

    back = sorted(read_submission(work / "odd.csv")) if proc.returncode == 0 else []
    check("4 predict odd names (spaces, newline, 245 chars, quote+comma): CSV round trip", proc, 0,
          extra=back == sorted(stems))

    # 5 / 10 unwritable outputs
    check("5 predict --out under a file (before any work)", cli("predict", "--quiet", "--model", str(model),
          "--images", str(images), "--out", str(blocker / "s.csv"), "--masks-out", str(work / "m5")), 2,
          contains="cannot write", extra=not (work / "m5").exists())
    check("10 train --out under a file", cli("train", "--data", str(data), "--out", str(blocker / "run"),
          *TINY_TRAIN), 2, contains="cannot write")
    check("10 check-data --json under a file", cli("check-data", str(data), "--json", str(blocker / "x.json")), 2,
          contains="cannot write")
    check("10 evaluate --json under a file", cli("evaluate", "--quiet", "--truth", str(truth), "--pred", str(truth),
          "--json", str(blocker / "x.json")), 2, contains="cannot write")

    # 6 broken links
    linked = dataset(work / "linked")
    os.symlink(linked / "nowhere.png", linked / "train" / "images" / "dangling.png")
    os.symlink("loop.png", linked / "test" / "images" / "loop.png")
    check("6 check-data with a dangling link and a loop", cli("check-data", str(linked)), 1, contains="dangling.png")
    check("6 predict with a link loop", cli("predict", "--quiet", "--model", str(model), "--images",
          str(linked / "test" / "images"), "--out", str(work / "l.csv")), 1, contains="loop.png")
    check("6 train with a dangling link", cli("train", "--data", str(linked), "--out", str(work / "l_run"),
          *TINY_TRAIN), 2, contains="dangling.png")

    # 7 / 11 model folders
    from safetensors.torch import load_file, save_file

    nan_model = copy_model(model, work / "nan_model")
    state = load_file(str(nan_model / "weights.safetensors"))
    first = sorted(state)[0]
    state[first].view(-1)[0] = float("nan")
    save_file(state, str(nan_model / "weights.safetensors"))
    check("7 NaN in weights.safetensors", cli("predict", "--quiet", "--model", str(nan_model), "--images",
          str(images), "--out", str(work / "n.csv")), 2, contains="not finite")
    for label, edit in (
            ("base_channels 100000", lambda c: c["architecture"].update(base_channels=100000)),
            ("base_channels 512 depth 8", lambda c: c["architecture"].update(base_channels=512, depth=8)),
            ("base_channels 256 depth 4 (weights of width 4)", lambda c: c["architecture"].update(base_channels=256)),
            ("input.size 60000", lambda c: c["input"].update(size=60000)),
            ("input.std 1e-30", lambda c: c["input"].update(std=[1e-30, 1, 1])),
            ("crf iterations 1e9", lambda c: c["postprocess"].update(crf="gaussian", crf_params={"gaussian": {
                "iterations": 10**9, "clip": 1e-5, "gaussian": {"sxy": 3, "compat": 3}, "bilateral": None}})),
            ("postprocess.tta bogus", lambda c: c["postprocess"].update(tta="bogus"))):
        crafted = copy_model(model, work / f"crafted_{len(RESULTS)}", edit)
        start = time.perf_counter()
        proc = cli("predict", "--quiet", "--model", str(crafted), "--images", str(images), "--out",
                   str(work / "c.csv"))
        check(f"11 config.json {label}", proc, 2, extra=time.perf_counter() - start < 60)
    modes = {p.name: oct(p.stat().st_mode & 0o777) for p in model.iterdir()}
    RESULTS.append(("weak: weights.safetensors mode == config.json mode", modes["weights.safetensors"] ==
                    modes["config.json"], 0, str(modes)))
    print(f"{'PASS' if RESULTS[-1][1] else 'FAIL'}  {RESULTS[-1][0]}: {modes}")

    # 8 mask size mismatch
    mism = dataset(work / "mismatch")
    cv2.imwrite(str(mism / "train" / "masks" / "train_05.png"), np.zeros((16, 20), np.uint8))
    check("8 train with a 20x16 mask for a 32x32 image", cli("train", "--data", str(mism), "--out",
          str(work / "m_run"), *TINY_TRAIN), 2, contains="train_05.png",
          extra=not (work / "m_run" / "config.yaml").exists())

    # weak: masks that read as empty
    odd_masks = dataset(work / "oddmasks")
    stray = np.zeros((32, 32), np.uint8)
    stray[2:9, 2:9] = 2
    cv2.imwrite(str(odd_masks / "train" / "masks" / "train_01.png"), stray)
    cv2.imwrite(str(odd_masks / "train" / "masks" / "train_02.png"), (stray.astype(np.uint16) * 127))
    check("weak: check-data names masks whose values read as empty", cli("check-data", str(odd_masks)), 1,
          contains="read as 0")

    # 5 a real full disk during training (a 300 KB tmpfs; needs the right to mount, else skipped)
    full = work / "full"
    full.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=300k", "tmpfs", str(full)], capture_output=True).returncode:
        print("SKIP  5 disk full during a checkpoint: cannot mount a small tmpfs here")
    else:
        try:
            check("5 disk full during a checkpoint", cli("train", "--data", str(data), "--out", str(full / "run"),
                  *TINY_TRAIN), 2, contains="disk is full")
        finally:
            subprocess.run(["umount", str(full)], capture_output=True)

    # 9 / 12 interruptions
    big = dataset(work / "big", n_train=40)
    run = work / "ctrl_c_early"
    proc = interrupt(["train", "--data", str(big), "--out", str(run), *TINY_TRAIN, "--epochs", "3"],
                     lambda: (run / "split.json").exists())
    check("12 Ctrl-C in train before the first checkpoint", proc, 130, contains="--resume",
          extra=not (run / "checkpoints" / "last.ckpt").exists())
    check("9 --resume on that run starts it again in place", cli("train", "--resume", str(run)), 0,
          contains="no epoch had finished", extra=(run / "model" / "config.json").exists())
    run2 = work / "ctrl_c_late"
    proc = interrupt(["train", "--data", str(big), "--out", str(run2), *TINY_TRAIN, "--epochs", "3"],
                     lambda: (run2 / "checkpoints" / "last.ckpt").exists())
    check("12 Ctrl-C in train after a checkpoint", proc, 130, contains=f"--resume {run2}")
    last = run2 / "checkpoints" / "last.ckpt"
    if last.exists():
        last.write_bytes(last.read_bytes()[:2000])
    check("12 --resume with a truncated last.ckpt", cli("train", "--resume", str(run2)), 0,
          contains="falls back to best.ckpt")
    big_images = work / "big_test"
    big_images.mkdir()
    for i in range(60):
        cv2.imwrite(str(big_images / f"b{i:02d}.png"), np.random.default_rng(i).integers(0, 256, (256, 256, 3),
                                                                                          dtype=np.uint8))
    masks_out = work / "crf_masks"
    proc = interrupt(["predict", "--model", str(model), "--images", str(big_images), "--out", str(work / "crf.csv"),
                      "--masks-out", str(masks_out), "--crf", "seed", "--crf-workers", "1"],
                     lambda: masks_out.exists() and len(list(masks_out.iterdir())) >= 2)
    check("12 Ctrl-C in predict with CRF workers", proc, 130, contains="interrupted")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--keep", type=Path, help="work in this folder and keep it (default: a temp folder)")
    args = parser.parse_args()
    work = args.keep or Path(tempfile.mkdtemp(prefix="inpaintseg-tour-"))
    work.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    try:
        tour(work)
    finally:
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)
    failed = [r for r in RESULTS if not r[1]]
    print(f"\n{len(RESULTS) - len(failed)} of {len(RESULTS)} cases passed in {time.perf_counter() - started:.0f} s"
          + (f"; failed: {', '.join(r[0] for r in failed)}" if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
