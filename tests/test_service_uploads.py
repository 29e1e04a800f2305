"""The upload checks of the service, without a server: sniffing, header pixel counts, multipart limits."""

from __future__ import annotations

import asyncio
import struct
import zlib

import cv2
import numpy as np
import pytest

pytest.importorskip("python_multipart", reason="the [serve] extra is not installed (pip install -e '.[serve]')")

from inpaintseg.service import uploads  # noqa: E402
from inpaintseg.service.errors import ServiceError  # noqa: E402


def png_bytes(array: np.ndarray) -> bytes:
    ok, buf = cv2.imencode(".png", array)
    assert ok
    return buf.tobytes()


def png_claiming(width: int, height: int) -> bytes:
    """A PNG whose header claims width x height (with a valid CRC) and whose data is 1 pixel: a bomb's header."""
    data = bytearray(png_bytes(np.zeros((1, 1), np.uint8)))
    ihdr = 8 + 4  # signature, chunk length
    data[ihdr + 4:ihdr + 12] = struct.pack(">II", width, height)
    data[ihdr + 17:ihdr + 21] = struct.pack(">I", zlib.crc32(bytes(data[ihdr:ihdr + 17])))
    return bytes(data)


@pytest.mark.parametrize("head, fmt", [
    (b"\x89PNG\r\n\x1a\n\0\0\0\x0dIHDR", "png"), (b"\xff\xd8\xff\xe0\0\x10JFIF", "jpeg"), (b"BM6\0\0\0", "bmp"),
    (b"II*\0\x08\0\0\0", "tiff"), (b"MM\0*\0\0\0\x08", "tiff"), (b"RIFF\x24\0\0\0WEBPVP8 ", "webp"),
    (b"GIF89a", None), (b"<html><body>", None), (b"%PDF-1.7", None), (b"RIFF\x24\0\0\0WAVEfmt ", None), (b"", None),
])
def test_sniff_reads_the_magic_bytes(head, fmt):
    assert uploads.sniff_image_format(head) == fmt


def test_every_sniffed_format_is_one_the_decoder_writes():
    rgb = np.zeros((4, 4, 3), np.uint8)
    for ext, fmt in ((".png", "png"), (".jpg", "jpeg"), (".bmp", "bmp"), (".tif", "tiff"), (".webp", "webp")):
        ok, buf = cv2.imencode(ext, rgb)
        assert ok and uploads.sniff_image_format(buf.tobytes()[:16]) == fmt


def test_header_size_is_read_without_decoding():
    assert uploads.header_size(png_claiming(12_000, 10_000), "x.png", max_pixels=150_000_000) == (12_000, 10_000)


@pytest.mark.parametrize("width, height, max_pixels, status", [
    (100, 100, 10_000, None),        # exactly at the limit
    (101, 100, 10_000, 413),
    (40_000, 30_000, 50_000_000, 413),  # 1.2 gigapixels: also PIL's own bomb limit
])
def test_pixel_limit_from_the_header(width, height, max_pixels, status):
    data = png_claiming(width, height)
    if status is None:
        assert uploads.header_size(data, "a.png", max_pixels) == (width, height)
    else:
        with pytest.raises(ServiceError) as err:
            uploads.header_size(data, "a.png", max_pixels)
        assert err.value.status == status and "a.png" in err.value.message and "--max-pixels" in err.value.message


def _form(*parts: tuple[str, str | None, bytes], boundary: str = "b0undary") -> bytes:
    out = b""
    for name, filename, data in parts:
        disp = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename else "")
        out += f"--{boundary}\r\nContent-Disposition: {disp}\r\n\r\n".encode() + data + b"\r\n"
    return out + f"--{boundary}--\r\n".encode()


def _read(body: bytes, max_file_bytes: int = 10_000, chunk: int = 7, content_length: bool = True,
          content_type: str = "multipart/form-data; boundary=b0undary"):
    consumed = []

    async def stream():
        for i in range(0, len(body), chunk):
            consumed.append(i)
            yield body[i:i + chunk]

    parts = asyncio.run(uploads.read_multipart(content_type, str(len(body)) if content_length else None, stream(),
                                               max_file_bytes))
    return parts, len(consumed)


