"""Input rates that do not hide loss: what reaches the node per topic, and what did not.

Frames dropped before a callback runs (best-effort transport, a busy executor) never reach the
node, so they are estimated from the stamps of the frames that did: with the camera's period P
(``advertised_hz`` when the camera's rate is known, else the 25th percentile of recent gaps
between consecutive stamps), a gap g between two received stamps means round(g / P) - 1 frames
lost on the way. Gaps longer than ``pause_s`` are the camera pausing, not loss.

Plain Python (no rclpy): the node feeds it stamps and receive times.
"""
from __future__ import annotations

from collections import deque

import numpy as np


class InputRate:
    """Receive rate, camera rate and estimated loss of one input topic."""

    def __init__(self, advertised_hz: float = 0.0, window_s: float = 5.0, pause_s: float = 1.0):
        self.advertised_hz = advertised_hz
        self.window_s = window_s
        self.pause_s = pause_s
        self.received = 0
        self.lost = 0  # estimated, before the callback
        self._arrivals: deque[float] = deque()
        self._gaps: deque[float] = deque(maxlen=200)
        self._last_stamp: float | None = None

    def add(self, stamp_s: float, now_s: float) -> None:
        """A message with header stamp ``stamp_s`` arrived at ``now_s`` (monotonic seconds)."""
        self.received += 1
        self._arrivals.append(now_s)
        while self._arrivals and self._arrivals[0] < now_s - self.window_s:
            self._arrivals.popleft()
        last, self._last_stamp = self._last_stamp, max(stamp_s, self._last_stamp or stamp_s)
        if last is None or stamp_s <= last:
            return  # first, repeated or out of order: no gap to read
        gap = stamp_s - last
        self._gaps.append(gap)
        period = self.period()
        if period > 0 and gap <= self.pause_s:
            self.lost += max(0, int(round(gap / period)) - 1)

    def period(self) -> float:
        """The camera's period (s): advertised, else estimated from >= 10 stamp gaps; 0 = unknown."""
        if self.advertised_hz > 0:
            return 1.0 / self.advertised_hz
        if len(self._gaps) < 10:
            return 0.0
        return float(np.percentile(np.asarray(self._gaps), 25))  # robust while >= 25 % of the gaps are single periods

    def rate_hz(self, now_s: float) -> float:
        """Messages received per second over the last ``window_s`` seconds."""
        recent = [t for t in self._arrivals if t >= now_s - self.window_s]
        if len(recent) < 2:
            return 0.0
        span = max(now_s - recent[0], recent[-1] - recent[0])
        return (len(recent) - 1) / span if span > 0 else 0.0

    def camera_hz(self) -> float:
        p = self.period()
        return 1.0 / p if p > 0 else 0.0

    def behind(self, now_s: float, fraction: float = 0.8) -> bool:
        """Whether the receive rate is below ``fraction`` of the camera's rate (both known)."""
        cam, got = self.camera_hz(), self.rate_hz(now_s)
        return cam > 0 and got > 0 and got < fraction * cam

    def summary(self, now_s: float) -> str:
        cam = self.camera_hz()
        src = "advertised" if self.advertised_hz > 0 else "from stamps"
        return (f"{self.rate_hz(now_s):.1f} Hz received (camera {cam:.1f} Hz {src}" if cam > 0 else
                f"{self.rate_hz(now_s):.1f} Hz received (camera rate not known yet") + (
                f"); {self.received} received, ~{self.lost} lost before the node")
