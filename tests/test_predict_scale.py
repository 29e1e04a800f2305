"""Issue 13: file / glob / recursive inputs, part files with --resume (kill -9 included), sharding over
processes (gloo) -- each compared with one uninterrupted, one-process run."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import export_tiny_model
from hypothesis import given
from hypothesis import strategies as st

from inpaintseg import cli, fileio, rle
from inpaintseg.errors import DataError
from inpaintseg.inference import journal
from inpaintseg.inference.inputs import resolve_images
from inpaintseg.inference.pipeline import plan_batches

SRC = Path(__file__).resolve().parents[1] / "src"


def write_images(folder: Path, names, size=(24, 24), seed=0) -> Path:
    rng = np.random.default_rng(seed)
    for name in names:
        fileio.write_png(folder / name, rng.integers(0, 256, (*size, 3), dtype=np.uint8))
    return folder


def predict(*args: str) -> int:
    return cli.main(["predict", "--quiet", "--threads", "1", *args])


def subprocess_env() -> dict:
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONWARNINGS="ignore")
    env["PYTHONPATH"] = str(SRC) + os.pathsep + env.get("PYTHONPATH", "")
    return env


# ---- inputs -----------------------------------------------------------------------------------

def test_single_file_and_glob(tmp_path):
    folder = write_images(tmp_path / "imgs", ["a.png", "b.jpg", "c.png"])
    (folder / "notes.txt").write_text("x")
    one = resolve_images(folder / "b.jpg")
    assert (one.ids, one.kind) == (["b"], "file")
    pattern = resolve_images(str(folder / "*.png"))
    assert pattern.ids == ["a", "c"] and pattern.kind == "glob"
    with pytest.raises(DataError, match="not an image file"):
        resolve_images(folder / "notes.txt")
    with pytest.raises(DataError, match="matches no image files"):
        resolve_images(str(folder / "*.gif"))
    with pytest.raises(DataError, match="no such file or folder"):
        resolve_images(tmp_path / "missing")


def test_recursive_ids_are_relative_paths_and_outputs_mirror_them(tmp_path, capsys):
    root = tmp_path / "shots"
    write_images(root, ["top.png"])
    write_images(root / "cats", ["a.png", "b.png"])
    write_images(root / "cats" / "old", ["a.png"])
    write_images(root / ".hidden", ["x.png"])
    found = resolve_images(root, recursive=True)
    assert found.ids == ["cats/a", "cats/b", "cats/old/a", "top"]
    assert resolve_images(root).ids == ["top"]  # without --recursive: the folder's own images
    model = export_tiny_model(tmp_path / "model", size=16)
    out = tmp_path / "sub.csv"
    assert predict("--model", str(model), "--images", str(root), "--recursive", "--submission", str(out),
                   "--masks-out", str(tmp_path / "masks")) == 0, capsys.readouterr().err
    assert sorted(rle.read_submission(out)) == found.ids
    assert (tmp_path / "masks" / "cats" / "old" / "a.png").is_file()
    # A recursive glob crosses folders; the same stem in two folders is an error naming both files.
    with pytest.raises(DataError, match=r"'a': .*cats/a.png and .*cats/old/a.png"):
        resolve_images(str(root / "**" / "*.png"), recursive=True)


def test_duplicate_ids_name_both_files(tmp_path):
    root = write_images(tmp_path / "r" / "sub", ["a.png", "a.jpg"])
    with pytest.raises(DataError, match=r"sub/a.*a.jpg and .*a.png"):
        resolve_images(root.parent, recursive=True)


def test_outputs_inside_a_recursive_input_are_refused(tmp_path, capsys):
    root = write_images(tmp_path / "shots" / "sub", ["a.png"]).parent
    model = export_tiny_model(tmp_path / "model", size=16)
    assert predict("--model", str(model), "--images", str(root), "--recursive", "--submission", str(tmp_path / "s.csv"),
                   "--masks-out", str(root / "masks")) == 2
    assert "input folder" in capsys.readouterr().err


# ---- batches and part files ------------------------------------------------------------------

@given(n=st.integers(0, 60), batch=st.integers(1, 9), world=st.integers(1, 5))
def test_property_shards_partition_the_batches_of_one_run(n, batch, world):
    batches = plan_batches(n, batch)
    assert [i for b in batches for i in b] == list(range(n))
    shards = [[b for k, b in enumerate(batches) if k % world == r] for r in range(world)]
    assert sorted(i for s in shards for b in s for i in b) == list(range(n))


def test_part_file_drops_a_row_cut_short_and_keeps_errors(tmp_path):
    target = tmp_path / "sub.csv"
    writer = journal.PartWriter(journal.part_path(target), {"k": 1})
    writer.append(journal.result_row("a", "1 2", 0.25, 0.5, 0))
    writer.append(journal.Row("bad", error="bad.png: not an image"))
    writer.close()
    with open(journal.part_path(target), "a") as fh:
        fh.write("b,3 4,0.1")  # a kill in the middle of a row
    settings, rows, _ = journal.read_part(journal.part_path(target))
    assert settings == {"k": 1} and [r.image_id for r in rows] == ["a", "bad"]
    done, failed = journal.load_parts(target, {"k": 1})
    assert list(done) == ["a"] and list(failed) == ["bad"]
    # Appending after a torn row cuts it off first.
    writer = journal.PartWriter(journal.part_path(target), {"k": 1})
    writer.append(journal.result_row("b", "", 0.0, 0.0, 0))
    writer.close()
    assert [r.image_id for r in journal.read_part(journal.part_path(target))[1]] == ["a", "bad", "b"]
    with pytest.raises(DataError, match=r"other settings \(k: 1 then, 2 now\)"):
        journal.load_parts(target, {"k": 2})


def test_resume_with_other_settings_is_refused(tmp_path, capsys):
    images = write_images(tmp_path / "imgs", [f"i{k}.png" for k in range(3)])
    model = export_tiny_model(tmp_path / "model", size=16)
    out = tmp_path / "sub.csv"
    journal.PartWriter(journal.part_path(out), {"threshold": 0.9}).close()
    assert predict("--model", str(model), "--images", str(images), "--submission", str(out), "--resume") == 2
    err = capsys.readouterr().err
    assert "other settings" in err and "threshold: 0.9 then, 0.5 now" in err
    # Without --resume the old part file is discarded (and said so) and the run completes.
    assert cli.main(["predict", "--model", str(model), "--images", str(images), "--submission", str(out)]) == 0
    assert "discarded" in capsys.readouterr().err
    assert not journal.part_files(out) and sorted(rle.read_submission(out)) == ["i0", "i1", "i2"]


def test_resume_keeps_finished_rows_and_retries_failed_ones(tmp_path, capsys):
    images = write_images(tmp_path / "imgs", ["a.png", "b.png", "c.png"])
    model = export_tiny_model(tmp_path / "model", size=16)
    out = tmp_path / "sub.csv"
    # An interrupted run's part file: a and b finished (placeholder RLEs, so a recomputation would show),
    # c failed then (since repaired).
    part = journal.PartWriter(journal.part_path(out), _settings(model))
    for stem in ("a", "b"):
        part.append(journal.result_row(stem, "1 1", 0.5, 0.1, 1))
    part.append(journal.Row("c", error="c.png: could not be decoded"))
    part.close()
    assert cli.main(["predict", "--threads", "1", "--model", str(model), "--images", str(images),
                     "--submission", str(out), "--resume"]) == 0
    assert "2 of 3 images done, 1 failed before and tried again" in capsys.readouterr().err
    rows = rle.read_submission(out)
    assert rows["a"] == rows["b"] == "1 1" and sorted(rows) == ["a", "b", "c"]
    assert not journal.part_files(out)


@pytest.mark.parametrize("recorded", ["32", "bf16-mixed"])
def test_resume_with_precision_auto_takes_the_interrupted_runs_precision(recorded, tmp_path, capsys):
    # Regression: `--precision auto` re-probed on resume, and under other load the probe could pick the other
    # precision, so the part file's header no longer matched and the resume was refused. With one of the two
    # recorded values the re-probe always disagrees, so this fails without the fix on any machine.
    images = write_images(tmp_path / "imgs", ["a.png", "b.png"])
    model = export_tiny_model(tmp_path / "model", size=16)
    out = tmp_path / "sub.csv"
    part = journal.PartWriter(journal.part_path(out), _settings(model, precision=recorded))
    part.append(journal.result_row("a", "1 1", 0.5, 0.1, 1))
    part.close()
    assert journal.resumed_precision(out, "auto") == recorded
    assert journal.read_header(journal.part_path(out)) == journal.read_part(journal.part_path(out))[0]
    assert journal.resumed_precision(out, "32") == "32" and journal.resumed_precision(None, "auto") == "auto"
    assert cli.main(["predict", "--threads", "1", "--model", str(model), "--images", str(images),
                     "--submission", str(out), "--resume"]) == 0
    assert "1 of 2 images done" in capsys.readouterr().err
    assert rle.read_submission(out)["a"] == "1 1"


def test_resume_honours_rle_order_overlays_and_score_threshold(tmp_path, capsys):
    # Main's predict options (issue 12) go into the part file header, so a resume keeps them or is refused.
    images = write_images(tmp_path / "imgs", ["a.png", "b.png", "c.png"], size=(20, 28))
    model = export_tiny_model(tmp_path / "model", size=16)
    overlays, out, ref = tmp_path / "overlays", tmp_path / "sub.csv", tmp_path / "ref.csv"
    options = ["--rle-order", "column", "--score-threshold", "0.3", "--precision", "32"]
    assert predict("--model", str(model), "--images", str(images), "--submission", str(ref), "--scores-out",
                   str(tmp_path / "ref_scores.csv"), *options) == 0
    part = journal.PartWriter(journal.part_path(out), _settings(model, overlays_out=overlays, rle_order="column",
                                                                score_threshold=0.3, precision="32"))
    part.append(journal.result_row("a", "1 1", 0.5, 0.1, 1))
    part.close()
    # Another RLE order than the interrupted run's: refused, naming the setting.
    assert predict("--model", str(model), "--images", str(images), "--submission", str(out), "--overlays-out",
                   str(overlays), "--rle-order", "row", "--score-threshold", "0.3", "--precision", "32",
                   "--resume") == 2
    assert "rle_order: 'F' then, 'C' now" in capsys.readouterr().err
    # --resume with nothing to resume says so and predicts everything.
    assert predict("--model", str(model), "--images", str(images), "--submission", str(tmp_path / "new.csv"),
                   *options, "--resume") == 0
    assert "no part file of" in capsys.readouterr().err
    assert rle.read_submission(tmp_path / "new.csv") == rle.read_submission(ref)
    assert predict("--model", str(model), "--images", str(images), "--submission", str(out), "--overlays-out",
                   str(overlays), *options, "--resume") == 0
    rows, expected = rle.read_submission(out), rle.read_submission(ref)
    assert rows["a"] == "1 1" and rows["b"] == expected["b"] and rows["c"] == expected["c"]  # column-major
    assert sorted(p.name for p in overlays.iterdir()) == ["b.png", "c.png"]  # a was done before
    assert fileio.read_image(overlays / "b.png").shape == (20, 28, 3)


def _settings(model_dir, overlays_out=None, rle_order="row", score_threshold=None, precision="auto"):
    """The settings a CLI run with default post-processing writes into its part file header."""
    from inpaintseg import load_model
    from inpaintseg.inference.pipeline import run_settings

    model = load_model(model_dir, device="cpu", precision=precision)
    return run_settings(model, model.postprocess(score_threshold=score_threshold), overlays_out=overlays_out,
                        rle_order=rle_order)


# ---- kill -9, then --resume ------------------------------------------------------------------------

@pytest.mark.slow
def test_kill_9_then_resume_gives_the_uninterrupted_csvs(tmp_path):
    n = 150
    images = write_images(tmp_path / "imgs", [f"img_{k:03d}.png" for k in range(n)], size=(48, 48))
    model = export_tiny_model(tmp_path / "model", size=32)
    common = ["--model", str(model), "--images", str(images), "--tta", "d4", "--batch-size", "2",
              "--threads", "1", "--quiet"]
    assert cli.main(["predict", *common, "--submission", str(tmp_path / "ref.csv"),
                     "--scores-out", str(tmp_path / "ref_scores.csv")]) == 0

    out, scores = tmp_path / "sub.csv", tmp_path / "scores.csv"
    part = journal.part_path(out)
    args = [sys.executable, "-m", "inpaintseg.cli", "predict", *common, "--submission", str(out), "--scores-out",
            str(scores), "--masks-out", str(tmp_path / "masks")]
    proc = subprocess.Popen(args, env=subprocess_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None:
            if part.is_file() and len(journal.read_part(part)[1]) >= 4:
                break
            time.sleep(0.005)
        assert proc.poll() is None, "the run ended before it could be killed"
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    rows = journal.read_part(part)[1]
    assert 4 <= len(rows) < n and not out.exists()
    # Every row's mask was written before its row.
    assert all((tmp_path / "masks" / f"{r.image_id}.png").is_file() for r in rows)
    # A kill during a PNG write leaves atomic_path's temporary file; resume removes such files (only those).
    (tmp_path / "masks" / ".img_000.png.k9x_2abc.tmp").write_bytes(b"half a png")
    (tmp_path / "masks" / ".keep").write_text("the user's")
    assert cli.main(["predict", *common, "--submission", str(out), "--scores-out", str(scores),
                     "--masks-out", str(tmp_path / "masks"), "--resume"]) == 0
    assert out.read_bytes() == (tmp_path / "ref.csv").read_bytes()
    assert scores.read_bytes() == (tmp_path / "ref_scores.csv").read_bytes()
    assert not journal.part_files(out)
    assert sorted(p.name for p in (tmp_path / "masks").iterdir() if p.name.startswith(".")) == [".keep"]
    assert len(list((tmp_path / "masks").glob("img_*.png"))) == n


# ---- sharding ------------------------------------------------------------------------------------

@pytest.mark.slow
def test_two_processes_write_the_csvs_of_one(tmp_path, capsys):
    images = write_images(tmp_path / "imgs", [f"s{k:02d}.png" for k in range(13)], size=(20, 28))
    (images / "broken.png").write_bytes(b"\x89PNG broken")
    model = export_tiny_model(tmp_path / "model", size=16)
    # Main's options (issue 12: --rle-order, --score-threshold, --overlays-out) reach every rank.
    common = ["--model", str(model), "--images", str(images), "--batch-size", "3", "--threads", "1",
              "--rle-order", "column", "--score-threshold", "0.3"]
    assert predict(*common, "--submission", str(tmp_path / "one.csv"), "--scores-out", str(tmp_path / "one_s.csv")) == 1
    capsys.readouterr()
    code = cli.main(["predict", *common, "--num-devices", "2", "--submission", str(tmp_path / "two.csv"),
                     "--scores-out", str(tmp_path / "two_s.csv"), "--masks-out", str(tmp_path / "m"),
                     "--overlays-out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert code == 1 and "2 processes" in err and "broken.png" in err  # a rank's failure is named by the merge
    assert (tmp_path / "two.csv").read_bytes() == (tmp_path / "one.csv").read_bytes()
    assert (tmp_path / "two_s.csv").read_bytes() == (tmp_path / "one_s.csv").read_bytes()
    assert len(list((tmp_path / "m").iterdir())) == 13 and not journal.part_files(tmp_path / "two.csv")
    assert len(list((tmp_path / "o").glob("s*.png"))) == 13


@pytest.mark.slow
def test_two_nodes_on_one_machine(tmp_path):
    # --num-nodes 2: the same command on each "node" with its --node-rank and MASTER_ADDR/PORT.
    from inpaintseg.sharding import free_port

    images = write_images(tmp_path / "imgs", [f"n{k:02d}.png" for k in range(7)])
    model = export_tiny_model(tmp_path / "model", size=16)
    # --precision 32: each node resolves its own precision, and `auto` could differ between machines
    # (the merge would then refuse the other node's part file, naming the precision).
    common = ["--model", str(model), "--images", str(images), "--batch-size", "2", "--threads", "1", "--quiet",
              "--precision", "32"]
    assert cli.main(["predict", *common, "--submission", str(tmp_path / "one.csv")]) == 0
    env = dict(subprocess_env(), MASTER_ADDR="127.0.0.1", MASTER_PORT=str(free_port()))
    nodes = [subprocess.Popen([sys.executable, "-m", "inpaintseg.cli", "predict", *common, "--num-nodes", "2",
                               "--node-rank", str(r), "--submission", str(tmp_path / "two.csv")], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for r in (1, 0)]
    outputs = [p.communicate(timeout=240) for p in nodes]
    assert [p.returncode for p in nodes] == [0, 0], outputs
    assert (tmp_path / "two.csv").read_bytes() == (tmp_path / "one.csv").read_bytes()
