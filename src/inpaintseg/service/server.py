"""Running the app with uvicorn: `serve` (blocking, what `inpaintseg serve` runs) and `BackgroundServer`
(a server on a free loopback port in a thread, for tests, benchmarks and the screenshot script)."""

from __future__ import annotations

import asyncio
import socket
import threading
import time

import numpy as np

from inpaintseg.service.settings import ServiceSettings


def bind_error_message(host: str, port: int, exc: Exception) -> str:
    """Why listening on host:port failed, blaming the flag that was wrong (a bad --host is not "port in use")."""
    import errno

    if isinstance(exc, OverflowError):
        return f"serve: --port {port}: expected a port in 0..65535."
    if isinstance(exc, socket.gaierror):
        return (f"serve: --host {host}: not an IP address or a name this machine can resolve ({exc.strerror}). "
                "Use 127.0.0.1 (this machine only) or 0.0.0.0 (every interface).")
    if exc.errno == errno.EADDRNOTAVAIL:
        return (f"serve: --host {host}: not an address of this machine ({exc.strerror}). Use 127.0.0.1 (this "
                "machine only), 0.0.0.0 (every interface) or one of this machine's addresses.")
    return (f"serve: cannot listen on {host}:{port} ({exc.strerror}); choose another --port or stop the program "
            "that uses it.")


def bind_socket(host: str, port: int) -> socket.socket:
    """A listening TCP socket (port 0 = a free one), bound before uvicorn starts so the port is known."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except (OSError, OverflowError) as exc:
        sock.close()
        from inpaintseg.errors import InpaintsegError

        raise InpaintsegError(bind_error_message(host, port, exc)) from None
    sock.listen(128)
    sock.set_inheritable(True)
    return sock


def warm_up(model) -> float:
    """One prediction on a small grey image (builds the predictor, touches the weights); seconds taken."""
    start = time.perf_counter()
    model.predict(np.full((64, 64, 3), 128, np.uint8))
    return time.perf_counter() - start


def wait_until_ready(url: str, process=None, timeout: float = 120.0) -> bool:
    """Poll ``url``/healthz until it answers 200: True; False when ``process`` (a ``subprocess.Popen`` of
    `inpaintseg serve`) exits first or ``timeout`` seconds pass. For clients that start a server
    themselves (the end-to-end test, benchmarks/serve_load.py)."""
    import httpx

    deadline = time.monotonic() + timeout
    while True:
        try:
            if httpx.get(url.rstrip("/") + "/healthz", timeout=2).status_code == 200:
                return True
        except httpx.TransportError:
            pass
        if (process is not None and process.poll() is not None) or time.monotonic() > deadline:
            return False
        time.sleep(0.2)


def _config(app, settings: ServiceSettings, log_level: str):
    import uvicorn

    return uvicorn.Config(app, host=settings.host, port=settings.port, log_level=log_level, access_log=False,
                          timeout_graceful_shutdown=5, server_header=False)


def quiet_third_party_logs() -> None:
    """Keep OpenCV's and Python's warnings out of the server log: a broken upload already answers 422 with
    its reason, and library warnings are noise to whoever reads the log."""
    import warnings

    import cv2.utils.logging as cv2_logging

    # no "[ WARN:0@..] global grfmt_png.cpp ..." lines on stderr
    cv2_logging.setLogLevel(cv2_logging.LOG_LEVEL_SILENT)
    warnings.simplefilter("ignore")


def access_logging() -> None:
    """One line per request on stderr (`app`'s ``inpaintseg.access`` logger), with a time stamp."""
    import logging

    logger = logging.getLogger("inpaintseg.access")
    if not logger.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s access: %(message)s", "%Y-%m-%d %H:%M:%S"))
        logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False


def serve(model, settings: ServiceSettings, on_ready=None, log_level: str = "info") -> None:
    """Serve until interrupted (Ctrl+C). ``on_ready(url)`` is called once the socket listens."""
    import uvicorn

    from inpaintseg.service.app import create_app

    quiet_third_party_logs()
    access_logging()
    sock = bind_socket(settings.host, settings.port)
    port = sock.getsockname()[1]
    server = uvicorn.Server(_config(create_app(model, settings), settings, log_level))
    if on_ready is not None:
        host = f"[{settings.host}]" if ":" in settings.host else settings.host
        on_ready(f"http://{host}:{port}/")
    server.run(sockets=[sock])


class BackgroundServer:
    """``with BackgroundServer(model, settings) as url:`` serves on 127.0.0.1 and a free port in a thread."""

    def __init__(self, model, settings: ServiceSettings | None = None, timeout: float = 30.0) -> None:
        import dataclasses

        import uvicorn

        from inpaintseg.service.app import create_app

        settings = dataclasses.replace(settings or ServiceSettings(), host="127.0.0.1", port=0)
        self.sock = bind_socket(settings.host, 0)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.app = create_app(model, settings)
        self.server = uvicorn.Server(_config(self.app, settings, "warning"))
        self.timeout = timeout
        self.thread = threading.Thread(target=lambda: asyncio.run(self.server.serve(sockets=[self.sock])),
                                       name="inpaintseg-serve", daemon=True)

    def __enter__(self) -> str:
        self.thread.start()
        deadline = time.monotonic() + self.timeout
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the background server did not start")
            time.sleep(0.02)
        return self.url

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=self.timeout)
        self.sock.close()
