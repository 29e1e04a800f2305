"""Bounded concurrency for the work behind each request: a pool of inference threads, a pool of I/O threads
(decoding and PNG encoding; cv2 releases the GIL) and a bounded number of admitted requests.

`admit()` hands out a `Ticket` while fewer than ``workers + queue`` requests are admitted, else raises a 503
`ServiceError` with ``Retry-After`` (seconds, estimated from the recent inference time). A ticket is taken
before the request body is read, so an overloaded server refuses cheaply. The ticket counts its request's
jobs in the pools: its place is given back only when the request has ended *and* every job it submitted has
finished, so a client that disconnects mid-way still holds its place until its running job is done, and the
pools never hold jobs of more than ``workers + queue`` requests. Inference runs in the inference pool (one
prediction per worker), decoding and encoding in the I/O pool, so the next request's decoding and the previous
one's encoding overlap a prediction; nothing heavy runs on the event loop.
"""

from __future__ import annotations

import asyncio
import concurrent.futures as cf
import math
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

from inpaintseg.service.errors import ServiceError

T = TypeVar("T")


class Ticket:
    """A place among the admitted requests, held by the request and by each of its unfinished jobs."""

    def __init__(self, gate: InferenceGate) -> None:
        self._gate = gate
        self._holders = 1  # the request itself

    def hold(self) -> None:
        with self._gate._lock:
            self._holders += 1

    def release(self) -> None:
        """One holder is done (the request, or one job); the place is free when all are."""
        with self._gate._lock:
            self._holders -= 1
            if self._holders == 0:
                self._gate._admitted -= 1


class InferenceGate:
    def __init__(self, workers: int = 1, queue: int = 16, io_threads: int | None = None) -> None:
        self.workers = workers
        self.capacity = workers + queue
        self._admitted = 0
        self._lock = threading.Lock()
        self._seconds = 1.0  # running mean of a prediction's time, for Retry-After
        self._infer = cf.ThreadPoolExecutor(max_workers=workers, thread_name_prefix="inpaintseg-infer")
        self._io = cf.ThreadPoolExecutor(max_workers=io_threads or max(2, workers),
                                         thread_name_prefix="inpaintseg-io")

    @property
    def admitted(self) -> int:
        return self._admitted

    def retry_after(self) -> int:
        """Seconds until a place is likely free: the admitted requests' predictions spread over the workers."""
        return max(1, math.ceil(self._admitted * self._seconds / self.workers))

    def admit(self) -> Ticket:
        with self._lock:
            if self._admitted >= self.capacity:
                wait = self.retry_after()
                raise ServiceError(503, "busy", f"the server is busy ({self._admitted} requests admitted, "
                                   f"{self.workers} predicting at a time); retry in about {wait} s.",
                                   headers={"Retry-After": str(wait)})
            self._admitted += 1
            return Ticket(self)

    async def infer(self, ticket: Ticket, fn: Callable[..., T], *args: Any) -> T:
        """Run a prediction ``fn(*args)`` in the inference pool (its time feeds Retry-After)."""

        def timed() -> T:
            start = time.perf_counter()
            try:
                return fn(*args)
            finally:
                self._seconds = 0.8 * self._seconds + 0.2 * (time.perf_counter() - start)

        return await self._submit(self._infer, ticket, timed)

    async def io(self, ticket: Ticket, fn: Callable[..., T], *args: Any) -> T:
        """Run decoding or encoding ``fn(*args)`` in the I/O pool."""
        return await self._submit(self._io, ticket, fn, *args)

    @staticmethod
    async def _submit(pool: cf.ThreadPoolExecutor, ticket: Ticket, fn: Callable[..., T], *args: Any) -> T:
        ticket.hold()
        try:
            future = pool.submit(fn, *args)
        except BaseException:
            ticket.release()
            raise
        future.add_done_callback(lambda _: ticket.release())  # also when cancelled before it started
        return await asyncio.wrap_future(future)

    def shutdown(self) -> None:
        for pool in (self._infer, self._io):
            pool.shutdown(wait=False, cancel_futures=True)
