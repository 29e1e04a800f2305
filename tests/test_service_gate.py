"""The service's settings and its admission gate, without a server."""

from __future__ import annotations

import asyncio
import threading

import pytest

from inpaintseg.errors import ConfigError
from inpaintseg.service.errors import ServiceError
from inpaintseg.service.gate import InferenceGate
from inpaintseg.service.settings import PIXEL_CEILING, ServiceSettings


@pytest.mark.parametrize("kwargs, words", [
    ({"port": 70000}, "port"), ({"workers": 0}, "workers"), ({"queue": -1}, "queue"),
    ({"max_upload_mb": 0}, "max_upload_mb"), ({"max_pixels": PIXEL_CEILING + 1}, "decompression-bomb"),
    ({"token": ""}, "token"), ({"token": " padded "}, "token"),
])
def test_settings_refuse_bad_values_with_a_message(kwargs, words):
    with pytest.raises(ConfigError, match=words):
        ServiceSettings(**kwargs)


def test_settings_defaults_are_safe():
    s = ServiceSettings()
    assert (s.host, s.is_loopback, s.token, s.cors_origins) == ("127.0.0.1", True, None, ())
    assert s.max_upload_bytes == 20 * 2**20 and s.max_pixels == 50_000_000
    assert not ServiceSettings(host="0.0.0.0").is_loopback and ServiceSettings(host="::1").is_loopback
    assert s.limits()["auth"] is False
    locked = ServiceSettings(token="sekret")
    assert locked.limits()["auth"] is True and "sekret" not in str(locked.limits())  # what clients may see


def test_admission_is_bounded_and_503_carries_retry_after():
    gate = InferenceGate(workers=1, queue=1)
    first, second = gate.admit(), gate.admit()
    with pytest.raises(ServiceError) as err:
        gate.admit()
    assert err.value.status == 503 and int(err.value.headers["Retry-After"]) >= 1
    first.release()
    third = gate.admit()
    for ticket in (second, third):
        ticket.release()
    assert gate.admitted == 0
    gate.shutdown()


def test_a_cancelled_request_keeps_its_place_until_its_job_ends():
    """A client that disconnects while its prediction runs must not free a place the pool is still using."""
    gate = InferenceGate(workers=1, queue=0)
    started, finish = threading.Event(), threading.Event()

    def job():
        started.set()
        assert finish.wait(10)
        return 42

    async def scenario():
        ticket = gate.admit()

        async def request():
            try:
                return await gate.infer(ticket, job)
            finally:
                ticket.release()  # what the route does when the request ends

        task = asyncio.create_task(request())
        await asyncio.get_running_loop().run_in_executor(None, started.wait, 10)
        task.cancel()  # the client went away
        with pytest.raises(asyncio.CancelledError):
            await task
        assert gate.admitted == 1  # the job still runs: its place is still taken
        with pytest.raises(ServiceError):
            gate.admit()
        finish.set()
        for _ in range(200):
            if gate.admitted == 0:
                break
            await asyncio.sleep(0.01)
        assert gate.admitted == 0
        ticket2 = gate.admit()
        assert await gate.io(ticket2, lambda: "io") == "io"
        ticket2.release()
        assert gate.admitted == 0

    asyncio.run(scenario())
    gate.shutdown()
