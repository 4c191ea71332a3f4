"""sensor_msgs/Image and CameraInfo <-> numpy, with rejection of malformed messages."""
from __future__ import annotations

import numpy as np
import pytest
from sensor_msgs.msg import CameraInfo, Image

from langx_ros.core.frames import FrameError
from langx_ros.ros.convert import (
    ImageError,
    camera_info_from_intrinsics,
    depth_from_image,
    image_to_numpy,
    intrinsics_from_camera_info,
    numpy_to_image,
    rgb_from_image,
)

RNG = np.random.default_rng(0)
RGB = RNG.integers(0, 256, (5, 7, 3), dtype=np.uint8)


def _padded(arr: np.ndarray, encoding: str, pad: int, bigendian: bool = False) -> Image:
    """An Image whose rows carry ``pad`` junk bytes (as many drivers send)."""
    a = arr.astype(arr.dtype.newbyteorder(">" if bigendian else "<"))
    raw = a.reshape(a.shape[0], -1).view(np.uint8)
    rows = np.concatenate([raw, np.full((a.shape[0], pad), 0xAB, np.uint8)], axis=1)
    m = Image(height=a.shape[0], width=a.shape[1], encoding=encoding, is_bigendian=int(bigendian))
    m.step = rows.shape[1]
    m.data = rows.tobytes()
    return m


def test_rgb8_round_trip():
    assert np.array_equal(rgb_from_image(numpy_to_image(RGB, "rgb8")), RGB)


def test_bgr8_and_bgra8_become_rgb():
    assert np.array_equal(rgb_from_image(numpy_to_image(RGB[:, :, ::-1], "bgr8")), RGB)
    bgra = np.concatenate([RGB[:, :, ::-1], np.full((5, 7, 1), 9, np.uint8)], axis=2)
    assert np.array_equal(rgb_from_image(numpy_to_image(bgra, "bgra8")), RGB)


def test_mono8_is_replicated():
    g = RGB[:, :, 0]
    out = rgb_from_image(numpy_to_image(g, "mono8"))
    assert out.shape == (5, 7, 3) and all(np.array_equal(out[:, :, c], g) for c in range(3))


def test_padded_rows_are_cropped():
    assert np.array_equal(rgb_from_image(_padded(RGB, "rgb8", pad=3)), RGB)
    d = RNG.integers(1, 5000, (4, 6)).astype(np.uint16)
    assert np.array_equal(image_to_numpy(_padded(d, "16UC1", pad=4)), d)


def test_depth_16uc1_millimetres_big_endian_and_zero():
    d = np.array([[0, 1000], [2500, 65535]], np.uint16)
    out = depth_from_image(_padded(d, "16UC1", pad=0, bigendian=True))
    assert np.isnan(out[0, 0])
    assert out[0, 1] == pytest.approx(1.0) and out[1, 0] == pytest.approx(2.5)
    assert np.isnan(out[1, 1])  # 65535: the out-of-range sentinel (7-Scenes frame 000850 has them), not 65.5 m


def test_depth_32fc1_nan_inf_negative_are_invalid():
    d = np.array([[np.nan, np.inf], [-1.0, 0.75]], np.float32)
    out = depth_from_image(numpy_to_image(d, "32FC1"))
    assert np.isnan(out[0]).all() and np.isnan(out[1, 0]) and out[1, 1] == pytest.approx(0.75)


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda m: setattr(m, "encoding", "yuv422"), "has encoding 'yuv422' \\(accepted: rgb8"),
        (lambda m: setattr(m, "step", m.step - 1), "step 20 is smaller than width"),
        (lambda m: setattr(m, "step", m.step + 1), "data has 105 bytes but step \\* height"),
        (lambda m: setattr(m, "height", 6), "data has 105 bytes"),
        (lambda m: setattr(m, "data", bytes(m.data[:-1])), "data has 104 bytes"),
        (lambda m: setattr(m, "width", 0), "empty image"),
    ],
)
def test_malformed_images_are_rejected(mutate, message):
    m = numpy_to_image(RGB, "rgb8")
    mutate(m)
    with pytest.raises(ImageError, match=message):
        rgb_from_image(m)


def test_oversized_image_rejected():
    with pytest.raises(ImageError, match="max_image_pixels"):
        rgb_from_image(numpy_to_image(RGB, "rgb8"), max_pixels=34)


def test_colour_and_depth_encodings_are_not_mixed_up():
    with pytest.raises(ImageError, match="colour image has encoding '16UC1'"):
        rgb_from_image(numpy_to_image(np.zeros((2, 2), np.uint16), "16UC1"))
    with pytest.raises(ImageError, match="depth image has encoding 'rgb8'"):
        depth_from_image(numpy_to_image(RGB, "rgb8"))


def test_numpy_to_image_checks_shape():
    with pytest.raises(ImageError, match="does not fit"):
        numpy_to_image(RGB, "mono8")


