"""Image and mask decoding rules, the pixel limit, and atomic file writes.

Decoding rules (the same for images and masks, so they stay aligned):
- pixels as stored: no EXIF rotation is applied;
- images become RGB uint8: grey is expanded to 3 channels, alpha is dropped, 16-bit is scaled
  down to 8-bit (value // 257), float images in [0, 1] are scaled to [0, 255];
- masks become uint8 {0, 1}: colour masks take the maximum over channels; a mask whose values are
  all <= 1 is read as 0/1, otherwise a pixel is 1 where its 8-bit value is >= 128 (so 0/255 and
  anti-aliased grey masks both work).

Pixel limit: before a file is decoded, its width and height are read from its header (PIL reads only
the header) and a file over the limit raises `ImageTooLargeError` naming its size, so a tiny file
whose header claims 65535x65535 never allocates anything. The limit is `max_pixels=` where given,
else the process setting (`pixel_limit()`: $INPAINTSEG_MAX_PIXELS, which `--max-pixels` sets and
DataLoader workers inherit), else `DEFAULT_MAX_PIXELS`.

Writes: `atomic_path` (temp file beside the target, fsync, rename) turns any OSError into one
`OutputError` naming the path and the fix (disk full, permissions, a file in the way).
"""

from __future__ import annotations

import contextlib
import errno
import os
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np

from inpaintseg.errors import DataError, ImageTooLargeError, OutputError

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
DEFAULT_MAX_PIXELS = 100_000_000  # 100 megapixels: ~300 MB as RGB uint8, several GB in float maps
MAX_PIXELS_ENV = "INPAINTSEG_MAX_PIXELS"
_TEMP_NAME_CHARS = 64  # of the target's name kept in the temp file's name (a 255-byte name must still work)

# Keep OpenCV from starting its own thread pool on top of torch's.
cv2.setNumThreads(1)


def is_hidden(path: Path) -> bool:
    return path.name.startswith(".")


