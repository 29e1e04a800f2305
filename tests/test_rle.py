"""RLE codec and submission files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from inpaintseg.errors import DataError, InpaintsegError
from inpaintseg.rle import (
    decode_submission,
    parse_runs,
    read_submission,
    rle_decode,
    rle_encode,
    write_submission,
)

# The 3x4 example, worked out by hand.
#   0 1 1 0      row-major numbering:  1  2  3  4      column-major numbering:  1 4 7 10
#   1 0 0 0                            5  6  7  8                               2 5 8 11
#   0 1 1 1                            9 10 11 12                               3 6 9 12
# order "C": ones at 2,3 | 5 | 10,11,12          -> runs (2,2) (5,1) (10,3)
# order "F": column values 0 1 0 | 1 0 1 | 1 0 1 | 0 0 1, ones at 2 | 4 | 6,7 | 9 | 12
#            (6 and 7 are the bottom of column 2 and the top of column 3: one run across columns)
#                                                -> runs (2,1) (4,1) (6,2) (9,1) (12,1)
EXAMPLE = np.array([[0, 1, 1, 0], [1, 0, 0, 0], [0, 1, 1, 1]], dtype=np.uint8)
EXAMPLE_C = "2 2 5 1 10 3"
EXAMPLE_F = "2 1 4 1 6 2 9 1 12 1"


def test_hand_worked_example_row_major():
    assert rle_encode(EXAMPLE) == EXAMPLE_C
    np.testing.assert_array_equal(rle_decode(EXAMPLE_C, (3, 4)), EXAMPLE)


def test_hand_worked_example_column_major():
    assert rle_encode(EXAMPLE, order="F") == EXAMPLE_F
    np.testing.assert_array_equal(rle_decode(EXAMPLE_F, (3, 4), order="F"), EXAMPLE)


def test_empty_and_full_masks():
    assert rle_encode(np.zeros((5, 7), np.uint8)) == ""
    assert rle_decode("", (5, 7)).sum() == 0
    # A full 5x7 mask is one run of all 35 pixels starting at pixel 1, in either order.
    assert rle_encode(np.ones((5, 7), np.uint8)) == "1 35"
    assert rle_encode(np.ones((5, 7), bool), order="F") == "1 35"


def test_run_crossing_a_row_end_is_one_run():
    # Row-major: the last pixel of row 0 (pixel 3) and the first of row 1 (pixel 4) are adjacent.
    mask = np.array([[0, 0, 1], [1, 0, 0]])
    assert rle_encode(mask) == "3 2"


def test_decode_accepts_touching_runs_and_extra_whitespace():
    # "1 2 3 1" = pixels 1,2 then 3: touching runs are legal and fill pixels 1..3.
    np.testing.assert_array_equal(rle_decode("  1 2   3 1 ", (1, 4)), [[1, 1, 1, 0]])


def test_decode_returns_uint8():
    assert rle_decode("1 1", (2, 2)).dtype == np.uint8


@pytest.mark.parametrize("bad", [np.zeros((2, 2, 1)), np.zeros(4), np.array([[0, 2]]), np.array([[0.5, 1]])])
def test_encode_rejects_non_2d_or_non_binary(bad):
    with pytest.raises(ValueError, match="expected"):
        rle_encode(bad)


def test_bad_order_is_rejected():
    with pytest.raises(ValueError, match="order"):
        rle_encode(EXAMPLE, order="K")


@pytest.mark.parametrize(
    "rle, message",
    [
        ("1 2 3", "odd number of values"),
        ("0 2", "1-based"),
        ("1 0", "length 0"),
        ("x 2", "token 1 'x'"),
        ("1 2.5", "token 2 '2.5'"),
        ("-1 2", "token 1 '-1'"),
        ("5 2 1 1", "is not after run 1"),  # unsorted starts
        ("1 3 2 1", "overlaps run 1"),  # pixel 2 is covered twice
        ("10 4", "out of range"),  # pixels 10..13 but a 3x4 image has 12
        ("9" * 30 + " 1", "too large"),
    ],
)
def test_decode_rejects_bad_strings(rle, message):
    with pytest.raises(DataError, match=message):
        rle_decode(rle, (3, 4))


masks = st.tuples(st.integers(1, 12), st.integers(1, 12)).flatmap(
    lambda shape: hnp.arrays(np.uint8, shape, elements=st.integers(0, 1))
)
special_masks = st.tuples(st.integers(1, 40), st.sampled_from([0, 1]), st.booleans()).map(
    lambda t: np.full((1, t[0]) if t[2] else (t[0], 1), t[1], np.uint8)  # 1xN / Nx1, empty or full
)


@settings(max_examples=150, deadline=None)
@given(mask=st.one_of(masks, special_masks), order=st.sampled_from(["C", "F"]))
def test_round_trip(mask, order):
    rle = rle_encode(mask, order)
    np.testing.assert_array_equal(rle_decode(rle, mask.shape, order), mask)
    # Structural properties of the string: pairs, sum of lengths = number of ones, sorted starts.
    runs = parse_runs(rle)
    assert runs[:, 1].sum() == mask.sum()
    assert np.all(np.diff(runs[:, 0]) > runs[:-1, 1])  # gap of >= 1 zero between encoded runs


@settings(max_examples=50, deadline=None)
@given(mask=masks)
def test_c_order_of_mask_equals_f_order_of_transpose(mask):
    # Row-major numbering of M is column-major numbering of M.T.
    assert rle_encode(mask, "C") == rle_encode(mask.T, "F")


def naive_encode(mask: np.ndarray) -> str:
    """Pixel-by-pixel reference encoder (row-major)."""
    out, start = [], None
    flat = [int(v) for v in mask.ravel()] + [0]
    for i, v in enumerate(flat, start=1):
        if v and start is None:
            start = i
        elif not v and start is not None:
            out += [start, i - start]
            start = None
    return " ".join(map(str, out))


@settings(max_examples=50, deadline=None)
@given(mask=masks)
def test_matches_naive_reference(mask):
    assert rle_encode(mask) == naive_encode(mask)


# ------------------------------------------------------------------------------ submissions


def test_submission_round_trip_sorted(tmp_path: Path):
    masks = {"img_b": EXAMPLE, "img_a": np.zeros((3, 4), np.uint8),
             Path("x/img_c.png"): np.ones((2, 2), bool)}
    path = write_submission(tmp_path / "sub" / "submission.csv", masks)
    lines = path.read_text().splitlines()
    # Header, then rows sorted by id; a Path key becomes its stem; an empty mask is an empty field.
    assert lines == ["ImageId,EncodedPixels", "img_a,", f"img_b,{EXAMPLE_C}", "img_c,1 4"]
    assert read_submission(path) == {"img_a": "", "img_b": EXAMPLE_C, "img_c": "1 4"}
    decoded = decode_submission(path, {"img_a": (3, 4), "img_b": (3, 4), "img_c": (2, 2)})
    np.testing.assert_array_equal(decoded["img_b"], EXAMPLE)
    assert decoded["img_a"].sum() == 0 and decoded["img_c"].sum() == 4
    assert [p.name for p in path.parent.iterdir()] == ["submission.csv"]  # no temp files left


def test_submission_column_major(tmp_path: Path):
    path = write_submission(tmp_path / "s.csv", {"a": EXAMPLE}, order="F")
    assert read_submission(path) == {"a": EXAMPLE_F}
    np.testing.assert_array_equal(decode_submission(path, {"a": (3, 4)}, order="F")["a"], EXAMPLE)


def test_write_submission_rejects_bad_masks_and_ids(tmp_path: Path):
    with pytest.raises(ValueError, match="'a'.*2-D"):
        write_submission(tmp_path / "s.csv", {"a": np.zeros((2, 2, 3))})
    with pytest.raises(ValueError, match="same id|ImageId 'a'"):
        write_submission(tmp_path / "s.csv", {"a": EXAMPLE, Path("d/a.png"): EXAMPLE})
    assert not (tmp_path / "s.csv").exists()


def test_write_submission_accepts_encoded_strings(tmp_path: Path):
    path = write_submission(tmp_path / "s.csv", {"a": "2  2 5 1"})
    assert read_submission(path) == {"a": "2 2 5 1"}
    with pytest.raises(DataError, match="odd number"):
        write_submission(tmp_path / "t.csv", {"a": "2 2 5"})


def write_text(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "bad.csv"
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    "text, message",
    [
        ("Id,Pixels\na,1 2\n", r"line 1: expected the header"),
        ("ImageId,EncodedPixels\na,1 2\nb,1 2 3\n", r"line 3 \(ImageId 'b'\).*odd number"),
        ("ImageId,EncodedPixels\na,1 x\n", r"line 2 \(ImageId 'a'\).*token 2 'x'"),
        ("ImageId,EncodedPixels\na,0 4\n", r"line 2 \(ImageId 'a'\).*1-based"),
        ("ImageId,EncodedPixels\na,1 4 3 2\n", r"line 2 \(ImageId 'a'\).*overlaps"),
        ("ImageId,EncodedPixels\na,1 2\nb,\na,3 1\n", r"line 4: duplicate ImageId 'a' \(first on line 2\)"),
        ("ImageId,EncodedPixels\na,1 2,extra\n", r"line 2: expected 2 fields"),
        ("ImageId,EncodedPixels\n,1 2\n", r"line 2: empty ImageId"),
        ("", r"empty"),
    ],
)
def test_read_submission_rejects_malformed(tmp_path: Path, text: str, message: str):
    path = write_text(tmp_path, text)
    with pytest.raises(DataError, match=message) as info:
        read_submission(path)
    assert str(path) in str(info.value)


def test_decode_submission_range_and_ids(tmp_path: Path):
    path = write_text(tmp_path, "ImageId,EncodedPixels\na,1 2\nb,10 4\n")
    # b's run covers pixels 10..13, one past the 12 pixels of a 3x4 image.
    with pytest.raises(DataError, match=r"line 3 \(ImageId 'b'\).*out of range"):
        decode_submission(path, {"a": (3, 4), "b": (3, 4)})
    with pytest.raises(DataError, match="no row for 1 image.*: c"):
        decode_submission(path, {"a": (3, 4), "b": (4, 4), "c": (2, 2)})
    with pytest.raises(DataError, match="match no image: b"):
        decode_submission(path, {"a": (3, 4)})


def test_read_submission_tolerates_bom_crlf_and_blank_lines(tmp_path: Path):
    path = tmp_path / "s.csv"
    path.write_bytes(b"\xef\xbb\xbfImageId,EncodedPixels\r\na,1 2\r\n\r\nb,\r\n")
    assert read_submission(path) == {"a": "1 2", "b": ""}


def test_read_submission_missing_file(tmp_path: Path):
    with pytest.raises(InpaintsegError, match="not found"):
        read_submission(tmp_path / "nope.csv")


def test_real_masks_round_trip_through_a_submission(tmp_path: Path, realworld):
    from inpaintseg.fileio import read_mask

    paths = sorted(realworld().glob("*/masks/*.png"))[:12]
    if not paths:
        pytest.skip("no real-world masks found")
    masks = {p.stem: read_mask(p) for p in paths}
    for order in ("C", "F"):
        sub = write_submission(tmp_path / f"sub_{order}.csv", masks, order=order)
        decoded = decode_submission(sub, {k: m.shape for k, m in masks.items()}, order=order)
        for stem, mask in masks.items():
            np.testing.assert_array_equal(decoded[stem], mask)


def test_submission_with_a_very_long_row_round_trips(tmp_path):
    # A 600x600 checkerboard has 180,000 one-pixel runs: its RLE is over 1 MB, far above csv's
    # default field limit of 131072 characters, which must not stop read_submission.
    mask = (np.indices((600, 600)).sum(axis=0) % 2).astype(np.uint8)
    path = tmp_path / "big.csv"
    write_submission(path, {"big": mask})
    rle = read_submission(path)["big"]
    assert len(rle) > 131072
    assert np.array_equal(rle_decode(rle, mask.shape), mask)
