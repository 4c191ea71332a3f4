"""Rate-limited warnings, per kind of problem (a bad camera must not flood the log)."""
from __future__ import annotations

import re
import time
from dataclasses import dataclass
from typing import Callable


@dataclass
class _Slot:
    last: float
    suppressed: int = 0


class ThrottledWarnings:
    """Emit at most one warning per ``period`` seconds for each kind of message.

    The kind is the message with its numbers masked, so "data has 100 bytes" and "data has 200
    bytes" share a slot while an encoding error and a size error do not. The next warning of a
    kind reports how many were suppressed in between.
    """

    def __init__(self, emit: Callable[[str], None], period: float, clock: Callable[[], float] = time.monotonic):
        self._emit = emit
        self._period = period
        self._clock = clock
        self._slots: dict[str, _Slot] = {}

    @staticmethod
    def kind(source: str, text: str) -> str:
        return source + ":" + re.sub(r"[-+]?\d[\d.e+-]*", "#", text)

    def warn(self, source: str, text: str) -> bool:
        """Warn now or count it as suppressed; returns whether it was emitted."""
        key = self.kind(source, text)
        now = self._clock()
        slot = self._slots.get(key)
        if slot is not None and now - slot.last < self._period:
            slot.suppressed += 1
            return False
        suffix = ""
        if slot is not None and slot.suppressed:
            suffix = f" ({slot.suppressed} more like this in the last {now - slot.last:.1f} s)"
        self._emit(f"{source}: {text}{suffix}")
        self._slots[key] = _Slot(now)
        return True


_NOTHING = object()  # no value pending (None is a value like any other)


class LatestOnly:
    """Hand on the newest value at most once per ``period`` seconds (a burst of answers shows its
    last one in RViz instead of costing one publish per answer).

    A value offered within the period replaces the pending one; the pending value goes out when
    the period ends (``schedule(delay, fn)`` runs fn later; a threading.Timer by default), so the
    last value of a burst is always delivered. ``period`` <= 0 delivers every value at once.
    Thread-safe; ``deliver`` runs outside the lock.
    """

    def __init__(self, deliver: Callable[[object], None], period: float, clock: Callable[[], float] = time.monotonic,
                 schedule: Callable[[float, Callable[[], None]], None] | None = None):
        import threading

        self._deliver = deliver
        self._period = period
        self._clock = clock
        self._schedule = schedule or self._timer
        self._lock = threading.Lock()
        self._last = -float("inf")
        self._pending: object = _NOTHING  # the value a scheduled flush will deliver
        self.delivered = 0
        self.replaced = 0  # values superseded before delivery

    @staticmethod
    def _timer(delay: float, fn: Callable[[], None]) -> None:
        import threading

        t = threading.Timer(delay, fn)
        t.daemon = True
        t.start()

    def offer(self, value: object) -> None:
        with self._lock:
            now = self._clock()
            if self._pending is not _NOTHING:  # a flush is scheduled: the newest value wins
                self.replaced += 1
                self._pending = value
                return
            if self._period > 0 and now - self._last < self._period:
                self._pending = value
                delay = self._period - (now - self._last)
            else:
                self._last = now
                self.delivered += 1
                delay = None
        if delay is None:
            self._deliver(value)
        else:
            self._schedule(delay, self._flush)

    def _flush(self) -> None:
        with self._lock:
            value, self._pending = self._pending, _NOTHING
            if value is _NOTHING:
                return
            self._last = self._clock()
            self.delivered += 1
        self._deliver(value)
