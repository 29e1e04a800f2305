"""Decoding rules of inpaintseg.fileio: images to RGB uint8, masks to {0,1}, pixels as stored."""

from __future__ import annotations

import tempfile
from pathlib import Path

import cv2
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from inpaintseg.errors import DataError
from inpaintseg.fileio import atomic_path, atomic_write_text, binarize_mask, read_image, read_mask


def _write(path, array):
    """Write with OpenCV (BGR order for colour), returning the path."""
    assert cv2.imwrite(str(path), array), f"test setup could not write {path}"
    return path


# ---- images ---------------------------------------------------------------------------------------

def test_rgb_channel_order(tmp_path):
    # A pure-red RGB image stored through OpenCV (which writes BGR) must read back as red.
    rgb = np.zeros((4, 5, 3), np.uint8)
    rgb[..., 0] = 200
    path = _write(tmp_path / "red.png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    np.testing.assert_array_equal(read_image(path), rgb)


def test_grey_image_is_expanded_to_three_equal_channels(tmp_path):
    grey = np.arange(20, dtype=np.uint8).reshape(4, 5) * 10
    image = read_image(_write(tmp_path / "g.png", grey))
    assert image.shape == (4, 5, 3) and image.dtype == np.uint8
    for c in range(3):
        np.testing.assert_array_equal(image[..., c], grey)


def test_rgba_alpha_is_dropped(tmp_path):
    # BGRA with alpha 0 everywhere: the colours stay as stored (no premultiplication), alpha is gone.
    bgra = np.zeros((3, 3, 4), np.uint8)
    bgra[..., 0], bgra[..., 1], bgra[..., 2], bgra[..., 3] = 10, 20, 30, 0
    image = read_image(_write(tmp_path / "a.png", bgra))
    assert image.shape == (3, 3, 3)
    np.testing.assert_array_equal(image[0, 0], [30, 20, 10])  # RGB = reversed BGR


def test_16bit_image_is_scaled_to_8bit(tmp_path):
    # 16-bit value v*257 maps exactly to v (65535 // 257 == 255).
    values = np.array([[0, 1, 128, 255]], np.uint16)
    path = _write(tmp_path / "deep.png", values * 257)
    image = read_image(path)
    assert image.dtype == np.uint8
    np.testing.assert_array_equal(image[..., 0], values.astype(np.uint8))


@pytest.mark.parametrize("ext", [".png", ".jpg", ".bmp", ".tif", ".webp"])
def test_every_supported_format_reads(tmp_path, ext):
    grey = np.full((8, 8), 128, np.uint8)  # flat grey survives even lossy codecs within a few levels
    image = read_image(_write(tmp_path / f"x{ext}", grey))
    assert image.shape == (8, 8, 3)
    assert np.abs(image.astype(int) - 128).max() <= 3


def test_exif_orientation_is_not_applied(tmp_path):
    # A 2-row x 6-column JPEG, left half red, right half blue, tagged "rotate 90 CW" (orientation 6).
    # Pixels as stored: still (2*8, 6*8) with red on the left; an EXIF-rotating reader would give 48x16.
    stored = np.zeros((16, 48, 3), np.uint8)
    stored[:, :24] = (255, 0, 0)
    stored[:, 24:] = (0, 0, 255)
    exif = Image.Exif()
    exif[0x0112] = 6
    path = tmp_path / "rot.jpg"
    Image.fromarray(stored).save(path, quality=95, exif=exif)
    assert Image.open(path).getexif()[0x0112] == 6  # the tag is really there
    image = read_image(path)
    assert image.shape == (16, 48, 3)
    assert image[8, 4, 0] > 200 and image[8, 4, 2] < 60  # left: red
    assert image[8, 44, 2] > 200 and image[8, 44, 0] < 60  # right: blue


def test_exif_orientation_is_not_applied_to_masks_either(tmp_path):
    mask = np.zeros((16, 48), np.uint8)
    mask[:, :24] = 255
    exif = Image.Exif()
    exif[0x0112] = 8
    path = tmp_path / "m.jpg"
    Image.fromarray(mask).save(path, quality=95, exif=exif)
    out = read_mask(path)
    assert out.shape == (16, 48)
    assert out[:, :20].all() and not out[:, 28:].any()


# ---- bad files --------------------------------------------------------------------------------------

def test_zero_byte_file_is_named(tmp_path):
    path = tmp_path / "empty.png"
    path.write_bytes(b"")
    with pytest.raises(DataError, match=r"empty\.png.*empty \(0 bytes\)"):
        read_image(path)


def test_truncated_jpeg_is_named(tmp_path):
    ok, buf = cv2.imencode(".jpg", np.random.default_rng(0).integers(0, 256, (32, 32, 3), np.uint8))
    path = tmp_path / "cut.jpg"
    path.write_bytes(buf.tobytes()[: len(buf) // 2])
    with pytest.raises(DataError, match=r"cut\.jpg.*truncated"):
        read_image(path)


def test_truncated_png_is_named(tmp_path):
    ok, buf = cv2.imencode(".png", np.random.default_rng(0).integers(0, 256, (32, 32, 3), np.uint8))
    path = tmp_path / "cut.png"
    path.write_bytes(buf.tobytes()[: len(buf) // 2])
    with pytest.raises(DataError, match=r"cut\.png.*cannot be decoded"):
        read_image(path)


def test_text_file_with_image_extension_is_named(tmp_path):
    path = tmp_path / "notes.png"
    path.write_text("not an image")
    with pytest.raises(DataError, match=r"notes\.png"):
        read_mask(path)


def test_missing_file_is_named(tmp_path):
    with pytest.raises(DataError, match=r"nope\.png: file not found"):
        read_image(tmp_path / "nope.png")


# ---- masks ------------------------------------------------------------------------------------------

# The same 2x3 pattern stored four ways; every one must decode to it.
PATTERN = np.array([[0, 1, 1], [0, 0, 1]], np.uint8)


@pytest.mark.parametrize("stored", [
    PATTERN,                                            # 0/1
    PATTERN * 255,                                      # 0/255
    np.where(PATTERN == 1, 200, 40).astype(np.uint8),   # anti-aliased grey: >= 128 is inside
    np.repeat((PATTERN * 255)[..., None], 3, axis=2),   # RGB white on black
])
def test_mask_conventions_binarise(tmp_path, stored):
    out = read_mask(_write(tmp_path / "m.png", stored))
    assert out.dtype == np.uint8
    np.testing.assert_array_equal(out, PATTERN)


def test_coloured_mask_uses_max_over_channels(tmp_path):
    # Pure red (0,0,255 in BGR) on black: red is "inside" even though its grey level would be ~76.
    bgr = np.zeros((2, 3, 3), np.uint8)
    bgr[PATTERN == 1] = (0, 0, 255)
    np.testing.assert_array_equal(read_mask(_write(tmp_path / "red.png", bgr)), PATTERN)


def test_16bit_masks(tmp_path):
    np.testing.assert_array_equal(read_mask(_write(tmp_path / "a.png", PATTERN.astype(np.uint16))), PATTERN)
    np.testing.assert_array_equal(
        read_mask(_write(tmp_path / "b.png", PATTERN.astype(np.uint16) * 65535)), PATTERN)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.booleans(), min_size=1, max_size=64), st.sampled_from([1, 255]))
def test_binarize_recovers_any_binary_mask(bits, scale):
    truth = np.array(bits, np.uint8).reshape(1, -1)
    np.testing.assert_array_equal(binarize_mask(truth * scale), truth)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(0, 255), min_size=1, max_size=64))
def test_binarize_grey_thresholds_at_128_unless_all_le_1(values):
    array = np.array(values, np.uint8).reshape(1, -1)
    out = binarize_mask(array)
    expected = (array >= 1) if array.max() <= 1 else (array >= 128)
    np.testing.assert_array_equal(out, expected.astype(np.uint8))
    assert set(np.unique(out)) <= {0, 1}


@settings(max_examples=30, deadline=None)
@given(st.integers(1, 9), st.integers(1, 9), st.integers(0, 2**32 - 1))
def test_png_roundtrip_is_lossless(h, w, seed):
    from inpaintseg.fileio import write_png

    rgb = np.random.default_rng(seed).integers(0, 256, (h, w, 3), np.uint8)
    with tempfile.TemporaryDirectory() as tmp:  # hypothesis reruns the body: no function-scoped tmp_path
        path = Path(tmp) / "x.png"
        write_png(path, rgb)
        np.testing.assert_array_equal(read_image(path), rgb)


# ---- atomic writes ----------------------------------------------------------------------------------

def test_atomic_path_keeps_the_old_file_on_failure(tmp_path):
    target = tmp_path / "out.txt"
    atomic_write_text(target, "old")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half written")
            raise RuntimeError("crash mid-write")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["out.txt"]  # no temp file left behind


def test_atomic_write_replaces(tmp_path):
    target = tmp_path / "sub" / "out.txt"
    atomic_write_text(target, "one")
    atomic_write_text(target, "two")
    assert target.read_text() == "two"
