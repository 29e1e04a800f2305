"""`inpaintseg serve`: the analyst service (an HTTP API and a web page) over one loaded model."""

from __future__ import annotations

import argparse
import os
import sys

from inpaintseg.commands import (MODEL_HELP, add_command, add_device_argument, add_max_pixels_argument,
                                 add_renamed, int_at_least, positive_number)
from inpaintseg.model.shipped import DEFAULT_MODEL
from inpaintseg.service.settings import (DEFAULT_HOST, DEFAULT_MAX_PIXELS, DEFAULT_MAX_UPLOAD_MB, DEFAULT_PORT,
                                         DEFAULT_QUEUE)

TOKEN_ENV = "INPAINTSEG_TOKEN"


def register(subparsers) -> None:
    p = add_command(
        subparsers,
        "serve",
        help="serve a web page and an HTTP API that predict one image at a time",
        description="Load a model once and serve the analyst page at / (drop an image, see the heat map and "
        "the mask outline, move the threshold, download the mask, heat map and RLE) and the JSON API: "
        "POST /api/v1/predict, GET /api/v1/model, GET /healthz (schema at /openapi.json, reference at /docs). "
        "Listens on 127.0.0.1 unless --host says otherwise. Needs the optional extra: "
        "pip install 'inpaintseg[serve]' (make installs it).",
        examples="  inpaintseg serve                      # the shipped base detector\n"
        "  inpaintseg serve --model demo_out/run/model\n"
        "  inpaintseg serve --model runs/x/model --port 8080 --token \"$(openssl rand -hex 16)\"\n"
        "  curl -F image=@photo.jpg -F threshold=0.4 http://127.0.0.1:8000/api/v1/predict\n",
    )
    p.add_argument("--model", default=DEFAULT_MODEL, metavar="MODEL_DIR",
                   help=MODEL_HELP + f"; a run folder means its model/ (default {DEFAULT_MODEL})")
    p.add_argument("--host", default=DEFAULT_HOST, metavar="HOST",
                   help=f"address to listen on (default {DEFAULT_HOST}: this machine only; 0.0.0.0 = every "
                   "interface, use it with --token)")
    p.add_argument("--port", type=int_at_least(0), default=DEFAULT_PORT, metavar="PORT",
                   help=f"port (default {DEFAULT_PORT}; 0 = any free port)")
    p.add_argument("--concurrency", dest="workers", type=int_at_least(1), default=1, metavar="N",
                   help="predictions run at the same time, in threads of this one process (default 1: on a CPU "
                   "one prediction already uses every core)")
    add_renamed(p, "--workers", "--concurrency", dest="workers", type=int_at_least(1))
    p.add_argument("--queue", type=int_at_least(0), default=DEFAULT_QUEUE, metavar="N",
                   help=f"requests that may wait for a worker; beyond it the answer is 503 with Retry-After "
                   f"(default {DEFAULT_QUEUE})")
    p.add_argument("--max-upload-mb", type=positive_number, default=DEFAULT_MAX_UPLOAD_MB, metavar="MB",
                   help=f"largest upload in MB, checked while it streams in: 413 (default {DEFAULT_MAX_UPLOAD_MB:g})")
    add_max_pixels_argument(p, DEFAULT_MAX_PIXELS, "a larger upload is answered 413")
    p.add_argument("--token", default=None, metavar="TOKEN",
                   help=f"require 'Authorization: Bearer TOKEN' on every /api call (401 otherwise); default: "
                   f"${TOKEN_ENV} if set (which keeps the token out of the process list), else no token")
    p.add_argument("--cors-origin", action="append", default=[], metavar="ORIGIN",
                   help="let pages from ORIGIN (e.g. https://review.example.org) call the API; repeatable; "
                   "default: none (no CORS headers)")
    add_device_argument(p)
    p.add_argument("--threads", type=int_at_least(1), default=None, metavar="N",
                   help="torch CPU threads (default: $OMP_NUM_THREADS or every CPU available)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from inpaintseg.errors import InpaintsegError

    try:
        import fastapi  # noqa: F401
        import python_multipart  # noqa: F401
        import uvicorn  # noqa: F401
    except ModuleNotFoundError as exc:
        raise InpaintsegError(f"serve needs the optional extra 'serve' ({exc.name} is not installed): "
                              "pip install 'inpaintseg[serve]' (make installs it).") from None
    from inpaintseg.api import load_model
    from inpaintseg.runtime import check_count, tune_cpu_runtime
    from inpaintseg.service import ServiceSettings, serve
    from inpaintseg.service.server import warm_up

    settings = ServiceSettings(host=args.host, port=args.port, workers=args.workers, queue=args.queue,
                               max_upload_mb=args.max_upload_mb, max_pixels=args.max_pixels,
                               token=args.token or os.environ.get(TOKEN_ENV) or None,
                               cors_origins=tuple(args.cors_origin))
    check_count("--workers", args.workers)  # threads, each holding a prediction's memory
    check_count("--threads", args.threads)
    model = load_model(args.model, device=args.device)
    runtime = tune_cpu_runtime(args.threads) if model.device == "cpu" else {}
    post = model.postprocess()
    log = lambda *a: print(*a, file=sys.stderr, flush=True)  # noqa: E731
    log(f"serve: model {args.model} (input {model.input['mode']} {model.input['size']}); device {model.device}"
        + (f", {runtime['threads']} threads" if runtime else ""))
    log(f"serve: using {post.describe()}")
    log(f"serve: warm-up prediction {warm_up(model):.2f} s; {settings.workers} worker(s), queue {settings.queue}, "
        f"uploads <= {settings.max_upload_mb:g} MB, images <= {settings.max_pixels / 1e6:g} megapixels, "
        f"token {'required' if settings.token else 'off'}, CORS {', '.join(settings.cors_origins) or 'off'}")
    if not settings.is_loopback and not settings.token:
        log(f"serve: WARNING: listening on {settings.host} without --token: anyone who can reach this "
            "machine can use the model.")
    serve(model, settings, on_ready=lambda url: log(f"serve: page {url}  API {url}api/v1/predict  docs {url}docs"
                                                    "  (Ctrl+C stops)"))
    return 0
