"""Keyframe capture policy and the on-disk store."""
from __future__ import annotations

import numpy as np
import pytest

from langx_ros.core.frames import Frame, FrameError
from langx_ros.core.keyframes import KeyframeConfig, KeyframeStore, held_keyframe, should_capture
from langx_ros.core.synthetic import look_at

K = np.array([[50.0, 0, 16], [0, 50.0, 12], [0, 0, 1]])


def _frame(i=0, depth=True):
    rgb = (np.arange(24 * 32 * 3) % 251).astype(np.uint8).reshape(24, 32, 3)
    d = np.full((24, 32), 1.234, np.float32) if depth else None
    if d is not None:
        d[0, 0] = np.nan
    return Frame(f"cam-{i}", rgb, K, look_at(np.array([2.0, 0.0, 1.0 + i]), np.zeros(3)), d, stamp=10.0 + i)


def test_policy_translation_and_rotation():
    cfg = KeyframeConfig(min_translation=0.25, min_rotation_deg=15)
    a = np.eye(4)
    assert should_capture(None, a, cfg)
    b = np.eye(4)
    b[0, 3] = 0.2
    assert not should_capture(a, b, cfg)
    b[0, 3] = 0.3
    assert should_capture(a, b, cfg)
    c = np.eye(4)
    t = np.radians(20)
    c[:2, :2] = [[np.cos(t), -np.sin(t)], [np.sin(t), np.cos(t)]]
    assert should_capture(a, c, cfg)


def test_store_round_trip_and_reload(tmp_path):
    store = KeyframeStore(tmp_path / "kf", max_keyframes=5)
    k0 = store.add(_frame(0))
    f1 = _frame(1, depth=False)
    f1.instances = np.full((24, 32), -1, np.int64)
    f1.instances[5:10, 5:10] = 3
    k1 = store.add(f1)
    assert store.ids() == [k0, k1] == ["kf-000000", "kf-000001"]
    again = KeyframeStore(tmp_path / "kf", max_keyframes=5)  # a restart
    assert again.ids() == [k0, k1] and not again.skipped
    f = again.frames[k0]
    assert np.array_equal(f.rgb, _frame(0).rgb) and np.allclose(f.pose, _frame(0).pose) and f.stamp == 10.0
    assert np.isnan(f.depth[0, 0]) and f.depth[1, 1] == pytest.approx(1.234, abs=5e-4)  # millimetre precision
    assert again.frames[k1].depth is None and again.frames[k0].instances is None
    assert np.array_equal(again.frames[k1].instances, f1.instances)
    assert again.add(_frame(2)) == "kf-000002"  # ids continue after a restart


def test_oldest_dropped_beyond_max_and_clear(tmp_path):
    store = KeyframeStore(tmp_path, max_keyframes=2)
    for i in range(3):
        store.add(_frame(i))
    assert store.ids() == ["kf-000001", "kf-000002"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["kf-000001", "kf-000002"]
    assert store.clear() == 2 and len(store) == 0 and list(tmp_path.iterdir()) == []


def test_invalid_frames_are_not_stored_and_corrupt_folders_are_reported(tmp_path):
    store = KeyframeStore(tmp_path, max_keyframes=4)
    bad = _frame(0)
    bad.pose = np.diag([2.0, 2.0, 2.0, 1.0])
    with pytest.raises(FrameError):
        store.add(bad)
    assert list(tmp_path.iterdir()) == []  # nothing half-written
    store.add(_frame(1))
    (tmp_path / "kf-000000" / "meta.json").write_text("{broken")
    again = KeyframeStore(tmp_path, max_keyframes=4)
    assert again.ids() == [] and again.skipped and "kf-000000" in again.skipped[0]
    assert (tmp_path / "kf-000000").is_dir()  # kept on disk for inspection


def test_the_same_image_is_not_stored_twice(tmp_path):
    store = KeyframeStore(tmp_path, max_keyframes=4)
    store.add(_frame(0), source="cam")
    with pytest.raises(FrameError, match="is keyframe kf-000000 already") as refused:
        store.add(_frame(0), source="cam")
    # a client that asked twice reads from the refusal that its image is stored, and under which id
    assert held_keyframe(f"not captured: {refused.value}", _frame(0).stamp) == "kf-000000"
    assert held_keyframe(str(refused.value), _frame(0).stamp + 1e-3) is None  # another image
    assert store.holding(_frame(0).stamp, "cam") == "kf-000000" and store.holding(_frame(0).stamp, "other_cam") is None
    with pytest.raises(FrameError, match="already"):  # also after a restart
        KeyframeStore(tmp_path, max_keyframes=4).add(_frame(0), source="cam")
    assert store.add(_frame(0), source="other_cam") == "kf-000001"  # another camera, same stamp: a new image
    unstamped = _frame(1)
    unstamped.stamp = 0.0  # a driver that does not stamp: nothing to compare
    store.add(unstamped, source="cam")
    store.add(unstamped, source="cam")
    assert len(store) == 4 and len(list(tmp_path.iterdir())) == 4
