"""`inpaintseg demo-data`: layout, meta.json, determinism (cached generators included), selection
for leave-one-family-out, --photos, --with-originals, the CLI."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import cv2
import numpy as np
import pytest

from inpaintseg import cli
from inpaintseg.errors import InpaintsegError
from inpaintseg.synth import generate_demo_data
from inpaintseg.synth.generator_bank import TRAINED
from inpaintseg.synth.masks import MASK_KINDS
from inpaintseg.synth.registry import FAMILIES, all_methods

N_GENERATORS = len({g for m in all_methods().values() for g in m.generators})  # 8: 5 masked-L1 + 3 of issue 24

METHODS = all_methods()


def files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> tuple[Path, dict]:
    """60 train + 10 test images at 64x64 with originals (a few seconds)."""
    out = tmp_path_factory.mktemp("demo") / "out"
    meta = generate_demo_data(out, n_train=60, n_test=10, size=64, seed=3, with_originals=True)
    return out, meta


def test_layout_and_meta(dataset):
    out, meta = dataset
    for split, n in (("train", 60), ("test", 10)):
        stems = [f"{split}_{i:05d}" for i in range(n)]
        assert sorted(p.stem for p in (out / split / "images").iterdir()) == stems
        assert sorted(p.stem for p in (out / split / "masks").iterdir()) == stems
        on_disk = json.loads((out / split / "meta.json").read_text())
        assert on_disk == meta[split] and on_disk["complete"] is True and on_disk["format_version"] == 3
        assert sorted(on_disk["images"]) == stems and on_disk["methods"] == list(METHODS)
        assert on_disk["generators"]["set"] == "tiny" and len(on_disk["generators"]["keys"]) == N_GENERATORS
    assert sorted(p.stem for p in (out / "train" / "originals").iterdir()) == [f"train_{i:05d}" for i in range(60)]
    assert not (out / "test" / "originals").exists()
    assert not list(out.rglob(".*.tmp"))  # atomic writes left no temp files


def test_meta_records_match_the_files(dataset):
    out, meta = dataset
    for split in ("train", "test"):
        for stem, info in meta[split]["images"].items():
            image = cv2.imread(str(out / split / "images" / f"{stem}.png"), cv2.IMREAD_UNCHANGED)
            mask = cv2.imread(str(out / split / "masks" / f"{stem}.png"), cv2.IMREAD_UNCHANGED)
            assert image.shape[:2] == mask.shape == tuple(info["shape"]) and image.dtype == np.uint8
            assert set(np.unique(mask)) <= {0, 255}
            assert info["coverage"] == pytest.approx(float((mask > 0).mean()), abs=1e-6)
            assert isinstance(info["degradations"], list) and "pre_jpeg" in info and "post_fill" in info
            if info["method"] == "none":
                assert info["coverage"] == 0.0 and info["family"] == "none" and info["mask_kind"] == "none"
            else:
                assert info["family"] == METHODS[info["method"]].family and info["mask_kind"] in MASK_KINDS
                assert 0.0 < info["coverage"] <= 0.5
            if split == "train":
                original = cv2.imread(str(out / split / "originals" / f"{stem}.png"))
                assert original.shape == image.shape
    infos = [i for split in meta.values() for i in split["images"].values()]
    assert {i["family"] for i in infos} == set(FAMILIES) | {"none"}
    assert sum(i["method"] == "none" for i in infos) == 7  # 10% of 60 and of 10
    assert any(i["degradations"] for i in infos) and len({i["source"] for i in infos}) >= 5


@pytest.mark.slow
def test_same_seed_same_bytes_with_cached_or_retrained_generators(tmp_path, monkeypatch):
    args = dict(n_train=12, n_test=3, size=48, seed=7)
    generate_demo_data(tmp_path / "a", **args)  # generators from the session cache
    monkeypatch.setenv("INPAINTSEG_CACHE_DIR", str(tmp_path / "fresh_cache"))
    trained = len(TRAINED)
    generate_demo_data(tmp_path / "b", **args)  # generators retrained from scratch
    assert len(TRAINED) == trained + N_GENERATORS
    generate_demo_data(tmp_path / "c", **args)  # ... and now loaded from that cache
    assert len(TRAINED) == trained + N_GENERATORS
    generate_demo_data(tmp_path / "w", **args, workers=2)  # spread over 2 processes
    a = files(tmp_path / "a")
    assert a == files(tmp_path / "b") == files(tmp_path / "c") == files(tmp_path / "w")
    # Fewer images: each sample has its own generator, so the first ones are byte-identical.
    generate_demo_data(tmp_path / "d", n_train=4, n_test=1, size=48, seed=7)
    assert all(a[name] == data for name, data in files(tmp_path / "d").items() if name.endswith(".png"))
    generate_demo_data(tmp_path / "e", n_train=4, n_test=1, size=48, seed=8)
    assert a["train/images/train_00000.png"] != files(tmp_path / "e")["train/images/train_00000.png"]


def test_leave_one_family_out_selection(tmp_path):
    meta = generate_demo_data(tmp_path / "lofo", n_train=20, n_test=10, size=32, seed=0,
                              exclude_families="learned", test_families="learned", degrade_level="none")
    train = Counter(i["family"] for i in meta["train"]["images"].values())
    test = Counter(i["family"] for i in meta["test"]["images"].values())
    assert "learned" not in train and len(train) == 5  # 4 families + none
    assert set(test) == {"learned", "none"} and meta["test"]["families"] == ["learned"]
    with pytest.raises(InpaintsegError, match="^test_families: unknown family"):
        generate_demo_data(tmp_path / "x", n_train=2, n_test=1, size=32, test_families="lama")


def test_rerun_overwrites_and_removes_stale_files(tmp_path):
    out = tmp_path / "out"
    generate_demo_data(out, n_train=5, n_test=2, size=32, seed=0, families="classical", with_originals=True)
    generate_demo_data(out, n_train=3, n_test=2, size=32, seed=0, families="classical")
    assert sorted(p.name for p in (out / "train" / "images").iterdir()) == [
        "train_00000.png", "train_00001.png", "train_00002.png"]
    assert sorted(p.name for p in (out / "train" / "masks").iterdir())[-1] == "train_00002.png"
    assert not list((out / "train" / "originals").iterdir())  # not asked for this time


def test_refuses_foreign_folder_and_bad_arguments(tmp_path):
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    with pytest.raises(InpaintsegError, match="not an earlier demo-data output"):
        generate_demo_data(foreign, n_train=2, n_test=1, size=32)
    assert [p.name for p in foreign.iterdir()] == ["notes.txt"]
    (tmp_path / "file").write_text("x")
    with pytest.raises(InpaintsegError, match="not a folder"):
        generate_demo_data(tmp_path / "file", n_train=2, n_test=1, size=32)
    with pytest.raises(InpaintsegError, match="^size must be between 32"):
        generate_demo_data(tmp_path / "x", n_train=2, n_test=1, size=8)
    with pytest.raises(InpaintsegError, match="^n_test must be between 1"):
        generate_demo_data(tmp_path / "x", n_train=2, n_test=0, size=32)
    with pytest.raises(InpaintsegError, match="^untouched_fraction must lie"):
        generate_demo_data(tmp_path / "x", n_train=2, n_test=1, size=32, untouched_fraction=1.5)
    with pytest.raises(InpaintsegError, match="^camera_noise must lie"):
        generate_demo_data(tmp_path / "x", n_train=2, n_test=1, size=32, camera_noise=-0.1)
    with pytest.raises(InpaintsegError, match="^degrade_level must be one of"):
        generate_demo_data(tmp_path / "x", n_train=2, n_test=1, size=32, degrade_level="extreme")


@pytest.mark.parametrize("argv, message", [
    (["--n-train", "0"], "--n-train must be between 1 and"),
    (["--img-size", "8"], "--img-size must be between 32 and"),
    (["--workers", "0"], "--workers must be between 1 and 64, got 0."),
    (["--test-families", "lama"], "--test-families: unknown family(ies) lama. Known: classical"),
    (["--methods", "telea,ghost"], "--methods: unknown method(s) ghost."),
    (["--families", "classical", "--exclude-methods", "telea,ns"],
     "the method selection is empty (after --methods, --families and the exclusions)"),
    (["--photos", "no_such_photos_dir"], "--photos no_such_photos_dir: not a folder."),
    (["--fill-noise", "3"], "--fill-noise must lie in [0, 2.5], got 3.0."),
])
def test_cli_names_flags_where_the_library_names_parameters(tmp_path, capsys, argv, message):
    assert cli.main(["demo-data", "--out", str(tmp_path / "x"), *argv]) == 2
    err = capsys.readouterr().err
    assert f"inpaintseg demo-data: error: {message}" in err or f"demo-data: error: {message}" in err, err


def test_settings_object_or_keywords_and_errors_naming_parameters(tmp_path):
    from inpaintseg.synth.engine import EngineSettings

    args = dict(n_train=3, n_test=2, size=32, seed=4, families="classical", test_methods="ns")
    keywords = generate_demo_data(tmp_path / "k", **args)
    settings = EngineSettings(**args)
    assert settings.selection == {"train": ["telea", "ns"], "test": ["ns"]}
    assert generate_demo_data(tmp_path / "s", settings) == keywords
    assert files(tmp_path / "k") == files(tmp_path / "s")
    with pytest.raises(InpaintsegError, match="^n_test must be between 1") as error:
        generate_demo_data(tmp_path / "x", settings, n_test=0)  # a keyword replaces the settings' field
    assert error.value.params == ("n_test",)
    with pytest.raises(InpaintsegError, match="^size must be a whole number, got '64'"):
        EngineSettings(size="64")
    with pytest.raises(InpaintsegError, match="^photos_dir no_such_dir: not a folder") as error:
        generate_demo_data(tmp_path / "x", photos_dir="no_such_dir")
    assert error.value.params == ("photos_dir",)
    with pytest.raises(TypeError, match="unexpected setting.*n_trian"):
        generate_demo_data(tmp_path / "x", n_trian=3)
    with pytest.raises(TypeError, match="settings must be an EngineSettings"):
        generate_demo_data(tmp_path / "x", 400)
    assert not (tmp_path / "x").exists()


def test_cli_list_methods(capsys):
    assert cli.main(["demo-data", "--list-methods"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == len(METHODS) >= 10
    rows = [line.split(None, 2) for line in lines]
    assert [r[0] for r in rows] == list(METHODS) and all(r[1] in FAMILIES and r[2] for r in rows)
    assert len({r[1] for r in rows}) >= 5


def test_cli_demo_data_with_photos_dir(tmp_path, capsys):
    photos = tmp_path / "photos"
    photos.mkdir()
    rng = np.random.default_rng(0)
    for name in ("a.png", "b.jpg"):
        cv2.imwrite(str(photos / name), rng.integers(0, 256, (120, 90, 3), dtype=np.uint8))
    (photos / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0" + b"\x00" * 50)
    (photos / "readme.md").write_text("# my photos")
    out = tmp_path / "demo"
    argv = ["demo-data", "--out", str(out), "--n-train", "6", "--n-test", "2", "--img-size", "32", "--seed", "1",
            "--photos", str(photos), "--families", "classical,copy", "--untouched-fraction", "0.5",
            "--degrade", "none"]
    assert cli.main(argv) == 0
    captured = capsys.readouterr()
    assert "wrote 8 images (side 32" in captured.out
    assert "broken.jpg" in captured.err and "readme.md" in captured.err
    meta = json.loads((out / "train" / "meta.json").read_text())
    assert {i["source"] for i in meta["images"].values()} <= {"photos/a.png", "photos/b.jpg"}
    assert sum(i["method"] == "none" for i in meta["images"].values()) == 3
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "x.png").write_bytes(b"")
    # The old spellings (positional OUT, --size) still work for one release, with a note.
    assert cli.main(["demo-data", str(tmp_path / "other"), "--size", "32"]) == 2
    err = capsys.readouterr().err
    assert "not an earlier demo-data output" in err and "--size is now --img-size" in err
    assert cli.main(["demo-data", "--n-train", "4"]) == 2
    assert "--out is required" in capsys.readouterr().err
    assert cli.main(["demo-data", "--out", str(tmp_path / "y"), "--exclude-methods", "telea,nope"]) == 2
    assert "unknown method(s) nope" in capsys.readouterr().err


def test_cli_pools_repeated_photos_folders(tmp_path):
    rng = np.random.default_rng(0)
    for folder in ("p1", "p2"):
        (tmp_path / folder).mkdir()
        cv2.imwrite(str(tmp_path / folder / "x.png"), rng.integers(0, 256, (80, 80, 3), dtype=np.uint8))
    out = tmp_path / "demo"
    assert cli.main(["demo-data", "--out", str(out), "--n-train", "8", "--n-test", "1", "--img-size", "32",
                     "--photos", str(tmp_path / "p1"), "--photos", str(tmp_path / "p2"), "--families", "classical",
                     "--degrade", "none"]) == 0
    meta = json.loads((out / "train" / "meta.json").read_text())
    assert meta["photos"] == {"n": 2, "dir": [str(tmp_path / "p1"), str(tmp_path / "p2")], "max_short_side": 128}
    assert {i["source"] for i in meta["images"].values()} == {"photos/x.png", "photos2/x.png"}
    assert all(i["resave"] == {"format": "png"} and i["pre_jpeg"] is None for i in meta["images"].values())
    assert meta["format_version"] == 3


def test_cli_camera_noise_is_a_fraction_and_recorded(tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(["demo-data", "--out", str(tmp_path / "x"), "--camera-noise", "1.5"])
    assert exc.value.code == 2
    assert "argument --camera-noise: expected a fraction in [0, 1], got 1.5" in capsys.readouterr().err
    out = tmp_path / "noisy"
    assert cli.main(["demo-data", "--out", str(out), "--n-train", "4", "--n-test", "1", "--img-size", "32",
                     "--families", "classical", "--camera-noise", "1", "--degrade", "none"]) == 0
    meta = json.loads((out / "train" / "meta.json").read_text())
    assert meta["camera_noise"] == 1.0 and all(i["camera_noise"]["sigma"] >= 1.0 for i in meta["images"].values())
