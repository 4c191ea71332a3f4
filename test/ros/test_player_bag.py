"""langx-play reading a ROS 2 bag (written here with the `rosbags` package, no ROS needed)."""
from __future__ import annotations

import numpy as np
import pytest

from langx_ros.core.synthetic import make_scene
from langx_ros.ros.convert import matrix_to_pose

rosbags = pytest.importorskip("rosbags")


def _write_bag(path, frames):
    from rosbags.rosbag2 import Writer
    from rosbags.typesys import Stores, get_typestore

    ts = get_typestore(Stores.ROS2_JAZZY)
    T = ts.types
    Time, Header = T["builtin_interfaces/msg/Time"], T["std_msgs/msg/Header"]
    Image, Info = T["sensor_msgs/msg/Image"], T["sensor_msgs/msg/CameraInfo"]
    PoseStamped, Pose = T["geometry_msgs/msg/PoseStamped"], T["geometry_msgs/msg/Pose"]
    Point, Quat = T["geometry_msgs/msg/Point"], T["geometry_msgs/msg/Quaternion"]
    ROI = T["sensor_msgs/msg/RegionOfInterest"]
    with Writer(path, version=9) as w:
        conns = {name: w.add_connection(topic, typ.__msgtype__, typestore=ts) for name, topic, typ in (
            ("img", "/cam/color", Image), ("depth", "/cam/depth", Image), ("info", "/cam/info", Info), ("pose", "/cam/pose", PoseStamped))}
        for i, f in enumerate(frames):
            ns = (i + 1) * 100_000_000
            h = Header(stamp=Time(sec=ns // 10**9, nanosec=ns % 10**9), frame_id="cam")
            img = Image(header=h, height=f.height, width=f.width, encoding="bgr8", is_bigendian=0, step=f.width * 3,
                        data=np.ascontiguousarray(f.rgb[:, :, ::-1]).reshape(-1))
            mm = np.where(np.isfinite(f.depth), np.round(f.depth * 1000), 0).astype("<u2")
            dep = Image(header=h, height=f.height, width=f.width, encoding="16UC1", is_bigendian=0, step=f.width * 2,
                        data=mm.view(np.uint8).reshape(-1))
            info = Info(header=h, height=f.height, width=f.width, distortion_model="plumb_bob", d=np.zeros(5), k=f.K.reshape(-1),
                        r=np.eye(3).reshape(-1), p=np.hstack([f.K, np.zeros((3, 1))]).reshape(-1), binning_x=0, binning_y=0,
                        roi=ROI(x_offset=0, y_offset=0, height=0, width=0, do_rectify=False))
            p = matrix_to_pose(f.pose)
            pose = PoseStamped(header=Header(stamp=h.stamp, frame_id="map"), pose=Pose(
                position=Point(x=p.position.x, y=p.position.y, z=p.position.z),
                orientation=Quat(x=p.orientation.x, y=p.orientation.y, z=p.orientation.z, w=p.orientation.w)))
            for name, msg in (("info", info), ("pose", pose), ("depth", dep), ("img", img)):
                w.write(conns[name], ns, ts.serialize_cdr(msg, msg.__msgtype__))


def test_bag_frames_round_trip(tmp_path):
    from langx_ros.ros.player import bag_frames

    scene = make_scene(3, 32, 24)
    bag = tmp_path / "bag"
    _write_bag(bag, scene.frames)
    got = list(bag_frames(bag, "/cam/color", "/cam/depth", "/cam/info", "/cam/pose"))
    assert len(got) == 3
    for g, f in zip(got, scene.frames):
        assert np.array_equal(g.rgb, f.rgb)  # bgr8 converted back to RGB
        assert np.allclose(g.K, f.K) and np.allclose(g.pose, f.pose, atol=1e-9)
        both = np.isfinite(f.depth)
        assert np.array_equal(np.isfinite(g.depth), both) and np.allclose(g.depth[both], f.depth[both], atol=6e-4)


def test_bag_without_the_image_topic(tmp_path):
    from langx_ros.ros.player import bag_frames

    bag = tmp_path / "bag"
    _write_bag(bag, make_scene(1, 16, 12).frames)
    with pytest.raises(SystemExit, match="no messages on /nope"):
        list(bag_frames(bag, "/nope", "/cam/depth", "/cam/info", "/cam/pose"))
