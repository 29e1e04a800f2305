"""The HTTP API of `inpaintseg serve` with FastAPI's TestClient and a real uvicorn server on loopback."""

from __future__ import annotations

import base64
import concurrent.futures as cf
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

pytest.importorskip("fastapi", reason="the [serve] extra is not installed (pip install -e '.[serve]')")
httpx = pytest.importorskip("httpx", reason="httpx (the dev extra) is needed by FastAPI's TestClient")

from conftest import export_tiny_model  # noqa: E402
from fastapi.testclient import TestClient  # noqa: E402

import inpaintseg  # noqa: E402
from inpaintseg import cli, fileio, rle  # noqa: E402
from inpaintseg.service import BackgroundServer, ServiceSettings, create_app  # noqa: E402
from inpaintseg.service.server import wait_until_ready  # noqa: E402
from test_service_uploads import png_bytes, png_claiming  # noqa: E402

PREDICT = "/api/v1/predict"


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return export_tiny_model(tmp_path_factory.mktemp("serve") / "model")


@pytest.fixture(scope="module")
def model(model_dir):
    return inpaintseg.load_model(model_dir, device="cpu")


@pytest.fixture(scope="module")
def client(model):
    with TestClient(create_app(model, ServiceSettings())) as c:
        yield c


def image(h=20, w=41, seed=0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def upload(client, data: bytes, name="shot.png", headers=None, **fields):
    return client.post(PREDICT, files={"image": (name, data, "application/octet-stream")},
                       data={k: str(v) for k, v in fields.items()}, headers=headers or {})


def decode_png(b64: str) -> np.ndarray:
    return cv2.imdecode(np.frombuffer(base64.b64decode(b64), np.uint8), cv2.IMREAD_UNCHANGED)


def assert_error(response, status: int, code: str | None = None, *words: str):
    assert response.status_code == status, response.text
    body = response.json()
    assert body["status"] == status and body["message"]
    if code:
        assert body["error"] == code
    for word in words:
        assert word in body["message"]


def test_the_json_mask_is_the_mask_that_inpaintseg_predict_writes(client, model_dir, tmp_path):
    folder = tmp_path / "images"
    fileio.write_png(folder / "odd.png", image(21, 45, seed=3))
    assert cli.main(["predict", "--quiet", "--model", str(model_dir), "--images", str(folder), "--device", "cpu",
                     "--out", str(tmp_path / "sub.csv"), "--masks-out", str(tmp_path / "masks"),
                     "--probs-out", str(tmp_path / "probs"), "--scores-out", str(tmp_path / "scores.csv")]) == 0
    response = upload(client, (folder / "odd.png").read_bytes(), name="odd.png")
    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body) >= {"image_id", "width", "height", "score", "label", "threshold", "tta", "crf", "rle",
                         "mask_png", "probability_png", "timings"}
    assert (body["image_id"], body["width"], body["height"]) == ("odd", 45, 21)
    assert (body["tta"], body["crf"], body["threshold"]) == ("flip", "off", 0.5)  # the stored choices
    cli_mask = fileio.read_mask(tmp_path / "masks" / "odd.png")
    mask = decode_png(body["mask_png"])
    assert mask.shape == (21, 45) and set(np.unique(mask)) <= {0, 255}
    np.testing.assert_array_equal(mask // 255, cli_mask)
    assert body["rle"] == rle.read_submission(tmp_path / "sub.csv")["odd"]
    np.testing.assert_array_equal(rle.rle_decode(body["rle"], (21, 45)), cli_mask)
    np.testing.assert_array_equal(decode_png(body["probability_png"]),
                                  cv2.imread(str(tmp_path / "probs" / "odd.png"), cv2.IMREAD_UNCHANGED))
    score_row = (tmp_path / "scores.csv").read_text().splitlines()[1].split(",")
    assert abs(body["score"] - float(score_row[1])) < 1e-5 and body["label"] == int(score_row[3])
    assert {"receive", "decode", "queue", "model", "encode", "total"} <= set(body["timings"])


def test_threshold_and_tta_fields_override_the_stored_choices(client, model):
    array = image()
    body = upload(client, png_bytes(cv2.cvtColor(array, cv2.COLOR_RGB2BGR)), threshold=0.01, tta="none").json()
    expected = model.predict(array, threshold=0.01, tta="none")
    assert (body["threshold"], body["tta"]) == (0.01, "none")
    np.testing.assert_array_equal(decode_png(body["mask_png"]) // 255, expected.mask)
    assert expected.mask.mean() > 0.9  # an untrained model's probabilities sit near 0.5


def test_the_format_comes_from_the_bytes_not_the_name(client):
    data = png_bytes(image())
    assert upload(client, data, name="notes.txt").status_code == 200
    assert_error(upload(client, b"<html>hello</html>", name="photo.png"), 415, "not_an_image", "photo.png")


@pytest.mark.parametrize("fields, words", [({"threshold": "1.5"}, "(0, 1)"), ({"threshold": "high"}, "(0, 1)"),
                                           ({"tta": "sideways"}, "none, flip, d4")])
def test_invalid_options_are_422(client, fields, words):
    assert_error(upload(client, png_bytes(image()), **fields), 422, None, words)


def test_undecodable_images_are_422(client):
    data = png_bytes(image(64, 64))
    assert_error(upload(client, data[: len(data) // 2], name="half.png"), 422, "undecodable_image", "half.png")
    ok, jpeg = cv2.imencode(".jpg", image(32, 32))
    assert_error(upload(client, jpeg.tobytes()[:-20], name="cut.jpg"), 422, "undecodable_image", "truncated")
    assert_error(client.post(PREDICT, files={"other": ("a.png", data)}), 422, "missing_image", "'image'")


def test_a_body_that_is_not_multipart_is_415(client):
    assert_error(client.post(PREDICT, json={"image": "base64?"}), 415, "unsupported_media_type", "multipart")


def test_upload_and_pixel_limits_are_413(model):
    with TestClient(create_app(model, ServiceSettings(max_upload_mb=0.05, max_pixels=10_000))) as small:
        big = png_bytes(np.random.default_rng(0).integers(0, 256, (160, 160, 3), dtype=np.uint8))  # ~77 KB
        assert len(big) > 0.05 * 2**20
        assert_error(upload(small, big), 413, "payload_too_large", "--max-upload-mb")
        # A decompression bomb: a few hundred bytes that claim 1.2 gigapixels; refused from the header.
        assert_error(upload(small, png_claiming(40_000, 30_000), name="bomb.png"), 413, "too_many_pixels", "bomb.png")
        # A real image just over the pixel limit (101 x 100), and one at it.
        assert_error(upload(small, png_bytes(image(100, 101))), 413, "too_many_pixels", "101x100 = 10,100 pixels")
        assert upload(small, png_bytes(image(100, 100))).status_code == 200


def test_uploads_are_never_written_to_disk(client, monkeypatch):
    import tempfile

    import starlette.formparsers

    def refuse(*args, **kwargs):
        raise AssertionError("an upload went to a temporary file")

    for target in (tempfile, starlette.formparsers):
        for name in ("SpooledTemporaryFile", "NamedTemporaryFile", "TemporaryFile", "mkstemp"):
            if hasattr(target, name):
                monkeypatch.setattr(target, name, refuse)
    big = png_bytes(np.random.default_rng(1).integers(0, 256, (700, 700, 3), dtype=np.uint8))
    assert len(big) > 1024 * 1024  # above Starlette's in-memory spool size
    assert upload(client, big).status_code == 200


def test_token_on_and_off(model, client):
    with TestClient(create_app(model, ServiceSettings(token="s3cret"))) as locked:
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "s3cret"}):
            response = upload(locked, png_bytes(image()), headers=headers)
            assert_error(response, 401, "unauthorized", "Authorization: Bearer")
            assert response.headers["www-authenticate"] == "Bearer"
        assert_error(locked.get("/api/v1/model"), 401, "unauthorized")
        ok = {"Authorization": "Bearer s3cret"}
        assert upload(locked, png_bytes(image()), headers=ok).status_code == 200
        assert locked.get("/api/v1/model", headers=ok).json()["limits"]["auth"] is True
        assert locked.get("/healthz").status_code == 200 and locked.get("/").status_code == 200
    assert client.get("/api/v1/model").json()["limits"]["auth"] is False
    assert upload(client, png_bytes(image())).status_code == 200


def test_model_endpoint_describes_the_model_and_limits(client):
    body = client.get("/api/v1/model").json()
    assert body["architecture"]["base_channels"] == 4 and body["input"]["mode"] == "resize"
    assert body["postprocess"]["threshold"] == 0.5 and body["postprocess"]["tta"] == "flip"
    assert body["limits"] == {"max_upload_bytes": 20 * 2**20, "max_pixels": 50_000_000, "workers": 1,
                              "queue": 16, "auth": False}


def test_page_static_files_and_json_errors(client):
    page = client.get("/")
    assert page.status_code == 200 and 'src="/static/app.js"' in page.text
    assert "default-src 'self'" in page.headers["content-security-policy"]
    for name in ("app.js", "style.css"):
        response = client.get(f"/static/{name}")
        assert response.status_code == 200 and "http://" not in response.text and "https://" not in response.text
    assert "https://" not in page.text and "http://" not in page.text  # nothing from elsewhere: works offline
    assert_error(client.get("/nope"), 404, "not_found")
    assert_error(client.get(PREDICT), 405, "method_not_allowed")
    schema = client.get("/openapi.json").json()
    assert "multipart/form-data" in schema["paths"][PREDICT]["post"]["requestBody"]["content"]


def test_cors_only_when_asked(model, client):
    origin = {"Origin": "https://review.example.org"}
    assert "access-control-allow-origin" not in client.get("/api/v1/model", headers=origin).headers
    with TestClient(create_app(model, ServiceSettings(cors_origins=("https://review.example.org",)))) as c:
        assert c.get("/api/v1/model", headers=origin).headers["access-control-allow-origin"] == origin["Origin"]


def test_concurrent_requests_get_their_own_answers(model):
    arrays = [image(24 + i, 30 + 2 * i, seed=i) for i in range(8)]
    expected = [model.predict(a) for a in arrays]
    with BackgroundServer(model, ServiceSettings(workers=2, queue=8)) as url:
        def call(i):
            data = png_bytes(cv2.cvtColor(arrays[i], cv2.COLOR_RGB2BGR))
            return httpx.post(url + PREDICT, files={"image": (f"im{i}.png", data)}, timeout=60)

        with cf.ThreadPoolExecutor(8) as pool:
            responses = list(pool.map(call, range(8)))
    for i, response in enumerate(responses):
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["image_id"] == f"im{i}" and (body["height"], body["width"]) == arrays[i].shape[:2]
        np.testing.assert_array_equal(decode_png(body["mask_png"]) // 255, expected[i].mask)


class BlockingModel:
    """A model whose predictions wait for `release`: fills the server's workers and queue on purpose."""

    def __init__(self, inner):
        self.inner, self.config, self.device = inner, inner.config, inner.device
        self.release, self.started = threading.Event(), threading.Semaphore(0)

    def postprocess(self, **kw):
        return self.inner.postprocess(**kw)

    def predict(self, image, **kw):
        self.started.release()
        assert self.release.wait(30)
        return self.inner.predict(image, **kw)


def test_a_full_queue_answers_503_with_retry_after(model):
    slow = BlockingModel(model)
    data = png_bytes(image())
    with BackgroundServer(slow, ServiceSettings(workers=1, queue=1)) as url:
        post = lambda: httpx.post(url + PREDICT, files={"image": ("a.png", data)}, timeout=60)  # noqa: E731
        with cf.ThreadPoolExecutor(2) as pool:
            running = pool.submit(post)
            assert slow.started.acquire(timeout=30)  # one prediction runs ...
            queued = pool.submit(post)
            deadline = time.monotonic() + 30
            while httpx.get(url + "/healthz").json()["admitted"] < 2:  # ... and one waits
                assert time.monotonic() < deadline
                time.sleep(0.02)
            busy = post()
            assert_error(busy, 503, "busy", "retry")
            assert int(busy.headers["retry-after"]) >= 1
            slow.release.set()
            assert running.result().status_code == 200 and queued.result().status_code == 200
        assert httpx.get(url + "/healthz").json()["admitted"] == 0
        assert post().status_code == 200  # places are given back


def test_a_chunked_upload_is_refused_while_it_streams(model):
    """The 413 comes before the body ends: the client never finishes sending, yet gets its answer."""
    with BackgroundServer(model, ServiceSettings(max_upload_mb=0.1)) as url:
        host, port = url.removeprefix("http://").split(":")
        with socket.create_connection((host, int(port)), timeout=30) as sock:
            sock.sendall(b"POST /api/v1/predict HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
                         b"Content-Type: multipart/form-data; boundary=zz\r\n\r\n")
            head = b'--zz\r\nContent-Disposition: form-data; name="image"; filename="a.png"\r\n\r\n\x89PNG'
            sock.sendall(b"%x\r\n%s\r\n" % (len(head), head))
            chunk = b"0" * 65536
            for _ in range(4):  # 256 KB of a body that never ends
                sock.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            answer = b""
            while b"}" not in answer:  # the headers and the JSON body may come in separate packets
                data = sock.recv(65536)
                if not data:
                    break
                answer += data
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    assert b"payload_too_large" in answer


@pytest.mark.slow
def test_inpaintseg_serve_end_to_end(model_dir, tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(inpaintseg.__file__).parents[1]),
                                                          os.environ.get("PYTHONPATH", "")]),
           "INPAINTSEG_TOKEN": "tok"}
    proc = subprocess.Popen([sys.executable, "-m", "inpaintseg.cli", "serve", "--model", str(model_dir), "--port",
                             str(port), "--device", "cpu", "--threads", "1"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        url = f"http://127.0.0.1:{port}"
        assert wait_until_ready(url, proc, timeout=90), "serve did not start"
        assert httpx.post(url + PREDICT, files={"image": ("a.png", png_bytes(image()))}).status_code == 401
        response = httpx.post(url + PREDICT, files={"image": ("a.png", png_bytes(image()))},
                              headers={"Authorization": "Bearer tok"}, timeout=60)
        assert response.status_code == 200 and response.json()["width"] == 41
        broken = b"\x89PNG\r\n\x1a\n" + b"x" * 64  # OpenCV would log "[ WARN..]" / "[ERROR..]" lines for it
        assert httpx.post(url + PREDICT, files={"image": ("b.png", broken)}, headers={"Authorization": "Bearer tok"},
                          timeout=60).status_code == 422
    finally:
        proc.terminate()
        output = proc.communicate(timeout=30)[0]
    assert f"page http://127.0.0.1:{port}/" in output and "token required" in output
    assert "Traceback" not in output and "WARN" not in output and "[ERROR" not in output
    # one access line per request (the readiness polls included)
    access = [line for line in output.splitlines() if " access: " in line]
    assert sum('"POST /api/v1/predict"' in line for line in access) == 3
    assert any('"POST /api/v1/predict" 422' in line for line in access)


def test_serve_refuses_a_port_in_use_with_a_clear_message(model_dir, capsys):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(1)
        port = s.getsockname()[1]
        assert cli.main(["serve", "--model", str(model_dir), "--port", str(port), "--device", "cpu"]) == 2
    assert f"cannot listen on 127.0.0.1:{port}" in capsys.readouterr().err


def test_wait_until_ready_gives_up_when_the_server_process_exits():
    """A server that dies before listening is reported (False) at once, not after the whole timeout."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # free, and nothing will listen on it
    proc = subprocess.Popen([sys.executable, "-c", "raise SystemExit(3)"])
    proc.wait(timeout=30)
    start = time.monotonic()
    assert wait_until_ready(f"http://127.0.0.1:{port}", proc, timeout=60) is False
    assert time.monotonic() - start < 10


# ---- issue 25: what an analyst sees ----------------------------------------------------------------------

def test_answers_match_their_openapi_models_with_units(client):
    from inpaintseg.service import schemas

    body = upload(client, png_bytes(image())).json()
    schemas.PredictionBody.model_validate(body)
    mask = decode_png(body["mask_png"]) > 0
    # the area is counted on the server's own mask: one source of numbers for the page and every client
    assert body["manipulated_pixels"] == int(mask.sum())
    assert body["manipulated_fraction"] == round(mask.sum() / mask.size, 6)
    # the tiny model folder has no false-alarm table: the old two-level verdict, with a note saying so
    assert body["verdict"]["level"] in ("untouched", "manipulated") and body["verdict"]["false_alarm_rate"] is None
    assert "no false-alarm table" in body["verdict"]["note"]
    schemas.ModelBody.model_validate(client.get("/api/v1/model").json())
    schemas.HealthBody.model_validate(client.get("/healthz").json())
    schema = client.get("/openapi.json").json()
    for path, method in ((PREDICT, "post"), ("/api/v1/model", "get"), ("/healthz", "get")):
        assert "$ref" in schema["paths"][path][method]["responses"]["200"]["content"]["application/json"]["schema"]
    assert "pixels" in schema["components"]["schemas"]["PredictionBody"]["properties"]["width"]["description"]


def test_docs_page_is_served_offline_from_the_schema(client):
    page = client.get("/docs")
    assert page.status_code == 200 and "POST /api/v1/predict" in page.text and "manipulated_fraction" in page.text
    assert "https://" not in page.text and "http://" not in page.text and "<script" not in page.text


def test_model_endpoint_has_no_absolute_paths_and_a_card(tmp_path):
    folder = export_tiny_model(tmp_path / "model")
    model = inpaintseg.load_model(folder, device="cpu")
    model.config = model.config.updated({"data": {"data_dir": "/home/analyst/secret/data", "n_train": 8, "n_val": 2,
                                                  "split_file": "split.json"}})
    with TestClient(create_app(model, ServiceSettings())) as c:
        body = c.get("/api/v1/model").json()
    assert str(tmp_path) not in str(body) and "/home/analyst" not in str(body)
    assert body["data"]["data_dir"] == "data" and body["name"] == f"{tmp_path.name}/model"
    assert ["Trained on", "8 training / 2 validation images from 'data'"] in body["card"]
    assert body["quality"]["warning"] is None and body["verdict_levels"] is None


def test_a_model_that_loses_to_a_baseline_says_so(tmp_path):
    from inpaintseg.inference.verdicts import calibrate_verdicts

    folder = export_tiny_model(tmp_path / "model")
    model = inpaintseg.load_model(folder, device="cpu")
    # 3 untouched + 1 manipulated validation images: all-empty scores 0.75, the model only 0.40
    model.config = model.config.updated(
        {"postprocess": {"verdicts": calibrate_verdicts([(0.1, 0), (0.2, 0), (0.3, 0), (0.9, 0.2)], 0.40)}})
    with TestClient(create_app(model, ServiceSettings())) as c:
        body = c.get("/api/v1/model").json()
        pred = upload(c, png_bytes(image())).json()
    assert "does not beat the trivial 'all-empty' answer (0.750)" in body["quality"]["warning"]
    assert body["verdict_levels"]["cutoffs"] == {"uncertain": 0.31, "likely_manipulated": 0.31}  # no gap: min(0.9, 0.31)
    assert pred["verdict"]["level"] in ("likely untouched", "uncertain", "likely manipulated")
    assert pred["verdict"]["n_untouched"] == 3


def test_one_access_log_line_per_request(client, caplog):
    import logging

    with caplog.at_level(logging.INFO, logger="inpaintseg.access"):
        client.get("/healthz")
        client.get("/nope")
    lines = [r.getMessage() for r in caplog.records if r.name == "inpaintseg.access"]
    assert len(lines) == 2 and '"GET /healthz" 200' in lines[0] and '"GET /nope" 404' in lines[1]


def test_a_gated_image_gets_an_empty_mask_and_says_why(tmp_path):
    # the untrained width-4 network's probabilities sit near 0.5: every pixel >= 0.01, every score < 0.99
    gated_model = export_tiny_model(tmp_path / "gated", postprocess={"threshold": 0.01, "gate": 0.99, "tta": "none",
                                                                      "crf": "off", "calibration": {}})
    with TestClient(create_app(inpaintseg.load_model(gated_model, device="cpu"), ServiceSettings())) as gated:
        body = upload(gated, png_bytes(image())).json()
        assert body["gate"] == 0.99 and body["gated"] is True
        assert body["manipulated_pixels"] == 0 and body["rle"] == "" and body["score"] < 0.99
        assert body["score_threshold"] == 0.99 and body["label"] == 0
        assert upload(gated, png_bytes(image()), gate="off").json()["gated"] is False
        assert_error(upload(gated, png_bytes(image()), gate="loose"), 422, "invalid_gate", "few-false-alarms")
        assert_error(upload(gated, png_bytes(image()), gate="few-false-alarms"), 422, "cannot_predict", "gate")
        page_rows = dict(gated.get("/api/v1/model").json()["card"])
        assert "image gate 0.99" in page_rows["Post-processing"]
