"""Camera input of langx_node: image, camera_info, depth, pose and instance ids.

Each message is checked on arrival (bad input is rejected, counted per topic and warned about,
never raised); depth, pose and instance ids are matched to an image by stamp when asked for
(node.sync_tolerance), without message_filters (not installable here). Receive rates and frames
lost before the node are tracked per topic (rates.py).
"""
from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Callable

import numpy as np
from geometry_msgs.msg import PoseStamped
from rclpy.node import Node
from rclpy.qos import qos_profile_sensor_data
from sensor_msgs.msg import CameraInfo, Image

from langx_ros.core.frames import Frame, FrameError, validate_pose
from langx_ros.ros.convert import (
    ImageError,
    depth_from_image,
    image_to_numpy,
    intrinsics_from_camera_info,
    pose_to_matrix,
    rgb_from_image,
    stamp_seconds,
)
from langx_ros.ros.params import NodeConfig
from langx_ros.ros.rates import InputRate

COMPANIONS = ("depth", "pose", "instances")  # topics matched to each image by stamp (LatestImage fields)


@dataclass
class CameraModel:
    """The last valid camera_info."""

    K: np.ndarray
    width: int
    height: int
    frame_id: str


@dataclass
class LatestImage:
    """An accepted colour image, its camera and what matched it in time."""

    rgb: np.ndarray
    camera: CameraModel
    stamp: object  # builtin_interfaces/Time
    frame_id: str
    depth: np.ndarray | None = None  # (H, W) metres, NaN = none
    pose: np.ndarray | None = None  # 4x4 camera-to-world
    instances: np.ndarray | None = None  # (H, W) int64 ids (generated scenes only)

    def to_frame(self) -> Frame:
        return Frame(f"{self.frame_id}@{stamp_seconds(self.stamp):.3f}", self.rgb, self.camera.K, self.pose, self.depth,
                     stamp_seconds(self.stamp), self.instances)


def _nearest(buffer: deque, t: float, tolerance: float):
    """The (stamp, value) of ``buffer`` closest to ``t`` within ``tolerance``, else None."""
    best = min(buffer, key=lambda e: abs(e[0] - t), default=None)
    return best if best is not None and abs(best[0] - t) <= tolerance else None


