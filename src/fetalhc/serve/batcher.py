"""Concurrent requests measured together, a batch at a time."""

from __future__ import annotations

import logging
import queue
import threading
import time
from concurrent.futures import Future

import numpy as np

log = logging.getLogger(__name__)


class Batcher:
    """Measures concurrent requests together: a worker takes up to `batch` waiting requests
    (waiting at most `wait_s` for more) and runs them as one batch, which is what makes a
    loaded service as fast per image as `fetalhc predict`."""

    def __init__(self, measurer, workers: int, batch: int = 8, wait_s: float = 0.004) -> None:
        self.measurer, self.batch, self.wait_s = measurer, max(1, batch), wait_s
        self.jobs: queue.Queue = queue.Queue()
        self.threads = [
            threading.Thread(target=self._work, daemon=True, name=f"fetalhc-infer-{i}")
            for i in range(max(1, workers))
        ]
        for t in self.threads:
            t.start()

    def submit(self, image: np.ndarray, size: float | None, name: str, ga: float | None):
        future: Future = Future()
        self.jobs.put((image, size, name, ga, future))
        return future

    def _work(self) -> None:
        while True:
            jobs = [self.jobs.get()]
            deadline = time.perf_counter() + self.wait_s
            while len(jobs) < self.batch:
                try:
                    jobs.append(self.jobs.get(timeout=max(0.0, deadline - time.perf_counter())))
                except queue.Empty:
                    break
            self._run(jobs)

    def _run(self, jobs: list) -> None:
        try:  # each request's own GA: its biometry is complete when measured
            results = list(
                self.measurer.measure_many(
                    [j[0] for j in jobs],
                    [j[1] for j in jobs],
                    [j[2] for j in jobs],
                    ga_weeks=[j[3] for j in jobs],
                )
            )
        except Exception as exc:  # noqa: BLE001 - each waiting request gets the error
            for job in jobs:
                job[4].set_exception(exc)
            return
        for job, result in zip(jobs, results, strict=True):
            job[4].set_result(result)
