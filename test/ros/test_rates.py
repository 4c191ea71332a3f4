"""Input rates: receive rate, camera rate from stamps, loss estimated from stamp gaps."""
from __future__ import annotations

import numpy as np

from langx_ros.ros.rates import InputRate


def _feed(r: InputRate, keep, hz=30.0, n=300, latency=0.01):
    t = 0.0
    for i in range(n):
        stamp = i / hz
        if keep(i):
            r.add(stamp, stamp + latency)
        t = stamp + latency
    return t


def test_every_frame_received_counts_no_loss_and_the_camera_rate():
    r = InputRate()
    now = _feed(r, lambda i: True)
    assert r.received == 300 and r.lost == 0
    assert abs(r.camera_hz() - 30.0) < 0.1 and abs(r.rate_hz(now) - 30.0) < 0.5 and not r.behind(now)


def test_frames_lost_on_the_way_are_counted_from_stamp_gaps():
    rng = np.random.default_rng(0)
    keep = rng.random(300) < 0.46  # the soak: 46 % of the frames reached the node
    keep[:15] = True  # the camera's period is learned from the first gaps
    r = InputRate()
    now = _feed(r, lambda i: keep[i])
    truly_lost = int((~keep[: int(np.nonzero(keep)[0].max()) + 1]).sum())
    assert r.received == keep.sum()
    assert abs(r.lost - truly_lost) <= 2, (r.lost, truly_lost)
    assert abs(r.camera_hz() - 30.0) < 1.0 and r.behind(now)
    assert "lost before the node" in r.summary(now)


def test_an_advertised_rate_a_pause_and_repeated_stamps():
    r = InputRate(advertised_hz=10.0)
    for i in range(5):
        r.add(i * 0.1, i * 0.1)
    r.add(0.4, 0.45)  # the same stamp again: no gap
    r.add(60.0, 60.0)  # the camera paused for a minute: not loss
    r.add(60.3, 60.3)  # two frames missing at 10 Hz
    assert r.lost == 2 and r.camera_hz() == 10.0 and r.received == 8
