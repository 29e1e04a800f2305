"""The FastAPI application: `create_app(model, settings)`.

Routes: ``GET /`` (the page), ``/static/*`` (its files), ``GET /healthz``, ``GET /api/v1/model``,
``POST /api/v1/predict``; ``/openapi.json`` (every answer's fields, types and units from `schemas`) and
``/docs`` (that schema as a plain page, rendered here: no CDN, works offline). Every error answers JSON
``{"error": code, "status": N, "message": "..."}``. The upload is read into memory with a running size check
(`uploads`), inference runs in the gate's thread pool (`gate`), never on the event loop. Each request writes one
line to the ``inpaintseg.access`` log (method, path, status, milliseconds).
"""


import asyncio
import hmac
import logging
import time
from importlib import resources

from inpaintseg import __version__
from inpaintseg.errors import InpaintsegError
from inpaintseg.inference.postprocess import TTA_OPTIONS
from inpaintseg.metrics import is_threshold
from inpaintseg.service import results, schemas, uploads
from inpaintseg.service.errors import ServiceError
from inpaintseg.service.gate import InferenceGate
from inpaintseg.service.settings import ServiceSettings

log = logging.getLogger("inpaintseg.service")
access_log = logging.getLogger("inpaintseg.access")

API_PREFIX = "/api/v1"
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
ERROR_CODES = {400: "bad_request", 401: "unauthorized", 404: "not_found", 405: "method_not_allowed",
               413: "payload_too_large", 415: "unsupported_media_type", 422: "invalid_request",
               503: "busy"}


ECHO_CHARS = 40  # of a bad field value quoted back in a 422 (a 5 MB value was echoed whole)


def echo(text: str) -> str:
    """`text` quoted for an error answer, cut to ECHO_CHARS characters (its length said) when longer."""
    if len(text) <= ECHO_CHARS:
        return repr(text)
    return f"{text[:ECHO_CHARS]!r}... ({len(text):,} characters)"


def parse_options(parts: dict[str, uploads.Part]) -> tuple[float | str, str]:
    """The ``threshold`` and ``tta`` form fields, checked (422 with the allowed values)."""
    threshold: float | str = "auto"
    text = uploads.form_value(parts, "threshold")
    if text is not None and text != "auto":
        if not is_threshold(text):
            raise ServiceError(422, "invalid_threshold",
                               f"threshold must be 'auto' or a number in (0, 1), got {echo(text)}.")
        threshold = float(text)
    tta = uploads.form_value(parts, "tta") or "auto"
    if tta not in TTA_OPTIONS:
        raise ServiceError(422, "invalid_tta", f"tta must be one of {', '.join(TTA_OPTIONS)}, got {echo(tta)}.")
    return threshold, tta


