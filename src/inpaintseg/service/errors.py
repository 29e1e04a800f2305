"""The service's one error type: an HTTP status, a short code and a message the user can act on."""

from __future__ import annotations

from inpaintseg.errors import InpaintsegError


class ServiceError(InpaintsegError):
    """A request the service refuses; the app answers ``status`` with ``{"error": code, "message": ...}``."""

    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or {}

    def body(self) -> dict:
        return {"error": self.code, "status": self.status, "message": self.message}
