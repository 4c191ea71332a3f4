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


def test_latest_only_delivers_the_first_at_once_and_the_last_of_a_burst_later():
    from langx_ros.ros.throttle import LatestOnly

    now = [0.0]
    out, scheduled = [], []
    lo = LatestOnly(out.append, 0.1, clock=lambda: now[0], schedule=lambda d, fn: scheduled.append((d, fn)))
    lo.offer("a")
    assert out == ["a"] and scheduled == []
    now[0] = 0.03
    for v in ("b", "c", "d"):  # within the period: one flush scheduled, the newest wins
        lo.offer(v)
    assert out == ["a"] and len(scheduled) == 1 and abs(scheduled[0][0] - 0.07) < 1e-9
    now[0] = 0.1
    scheduled.pop()[1]()
    assert out == ["a", "d"] and lo.delivered == 2 and lo.replaced == 2
    now[0] = 0.25  # a full period after the flush: at once again
    lo.offer("e")
    assert out == ["a", "d", "e"] and scheduled == []


def test_latest_only_with_no_period_delivers_everything():
    from langx_ros.ros.throttle import LatestOnly

    out = []
    lo = LatestOnly(out.append, 0.0, schedule=lambda d, fn: (_ for _ in ()).throw(AssertionError("no timer")))
    for v in range(5):
        lo.offer(v)
    assert out == [0, 1, 2, 3, 4]


def test_latest_only_default_timer_delivers_the_pending_value():
    import time

    from langx_ros.ros.throttle import LatestOnly

    out = []
    lo = LatestOnly(out.append, 0.05)
    lo.offer(1)
    lo.offer(2)
    deadline = time.monotonic() + 5
    while out != [1, 2] and time.monotonic() < deadline:
        time.sleep(0.01)
    assert out == [1, 2]