def create_app(model, settings: ServiceSettings | None = None):
    """The service for one loaded `InpaintModel` (see `inpaintseg.load_model`)."""
    from contextlib import asynccontextmanager

    from fastapi import Depends, FastAPI, Request
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse, Response
    from fastapi.staticfiles import StaticFiles
    from starlette.exceptions import HTTPException as StarletteHTTPException

    settings = settings or ServiceSettings()
    gate = InferenceGate(settings.workers, settings.queue)
    static_dir = resources.files("inpaintseg.service") / "static"

    @asynccontextmanager
    async def lifespan(_app):
        yield
        gate.shutdown()

    app = FastAPI(title="inpaintseg", version=__version__, lifespan=lifespan, docs_url=None, redoc_url=None,
                  description="Find AI-inpainted regions in one image: a per-pixel probability map, a mask at "
                              "the image's native size, an image-level score. The page is at `/`.")
    app.state.model, app.state.settings, app.state.gate = model, settings, gate

    def error_response(exc: ServiceError) -> JSONResponse:
        return JSONResponse(exc.body(), status_code=exc.status, headers=exc.headers)

    @app.exception_handler(ServiceError)
    async def _service_error(_request, exc: ServiceError):
        return error_response(exc)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_request, exc: StarletteHTTPException):
        code = ERROR_CODES.get(exc.status_code, "error")
        return JSONResponse({"error": code, "status": exc.status_code, "message": str(exc.detail)},
                            status_code=exc.status_code, headers=getattr(exc, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def _validation_error(_request, exc: RequestValidationError):
        message = str(exc.errors())  # holds the offending input: cut, so a huge field is not sent back
        if len(message) > 10 * ECHO_CHARS:
            message = f"{message[:10 * ECHO_CHARS]}... ({len(message):,} characters in all)"
        return JSONResponse({"error": "invalid_request", "status": 422, "message": message}, status_code=422)

    @app.exception_handler(Exception)
    async def _internal_error(request, exc: Exception):
        log.exception("internal error on %s %s", request.method, request.url.path)
        return JSONResponse({"error": "internal_error", "status": 500,
                             "message": f"internal error ({type(exc).__name__}); see the server log."},
                            status_code=500)

    def require_token(request: Request) -> None:
        if settings.token is None:
            return
        scheme, _, given = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), settings.token.encode()):
            raise ServiceError(401, "unauthorized", "this server needs an access token: send the header "
                               "'Authorization: Bearer <token>' with the token it was started with (--token).",
                               headers={"WWW-Authenticate": "Bearer"})

    @app.get("/healthz", tags=["service"], summary="Liveness: the model is loaded and the server answers",
             responses={200: {"model": schemas.HealthBody}})
    async def healthz():
        return {"status": "ok", "version": __version__, "admitted": gate.admitted, "capacity": gate.capacity}

    @app.get(f"{API_PREFIX}/model", tags=["api"], dependencies=[Depends(require_token)],
             summary="The model: card summary, quality against trivial baselines, verdict levels, "
                     "post-processing, validation metrics; the service limits",
             responses={200: {"model": schemas.ModelBody}, 401: ERROR_RESPONSES[401]})
    async def model_info():
        return results.model_body(model, settings.limits())

    @app.post(f"{API_PREFIX}/predict", tags=["api"], dependencies=[Depends(require_token)],
              openapi_extra=PREDICT_FORM,
              summary="Predict one image: verdict, score, mask, probability map (base64 PNGs), RLE, area",
              responses={200: {"model": schemas.PredictionBody}, **ERROR_RESPONSES})
    async def predict(request: Request):
        ticket = gate.admit()  # 503 before reading anything when the queue is full
        try:
            t0 = time.perf_counter()
            parts = await uploads.read_multipart(request.headers.get("content-type"),
                                                 request.headers.get("content-length"), request.stream(),
                                                 settings.max_upload_bytes)
            threshold, tta = parse_options(parts)
            data, name, _ = uploads.check_upload(parts, settings.max_pixels)
            del parts
            t1 = time.perf_counter()
            image = await gate.io(ticket, uploads.decode_upload, data, name, settings.max_pixels)
            del data
            t2 = time.perf_counter()
            pred, started = await gate.infer(ticket, _predict, model, image, threshold, tta)
            t3 = time.perf_counter()
            encoded = await asyncio.gather(gate.io(ticket, results.encode_mask, pred.mask),
                                           gate.io(ticket, results.encode_probability, pred.probability))
            t4 = time.perf_counter()
            timings = {"receive": t1 - t0, "decode": t2 - t1, "queue": max(0.0, started - t2),
                       **{k: v for k, v in pred.timings.items() if k != "decode"},  # model, crf
                       "encode": t4 - t3, "total": t4 - t0}
            body = results.prediction_body(pred, uploads.image_id(name), image.shape[1], image.shape[0],
                                           {**encoded[0], **encoded[1]}, timings)
            return Response(await gate.io(ticket, results.json_bytes, body), media_type="application/json")
        finally:
            ticket.release()

    @app.get("/docs", include_in_schema=False)
    async def docs():
        return Response(api_docs_html(app.openapi()), media_type="text/html; charset=utf-8", headers=PAGE_HEADERS)

    def page(name: str, media_type: str):
        body = (static_dir / name).read_bytes()
        return lambda: Response(body, media_type=media_type, headers=PAGE_HEADERS)

    app.get("/", include_in_schema=False)(page("index.html", "text/html; charset=utf-8"))
    app.mount("/static", StaticFiles(directory=str(static_dir)), name="static")

    @app.middleware("http")
    async def _page_headers(request: Request, call_next):
        started = time.perf_counter()
        status = 500
        try:
            response = await call_next(request)
            status = response.status_code
        finally:  # one line per request, also when it failed
            client = request.client.host if request.client else "-"
            access_log.info('%s "%s %s" %d %.0f ms', client, request.method, request.url.path, status,
                            1000 * (time.perf_counter() - started))
        if request.url.path.startswith("/static/"):
            response.headers.update(PAGE_HEADERS)
        return response

    if settings.cors_origins:
        from fastapi.middleware.cors import CORSMiddleware

        app.add_middleware(CORSMiddleware, allow_origins=list(settings.cors_origins), allow_methods=["GET", "POST"],
                           allow_headers=["Authorization", "Content-Type"])
    return app


