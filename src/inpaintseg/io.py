"""Image and mask decoding rules, and atomic file writes.

Decoding rules (the same for images and masks, so they stay aligned):
- pixels as stored: no EXIF rotation is applied;
- images become RGB uint8: grey is expanded to 3 channels, alpha is dropped, 16-bit is scaled
  down to 8-bit (value // 257), float images in [0, 1] are scaled to [0, 255];
- masks become uint8 {0, 1}: colour masks take the maximum over channels; a mask whose values are
  all <= 1 is read as 0/1, otherwise a pixel is 1 where its 8-bit value is >= 128 (so 0/255 and
  anti-aliased grey masks both work).
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np

from inpaintseg.errors import DataError

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")

# Keep OpenCV from starting its own thread pool on top of torch's.
cv2.setNumThreads(1)


def is_hidden(path: Path) -> bool:
    return path.name.startswith(".")


def is_image_file(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_EXTENSIONS


def _decode(path: Path) -> np.ndarray:
    """Decode a file to a numpy array as stored (no EXIF rotation), or raise DataError."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise DataError(f"{path}: file not found. Check the path.") from None
    except IsADirectoryError:
        raise DataError(f"{path}: is a folder, expected an image file.") from None
    except OSError as exc:
        raise DataError(f"{path}: cannot be read ({exc.strerror}). Check its permissions.") from None
    return _decode_buffer(data, path, jpeg=path.suffix.lower() in (".jpg", ".jpeg"))


def _decode_buffer(data: bytes, name: object, jpeg: bool) -> np.ndarray:
    """Decode encoded image bytes as stored (no EXIF rotation), or raise DataError naming `name`."""
    if not data:
        raise DataError(f"{name}: the file is empty (0 bytes). Re-export or remove it.")
    if jpeg and b"\xff\xd9" not in data[-4096:]:
        raise DataError(
            f"{name}: the JPEG file is truncated (no end-of-image marker). Re-export or remove it."
        )
    buf = np.frombuffer(data, dtype=np.uint8)
    array = cv2.imdecode(buf, cv2.IMREAD_UNCHANGED)  # IMREAD_UNCHANGED ignores EXIF orientation
    if array is None or array.size == 0:
        raise DataError(
            f"{name}: cannot be decoded as an image (corrupt, truncated, or not an image). "
            f"Supported formats: {', '.join(IMAGE_EXTENSIONS)}. Re-export or remove it."
        )
    return array


def _to_uint8(array: np.ndarray) -> np.ndarray:
    if array.dtype == np.uint8:
        return array
    if array.dtype == np.uint16:
        return (array // 257).astype(np.uint8)
    if array.dtype in (np.float32, np.float64):
        scale = 255.0 if float(np.nanmax(array)) <= 1.0 else 1.0
        return np.clip(np.nan_to_num(array) * scale, 0, 255).round().astype(np.uint8)
    if array.dtype == np.int8:
        return (array.astype(np.int16) + 128).astype(np.uint8)
    # Other integer types: scale by the largest value the type can hold.
    info = np.iinfo(array.dtype)
    return (array.astype(np.float64) / info.max * 255.0).clip(0, 255).round().astype(np.uint8)


def read_image(path: str | os.PathLike) -> np.ndarray:
    """Read an image as RGB uint8 of shape (H, W, 3)."""
    return _to_rgb(_to_uint8(_decode(Path(path))), path)


def decode_image_bytes(data: bytes, name: str = "upload") -> np.ndarray:
    """Decode an image held in memory (an upload) as RGB uint8 (H, W, 3) by the same rules as `read_image`.

    The bytes, not `name`, decide the format (a JPEG is recognised by its magic bytes for the truncation
    check); `name` only labels error messages. Raises DataError.
    """
    data = bytes(data)
    return _to_rgb(_to_uint8(_decode_buffer(data, name, jpeg=data[:3] == b"\xff\xd8\xff")), name)


def _to_rgb(array: np.ndarray, name: object) -> np.ndarray:
    if array.ndim == 2:
        return cv2.cvtColor(array, cv2.COLOR_GRAY2RGB)
    if array.ndim == 3 and array.shape[2] == 1:
        return cv2.cvtColor(array[:, :, 0], cv2.COLOR_GRAY2RGB)
    if array.ndim == 3 and array.shape[2] == 3:
        return cv2.cvtColor(array, cv2.COLOR_BGR2RGB)
    if array.ndim == 3 and array.shape[2] == 4:
        return cv2.cvtColor(array, cv2.COLOR_BGRA2RGB)
    raise DataError(
        f"{name}: unsupported image layout {array.shape}; expected grey, RGB or RGBA."
    )


def binarize_mask(array: np.ndarray) -> np.ndarray:
    """Turn a decoded mask (any of the stored conventions above) into uint8 {0, 1}."""
    if array.ndim == 3:
        if array.shape[2] == 4:  # drop alpha
            array = array[:, :, :3]
        array = array.max(axis=2)
    array = _to_uint8(array) if array.dtype != np.uint8 else array
    if array.size and int(array.max()) <= 1:
        return (array >= 1).astype(np.uint8)
    return (array >= 128).astype(np.uint8)


def read_mask(path: str | os.PathLike) -> np.ndarray:
    """Read a mask as uint8 {0, 1} of shape (H, W)."""
    array = _decode(Path(path))
    if array.dtype == np.uint16:  # 16-bit 0/1 masks stay 0/1; 0/65535 become 0/255
        array = array if int(array.max(initial=0)) <= 1 else (array // 257).astype(np.uint8)
        array = array.astype(np.uint8)
    return binarize_mask(array)


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside `path`; on success it replaces `path` atomically.

    On an exception the temporary file is removed and `path` is left as it was.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    os.chmod(tmp, 0o666 & ~_current_umask())  # mkstemp makes 0600; give the file normal permissions
    try:
        yield tmp
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def write_png(path: str | os.PathLike, array: np.ndarray) -> None:
    """Write a uint8 grey (H, W) or RGB (H, W, 3) array as PNG, atomically."""
    if array.ndim == 3:
        array = cv2.cvtColor(array, cv2.COLOR_RGB2BGR)
    ok, buf = cv2.imencode(".png", array)
    if not ok:
        raise OSError(f"could not encode {path} as PNG")
    atomic_write_bytes(path, buf.tobytes())