def test_multipart_parts_are_kept_in_memory_whatever_the_chunking():
    image = png_bytes(np.full((5, 6, 3), 7, np.uint8))
    body = _form(("image", "dir/../shot.png", image), ("threshold", None, b"0.3"))
    for chunk in (1, 7, 4096):
        parts, _ = _read(body, chunk=chunk)
        assert bytes(parts["image"].data) == image and parts["image"].filename == "dir/../shot.png"
        assert uploads.form_value(parts, "threshold") == "0.3"
    data, name, size = uploads.check_upload(parts, max_pixels=100)
    assert (data, name, size) == (image, "shot.png", (6, 5))


def test_a_declared_length_above_the_limit_is_refused_before_reading():
    body = _form(("image", "a.png", b"\x89PNG" + b"0" * 200_000))
    with pytest.raises(ServiceError) as err:
        _read(body, max_file_bytes=1000)
    assert err.value.status == 413


def test_a_streamed_body_is_refused_as_soon_as_it_passes_the_limit():
    body = _form(("image", "a.png", b"\x89PNG" + b"0" * 300_000))
    consumed = []

    async def stream():
        for i in range(0, len(body), 1000):
            consumed.append(i)
            yield body[i:i + 1000]

    with pytest.raises(ServiceError) as err:
        asyncio.run(uploads.read_multipart("multipart/form-data; boundary=b0undary", None, stream(), 1000))
    assert err.value.status == 413 and "upload limit" in err.value.message
    # It stopped at the first chunk past the image limit (1000 bytes), not at the form's allowance or the end.
    assert len(consumed) == 2


@pytest.mark.parametrize("content_type", ["application/json", "multipart/form-data", None])
def test_a_body_that_is_not_a_multipart_form_is_415(content_type):
    with pytest.raises(ServiceError) as err:
        _read(b"{}", content_type=content_type)
    assert err.value.status == 415 and "-F image=@" in err.value.message


def test_form_field_limits():
    with pytest.raises(ServiceError, match="longer than"):
        _read(_form(("threshold", None, b"9" * 5000)), max_file_bytes=100_000)
    with pytest.raises(ServiceError, match="too many form fields"):
        _read(_form(*[(f"f{i}", None, b"x") for i in range(uploads.MAX_PARTS + 1)]))


@pytest.mark.parametrize("parts, status, code", [
    ({}, 422, "missing_image"),
    ({"image": uploads.Part("image", None, "", bytearray(b"not a file field"))}, 422, "missing_image"),
    ({"image": uploads.Part("image", "a.png", "", bytearray())}, 422, "empty_image"),
    ({"image": uploads.Part("image", "a.png", "image/png", bytearray(b"hello, not an image"))}, 415, "not_an_image"),
    ({"image": uploads.Part("image", "a.png", "", bytearray(b"\x89PNG\r\n\x1a\n" + b"\0" * 30))}, 422,
     "undecodable_image"),
])
def test_check_upload_errors(parts, status, code):
    with pytest.raises(ServiceError) as err:
        uploads.check_upload(parts, max_pixels=10**6)
    assert (err.value.status, err.value.code) == (status, code)


def test_decode_upload_refuses_a_truncated_image_with_422():
    data = png_bytes(np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8))
    uploads.header_size(data[: len(data) // 2], "half.png", 10**6)  # the header alone is fine
    with pytest.raises(ServiceError) as err:
        uploads.decode_upload(data[: len(data) // 2], "half.png", 10**6)
    assert err.value.status == 422 and "half.png" in err.value.message


@pytest.mark.parametrize("filename, name, image_id", [
    ("shot.png", "shot.png", "shot"), ("C:\\Users\\me\\case 12.JPG", "case 12.JPG", "case_12"),
    ("../../etc/passwd", "passwd", "passwd"), ("", "upload", "upload"), ("..png", "..png", "upload"),
])
def test_names_from_the_client_are_tamed(filename, name, image_id):
    assert uploads.safe_name(filename) == name
    assert uploads.image_id(uploads.safe_name(filename)) == image_id
