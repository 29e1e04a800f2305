"""The work behind ``POST /api/v1/predict``: one upload from its bytes to the JSON answer.

`predict_upload` takes a place at the gate before reading anything (503 when the queue is full), reads the
multipart body in memory with a running size check (`uploads`), checks the ``threshold`` / ``tta`` / ``gate`` fields
(`parse_options`), decodes in the gate's I/O pool, predicts in its inference pool and encodes the PNGs in the
I/O pool again: nothing heavy runs on the event loop. The answer's ``timings`` say where the time went.
"""

from __future__ import annotations

import asyncio
import time

from inpaintseg.errors import InpaintsegError
from inpaintseg.inference.postprocess import GATE_OPTIONS, TTA_OPTIONS
from inpaintseg.metrics import is_threshold
from inpaintseg.service import results, uploads
from inpaintseg.service.errors import ServiceError
from inpaintseg.service.gate import InferenceGate
from inpaintseg.service.settings import ServiceSettings

ECHO_CHARS = 40  # of a bad field value quoted back in a 422 (a 5 MB value was echoed whole)


def echo(text: str) -> str:
    """`text` quoted for an error answer, cut to ECHO_CHARS characters (its length said) when longer."""
    if len(text) <= ECHO_CHARS:
        return repr(text)
    return f"{text[:ECHO_CHARS]!r}... ({len(text):,} characters)"


def parse_options(parts: dict[str, uploads.Part]) -> tuple[float | str, str, float | str]:
    """The ``threshold``, ``tta`` and ``gate`` form fields, checked (422 with the allowed values)."""
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
    gate: float | str = uploads.form_value(parts, "gate") or "auto"
    if gate not in GATE_OPTIONS:
        if not is_threshold(gate):
            raise ServiceError(422, "invalid_gate", f"gate must be one of {', '.join(GATE_OPTIONS)} or a number "
                                                    f"in (0, 1), got {echo(gate)}.")
        gate = float(gate)
    return threshold, tta, gate


async def predict_upload(headers, stream, model, settings: ServiceSettings, gate: InferenceGate) -> bytes:
    """The JSON answer (bytes) for one upload: the request's ``headers`` (a mapping) and body ``stream`` (an
    async iterator of bytes). Raises `ServiceError` (413 / 415 / 422 / 503) for a request it refuses."""
    ticket = gate.admit()  # 503 before reading anything when the queue is full
    try:
        t0 = time.perf_counter()
        parts = await uploads.read_multipart(headers.get("content-type"), headers.get("content-length"), stream,
                                             settings.max_upload_bytes)
        threshold, tta, gate_choice = parse_options(parts)
        data, name, _ = uploads.check_upload(parts, settings.max_pixels)
        del parts
        t1 = time.perf_counter()
        image = await gate.io(ticket, uploads.decode_upload, data, name, settings.max_pixels)
        del data
        t2 = time.perf_counter()
        pred, started = await gate.infer(ticket, _predict, model, image, threshold, tta, gate_choice)
        t3 = time.perf_counter()
        encoded = await asyncio.gather(gate.io(ticket, results.encode_mask, pred.mask),
                                       gate.io(ticket, results.encode_probability, pred.probability))
        t4 = time.perf_counter()
        timings = {"receive": t1 - t0, "decode": t2 - t1, "queue": max(0.0, started - t2),
                   **{k: v for k, v in pred.timings.items() if k != "decode"},  # model, crf
                   "encode": t4 - t3, "total": t4 - t0}
        body = results.prediction_body(pred, uploads.image_id(name), image.shape[1], image.shape[0],
                                       {**encoded[0], **encoded[1]}, timings)
        return await gate.io(ticket, results.json_bytes, body)
    finally:
        ticket.release()


def _predict(model, image, threshold, tta: str, gate="auto"):
    """One prediction (in an inference thread) and when it started (perf_counter), for the queue time."""
    started = time.perf_counter()
    try:
        return model.predict(image, threshold=threshold, tta=tta, gate=gate), started
    except InpaintsegError as exc:  # e.g. the model's stored post-processing asks for a missing pydensecrf
        raise ServiceError(422, "cannot_predict", str(exc)) from None
