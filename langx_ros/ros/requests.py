"""Bounded request lanes: every request is served or refused with a reason, never dropped.

A service callback hands its request to a lane and returns at once (the executor keeps taking
requests off the middleware's queue, so a burst is not lost there). Each lane has one worker
thread that takes every waiting request at once, refuses those that waited longer than
``max_wait`` s, and serves the rest as a batch (identical requests are computed once). A lane
holding ``limit`` requests (waiting or being served) refuses new ones at once: "busy: N
requests queued, limit M". Callers that block until their answer hold a thread each, so a
lane's limit also bounds the threads it can hold.
Separate lanes keep cheap requests from queueing behind expensive ones (answers without
masks vs. with masks).

Plain Python (no rclpy): the node wires it to its services.
"""
from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Callable, Hashable, Sequence


class Refused(Exception):
    """A request the lane did not serve; the message is the reason for the caller."""


@dataclass
class Job:
    """One request in a lane: ``payload`` in, then exactly one of ``result``/``error`` out."""

    payload: Any
    key: Hashable  # identical keys in one batch are computed once
    on_done: Callable[["Job"], None]
    submitted: float = field(default_factory=time.monotonic)
    started: float = 0.0
    result: Any = None
    error: BaseException | None = None

    @property
    def waited(self) -> float:
        return (self.started or time.monotonic()) - self.submitted


@dataclass
class LaneStats:
    submitted: int = 0
    served: int = 0
    refused_busy: int = 0
    refused_wait: int = 0
    failed: int = 0
    batches: int = 0
    largest_batch: int = 0


class Lane:
    """One bounded queue and its worker. ``handler(payloads)`` returns one result per distinct
    payload (in order) or raises; a per-request error is returned as an exception instance."""

    def __init__(self, name: str, handler: Callable[[Sequence[Any]], Sequence[Any]], limit: int, max_wait: float,
                 max_batch: int = 1024):
        self.name = name
        self.limit = limit
        self.max_wait = max_wait
        self.max_batch = max_batch
        self._handler = handler
        self._jobs: deque[Job] = deque()
        self._cond = threading.Condition()
        self._closed = False
        self._active = 0  # taken by the worker, not finished yet
        self.stats = LaneStats()
        self._worker = threading.Thread(target=self._run, name=f"langx-lane-{name}", daemon=True)
        self._worker.start()

    def queued(self) -> int:
        """Requests in the lane: waiting or being served."""
        with self._cond:
            return len(self._jobs) + self._active

    def submit(self, payload: Any, key: Hashable, on_done: Callable[[Job], None]) -> Job:
        """Queue a request; raises Refused (busy, closed) without queueing it."""
        with self._cond:
            if self._closed:
                raise Refused(f"{self.name}: shutting down")
            self.stats.submitted += 1
            held = len(self._jobs) + self._active
            if held >= self.limit:
                self.stats.refused_busy += 1
                raise Refused(f"busy: {held} {self.name} requests queued, limit {self.limit} (try again shortly)")
            job = Job(payload, key, on_done)
            self._jobs.append(job)
            self._cond.notify()
        return job

    def count_served_elsewhere(self) -> None:
        """Count a request of this lane answered without a turn in it (a stored answer)."""
        with self._cond:
            self.stats.submitted += 1
            self.stats.served += 1

    def close(self, timeout: float = 5.0) -> None:
        """Refuse what is queued and stop the worker."""
        with self._cond:
            self._closed = True
            left = list(self._jobs)
            self._jobs.clear()
            self._cond.notify_all()
        for job in left:
            self._finish(job, error=Refused(f"{self.name}: shutting down"))
        self._worker.join(timeout)

    def _take(self) -> list[Job]:
        with self._cond:
            while not self._jobs and not self._closed:
                self._cond.wait()
            batch = []
            while self._jobs and len(batch) < self.max_batch:
                batch.append(self._jobs.popleft())
            self._active = len(batch)
            return batch

    def _done_with_batch(self) -> None:
        with self._cond:
            self._active = 0

    def _finish(self, job: Job, result: Any = None, error: BaseException | None = None) -> None:
        job.result, job.error = result, error
        try:
            job.on_done(job)
        except Exception:  # a caller that went away must not stop the lane
            pass

    def _run(self) -> None:
        while True:
            batch = self._take()
            if not batch:
                return  # closed
            try:
                self._serve(batch)
            finally:
                self._done_with_batch()

    def _serve(self, batch: list[Job]) -> None:
        now = time.monotonic()
        live = []
        for job in batch:
            job.started = now
            if job.waited > self.max_wait:
                self.stats.refused_wait += 1
                self._finish(job, error=Refused(f"waited {job.waited:.2f} s in the {self.name} queue, longer than "
                                                f"the limit of {self.max_wait:g} s (the node is overloaded)"))
            else:
                live.append(job)
        if not live:
            return
        distinct: dict[Hashable, int] = {}
        payloads = []
        for job in live:
            if job.key not in distinct:
                distinct[job.key] = len(payloads)
                payloads.append(job.payload)
        self.stats.batches += 1
        self.stats.largest_batch = max(self.stats.largest_batch, len(live))
        try:
            results = list(self._handler(payloads))
            if len(results) != len(payloads):
                raise RuntimeError(f"lane {self.name}: {len(results)} results for {len(payloads)} requests")
        except Exception as exc:  # the whole batch failed: every caller is told
            results = [exc] * len(payloads)
        for job in live:
            r = results[distinct[job.key]]
            if isinstance(r, BaseException):
                self.stats.failed += 1
                self._finish(job, error=r)
            else:
                self.stats.served += 1
                self._finish(job, result=r)
