"""DenseCRF beside the model: a process pool (pydensecrf holds the GIL, so a thread would not overlap)."""

from __future__ import annotations

import concurrent.futures as cf
import multiprocessing
import signal
from concurrent.futures.process import BrokenProcessPool

import numpy as np

from inpaintseg.inference import crf as crf_mod


def _ignore_ctrl_c() -> None:
    """Worker initializer: Ctrl-C reaches the whole process group; the parent handles it and shuts the pool
    down, so a worker must not die with its own KeyboardInterrupt traceback."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _crf_worker(image: np.ndarray, probs: np.ndarray, params: dict) -> np.ndarray:
    return crf_mod.refine(image, probs, params)


class CrfRunner:
    """Runs DenseCRF beside the model: in ``workers`` processes (pydensecrf holds the GIL, so a thread
    would not overlap with the model), or inline with ``workers=0``.

    Worker processes start with ``forkserver`` (``spawn`` where missing), so a script that calls
    this with workers > 0 needs the usual ``if __name__ == "__main__":`` guard.
    """

    def __init__(self, params: dict, workers: int = 1):
        from inpaintseg.runtime import check_count

        check_count("crf_workers", workers, processes=True)
        crf_mod.require_pydensecrf()
        self.params = crf_mod.validate_params(params)
        self.workers = workers
        self.pool = None
        self._start()

    def _start(self) -> None:
        if self.workers > 0:
            method = "forkserver" if "forkserver" in multiprocessing.get_all_start_methods() else "spawn"
            self.pool = cf.ProcessPoolExecutor(self.workers, mp_context=multiprocessing.get_context(method),
                                               initializer=_ignore_ctrl_c)

    def submit(self, image: np.ndarray, probs: np.ndarray) -> cf.Future:
        if self.pool is None:
            future: cf.Future = cf.Future()
            try:
                future.set_result(_crf_worker(image, probs, self.params))
            except Exception as exc:  # noqa: BLE001 - handed to the caller through the future
                future.set_exception(exc)
            return future
        return self.pool.submit(_crf_worker, image, probs, self.params)

    def result(self, future: cf.Future, image: np.ndarray, probs: np.ndarray) -> np.ndarray:
        """The refined map of ``submit(image, probs)``. A worker that died (the OS kills it when a huge
        image exhausts memory) breaks the whole pool: the pool is restarted and the image tried once
        more alone, so only an image that kills a worker twice fails (MemoryError)."""
        try:
            return future.result()
        except BrokenProcessPool:
            pass
        self.restart()
        try:
            return self.submit(image, probs).result()
        except BrokenProcessPool:
            self.restart()
            raise MemoryError("the DenseCRF worker process died twice on this image") from None

    def restart(self) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=True)
            self._start()

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=True)
            self.pool = None