class CameraInputs:
    """Subscribes ``node`` to the camera topics and keeps what arrived.

    ``cfg()`` gives the current node settings; ``tf_pose(frame_id, stamp)`` a pose from tf2 (or
    None); ``warn(kind, text)`` a throttled warning; ``on_first()`` runs when the first valid
    camera_info or image arrives; ``on_new()`` after each accepted image or pose (auto capture).
    """

    def __init__(self, node: Node, cfg: Callable[[], NodeConfig], tf_pose: Callable[[str, object], np.ndarray | None],
                 warn: Callable[[str, str], None], on_first: Callable[[], None], on_new: Callable[[], None]):
        self._cfg, self._tf_pose, self._warn, self._on_first, self._on_new = cfg, tf_pose, warn, on_first, on_new
        self.lock = threading.Lock()
        self.camera: CameraModel | None = None
        self.latest: LatestImage | None = None
        self.accepted = 0
        self.rejected = 0
        self.rejected_by: dict[str, int] = {}  # topic -> inputs refused by the node's own checks
        self.last_rejection = ""
        self.rates = {t: InputRate(cfg().camera_rate if t in ("image", "depth") else 0.0) for t in ("image", "depth", "pose")}
        self._depths: deque = deque(maxlen=30)  # (stamp s, depth array)
        self._poses: deque = deque(maxlen=200)  # (stamp s, 4x4)
        self._instances: deque = deque(maxlen=30)  # (stamp s, ids)
        self._images: deque = deque(maxlen=10)  # recent accepted images, matched on demand
        node.create_subscription(Image, "image", self._on_image, qos_profile_sensor_data)
        node.create_subscription(CameraInfo, "camera_info", self._on_camera_info, qos_profile_sensor_data)
        self._companions = {
            "depth": node.create_subscription(Image, "depth", self._on_depth, qos_profile_sensor_data),
            "pose": node.create_subscription(PoseStamped, "pose", self._on_pose, 50),
            "instances": node.create_subscription(Image, "instances", self._on_instances, qos_profile_sensor_data),
        }

    # ---- arrival ------------------------------------------------------------------------------
    def _arrived(self, topic: str, stamp) -> None:
        with self.lock:
            self.rates[topic].add(stamp_seconds(stamp), time.monotonic())

    def _reject(self, source: str, reason: str) -> None:
        with self.lock:
            self.rejected_by[source] = self.rejected_by.get(source, 0) + 1
            self.rejected += 1
            self.last_rejection = f"{source}: {reason}"
        self._warn(source, f"rejected: {reason}")

    def _on_camera_info(self, msg: CameraInfo) -> None:
        try:
            K = intrinsics_from_camera_info(msg)
        except FrameError as exc:
            self._reject("camera_info", str(exc))
            return
        with self.lock:
            first = self.camera is None
            self.camera = CameraModel(K, int(msg.width), int(msg.height), msg.header.frame_id)
        if first:
            self._on_first()

    def _on_image(self, msg: Image) -> None:
        self._arrived("image", msg.header.stamp)
        with self.lock:
            camera = self.camera
        try:
            if camera is None:
                raise ImageError("no valid camera_info received yet (is 'camera_info' published and remapped?)")
            rgb = rgb_from_image(msg, self._cfg().max_image_pixels)
            if (msg.width, msg.height) != (camera.width, camera.height):
                raise ImageError(f"image is {msg.width}x{msg.height} but camera_info says {camera.width}x{camera.height}")
        except (ImageError, FrameError) as exc:
            self._reject("image", str(exc))
            return
        latest = LatestImage(rgb, camera, msg.header.stamp, msg.header.frame_id)
        with self.lock:
            first = self.latest is None
            self.latest = latest
            self._images.append(latest)
            self.accepted += 1
        if first:
            self._on_first()
        self._on_new()

    def _on_depth(self, msg: Image) -> None:
        self._arrived("depth", msg.header.stamp)
        try:
            depth = depth_from_image(msg, self._cfg().max_image_pixels)
            camera = self.camera
            if camera is not None and depth.shape != (camera.height, camera.width):
                raise ImageError(f"depth is {depth.shape[1]}x{depth.shape[0]} but camera_info says {camera.width}x{camera.height} "
                                 "(register depth to the colour camera)")
        except ImageError as exc:
            self._reject("depth", str(exc))
            return
        with self.lock:
            self._depths.append((stamp_seconds(msg.header.stamp), depth))

    def _on_instances(self, msg: Image) -> None:
        try:
            if msg.encoding not in ("16UC1", "mono16"):
                raise ImageError(f"instance ids must be 16UC1/mono16, got '{msg.encoding}'")
            raw = image_to_numpy(msg, self._cfg().max_image_pixels)
        except ImageError as exc:
            self._reject("instances", str(exc))
            return
        ids = raw.astype(np.int64)
        ids[raw == 65535] = -1
        with self.lock:
            self._instances.append((stamp_seconds(msg.header.stamp), ids))

    def _on_pose(self, msg: PoseStamped) -> None:
        self._arrived("pose", msg.header.stamp)
        world = self._cfg().world_frame
        try:
            if msg.header.frame_id and msg.header.frame_id != world:
                raise ValueError(f"pose is in frame '{msg.header.frame_id}' but node.world_frame is '{world}'")
            T = validate_pose(pose_to_matrix(msg.pose))
        except (ValueError, FrameError) as exc:
            self._reject("pose", str(exc))
            return
        with self.lock:
            self._poses.append((stamp_seconds(msg.header.stamp), T))
        self._on_new()

    # ---- matching -----------------------------------------------------------------------------
    def matched(self, img: LatestImage) -> LatestImage:
        """``img`` with the depth, pose and instance ids whose stamps are nearest (within
        node.sync_tolerance), looked up now: arrival order of the topics does not matter."""
        t = stamp_seconds(img.stamp)
        tol = self._cfg().sync_tolerance
        with self.lock:
            d = _nearest(self._depths, t, tol)
            p = _nearest(self._poses, t, tol)
            ins = _nearest(self._instances, t, tol)
        shape = img.rgb.shape[:2]
        depth = d[1] if d is not None and d[1].shape == shape else None  # other sizes were rejected on arrival
        instances = ins[1] if ins is not None and ins[1].shape == shape else None
        pose = p[1] if p is not None else self._tf_pose(img.frame_id, img.stamp)
        return LatestImage(img.rgb, img.camera, img.stamp, img.frame_id, depth, pose, instances)

    def newest(self) -> LatestImage | None:
        with self.lock:
            return self._images[-1] if self._images else None

    def newest_matched(self, accept: Callable[[LatestImage], bool]) -> LatestImage | None:
        """The newest recent image that ``accept``s once matched, or None."""
        with self.lock:
            recent = list(self._images)
        for img in reversed(recent):
            m = self.matched(img)
            if accept(m):
                return m
        return None

    def latest_matched(self) -> LatestImage | None:
        """The newest recent image that has a camera pose (else the newest image), matched."""
        return self.newest_matched(lambda m: m.pose is not None) or self.newest_matched(lambda m: True)

    def missing(self, m: LatestImage) -> list[str]:
        """Companion topics that are in use (they have published before, or a publisher is
        connected now) but have no message matching ``m``."""
        with self.lock:
            seen = {"depth": bool(self._depths), "pose": bool(self._poses), "instances": bool(self._instances)}
        return [k for k, sub in self._companions.items() if getattr(m, k) is None and (seen[k] or sub.get_publisher_count() > 0)]

    def image_rate(self) -> tuple[float, float, int, bool]:
        """(images received per s, the camera's rate, images estimated lost, input behind)."""
        now = time.monotonic()
        with self.lock:
            r = self.rates["image"]
            return float(r.rate_hz(now)), float(r.camera_hz()), int(r.lost), bool(r.behind(now))

    def rate_summaries(self) -> tuple[dict[str, str], list[str]]:
        """Per topic the rate line for /diagnostics, and the topics whose input falls behind."""
        now = time.monotonic()
        with self.lock:
            return {t: r.summary(now) for t, r in self.rates.items()}, [t for t, r in self.rates.items() if r.behind(now)]
