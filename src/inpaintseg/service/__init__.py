"""The analyst service: `inpaintseg serve` -- an HTTP API and a web page over one loaded model.

    from inpaintseg.service import ServiceSettings, create_app, serve
    app = create_app(inpaintseg.load_model("runs/x/model"), ServiceSettings(token="s3cret"))

- `settings.py`  ServiceSettings: host, port, workers, queue, upload/pixel limits, token, CORS (no web imports)
- `uploads.py`   the request body read in memory with a running size check, multipart parsing, content
                 sniffing, the pixel count from the header, decoding (413 / 415 / 422)
- `gate.py`      InferenceGate: bounded concurrency in a thread pool, a bounded queue, 503 + Retry-After
- `results.py`   the JSON bodies: a prediction (RLE, base64 PNGs) and the model description
- `jobs.py`      predict_upload: one upload through the gate, decoding, inference and encoding to the answer
- `handlers.py`  the exception handlers: every error as JSON {error, status, message}
- `docs_page.py` /docs: the OpenAPI schema as a plain page (no CDN)
- `routes.py`    the APIRouter: page, healthz, model, predict, docs; the bearer-token dependency
- `app.py`       create_app(model, settings): assembles them; lifecycle (the gate), access log, CORS
- `server.py`    serve(...) (blocking, what the command runs) and BackgroundServer (tests, benchmarks)
- `static/`      index.html, app.js, style.css: the page (no CDN, works offline)

FastAPI, uvicorn and python-multipart come with the optional extra ``inpaintseg[serve]``; names are resolved
on first use so that the settings and upload checks import without them.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "ServiceSettings": "inpaintseg.service.settings",
    "ServiceError": "inpaintseg.service.errors",
    "create_app": "inpaintseg.service.app",
    "serve": "inpaintseg.service.server",
    "BackgroundServer": "inpaintseg.service.server",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
