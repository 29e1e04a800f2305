"""The FastAPI application: `create_app(model, settings)`.

Routes (`routes`): ``GET /`` (the page), ``/static/*`` (its files), ``GET /healthz``, ``GET /api/v1/model``,
``POST /api/v1/predict``; ``/openapi.json`` (every answer's fields, types and units from `schemas`) and
``/docs`` (that schema as a plain page, rendered here: no CDN, works offline). Every error answers JSON
``{"error": code, "status": N, "message": "..."}`` (`handlers`). The upload is read into memory with a running
size check (`uploads`), inference runs in the gate's thread pool (`gate`), never on the event loop (`jobs`).
This module assembles them and owns the lifecycle: the gate is made with the app and shut down with it. Each
request writes one line to the ``inpaintseg.access`` log (method, path, status, milliseconds).
"""

from __future__ import annotations

import logging
import time
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.staticfiles import StaticFiles

from inpaintseg import __version__
from inpaintseg.service.gate import InferenceGate
from inpaintseg.service.handlers import add_error_handlers
from inpaintseg.service.routes import PAGE_HEADERS, STATIC_DIR, router
from inpaintseg.service.settings import ServiceSettings

access_log = logging.getLogger("inpaintseg.access")

DESCRIPTION = ("Find AI-inpainted regions in one image: a per-pixel probability map, a mask at the image's native "
               "size, an image-level score. The page is at `/`.")


def create_app(model, settings: ServiceSettings | None = None) -> FastAPI:
    """The service for one loaded `InpaintModel` (see `inpaintseg.load_model`)."""
    settings = settings or ServiceSettings()
    gate = InferenceGate(settings.workers, settings.queue)

    @asynccontextmanager
    async def lifespan(_app):
        yield
        gate.shutdown()

    app = FastAPI(title="inpaintseg", version=__version__, lifespan=lifespan, docs_url=None, redoc_url=None,
                  description=DESCRIPTION)
    app.state.model, app.state.settings, app.state.gate = model, settings, gate
    add_error_handlers(app)
    app.include_router(router)
    app.mount("/static", StaticFiles(directory=str(STATIC_DIR)), name="static")
    app.middleware("http")(_access_log_and_page_headers)
    if settings.cors_origins:
        from fastapi.middleware.cors import CORSMiddleware

        app.add_middleware(CORSMiddleware, allow_origins=list(settings.cors_origins), allow_methods=["GET", "POST"],
                           allow_headers=["Authorization", "Content-Type"])
    return app


async def _access_log_and_page_headers(request: Request, call_next):
    """One access-log line per request (also when it failed); the page's headers on its static files."""
    started = time.perf_counter()
    status = 500
    try:
        response = await call_next(request)
        status = response.status_code
    finally:
        client = request.client.host if request.client else "-"
        access_log.info('%s "%s %s" %d %.0f ms', client, request.method, request.url.path, status,
                        1000 * (time.perf_counter() - started))
    if request.url.path.startswith("/static/"):
        response.headers.update(PAGE_HEADERS)
    return response
