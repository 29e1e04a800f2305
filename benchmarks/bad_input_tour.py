"""The bad-input tour of issues 11 and 26: every case through the real CLI (a subprocess each), checking the exit
code, that stderr holds no traceback, and that no input file was changed. Round 2 (issue 26; cases "R2 <item>")
adds outputs that are special files or clobber the model / an input / another output, count flags that would
exhaust the machine, special files and non-UTF-8 names among the inputs, a full disk during predict, silent
wrong data and misleading messages.

    python benchmarks/bad_input_tour.py [--keep DIR] [--round 1|2|all]

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
import stat
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


def noise_images(folder: Path, n: int, side: int, prefix: str, digits: int = 2) -> Path:
    """`n` seeded random side x side PNGs named prefix00.. in a new `folder`."""
    folder.mkdir()
    for i in range(n):
        rgb = np.random.default_rng(i).integers(0, 256, (side, side, 3), dtype=np.uint8)
        cv2.imwrite(str(folder / f"{prefix}{i:0{digits}d}.png"), rgb)
    return folder


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


def tour(work: Path, rounds: str = "all") -> None:
    model = model_folder(work)
    if rounds in ("2", "all"):
        tour_round2(work, model)
    if rounds in ("1", "all"):
        tour_round1(work, model)


def tour_round1(work: Path, model: Path) -> None:
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
    big_images = noise_images(work / "big_test", 60, 256, "b")
    masks_out = work / "crf_masks"
    proc = interrupt(["predict", "--model", str(model), "--images", str(big_images), "--out", str(work / "crf.csv"),
                      "--masks-out", str(masks_out), "--crf", "seed", "--crf-workers", "1"],
                     lambda: masks_out.exists() and len(list(masks_out.iterdir())) >= 2)
    check("12 Ctrl-C in predict with CRF workers", proc, 130, contains="interrupted")


def no_hang(name: str, *args: str, timeout: int = 120):
    """`cli(*args)`, or a failed case named `name` when it runs past `timeout` (a hang)."""
    try:
        return cli(*args, timeout=timeout)
    except subprocess.TimeoutExpired:
        RESULTS.append((name, False, -1, f"hung: no exit within {timeout} s"))
        print(f"FAIL  hung ({timeout} s)  {name}", flush=True)
        return None


def python_code(code: str, *argv: str) -> subprocess.CompletedProcess:
    """Run `code` (an API case) in a fresh interpreter, like `cli`."""
    return subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True, timeout=120,
                          env=dict(os.environ, OMP_NUM_THREADS="1"), check=False)


def tour_round2(work: Path, model: Path) -> None:
    """Issue 26's cases, worst first (the numbers are the issue's items)."""
    r2 = work / "r2"
    r2.mkdir()
    data = dataset(r2 / "data")
    images, truth = data / "test" / "images", data / "test" / "masks"
    snap, model_snap = digest(data), digest(model)
    pred = ["predict", "--quiet", "--threads", "1", "--model", str(model), "--images", str(images)]

    # 1 an output path that is not a regular file
    fifo, link, device = r2 / "fifo.csv", r2 / "link.csv", r2 / "device.csv"
    os.mkfifo(fifo)
    os.symlink(r2 / "elsewhere.csv", link)
    cases = [("a FIFO", fifo, fifo.is_fifo), ("a symlink", link, link.is_symlink)]
    try:  # a device node of our own with /dev/full's numbers: the machine's own is never put at risk
        os.mknod(device, 0o666 | stat.S_IFCHR, os.makedev(1, 7))
        cases.append(("a device node (1, 7 = /dev/full)", device, device.is_char_device))
    except OSError:
        print("SKIP  R2 1 predict --submission DEVICE: cannot create a device node here (needs root)")
    for label, target, kept in cases:
        check(f"R2 1 predict --submission {label}", cli(*pred, "--submission", str(target)), 2,
              contains="not a regular file", extra=kept() and not (r2 / "elsewhere.csv").exists())
    check("R2 1 predict --submission - (no file named '-')", subprocess.run(
        [sys.executable, "-m", "inpaintseg.cli", *pred, "--submission", "-"], capture_output=True, text=True,
        cwd=r2, env=dict(os.environ, OMP_NUM_THREADS="1"), check=False), 2, extra=not (r2 / "-").exists())

    # 2 outputs over the model or an input
    check("R2 2 predict --submission MODEL/config.json", cli(*pred, "--submission", str(model / "config.json")), 2,
          contains="input folder", unchanged=model, before=model_snap)
    sub = r2 / "sub.csv"
    cli(*pred, "--submission", str(sub))
    before = sub.read_bytes() if sub.exists() else b""
    check("R2 2 evaluate --json = its --submission", cli("evaluate", "--quiet", "--truth", str(truth), "--submission",
          str(sub), "--json", str(sub)), 2, contains="input file", extra=sub.read_bytes() == before != b"")

    # 3 count flags that exhaust the machine (each must be refused within seconds)
    for label, args in (("predict --num-devices 1000", [*pred, "--submission", str(r2 / "n.csv"), "--num-devices",
                                                        "1000"]),
                        ("predict --threads 100000", [*pred, "--submission", str(r2 / "n.csv"), "--threads", "100000"]),
                        ("predict --crf-workers 1000", [*pred, "--submission", str(r2 / "n.csv"), "--crf-workers",
                                                        "1000"]),
                        ("train --num-devices 1000", ["train", "--data", str(data), "--out", str(r2 / "run1000"),
                                                      *TINY_TRAIN, "--device", "cpu", "--num-devices", "1000"]),
                        ("model-info --img-size 1000000", ["model-info", "--img-size", "1000000"]),
                        ("predict --node-rank 5 --num-nodes 1", [*pred, "--submission", str(r2 / "n.csv"),
                                                                 "--node-rank", "5"])):
        start = time.perf_counter()
        proc = no_hang(f"R2 3 {label}", *args, timeout=180)
        if proc is not None:
            check(f"R2 3 {label}", proc, 2, contains="at most" if "rank" not in label else "--node-rank",
                  extra=time.perf_counter() - start < 120 and not (r2 / "n.csv").exists())

    # 4 two outputs on one path
    for first, second in (("--submission", "--scores-out"), ("--masks-out", "--probs-out"),
                          ("--masks-out", "--overlays-out")):
        same = r2 / f"same{len(RESULTS)}"
        extra = [] if first == "--submission" else ["--submission", str(r2 / "s4.csv")]
        check(f"R2 4 predict {first} X {second} X", cli(*pred, first, str(same), second, str(same), *extra), 2,
              contains="is also", extra=not same.exists())

    # 5 special files among the inputs
    special = dataset(r2 / "special", n_train=4, n_test=3)
    os.mkfifo(special / "test" / "images" / "x.png")
    os.mkfifo(special / "train" / "images" / "y.png")
    proc = no_hang("R2 5 predict with a FIFO named x.png", *pred[:-1], str(special / "test" / "images"),
                   "--submission", str(r2 / "f.csv"))
    if proc is not None:
        rows = (r2 / "f.csv").read_text().count("\n") - 1 if (r2 / "f.csv").exists() else -1
        check("R2 5 predict with a FIFO named x.png", proc, 0, contains="x.png (FIFO)", extra=rows == 3)
    proc = no_hang("R2 5 check-data with FIFOs", "check-data", str(special))
    if proc is not None:
        check("R2 5 check-data with FIFOs", proc, 1, contains="y.png (FIFO)", extra="0-byte" not in proc.stdout)
    proc = python_code(f"import sys, inpaintseg\nm = inpaintseg.load_model({str(model)!r}, device='cpu')\n"
                       "try:\n    m.predict(sys.argv[1])\nexcept inpaintseg.errors.DataError as e:\n"
                       "    print('refused:', e); sys.exit(2)", str(special / "test" / "images" / "x.png"))
    check("R2 5 model.predict(FIFO) refuses without opening it", proc, 2, contains="FIFO")

    # 6 tracebacks left
    latin = dataset(r2 / "latin", n_train=0, n_test=2)
    name = os.fsencode(str(latin / "test" / "images")) + b"/caf\xe9.png"
    shutil.copy(latin / "test" / "images" / "test_01.png", os.fsdecode(name))
    check("R2 6 predict with a Latin-1 file name", cli(*pred[:-1], str(latin / "test" / "images"), "--submission",
          str(r2 / "latin.csv")), 2, contains="not valid UTF-8", extra=not list(r2.glob("latin.csv*")))
    full = r2 / "full"
    full.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4k", "tmpfs", str(full)], capture_output=True,
                      check=False).returncode:
        print("SKIP  R2 6 disk full during predict: cannot mount a small tmpfs here")
    else:
        try:
            # ~35 bytes per part-file row: the part file itself fills the 4 KB disk
            big = noise_images(r2 / "big", 300, 16, "b", digits=3)
            check("R2 6 disk full during predict (part file on a 4 KB tmpfs)", cli(*pred[:-1], str(big),
                  "--submission", str(full / "s.csv")), 2, contains="disk is full")
        finally:
            subprocess.run(["umount", str(full)], capture_output=True, check=False)
    blocker = r2 / "blocker"
    blocker.write_text("a file where a folder should be")
    check("R2 6 report --out under a file", cli("report", str(model.parent), "--images", str(images), "--quiet",
          "--out", str(blocker / "rep")), 2, contains="cannot write")
    onnx_model = copy_model(model, r2 / "onnx_model")
    proc = cli("export", "--model", str(onnx_model), "--opset", "999")
    check("R2 6 export --opset 999 (nothing on stdout)", proc, 2, contains="--opset", extra=proc.stdout == "")
    check("R2 also export --int8 BAD writes nothing", cli("export", "--model", str(onnx_model), "--int8",
          str(r2 / "nowhere")), 2, extra=not (onnx_model / "model.onnx").exists())

    # 7 silent wrong data
    stray = dataset(r2 / "stray", n_train=8, n_test=2)
    mask = np.zeros((32, 32), np.uint8)
    mask[4:20, 6:18] = 1
    mask[0, 0] = 2
    cv2.imwrite(str(stray / "train" / "masks" / "train_01.png"), mask)
    check("R2 7 train with a 0/1 mask holding a stray 2 warns", cli("train", "--data", str(stray), "--out",
          str(r2 / "stray_run"), *TINY_TRAIN), 0, contains="train_01.png: its non-zero values all read as 0")
    square = np.zeros((32, 32), np.uint8)
    square[4:20, 2:24] = 255
    (r2 / "tr").mkdir()
    cv2.imwrite(str(r2 / "tr" / "a.png"), square)
    from inpaintseg.rle import write_submission

    write_submission(r2 / "kaggle.csv", {"a": square // 255}, order="F")
    check("R2 7 evaluate a column-major submission read row-major warns", cli(
          "evaluate", "--quiet", "--truth", str(r2 / "tr"), "--submission", str(r2 / "kaggle.csv")), 0,
          contains="--rle-order column")

    # 8 misleading messages
    check("R2 8 train --out DATA/train names the dataset", cli("train", "--data", str(data), "--out",
          str(data / "train"), *TINY_TRAIN), 2, contains="holds the input folder", unchanged=data, before=snap)
    proc = cli("report", str(model.parent), "--images", str(images), "--quiet", "--out", str(images / "rep"))
    check("R2 8 report --out inside --images names --out", proc, 2, contains="--out",
          extra="--submission" not in proc.stderr)
    ckpt = model.parent / "checkpoints" / "last.ckpt"
    check("R2 8 --model RUN/checkpoints/last.ckpt points at RUN/model", cli(*pred[:5], str(ckpt), *pred[6:],
          "--submission", str(r2 / "c.csv")), 2, contains=f"Pass the model folder {model}")
    proc = python_code(f"import inpaintseg, numpy as np\nm = inpaintseg.load_model({str(model)!r}, device='cpu')\n"
                       "try:\n    m.predict(np.zeros((8, 8, 3), np.uint8), tta='rot')\n"
                       "except inpaintseg.errors.ConfigError as e:\n    print(e); raise SystemExit(2)")
    check("R2 8 m.predict(img, tta='rot') names tta", proc, 2, contains="tta must be one of",
          extra="config.json" not in proc.stdout)
    proc = no_hang("R2 8 serve --host 256.1.1.1", "serve", "--model", str(model), "--host", "256.1.1.1",
                   "--threads", "1")
    if proc is not None:
        check("R2 8 serve --host 256.1.1.1 blames the host", proc, 2, contains="--host 256.1.1.1",
              extra="--port" not in proc.stderr or "fastapi" in proc.stderr)
    big_images = noise_images(r2 / "many", 40, 128, "m")
    part = r2 / "ctrl.csv.part"
    proc = interrupt(["predict", "--threads", "1", "--batch-size", "1", "--model", str(model), "--images",
                      str(big_images), "--submission", str(r2 / "ctrl.csv"), "--tta", "d4"],
                     lambda: part.exists() and part.read_text().count("\n") >= 4)
    check("R2 8 Ctrl-C in predict gives the --resume hint", proc, 130, contains="--resume")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--keep", type=Path, help="work in this folder and keep it (default: a temp folder)")
    parser.add_argument("--round", choices=("1", "2", "all"), default="all",
                        help="which cases: issue 11's (1), issue 26's (2) or both (default)")
    args = parser.parse_args()
    work = args.keep or Path(tempfile.mkdtemp(prefix="inpaintseg-tour-"))
    work.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    try:
        tour(work, args.round)
    finally:
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)
    failed = [r for r in RESULTS if not r[1]]
    print(f"\n{len(RESULTS) - len(failed)} of {len(RESULTS)} cases passed in {time.perf_counter() - started:.0f} s"
          + (f"; failed: {', '.join(r[0] for r in failed)}" if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
