"""Reading an upload safely, entirely in memory (nothing is written to disk).

Order of the checks, cheapest first, each a `ServiceError` with a JSON-able message:
1. the declared Content-Length, then a running count while the body streams in (413, the body is not read
   further); the body must be multipart/form-data with an ``image`` file part (415 / 422);
2. the format sniffed from the first bytes, never the file name (415 for anything that is not PNG, JPEG,
   BMP, TIFF or WebP);
3. the pixel count read from the header by PIL's lazy ``Image.open`` before anything is decoded (413: a
   decompression bomb never reaches the decoder);
4. decoding by the project's rules (`inpaintseg.fileio.decode_image_bytes`; 422 when it fails).
"""

from __future__ import annotations

import io
import re
import warnings
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from types import SimpleNamespace

import numpy as np

from inpaintseg import fileio
from inpaintseg.errors import DataError
from inpaintseg.service.errors import ServiceError

# Format -> magic bytes at offset 0 (WebP: "RIFF", 4 size bytes, "WEBP").
IMAGE_SIGNATURES = {
    "png": (b"\x89PNG\r\n\x1a\n",),
    "jpeg": (b"\xff\xd8\xff",),
    "bmp": (b"BM",),
    "tiff": (b"II*\x00", b"MM\x00*"),
}
PIL_FORMATS = ("PNG", "JPEG", "BMP", "TIFF", "WEBP")
SUPPORTED = "PNG, JPEG, BMP, TIFF or WebP"
FORM_OVERHEAD = 64 * 1024  # multipart boundaries, part headers and the small fields beside the image
MAX_PARTS = 8
MAX_FIELD_BYTES = 1024
IMAGE_FIELD = "image"


def sniff_image_format(head: bytes) -> str | None:
    """The image format that the first bytes announce ("png", "jpeg", "bmp", "tiff", "webp"), or None."""
    if len(head) >= 12 and head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "webp"
    for fmt, magics in IMAGE_SIGNATURES.items():
        if any(head.startswith(m) for m in magics):
            return fmt
    return None


def safe_name(filename: str | None, default: str = "upload") -> str:
    """The upload's base name, printable and short, for messages and the image id."""
    name = PurePosixPath((filename or "").replace("\\", "/")).name
    name = "".join(ch for ch in name if ch.isprintable())[:120].strip()
    return name or default


def image_id(filename: str) -> str:
    """The image id of an upload: its file stem restricted to [A-Za-z0-9._-] (the submission's ImageId)."""
    stem = PurePosixPath(filename).stem if "." in filename else filename
    return re.sub(r"[^A-Za-z0-9._-]+", "_", stem).strip("._")[:100] or "upload"


def too_large(what: str, limit_bytes: int) -> ServiceError:
    return ServiceError(413, "payload_too_large",
                        f"{what} is larger than this server's upload limit of {limit_bytes / 2**20:.3g} MB; send a "
                        "smaller file (e.g. re-encode it as JPEG) or start the server with a larger --max-upload-mb.")


@dataclass
class Part:
    """One multipart part held in memory."""

    name: str = ""
    filename: str | None = None
    content_type: str = ""
    data: bytearray = field(default_factory=bytearray)


def _multipart():
    """python-multipart's parser pieces (the module is `python_multipart` since 0.0.13, `multipart` before)."""
    try:
        from python_multipart import exceptions, multipart
    except ModuleNotFoundError:  # pragma: no cover - older python-multipart
        from multipart import exceptions, multipart
    return SimpleNamespace(MultipartParser=multipart.MultipartParser, FormParserError=exceptions.FormParserError,
                           parse_options_header=multipart.parse_options_header)


class _Collector:
    """python-multipart callbacks that keep every part in memory, bounded in number and size."""

    def __init__(self, max_file_bytes: int) -> None:
        self.parts: list[Part] = []
        self.max_file_bytes = max_file_bytes
        self._header_name = b""
        self._header_value = b""
        self._headers: dict[bytes, bytes] = {}

    def on_part_begin(self) -> None:
        if len(self.parts) >= MAX_PARTS:
            raise ServiceError(422, "bad_form", f"too many form fields (more than {MAX_PARTS}); send the image "
                               f"as the '{IMAGE_FIELD}' field and at most the threshold and tta fields.")
        self.parts.append(Part())
        self._headers = {}

    def on_header_field(self, data: bytes, start: int, end: int) -> None:
        self._header_name += data[start:end]

    def on_header_value(self, data: bytes, start: int, end: int) -> None:
        self._header_value += data[start:end]

    def on_header_end(self) -> None:
        self._headers[self._header_name.strip().lower()] = self._header_value.strip()
        self._header_name = self._header_value = b""

    def on_headers_finished(self) -> None:
        part = self.parts[-1]
        _, options = _multipart().parse_options_header(self._headers.get(b"content-disposition", b""))
        part.name = options.get(b"name", b"").decode("utf-8", "replace")
        if b"filename" in options:
            part.filename = options[b"filename"].decode("utf-8", "replace")
        part.content_type = self._headers.get(b"content-type", b"").decode("latin-1")

    def on_part_data(self, data: bytes, start: int, end: int) -> None:
        part = self.parts[-1]
        part.data += data[start:end]
        if part.filename is None and len(part.data) > MAX_FIELD_BYTES:
            raise ServiceError(422, "bad_form", f"form field {part.name!r} is longer than {MAX_FIELD_BYTES} bytes; "
                               f"only the '{IMAGE_FIELD}' field may hold a file.")
        if len(part.data) > self.max_file_bytes:
            raise too_large("the uploaded image", self.max_file_bytes)

    def callbacks(self) -> dict:
        return {name: getattr(self, name) for name in ("on_part_begin", "on_header_field", "on_header_value",
                                                       "on_header_end", "on_headers_finished", "on_part_data")}


