"""Bounded concurrency for inference: a fixed pool of worker threads and a bounded waiting line.

`admit()` hands out a `Ticket` while fewer than ``workers + queue`` requests are admitted, else raises a 503
`ServiceError` with ``Retry-After`` (seconds, estimated from the recent inference time). A ticket is taken
before the request body is read, so an overloaded server refuses cheaply, and is given back when its job
finishes in the pool, or when the request ends without a job; a client that disconnects while its job runs
still holds its place until the job is done, so the pool never has more than ``workers + queue`` jobs.
Inference runs in the pool's threads, never on the event loop.
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
    """A place among the admitted requests; `release` is idempotent."""

    def __init__(self, gate: InferenceGate) -> None:
        self._gate = gate
        self._released = False
        self.submitted = False

    def release(self) -> None:
        with self._gate._lock:
            if not self._released:
                self._released = True
                self._gate._admitted -= 1


class InferenceGate:
    def __init__(self, workers: int = 1, queue: int = 16) -> None:
        self.workers = workers
        self.capacity = workers + queue
        self._admitted = 0
        self._lock = threading.Lock()
        self._seconds = 1.0  # running mean of a job's time, for Retry-After
        self._executor = cf.ThreadPoolExecutor(max_workers=workers, thread_name_prefix="inpaintseg-infer")

    @property
    def admitted(self) -> int:
        return self._admitted

    def retry_after(self) -> int:
        """Seconds until a place is likely free: the admitted jobs' time spread over the workers."""
        return max(1, math.ceil(self._admitted * self._seconds / self.workers))

    def admit(self) -> Ticket:
        with self._lock:
            if self._admitted >= self.capacity:
                wait = self.retry_after()
                raise ServiceError(503, "busy", f"the server is busy ({self._admitted} requests admitted, "
                                   f"{self.workers} running at a time); retry in about {wait} s.",
                                   headers={"Retry-After": str(wait)})
            self._admitted += 1
            return Ticket(self)

    async def run(self, ticket: Ticket, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn(*args)`` in the pool; the ticket is released when the job is done (or cancelled)."""
        def job() -> T:
            start = time.perf_counter()
            try:
                return fn(*args)
            finally:
                elapsed = time.perf_counter() - start
                self._seconds = 0.8 * self._seconds + 0.2 * elapsed

        future = self._executor.submit(job)
        ticket.submitted = True
        future.add_done_callback(lambda _: ticket.release())
        return await asyncio.wrap_future(future)

    def shutdown(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
