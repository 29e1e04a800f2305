"""The service's routes, one `APIRouter` over the app's state (``request.app.state``: model, settings, gate).

``GET /`` (the page), ``GET /healthz``, ``GET /api/v1/model``, ``POST /api/v1/predict`` (the work is in `jobs`),
``GET /docs`` (`docs_page`); the API routes need the bearer token when the server has one (`require_token`).
"""

from __future__ import annotations

import functools
import hmac
from importlib import resources

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from inpaintseg import __version__
from inpaintseg.inference.postprocess import TTA_OPTIONS
from inpaintseg.service import jobs, results, schemas, uploads
from inpaintseg.service.docs_page import api_docs_html
from inpaintseg.service.errors import ServiceError

API_PREFIX = "/api/v1"
STATIC_DIR = resources.files("inpaintseg.service") / "static"
# The page loads nothing from elsewhere; blob:/data: for the images it draws from the upload and the answer.
PAGE_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' blob: data:; script-src 'self'; "
                               "style-src 'self'; connect-src 'self'; object-src 'none'; base-uri 'none'; "
                               "frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}
PREDICT_FORM = {
    "requestBody": {
        "required": True,
        "content": {"multipart/form-data": {"schema": {
            "type": "object",
            "required": [uploads.IMAGE_FIELD],
            "properties": {
                uploads.IMAGE_FIELD: {"type": "string", "format": "binary",
                                      "description": f"the image ({uploads.SUPPORTED}); the format is sniffed "
                                                     "from its bytes, not its name"},
                "threshold": {"type": "string", "description": "'auto' (default: the model's calibrated "
                                                               "threshold) or a number in (0, 1)"},
                "tta": {"type": "string", "enum": list(TTA_OPTIONS),
                        "description": "test-time augmentation; 'auto' (default) = the calibrated choice"},
            },
        }}},
    },
}
ERROR_RESPONSES = {status: {"model": schemas.ErrorBody, "description": text} for status, text in (
    (401, "missing or wrong token"), (413, "upload or pixel count above the limits"),
    (415, "not an image (sniffed from the bytes)"), (422, "undecodable image or invalid option"),
    (503, "queue full; see Retry-After"))}


def require_token(request: Request) -> None:
    """A route dependency: 401 unless the request carries the server's token (none set: every request passes)."""
    token = request.app.state.settings.token
    if token is None:
        return
    scheme, _, given = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), token.encode()):
        raise ServiceError(401, "unauthorized", "this server needs an access token: send the header "
                           "'Authorization: Bearer <token>' with the token it was started with (--token).",
                           headers={"WWW-Authenticate": "Bearer"})


router = APIRouter()


@router.get("/healthz", tags=["service"], summary="Liveness: the model is loaded and the server answers",
            responses={200: {"model": schemas.HealthBody}})
async def healthz(request: Request):
    gate = request.app.state.gate
    return {"status": "ok", "version": __version__, "admitted": gate.admitted, "capacity": gate.capacity}


@router.get(f"{API_PREFIX}/model", tags=["api"], dependencies=[Depends(require_token)],
            summary="The model: card summary, quality against trivial baselines, verdict levels, "
                    "post-processing, validation metrics; the service limits",
            responses={200: {"model": schemas.ModelBody}, 401: ERROR_RESPONSES[401]})
async def model_info(request: Request):
    state = request.app.state
    return results.model_body(state.model, state.settings.limits())


@router.post(f"{API_PREFIX}/predict", tags=["api"], dependencies=[Depends(require_token)],
             openapi_extra=PREDICT_FORM,
             summary="Predict one image: verdict, score, mask, probability map (base64 PNGs), RLE, area",
             responses={200: {"model": schemas.PredictionBody}, **ERROR_RESPONSES})
async def predict(request: Request):
    state = request.app.state
    body = await jobs.predict_upload(request.headers, request.stream(), state.model, state.settings, state.gate)
    return Response(body, media_type="application/json")


@router.get("/docs", include_in_schema=False)
async def docs(request: Request):
    return Response(api_docs_html(request.app.openapi()), media_type="text/html; charset=utf-8",
                    headers=PAGE_HEADERS)


@router.get("/", include_in_schema=False)
async def index():
    return Response(_static_bytes("index.html"), media_type="text/html; charset=utf-8", headers=PAGE_HEADERS)


@functools.cache
def _static_bytes(name: str) -> bytes:
    """A file of the page, read once (not on every request, on the event loop)."""
    return (STATIC_DIR / name).read_bytes()
