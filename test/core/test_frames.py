"""Frame validation and the posed RGB-D folder loader."""
from __future__ import annotations

import numpy as np
import pytest

from langx_ros.core.frames import (
    Frame,
    FrameError,
    list_rgbd_folder,
    load_rgbd_frame,
    validate_frame,
    validate_intrinsics,
    validate_pose,
)

K = np.array([[500.0, 0, 32], [0, 500.0, 24], [0, 0, 1]])


def _frame(**kw):
    base = dict(frame_id="f", rgb=np.zeros((48, 64, 3), np.uint8), K=K, pose=np.eye(4), depth=None)
    base.update(kw)
    return Frame(**base)


@pytest.mark.parametrize(
    "K_bad, message",
    [
        (np.zeros((3, 3)), "focal lengths must be positive"),
        (np.array([[500.0, 0, 32], [0, np.nan, 24], [0, 0, 1]]), "NaN"),
        (np.array([[500.0, 0, 640], [0, 500, 24], [0, 0, 1]]), "outside"),
        (np.array([[500.0, 0, 32], [0, 500, 24], [0, 0, 2]]), "last row"),
        (np.eye(2), "3x3"),
    ],
)
def test_bad_intrinsics(K_bad, message):
    with pytest.raises(FrameError, match=message):
        validate_intrinsics(K_bad, 64, 48)


def test_bad_image_size():
    with pytest.raises(FrameError, match="positive"):
        validate_intrinsics(K, 0, 48)


def test_pose_must_be_rigid():
    R = np.array([[0.0, -1, 0], [1, 0, 0], [0, 0, 1]])
    T = np.eye(4)
    T[:3, :3] = R
    T[:3, 3] = [1, 2, 3]
    assert np.array_equal(validate_pose(T), T)
    scaled = T.copy()
    scaled[:3, :3] *= 2
    with pytest.raises(FrameError, match="not a rotation"):
        validate_pose(scaled)
    mirrored = np.diag([1.0, 1.0, -1.0, 1.0])
    with pytest.raises(FrameError, match="not a rotation"):
        validate_pose(mirrored)
    bad_row = T.copy()
    bad_row[3, 0] = 1
    with pytest.raises(FrameError, match="last row"):
        validate_pose(bad_row)
    nan = T.copy()
    nan[0, 3] = np.nan
    with pytest.raises(FrameError, match="NaN"):
        validate_pose(nan)


def test_frame_depth_invalid_pixels_become_nan():
    d = np.full((48, 64), 2.0, np.float32)
    d[0, 0], d[0, 1], d[0, 2], d[0, 3] = 0.0, -1.0, np.inf, np.nan
    f = validate_frame(_frame(depth=d))
    assert np.isnan(f.depth[0, :4]).all()
    assert np.isfinite(f.depth[1:]).all()
    assert d[0, 0] == 0.0  # the caller's array is not modified


@pytest.mark.parametrize(
    "kw, message",
    [
        (dict(rgb=np.zeros((48, 64), np.uint8)), "rgb must be"),
        (dict(rgb=np.zeros((48, 64, 3), np.float32)), "rgb must be"),
        (dict(depth=np.zeros((10, 10), np.float32)), "depth shape"),
        (dict(depth=np.zeros((48, 64), np.uint16)), "float metres"),
    ],
)
def test_bad_frames(kw, message):
    with pytest.raises(FrameError, match=message):
        validate_frame(_frame(**kw))


def test_loads_real_rgbd_folder(rgbd_folder):
    ids = list_rgbd_folder(rgbd_folder)
    assert ids[:3] == ["frame-000000", "frame-000001", "frame-000002"] and len(ids) == 5
    f = load_rgbd_frame(rgbd_folder, ids[0])
    assert f.rgb.shape == (480, 640, 3) and f.rgb.dtype == np.uint8
    assert f.K[0, 0] == pytest.approx(570.342, abs=1e-3)
    assert f.pose is not None and f.pose[0, 3] == pytest.approx(1.973046)
    valid = np.isfinite(f.depth)
    assert 0.3 < valid.mean() <= 1.0  # most pixels have a reading, holes are NaN
    assert 0.2 < float(np.nanmedian(f.depth)) < 6.0  # millimetres were converted to metres


def test_loader_round_trip(tmp_path):
    import cv2

    rgb = (np.arange(48 * 64 * 3) % 251).astype(np.uint8).reshape(48, 64, 3)
    depth_mm = np.full((48, 64), 1500, np.uint16)
    depth_mm[:, :8] = 0
    depth_mm[0, 8] = 65535  # out-of-range sentinel
    cv2.imwrite(str(tmp_path / "frame-000007.color.png"), rgb[:, :, ::-1])
    cv2.imwrite(str(tmp_path / "frame-000007.depth.png"), depth_mm)
    np.savetxt(tmp_path / "frame-000007.pose.txt", np.eye(4))
    np.savetxt(tmp_path / "camera-intrinsics.txt", K)
    (f,) = [load_rgbd_frame(tmp_path, i) for i in list_rgbd_folder(tmp_path)]
    assert np.array_equal(f.rgb, rgb)
    assert np.isnan(f.depth[:, :8]).all() and np.isnan(f.depth[0, 8]) and np.allclose(f.depth[1:, 8:], 1.5)


def test_depth_to_mm_rounds_clips_and_marks_no_reading_as_zero():
    from langx_ros.core.frames import depth_to_mm

    d = np.array([[1.2346, np.nan, -0.5], [70.0, np.inf, 0.0004]], np.float32)
    assert depth_to_mm(d).tolist() == [[1235, 0, 0], [65535, 0, 0]]
    assert depth_to_mm(d, 65534)[1, 0] == 65534 and depth_to_mm(d).dtype == np.uint16
