"""Every error answers JSON ``{"error": code, "status": N, "message": "..."}``: the app's exception handlers.

`ServiceError` (what the service refuses) answers its own status, code and headers; Starlette's HTTP errors
(404, 405, ...) get a code from `ERROR_CODES`; a request FastAPI cannot validate is a 422 whose message is cut
(it quotes the input); anything else is a 500 that names the exception type and is logged with its traceback.
"""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from inpaintseg.service.errors import ServiceError
from inpaintseg.service.jobs import ECHO_CHARS

log = logging.getLogger("inpaintseg.service")

ERROR_CODES = {400: "bad_request", 401: "unauthorized", 404: "not_found", 405: "method_not_allowed",
               413: "payload_too_large", 415: "unsupported_media_type", 422: "invalid_request",
               503: "busy"}


async def service_error(_request: Request, exc: ServiceError) -> JSONResponse:
    return JSONResponse(exc.body(), status_code=exc.status, headers=exc.headers)


async def http_error(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
    code = ERROR_CODES.get(exc.status_code, "error")
    return JSONResponse({"error": code, "status": exc.status_code, "message": str(exc.detail)},
                        status_code=exc.status_code, headers=getattr(exc, "headers", None))


async def validation_error(_request: Request, exc: RequestValidationError) -> JSONResponse:
    message = str(exc.errors())  # holds the offending input: cut, so a huge field is not sent back
    if len(message) > 10 * ECHO_CHARS:
        message = f"{message[:10 * ECHO_CHARS]}... ({len(message):,} characters in all)"
    return JSONResponse({"error": "invalid_request", "status": 422, "message": message}, status_code=422)


async def internal_error(request: Request, exc: Exception) -> JSONResponse:
    log.exception("internal error on %s %s", request.method, request.url.path)
    return JSONResponse({"error": "internal_error", "status": 500,
                         "message": f"internal error ({type(exc).__name__}); see the server log."},
                        status_code=500)


def add_error_handlers(app: FastAPI) -> None:
    """Install the JSON error answers on `app`."""
    app.add_exception_handler(ServiceError, service_error)
    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(Exception, internal_error)
