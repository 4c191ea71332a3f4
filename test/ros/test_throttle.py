"""Rate-limited warnings per kind of problem."""
from __future__ import annotations

from langx_ros.ros.throttle import ThrottledWarnings


def test_one_warning_per_kind_per_period_with_suppressed_count():
    now = [0.0]
    out: list[str] = []
    w = ThrottledWarnings(out.append, period=5.0, clock=lambda: now[0])
    assert w.warn("image", "data has 100 bytes but step * height = 120")
    for n in range(9):
        now[0] += 0.1
        assert not w.warn("image", f"data has {200 + n} bytes but step * height = 120")
    assert w.warn("image", "unsupported encoding 'yuv'")  # another kind: own slot
    assert w.warn("camera_info", "data has 100 bytes but step * height = 120")  # another source
    now[0] = 6.0
    assert w.warn("image", "data has 1 bytes but step * height = 120")
    assert len(out) == 4
    assert out[-1].endswith("(9 more like this in the last 6.0 s)")
