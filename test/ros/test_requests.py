"""Request lanes: every request served or refused with a reason; batches, waits, failures."""
from __future__ import annotations

import threading
import time

import pytest

from langx_ros.ros.requests import Lane, Refused


class Collect:
    def __init__(self):
        self.jobs = []
        self.lock = threading.Lock()

    def __call__(self, job):
        with self.lock:
            self.jobs.append(job)

    def wait(self, n, timeout=5.0):
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            with self.lock:
                if len(self.jobs) >= n:
                    return True
            time.sleep(0.005)
        return False


def _gated(calls):
    gate = threading.Event()

    def handler(payloads):
        calls.append(list(payloads))
        gate.wait(5)
        return [p * 2 if p >= 0 else ValueError(f"negative {p}") for p in payloads]

    return gate, handler


def _busy_lane(name, limit, max_wait):
    """A lane whose worker is held in its handler (serving payload 1) until ``gate`` is set."""
    calls = []
    gate, handler = _gated(calls)
    lane = Lane(name, handler, limit=limit, max_wait=max_wait)
    done = Collect()
    lane.submit(1, 1, done)
    assert _until(lambda: len(calls) == 1)
    return lane, calls, gate, done


def test_a_full_lane_refuses_at_once_and_serves_everything_it_took():
    lane, calls, gate, done = _busy_lane("query", 5, 10.0)
    for i in range(4):  # the one being served counts against the limit too (its caller holds a thread)
        lane.submit(10 + i, 10 + i, done)
    assert lane.queued() == 5
    with pytest.raises(Refused, match=r"busy: 5 query requests queued, limit 5"):
        lane.submit(99, 99, done)
    gate.set()
    assert done.wait(5)
    assert sorted(j.result for j in done.jobs) == [2, 20, 22, 24, 26] and all(j.error is None for j in done.jobs)
    assert calls[1] == [10, 11, 12, 13]  # the waiting ones as one batch
    assert lane.stats.refused_busy == 1 and lane.stats.served == 5 and lane.stats.submitted == 6
    assert _until(lambda: lane.queued() == 0)
    lane.close()


def test_identical_requests_in_a_batch_are_computed_once_and_errors_stay_per_request():
    lane, calls, gate, done = _busy_lane("query", 100, 10.0)
    for p in [3, 3, 3, -1, 4, 3]:
        lane.submit(p, p, done)
    gate.set()
    assert done.wait(7)
    assert calls[1] == [3, -1, 4]
    by = {}
    for j in done.jobs:
        by.setdefault(j.payload, []).append(j)
    assert [j.result for j in by[3]] == [6, 6, 6, 6] and by[1][0].result == 2
    assert by[-1][0].result is None and "negative -1" in str(by[-1][0].error)
    assert lane.stats.failed == 1
    lane.close()


def test_requests_that_waited_too_long_are_refused_with_the_wait():
    lane, calls, gate, done = _busy_lane("masks", 10, 0.05)
    lane.submit(2, 2, done)
    time.sleep(0.1)
    gate.set()
    assert done.wait(2)
    late = [j for j in done.jobs if j.payload == 2][0]
    assert isinstance(late.error, Refused) and "in the masks queue, longer than the limit of 0.05 s" in str(late.error)
    assert len(calls) == 1 and lane.stats.refused_wait == 1
    lane.close()


def test_a_failing_handler_answers_every_caller_and_close_refuses_the_rest():
    def boom(payloads):
        raise RuntimeError("field went away")

    lane = Lane("query", boom, limit=10, max_wait=10.0)
    done = Collect()
    for i in range(3):
        lane.submit(i, i, done)
    assert done.wait(3)
    assert all(isinstance(j.error, RuntimeError) for j in done.jobs)
    lane.close()
    with pytest.raises(Refused, match="shutting down"):
        lane.submit(1, 1, done)


def _until(cond, timeout=5.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return True
        time.sleep(0.005)
    return False