def is_image_file(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_EXTENSIONS


# ---------------------------------------------------------------------------------------- pixel limit
def pixel_limit() -> int:
    """The process's pixel limit: $INPAINTSEG_MAX_PIXELS when set (by `--max-pixels`), else the default."""
    value = os.environ.get(MAX_PIXELS_ENV, "")
    return int(value) if value.isdigit() and int(value) > 0 else DEFAULT_MAX_PIXELS


@contextlib.contextmanager
def pixel_limit_scope(max_pixels: int | None) -> Iterator[None]:
    """Within the block (and in processes started in it) the pixel limit is `max_pixels` (None: unchanged)."""
    if max_pixels is None:
        yield
        return
    if isinstance(max_pixels, bool) or not isinstance(max_pixels, int) or max_pixels < 1:
        raise DataError(f"max_pixels must be a whole number >= 1, got {max_pixels!r}.", params=["max_pixels"])
    old = os.environ.get(MAX_PIXELS_ENV)
    os.environ[MAX_PIXELS_ENV] = str(max_pixels)
    try:
        yield
    finally:
        if old is None:
            os.environ.pop(MAX_PIXELS_ENV, None)
        else:
            os.environ[MAX_PIXELS_ENV] = old


_PIL_LOCK = threading.Lock()


def image_size(path: str | os.PathLike) -> tuple[int, int] | None:
    """(height, width) from the file's header without decoding the pixels; None when the header is not
    one PIL knows (OpenCV may still decode the file). Raises DataError when the file cannot be opened."""
    from PIL import Image

    path = Path(path)
    _check_openable(path)
    with _PIL_LOCK:  # PIL's own bomb check would refuse before telling the size: our limit replaces it
        saved, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None
        try:
            with Image.open(path) as im:
                width, height = im.size
        except Exception:  # noqa: BLE001 - any header PIL cannot parse: leave the verdict to the decoder
            return None
        finally:
            Image.MAX_IMAGE_PIXELS = saved
    return int(height), int(width)


def check_pixels(path: str | os.PathLike, height: int, width: int, max_pixels: int | None = None) -> None:
    """Raise ImageTooLargeError when height x width exceeds the pixel limit."""
    limit = pixel_limit() if max_pixels is None else max_pixels
    if height * width > limit:
        exc = ImageTooLargeError(
            f"{path}: {width}x{height} = {height * width:,} pixels exceeds the pixel limit of {limit:,}. "
            "Downscale the image, or raise the limit with --max-pixels if this machine has the memory "
            "(decoding needs about 3 bytes per pixel, prediction several times more).")
        exc.size = (int(height), int(width))
        raise exc


def _check_openable(path: Path) -> None:
    """DataError for a missing file, a broken symbolic link, a link loop or a folder."""
    try:
        os.stat(path)
    except FileNotFoundError:
        if path.is_symlink():
            raise DataError(f"{path}: broken symbolic link (it points to {os.readlink(path)}, which does not "
                            "exist). Repair or remove the link.") from None
        raise DataError(f"{path}: file not found. Check the path.") from None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise DataError(f"{path}: symbolic link loop (the link leads back to itself). Remove the link.") from None
        raise DataError(f"{path}: cannot be read ({exc.strerror}). Check its permissions.") from None
    if path.is_dir():
        raise DataError(f"{path}: is a folder, expected an image file.")
    kind = special_input_kind(path)
    if kind is not None:
        raise DataError(f"{path}: is {kind}, not a regular file; it was not opened (reading it could block "
                        "forever). Remove it or replace it with the image file.")


def _decode(path: Path, max_pixels: int | None = None) -> np.ndarray:
    """Decode a file to a numpy array as stored (no EXIF rotation), or raise DataError; the header's size is
    checked against the pixel limit first."""
    path = Path(path)
    size = image_size(path)
    if size is not None:
        check_pixels(path, *size, max_pixels=max_pixels)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise DataError(f"{path}: file not found. Check the path.") from None
    except IsADirectoryError:
        raise DataError(f"{path}: is a folder, expected an image file.") from None
    except OSError as exc:
        raise DataError(f"{path}: cannot be read ({exc.strerror}). Check its permissions.") from None
    array = _decode_buffer(data, path, jpeg=path.suffix.lower() in (".jpg", ".jpeg"))
    if size is None:
        check_pixels(path, *array.shape[:2], max_pixels=max_pixels)
    return array


def _decode_buffer(data: bytes, name: object, jpeg: bool) -> np.ndarray:
    """Decode encoded image bytes as stored (no EXIF rotation), or raise DataError naming `name`."""
    if not data:
        raise DataError(f"{name}: the file is empty (0 bytes). Re-export or remove it.")
    if jpeg and b"\xff\xd9" not in data[-4096:]:
        raise DataError(
            f"{name}: the JPEG file is truncated (no end-of-image marker). Re-export or remove it."
        )
    buf = np.frombuffer(data, dtype=np.uint8)
    try:
        array = cv2.imdecode(buf, cv2.IMREAD_UNCHANGED)  # IMREAD_UNCHANGED ignores EXIF orientation
    except cv2.error:  # e.g. OpenCV's own size limit, for a header PIL could not read
        array = None
    except MemoryError:
        raise DataError(f"{name}: not enough memory to decode this image. Downscale it or lower "
                        "--max-pixels.") from None
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


def read_image(path: str | os.PathLike, max_pixels: int | None = None) -> np.ndarray:
    """Read an image as RGB uint8 of shape (H, W, 3); `max_pixels` overrides the process's pixel limit."""
    return _to_rgb(_to_uint8(_decode(Path(path), max_pixels)), path)


def decode_image_bytes(data: bytes, name: str = "upload", max_pixels: int | None = None) -> np.ndarray:
    """Decode an image held in memory (an upload) as RGB uint8 (H, W, 3) by the same rules as `read_image`.

    The bytes, not `name`, decide the format (a JPEG is recognised by its magic bytes for the truncation
    check); `name` only labels error messages. The decoded size is checked against the pixel limit (callers
    that can, like the service, check the header before). Raises DataError.
    """
    data = bytes(data)
    array = _decode_buffer(data, name, jpeg=data[:3] == b"\xff\xd8\xff")
    check_pixels(name, *array.shape[:2], max_pixels=max_pixels)
    return _to_rgb(_to_uint8(array), name)


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


def read_mask(path: str | os.PathLike, max_pixels: int | None = None) -> np.ndarray:
    """Read a mask as uint8 {0, 1} of shape (H, W)."""
    return read_mask_checked(path, max_pixels)[0]


def read_mask_checked(path: str | os.PathLike, max_pixels: int | None = None) -> tuple[np.ndarray, str | None]:
    """`read_mask`, and a note when the stored mask has non-zero values that all read as 0 (a stray value
    such as 2, or a 16-bit mask holding 0/255): e.g. "max value 2 of 255"; None otherwise."""
    raw = _decode(Path(path), max_pixels)
    array = raw
    if array.dtype == np.uint16:  # 16-bit 0/1 masks stay 0/1; 0/65535 become 0/255
        array = array if int(array.max(initial=0)) <= 1 else (array // 257).astype(np.uint8)
        array = array.astype(np.uint8)
    mask = binarize_mask(array)
    note = None
    if not mask.any():
        peak = raw.max(initial=0)
        if peak > 0:
            top = np.iinfo(raw.dtype).max if np.issubdtype(raw.dtype, np.integer) else 1.0
            note = f"max value {peak:g} of {top:g}" if not np.issubdtype(raw.dtype, np.integer) \
                else f"max value {int(peak)} of {int(top)}"
    return mask, note


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_error_message(path: str | os.PathLike, exc: OSError) -> str:
    """One line for a failed write: the path, what went wrong, and the fix."""
    code = exc.errno
    if code in (errno.ENOSPC, errno.EDQUOT):
        why = "the disk is full (or the quota is used up); free space or write elsewhere"
    elif code in (errno.EACCES, errno.EPERM):
        why = "permission denied; choose a writable location or fix the folder's permissions"
    elif code == errno.EROFS:
        why = "the file system is read-only; choose a writable location"
    elif code in (errno.ENOTDIR, errno.EEXIST):
        why = "part of the path is a file, not a folder; choose another path"
    elif code == errno.ENAMETOOLONG:
        why = "the file name is too long for this file system; use a shorter name"
    elif code == errno.EISDIR:
        why = "a folder is in the way; choose a file path"
    else:
        why = f"{exc.strerror or exc}; check the location"
    return f"{path}: cannot write there ({why})."


def _mode_kind(mode: int) -> str | None:
    """"a FIFO (named pipe)", "a device node", "a socket" for such a file mode; None for a file or folder."""
    import stat

    if stat.S_ISFIFO(mode):
        return "a FIFO (named pipe)"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device node"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return None


def special_kind(path: str | os.PathLike) -> str | None:
    """What an existing path is when it is neither a regular file nor a folder ("a symbolic link (to X)",
    "a FIFO (named pipe)", "a device node", "a socket"); None for a regular file, a folder or no such path.
    The link itself is looked at (lstat): an atomic rename would replace the link, not what it points to."""
    import stat

    try:
        mode = os.lstat(path).st_mode
    except OSError:
        return None
    if stat.S_ISLNK(mode):
        return f"a symbolic link (to {os.readlink(path)})"
    return _mode_kind(mode)


def special_input_kind(path: str | os.PathLike) -> str | None:
    """What an input path is (links followed) when it is a FIFO, device node or socket: reading one may block
    forever (a FIFO) or never end (/dev/zero), so such a file is named and skipped, never opened."""
    try:
        return _mode_kind(os.stat(path).st_mode)
    except OSError:
        return None


def special_output_message(path: str | os.PathLike, kind: str) -> str:
    return (f"{path}: is {kind}, not a regular file; writing the output would replace it with a regular file. "
            "Remove it or choose another path.")


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside `path`; on success it replaces `path` atomically.

    On an exception the temporary file is removed and `path` is left as it was; an OSError (disk full,
    permissions, a file where a folder should be) becomes an `OutputError` naming `path` and the fix.
    An existing `path` that is not a regular file (a symbolic link, a FIFO, a device node) is refused:
    the rename would replace it (run as root, ``/dev/full`` would lose its device node).
    """
    path = Path(path)
    kind = special_kind(path)
    if kind is not None:
        raise OutputError(special_output_message(path, kind))
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name[:_TEMP_NAME_CHARS]}.", suffix=".tmp", dir=path.parent)
        os.close(fd)
        tmp = Path(tmp_name)
        mode = 0o666 & ~_current_umask()  # mkstemp makes 0600; give the file normal permissions
        yield tmp
        os.chmod(tmp, mode)  # again: a writer may have replaced the temp file with its own (0600) one
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        raise OutputError(write_error_message(path, exc)) from None
    finally:
        if tmp is not None and tmp.exists():
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