async def read_multipart(content_type: str | None, content_length: str | None, stream: AsyncIterator[bytes],
                         max_file_bytes: int) -> dict[str, Part]:
    """Parse a multipart/form-data body from `stream` into memory, refusing it (413) as soon as it is larger
    than `max_file_bytes` plus the form's overhead: first by its declared length, then while it streams."""
    mp = _multipart()
    limit = max_file_bytes + FORM_OVERHEAD
    if content_length is not None:
        try:
            declared = int(content_length)
        except ValueError:
            raise ServiceError(400, "bad_request", f"Content-Length {content_length!r} is not a number.") from None
        if declared > limit:
            raise too_large(f"the request ({declared / 2**20:.1f} MB)", max_file_bytes)
    mime, options = mp.parse_options_header(content_type or "")
    if mime != b"multipart/form-data" or not options.get(b"boundary"):
        raise ServiceError(415, "unsupported_media_type",
                           f"expected a multipart/form-data upload with the image in the '{IMAGE_FIELD}' field, got "
                           f"Content-Type {content_type or 'none'!r} (curl: -F {IMAGE_FIELD}=@photo.jpg).")
    collector = _Collector(max_file_bytes)
    parser = mp.MultipartParser(options[b"boundary"], collector.callbacks())
    received = 0
    try:
        async for chunk in stream:
            received += len(chunk)
            if received > limit:
                raise too_large("the request", max_file_bytes)
            parser.write(chunk)
        parser.finalize()
    except mp.FormParserError as exc:
        raise ServiceError(422, "bad_form", f"the multipart body cannot be parsed ({exc}); send it as "
                           f"multipart/form-data with the image in the '{IMAGE_FIELD}' field.") from None
    return {part.name: part for part in collector.parts}


def header_size(data: bytes, name: str, max_pixels: int) -> tuple[int, int]:
    """(width, height) from the image header, without decoding the pixels; 413 above `max_pixels`, 422 when the
    header cannot be read."""
    from PIL import Image, UnidentifiedImageError

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data), formats=PIL_FORMATS) as im:
                width, height = im.size
    except Image.DecompressionBombError:
        raise too_many_pixels(name, None, max_pixels) from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, EOFError) as exc:
        raise ServiceError(422, "undecodable_image", f"{name}: the image header cannot be read ({exc}); the file is "
                           "corrupt or truncated. Re-export it and upload again.") from None
    if width * height > max_pixels:
        raise too_many_pixels(name, (width, height), max_pixels)
    return width, height


def too_many_pixels(name: str, size: tuple[int, int] | None, max_pixels: int) -> ServiceError:
    what = f"{size[0]}x{size[1]} = {size[0] * size[1]:,} pixels" if size else "too many pixels"
    return ServiceError(413, "too_many_pixels",
                        f"{name}: {what}, above this server's limit of {max_pixels:,} pixels "
                        f"({max_pixels / 1e6:g} megapixels); downscale "
                        "or crop it, or start the server with a larger --max-pixels.")


def check_upload(parts: dict[str, Part], max_pixels: int) -> tuple[bytes, str, tuple[int, int]]:
    """The image part's bytes, its safe name and (width, height), after sniffing and the header check."""
    part = parts.get(IMAGE_FIELD)
    if part is None or part.filename is None:
        raise ServiceError(422, "missing_image", f"no file in the '{IMAGE_FIELD}' form field; upload the image as "
                           f"multipart/form-data (curl: -F {IMAGE_FIELD}=@photo.jpg).")
    name = safe_name(part.filename)
    data = bytes(part.data)
    if not data:
        raise ServiceError(422, "empty_image", f"{name}: the uploaded file is empty (0 bytes).")
    if sniff_image_format(data[:16]) is None:
        raise ServiceError(415, "not_an_image", f"{name}: the content is not an image (its first bytes match no "
                           f"{SUPPORTED} signature; the file name is not trusted). Upload a {SUPPORTED} file.")
    return data, name, header_size(data, name, max_pixels)


def decode_upload(data: bytes, name: str, max_pixels: int) -> np.ndarray:
    """Decode by the project's rules (uint8 RGB); 422 when the bytes do not decode."""
    try:
        image = fileio.decode_image_bytes(data, name)
    except DataError as exc:
        raise ServiceError(422, "undecodable_image", str(exc)) from None
    if image.shape[0] * image.shape[1] > max_pixels:  # a header that lied about its size
        raise too_many_pixels(name, (image.shape[1], image.shape[0]), max_pixels)
    return image


def form_value(parts: dict[str, Part], name: str) -> str | None:
    part = parts.get(name)
    if part is None:
        return None
    text = bytes(part.data).decode("utf-8", "replace").strip()
    return text or None
