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
