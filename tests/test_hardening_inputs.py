"""Issue 11, bad input: header bombs, the pixel limit, broken symlinks, mask/image size checks before
training, masks whose values read as empty. Each test reproduces a case that crashed or passed silently."""

from __future__ import annotations

import os

import cv2
import numpy as np
import pytest

from conftest import export_tiny_model, header_png
from inpaintseg import cli, fileio, rle
from inpaintseg.data import pair_files
from inpaintseg.errors import DataError, ImageTooLargeError


def _rgb(h: int, w: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def _names(folder):
    return sorted(p.stem for p in folder.iterdir())


# ---- io: the pixel limit is read from the header, before decoding ----------------------------------

def test_a_header_claiming_65535_squared_is_a_named_data_error(tmp_path):
    bomb = header_png(tmp_path / "bomb.png", 65535, 65535)
    with pytest.raises(ImageTooLargeError, match=r"bomb\.png: 65535x65535 .* exceeds the pixel limit"):
        fileio.read_image(bomb)
    with pytest.raises(DataError, match="--max-pixels"):
        fileio.read_mask(bomb)


def test_the_pixel_limit_is_a_parameter_and_a_process_setting(tmp_path, monkeypatch):
    path = tmp_path / "a.png"
    fileio.write_png(path, _rgb(30, 40))  # 1200 pixels
    assert fileio.read_image(path, max_pixels=1200).shape == (30, 40, 3)
    with pytest.raises(ImageTooLargeError, match="40x30 = 1,200 pixels exceeds the pixel limit of 1,199"):
        fileio.read_image(path, max_pixels=1199)
    monkeypatch.setenv(fileio.MAX_PIXELS_ENV, "1000")
    assert fileio.pixel_limit() == 1000
    with pytest.raises(ImageTooLargeError):
        fileio.read_mask(path)


def test_image_size_reads_only_the_header(tmp_path):
    # 20000 x 10000 claimed, a few bytes of data: the size comes back without decoding anything.
    path = header_png(tmp_path / "big.png", 20000, 10000)
    assert fileio.image_size(path) == (10000, 20000)
    assert fileio.DEFAULT_MAX_PIXELS == 100_000_000


# ---- check-data -----------------------------------------------------------------------------------

def test_check_data_names_header_bombs_and_images_over_the_limit(make_dataset, capsys):
    root = make_dataset(n_train=4, n_test=1)
    header_png(root / "train" / "images" / "tr_000.png", 65535, 65535)
    header_png(root / "train" / "masks" / "tr_001.png", 12000, 10000)  # 120 MP: over the default limit
    assert cli.main(["check-data", str(root)]) == 1
    out = capsys.readouterr().out
    assert "files over the pixel limit of 100,000,000 pixels" in out and "tr_000.png (65535x65535)" in out
    assert "masks/tr_001.png (12000x10000)" in out or "tr_001.png (12000x10000)" in out
    assert "--max-pixels" in out


def test_check_data_max_pixels_flag(make_dataset, capsys):
    root = make_dataset(n_train=2, n_test=0, size=32)  # 1024 pixels each
    assert cli.main(["check-data", str(root), "--max-pixels", "1024"]) == 0
    assert cli.main(["check-data", str(root), "--max-pixels", "1000"]) == 1
    assert "over the pixel limit" in capsys.readouterr().out


def test_check_data_warns_about_masks_that_read_as_empty(make_dataset, capsys):
    root = make_dataset(n_train=4, n_test=0)
    masks = root / "train" / "masks"
    stray = np.zeros((32, 32), np.uint8)
    stray[4:10, 4:10] = 2  # neither a 0/1 nor a 0/255 mask: reads as empty
    cv2.imwrite(str(masks / "tr_002.png"), stray)
    deep = np.zeros((32, 32), np.uint16)
    deep[4:10, 4:10] = 255  # 16-bit 0/255: 255 of 65535 reads as empty
    cv2.imwrite(str(masks / "tr_003.png"), deep)
    assert cli.main(["check-data", str(root)]) == 1
    out = capsys.readouterr().out
    assert "masks whose non-zero values all read as 0" in out
    assert "tr_002.png (max value 2 of 255)" in out and "tr_003.png (max value 255 of 65535)" in out


# ---- broken symlinks and loops ------------------------------------------------------------------

@pytest.fixture
def linked(make_dataset):
    root = make_dataset(n_train=4, n_test=3)
    images = root / "train" / "images"
    os.symlink(images / "gone.png", images / "dangling.png")
    os.symlink(images / "loop_b.png", images / "loop_a.png")
    os.symlink(images / "loop_a.png", images / "loop_b.png")
    test = root / "test" / "images"
    os.symlink(test / "gone.png", test / "dangling.png")
    os.symlink("loop.png", test / "loop.png")  # a link to itself
    return root


def test_pairing_names_broken_links_and_loops(linked):
    with pytest.raises(DataError) as info:
        pair_files(linked / "train" / "images", linked / "train" / "masks")
    message = str(info.value)
    assert "broken symbolic links" in message
    assert "dangling.png" in message and "loop_a.png" in message and "loop_b.png" in message


def test_check_data_names_broken_links(linked, capsys):
    assert cli.main(["check-data", str(linked)]) == 1
    out = capsys.readouterr().out
    assert "broken symbolic links" in out and "dangling.png" in out and "loop.png" in out


def test_predict_names_broken_links_and_writes_the_rest(linked, tmp_path, capsys):
    model = export_tiny_model(tmp_path / "model")
    out = tmp_path / "sub.csv"
    code = cli.main(["predict", "--quiet", "--model", str(model), "--images", str(linked / "test" / "images"),
                     "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 1, err
    assert "dangling.png" in err and "loop.png" in err and "symbolic link" in err
    assert sorted(rle.read_submission(out)) == ["te_000", "te_001", "te_002"]


# ---- predict: one bad image never costs the others -----------------------------------------------

def test_predict_survives_a_header_bomb_and_honours_max_pixels(make_dataset, tmp_path, capsys):
    images = make_dataset(n_train=0, n_test=3) / "test" / "images"
    header_png(images / "bomb.png", 65535, 65535)
    fileio.write_png(images / "wide.png", _rgb(20, 60))  # 1200 pixels
    model = export_tiny_model(tmp_path / "model")
    out, masks = tmp_path / "sub.csv", tmp_path / "masks"
    code = cli.main(["predict", "--quiet", "--model", str(model), "--images", str(images), "--out", str(out),
                     "--masks-out", str(masks), "--max-pixels", "1100"])
    err = capsys.readouterr().err
    assert code == 1, err
    assert "2 of 5 images could not be predicted" in err
    assert "bomb.png: 65535x65535" in err and "wide.png: 60x20" in err
    assert sorted(rle.read_submission(out)) == ["te_000", "te_001", "te_002"] == _names(masks)


# ---- train checks every header before starting ----------------------------------------------------

def _train_args(root, run):
    return ["train", "--data", str(root), "--out", str(run), "--epochs", "1", "--batch-size", "2",
            "--base-channels", "4", "--depth", "2", "--img-size", "32", "--num-workers", "0",
            "--no-progress-bar", "--no-calibrate"]


def cli_run(argv):
    """cli.main, but raising instead of printing, to check the error type."""
    args = cli.build_parser().parse_args(argv)
    return args.func(args)


def test_train_refuses_a_header_bomb_before_starting(make_dataset, tmp_path):
    root = make_dataset(n_train=8)
    header_png(root / "train" / "images" / "tr_005.png", 65535, 65535)
    run = tmp_path / "run"
    with pytest.raises(DataError, match=r"tr_005\.png \(65535x65535\)"):
        cli_run(_train_args(root, run))
    assert not (run / "config.yaml").exists()


def test_train_refuses_a_mask_of_another_size_before_starting(make_dataset, tmp_path, capsys):
    root = make_dataset(n_train=8)
    cv2.imwrite(str(root / "train" / "masks" / "tr_006.png"), np.zeros((16, 20), np.uint8))
    run = tmp_path / "run"
    assert cli.main(_train_args(root, run)) == 2
    err = capsys.readouterr().err
    assert "masks whose size differs from their image" in err and "tr_006.png (image 32x32, mask 20x16)" in err
    assert not (run / "config.yaml").exists()


def test_train_max_pixels_flag(make_dataset, tmp_path, capsys):
    root = make_dataset(n_train=4)
    assert cli.main([*_train_args(root, tmp_path / "run"), "--max-pixels", "1000"]) == 2
    assert "over the pixel limit" in capsys.readouterr().err
