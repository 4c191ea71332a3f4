"""langx-play: publish posed RGB-D frames as a camera would (image, camera_info, depth, pose,
and instance ids for generated scenes), all stamped alike.

    langx-play --folder ../shared/data/rgbd-3dmatch-seq01 [--rate 2] [--loop]
    langx-play --synthetic 8 [--width 320 --height 240]
    langx-play --bag path/to/bag --image-topic /cam/color --depth-topic /cam/depth ...   (see --help)

Topics (under --prefix, default /camera): image (rgb8), camera_info, depth (16UC1 mm),
pose (geometry_msgs/PoseStamped in --world-frame), instances (16UC1, generated scenes only).
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Iterable

import numpy as np
from geometry_msgs.msg import PoseStamped
from rclpy.node import Node
from rclpy.qos import qos_profile_sensor_data
from sensor_msgs.msg import CameraInfo, Image

from langx_ros.core.frames import Frame, depth_to_mm
from langx_ros.ros.convert import camera_info_from_intrinsics, matrix_to_pose, numpy_to_image, stamp_from_seconds, stamp_seconds


class FramePublisher:
    """Publishes Frames on image / camera_info / depth / pose under ``prefix``, and on instances
    when ``instances`` is set (generated scenes). The node waits at capture for a companion topic
    that has a publisher, so a camera without instance ids must not advertise them."""

    def __init__(self, node: Node, prefix: str = "/camera", world_frame: str = "map", camera_frame: str = "camera_optical_frame",
                 instances: bool = False):
        p = prefix.rstrip("/")
        self.node = node
        self.world_frame = world_frame
        self.camera_frame = camera_frame
        self.image = node.create_publisher(Image, f"{p}/image", qos_profile_sensor_data)
        self.info = node.create_publisher(CameraInfo, f"{p}/camera_info", qos_profile_sensor_data)
        self.depth = node.create_publisher(Image, f"{p}/depth", qos_profile_sensor_data)
        self.instances = node.create_publisher(Image, f"{p}/instances", qos_profile_sensor_data) if instances else None
        self.pose = node.create_publisher(PoseStamped, f"{p}/pose", 50)

    def connected(self) -> bool:
        return self.image.get_subscription_count() > 0

    def publish(self, f: Frame, stamp_s: float | None = None) -> float:
        """Publish ``f`` stamped ``stamp_s`` (seconds; default now); returns the stamp in seconds."""
        stamp = self.node.get_clock().now().to_msg() if stamp_s is None else stamp_from_seconds(stamp_s)
        msgs = []
        info = camera_info_from_intrinsics(f.K, f.width, f.height)
        msgs.append((self.info, info))
        if f.pose is not None:
            ps = PoseStamped()
            ps.header.frame_id = self.world_frame
            ps.pose = matrix_to_pose(f.pose)
            self.pose.publish(self._stamped(ps, stamp, self.world_frame))
        if f.depth is not None:
            msgs.append((self.depth, numpy_to_image(depth_to_mm(f.depth), "16UC1")))
        if f.instances is not None and self.instances is not None:
            ids = np.where(f.instances < 0, 65535, np.clip(f.instances, 0, 65534)).astype(np.uint16)
            msgs.append((self.instances, numpy_to_image(ids, "16UC1")))
        for pub, m in msgs:
            pub.publish(self._stamped(m, stamp, self.camera_frame))
        # the image last: the node matches depth/pose/instances already received to it
        self.image.publish(self._stamped(numpy_to_image(f.rgb, "rgb8"), stamp, self.camera_frame))
        return stamp_seconds(stamp)

    @staticmethod
    def _stamped(msg, stamp, frame_id):
        msg.header.stamp = stamp
        msg.header.frame_id = frame_id
        return msg


def folder_frames(folder: Path) -> Iterable[Frame]:
    from langx_ros.core.frames import list_rgbd_folder, load_rgbd_frame

    for fid in list_rgbd_folder(folder):
        yield load_rgbd_frame(folder, fid)


def bag_frames(bag: Path, image_topic: str, depth_topic: str, info_topic: str, pose_topic: str) -> Iterable[Frame]:
    """Frames from a ROS 2 bag (sqlite3 or MCAP) via the `rosbags` package; depth and pose are
    matched to each image by the nearest stamp."""
    try:
        from rosbags.highlevel import AnyReader
    except ImportError as exc:
        raise SystemExit("reading bags needs the 'rosbags' package: pip install rosbags") from exc
    from langx_ros.core.frames import validate_intrinsics

    with AnyReader([bag]) as reader:
        by_topic: dict[str, list] = {image_topic: [], depth_topic: [], info_topic: [], pose_topic: []}
        conns = [c for c in reader.connections if c.topic in by_topic]
        for conn, t, raw in reader.messages(connections=conns):
            by_topic[conn.topic].append((t * 1e-9, reader.deserialize(raw, conn.msgtype)))
    if not by_topic[image_topic] or not by_topic[info_topic]:
        raise SystemExit(f"{bag}: no messages on {image_topic} or {info_topic}")
    info = by_topic[info_topic][0][1]
    K = validate_intrinsics(np.asarray(info.k, dtype=np.float64).reshape(3, 3), info.width, info.height)

    def nearest(topic, t):
        items = by_topic[topic]
        return min(items, key=lambda e: abs(e[0] - t))[1] if items else None

    for i, (t, img) in enumerate(by_topic[image_topic]):
        rgb = np.frombuffer(img.data, np.uint8).reshape(img.height, img.step)[:, : img.width * 3].reshape(img.height, img.width, 3)
        if img.encoding == "bgr8":
            rgb = rgb[:, :, ::-1]
        d = nearest(depth_topic, t)
        depth = None
        if d is not None:
            raw = np.frombuffer(d.data, np.uint16 if d.encoding in ("16UC1", "mono16") else np.float32)
            depth = raw.reshape(d.height, d.width).astype(np.float32) * (0.001 if d.encoding in ("16UC1", "mono16") else 1.0)
            depth[~np.isfinite(depth) | (depth <= 0)] = np.nan
        p = nearest(pose_topic, t)
        pose = None
        if p is not None:
            from langx_ros.ros.convert import pose_to_matrix

            pose = pose_to_matrix(p.pose)
        yield Frame(f"bag-{i:06d}", np.ascontiguousarray(rgb), K, pose, depth, t)


def synthetic_frames(n: int, width: int, height: int) -> tuple[list[Frame], list[str]]:
    from langx_ros.core.synthetic import make_scene

    scene = make_scene(n, width, height)
    return scene.frames, scene.labels


def main(argv: list[str] | None = None) -> int:
    import rclpy

    ap = argparse.ArgumentParser(prog="langx-play", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--folder", type=Path, help="posed RGB-D frames (3DMatch layout)")
    src.add_argument("--synthetic", type=int, metavar="N", help="N views of a generated scene")
    src.add_argument("--bag", type=Path, help="ROS 2 bag folder or MCAP file")
    ap.add_argument("--image-topic", default="/camera/color/image_raw")
    ap.add_argument("--depth-topic", default="/camera/depth/image_raw")
    ap.add_argument("--info-topic", default="/camera/color/camera_info")
    ap.add_argument("--pose-topic", default="/camera/pose")
    ap.add_argument("--width", type=int, default=320)
    ap.add_argument("--height", type=int, default=240)
    ap.add_argument("--rate", type=float, default=2.0, help="frames per second")
    ap.add_argument("--loop", action="store_true")
    ap.add_argument("--prefix", default="/camera")
    ap.add_argument("--world-frame", default="map")
    a, ros_args = ap.parse_known_args(argv)
    if a.synthetic:
        frames, labels = synthetic_frames(a.synthetic, a.width, a.height)
        print(f"generated scene, labels by instance id: {labels}", flush=True)
    elif a.folder:
        frames = list(folder_frames(a.folder))
    else:
        frames = list(bag_frames(a.bag, a.image_topic, a.depth_topic, a.info_topic, a.pose_topic))
    rclpy.init(args=ros_args)
    node = rclpy.create_node("langx_play")
    pub = FramePublisher(node, a.prefix, a.world_frame, instances=bool(a.synthetic))
    try:
        while True:
            for f in frames:
                pub.publish(f)
                print(f"published {f.frame_id}", flush=True)
                rclpy.spin_once(node, timeout_sec=0.0)
                time.sleep(1.0 / a.rate)
            if not a.loop:
                break
    except KeyboardInterrupt:
        pass
    finally:
        node.destroy_node()
        rclpy.try_shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