def api_docs_html(schema: dict) -> str:
    """The OpenAPI schema as a plain page: each route with its summary and form fields, and each answer's
    fields with type and description (units included). Nothing is loaded from elsewhere."""
    from html import escape

    components = schema.get("components", {}).get("schemas", {})

    def fields(name: str) -> str:
        props = components.get(name, {}).get("properties", {})
        rows = "".join(f"<tr><td><code>{escape(k)}</code></td><td>{escape(_type(v))}</td>"
                       f"<td>{escape(v.get('description', ''))}</td></tr>" for k, v in props.items())
        return f"<table><tr><th>field</th><th>type</th><th>meaning</th></tr>{rows}</table>"

    parts = [f"<h1>{escape(schema['info']['title'])} {escape(schema['info']['version'])}: HTTP API</h1>"
             f"<p>{escape(schema['info'].get('description', ''))} The machine-readable schema is "
             "<a href='/openapi.json'>/openapi.json</a>.</p>"]
    for path, methods in schema.get("paths", {}).items():
        for method, op in methods.items():
            parts.append(f"<h2><code>{method.upper()} {escape(path)}</code></h2><p>{escape(op.get('summary', ''))}</p>")
            form = op.get("requestBody", {}).get("content", {}).get("multipart/form-data", {}).get("schema", {})
            if form:
                rows = "".join(f"<tr><td><code>{escape(k)}</code></td><td>{escape(v.get('description', ''))}</td></tr>"
                               for k, v in form.get("properties", {}).items())
                parts.append(f"<h3>form fields (multipart/form-data)</h3><table>{rows}</table>")
            for status, answer in op.get("responses", {}).items():
                ref = answer.get("content", {}).get("application/json", {}).get("schema", {}).get("$ref", "")
                name = ref.rsplit("/", 1)[-1]
                error = " (JSON body: error, status, message)" if name == "ErrorBody" else ""
                parts.append(f"<h3>{escape(status)}: {escape(answer.get('description', ''))}{error}</h3>")
                if name in components and status == "200":
                    parts.append(fields(name))
    for name in ("VerdictBody", "QualityBody"):
        parts.append(f"<h2>{name}</h2>" + fields(name))
    return ("<!doctype html><html lang='en'><head><meta charset='utf-8'><title>inpaintseg API</title>"
            "<link rel='stylesheet' href='/static/style.css'></head><body class='docs'>" + "".join(parts)
            + "</body></html>")


def _type(prop: dict) -> str:
    if "$ref" in prop:
        return prop["$ref"].rsplit("/", 1)[-1]
    if "anyOf" in prop:
        return " | ".join(_type(p) for p in prop["anyOf"])
    return prop.get("type", "object")


def _predict(model, image, threshold, tta: str):
    """One prediction (in an inference thread) and when it started (perf_counter), for the queue time."""
    started = time.perf_counter()
    try:
        return model.predict(image, threshold=threshold, tta=tta), started
    except InpaintsegError as exc:  # e.g. the model's stored post-processing asks for a missing pydensecrf
        raise ServiceError(422, "cannot_predict", str(exc)) from None
