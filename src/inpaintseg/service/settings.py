"""The service's settings: where it listens, how much work it accepts, who may call it."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from inpaintseg.errors import ConfigError

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8000
DEFAULT_MAX_UPLOAD_MB = 20.0
DEFAULT_MAX_PIXELS = 50_000_000
DEFAULT_QUEUE = 16
MB = 1024 * 1024
# PIL's Image.open refuses headers above 2 x Image.MAX_IMAGE_PIXELS (its decompression-bomb error), so the header
# check cannot allow more than this.
PIXEL_CEILING = 2 * 89_478_485


@dataclass(frozen=True)
class ServiceSettings:
    """host/port: where uvicorn listens (loopback by default); workers: inferences run at once (threads);
    queue: requests that may wait for a worker (more get 503 + Retry-After); max_upload_mb: the request body
    limit (413); max_pixels: the image size limit read from the header before decoding (413); token: when set,
    every /api call needs ``Authorization: Bearer <token>`` (401); cors_origins: origins allowed to call the
    API from other pages (none by default)."""

    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    workers: int = 1
    queue: int = DEFAULT_QUEUE
    max_upload_mb: float = DEFAULT_MAX_UPLOAD_MB
    max_pixels: int = DEFAULT_MAX_PIXELS
    token: str | None = None
    cors_origins: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        def bad(what: str, value, expected: str):
            raise ConfigError(f"serve: {what} must be {expected}, got {value!r}.")

        if not isinstance(self.port, int) or not 0 <= self.port <= 65535:
            bad("port", self.port, "a whole number in 0-65535")
        for name in ("workers", "queue"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < (1 if name == "workers" else 0):
                bad(name, value, "a whole number >= " + ("1" if name == "workers" else "0"))
        if not (isinstance(self.max_upload_mb, (int, float)) and 0 < self.max_upload_mb <= 4096):
            bad("max_upload_mb", self.max_upload_mb, "a number of megabytes in (0, 4096]")
        if (isinstance(self.max_pixels, bool) or not isinstance(self.max_pixels, int)
                or not 1 <= self.max_pixels <= PIXEL_CEILING):
            bad("max_pixels", self.max_pixels, f"a whole number in 1-{PIXEL_CEILING} (PIL's decompression-bomb "
                "limit, above which it refuses to read a header)")
        if self.token is not None and (not self.token or self.token != self.token.strip()):
            bad("token", "***", "a non-empty string without surrounding spaces")
        object.__setattr__(self, "cors_origins", tuple(self.cors_origins))

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * MB)

    @property
    def is_loopback(self) -> bool:
        if self.host == "localhost":
            return True
        try:
            return ipaddress.ip_address(self.host).is_loopback
        except ValueError:
            return False

    def limits(self) -> dict:
        """What the page and API clients may rely on (no secrets)."""
        return {"max_upload_bytes": self.max_upload_bytes, "max_pixels": self.max_pixels,
                "workers": self.workers, "queue": self.queue, "auth": self.token is not None}