def test_camera_info_round_trip_and_zeros_rejected():
    K = np.array([[570.3, 0, 320], [0, 570.3, 240], [0, 0, 1]])
    info = camera_info_from_intrinsics(K, 640, 480)
    assert np.allclose(intrinsics_from_camera_info(info), K)
    with pytest.raises(FrameError, match="camera_info: focal lengths must be positive"):
        intrinsics_from_camera_info(CameraInfo(width=640, height=480))
    with pytest.raises(FrameError, match="camera_info: image size must be positive"):
        intrinsics_from_camera_info(camera_info_from_intrinsics(K, 0, 0))


def test_pose_round_trip_and_rejection():
    from geometry_msgs.msg import Pose

    from langx_ros.core.synthetic import look_at
    from langx_ros.ros.convert import matrix_to_pose, pose_to_matrix

    for eye in ([2.0, 0.5, 1.0], [-1.0, -2.0, 0.3], [0.1, 0.0, -3.0]):
        T = look_at(np.array(eye), np.zeros(3))
        assert np.allclose(pose_to_matrix(matrix_to_pose(T)), T, atol=1e-9)
    bad = Pose()
    bad.orientation.w = 0.0  # all-zero quaternion
    with pytest.raises(ValueError, match="not a valid rigid transform"):
        pose_to_matrix(bad)
    scaled = Pose()
    scaled.orientation.w = 2.0
    with pytest.raises(ValueError, match="unit length"):
        pose_to_matrix(scaled)
    nan = Pose()
    nan.orientation.w = 1.0
    nan.position.x = float("nan")
    with pytest.raises(ValueError):
        pose_to_matrix(nan)


def test_cloud_round_trip_with_rgb_packing():
    from std_msgs.msg import Header

    from langx_ros.ros.convert import cloud_from_msg, cloud_to_msg

    pts = np.random.default_rng(1).normal(size=(50, 3)).astype(np.float32)
    cols = np.random.default_rng(2).integers(0, 256, (50, 3), dtype=np.uint8)
    rel = np.linspace(0, 1, 50, dtype=np.float32)
    msg = cloud_to_msg(pts, cols, rel, Header(frame_id="map"))
    assert msg.header.frame_id == "map" and msg.width == 50 and msg.point_step == 20
    assert [f.name for f in msg.fields] == ["x", "y", "z", "rgb", "relevancy"]
    back = cloud_from_msg(msg)
    assert np.array_equal(back["x"], pts[:, 0]) and np.array_equal(back["rgb"], cols) and np.array_equal(back["relevancy"], rel)
    empty = cloud_to_msg(np.zeros((0, 3)), np.zeros((0, 3)), None, Header(frame_id="map"))
    assert empty.width == 0 and len(empty.data) == 0
    nrm = np.random.default_rng(3).normal(size=(50, 3)).astype(np.float32)
    with_n = cloud_to_msg(pts, cols, rel, Header(frame_id="map"), nrm)
    assert [f.name for f in with_n.fields][5:] == ["normal_x", "normal_y", "normal_z"] and with_n.point_step == 32
    back = cloud_from_msg(with_n)
    assert np.array_equal(np.stack([back["normal_x"], back["normal_y"], back["normal_z"]], 1), nrm)
    assert np.array_equal(back["rgb"], cols) and np.array_equal(back["z"], pts[:, 2])


def test_markers_clear_then_oriented_box_and_label_above_it():
    from scipy.spatial.transform import Rotation
    from std_msgs.msg import Header
    from visualization_msgs.msg import Marker

    from langx_ros.core.boxes import OrientedBox
    from langx_ros.ros.convert import match_markers

    R = Rotation.from_euler("z", 30, degrees=True).as_matrix()
    obb = OrientedBox(np.array([1.0, 2, 0.5]), R, np.array([0.4, 0.3, 0.2]))
    arr = match_markers([("printer", obb, 0.91)], Header(frame_id="map"))
    assert [m.action for m in arr.markers] == [Marker.DELETEALL, Marker.ADD, Marker.ADD]
    box, text = arr.markers[1:]
    assert box.type == Marker.CUBE and box.scale.x == pytest.approx(0.4) and box.header.frame_id == "map"
    q = box.pose.orientation
    assert Rotation.from_quat([q.x, q.y, q.z, q.w]).as_matrix() == pytest.approx(R, abs=1e-9)
    assert text.text == "printer (0.91)" and text.pose.position.z == pytest.approx(0.5 + 0.1 + 0.1)


def test_stamps_from_seconds_round_to_the_nanosecond_and_carry_into_seconds():
    from langx_ros.ros.convert import stamp_from_seconds, stamp_seconds

    t = stamp_from_seconds(1795786445.123456789)
    assert t.sec == 1795786445 and abs(t.nanosec - 123456789) <= 256  # float64 resolution at this magnitude
    assert abs(stamp_seconds(t) - 1795786445.123456789) < 1e-6
    carried = stamp_from_seconds(41.9999999999)
    assert (carried.sec, carried.nanosec) == (42, 0)  # never nanosec = 1e9
