"""`fileio.decode_image_bytes`: uploads decode by exactly the rules `read_image` applies to files."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from inpaintseg import fileio
from inpaintseg.errors import DataError


def _variants(rng):
    rgb = rng.integers(0, 256, (9, 13, 3), dtype=np.uint8)
    return {
        "rgb.png": cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR),
        "grey.png": rgb[:, :, 0],
        "rgba.png": np.dstack([cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), np.full((9, 13), 9, np.uint8)]),
        "deep.png": rng.integers(0, 65536, (9, 13, 3), dtype=np.uint16),
        "photo.jpg": cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR),
        "photo.bmp": cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR),
        "photo.tif": cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR),
        "photo.webp": cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR),
    }


@pytest.mark.parametrize("name", sorted(_variants(np.random.default_rng(0))))
def test_bytes_decode_like_the_file(tmp_path, name):
    array = _variants(np.random.default_rng(0))[name]
    path = tmp_path / name
    assert cv2.imwrite(str(path), array)
    from_file = fileio.read_image(path)
    from_bytes = fileio.decode_image_bytes(path.read_bytes(), name)
    assert from_bytes.dtype == np.uint8 and from_bytes.shape == from_file.shape and from_file.shape[2] == 3
    np.testing.assert_array_equal(from_bytes, from_file)


def test_a_truncated_jpeg_is_named_whatever_its_name(tmp_path):
    ok, buf = cv2.imencode(".jpg", np.zeros((16, 16, 3), np.uint8))
    data = buf.tobytes()[:-10]  # the end-of-image marker is gone
    with pytest.raises(DataError, match=r"upload\.png: the JPEG file is truncated"):
        fileio.decode_image_bytes(data, "upload.png")  # the bytes say JPEG, the name does not


@pytest.mark.parametrize("data, problem", [(b"", "empty"), (b"\x89PNG\r\n\x1a\n junk", "cannot be decoded")])
def test_bad_bytes_raise_a_data_error_naming_the_upload(data, problem):
    with pytest.raises(DataError, match=f"shot.png: .*{problem}"):
        fileio.decode_image_bytes(data, "shot.png")
