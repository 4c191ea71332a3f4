"""langx_node: the ROS 2 face of langx_ros.

Interfaces (names relative to the node, remap as usual):
  subscribes  image (sensor_msgs/Image: rgb8, bgr8, rgba8, bgra8, mono8; sensor-data QoS)
              camera_info (sensor_msgs/CameraInfo; sensor-data QoS)
              depth (sensor_msgs/Image: 16UC1 millimetres or 32FC1 metres; sensor-data QoS; optional)
              pose (geometry_msgs/PoseStamped: camera-to-world, OpenCV camera axes, in node.world_frame)
  services    ~/query (langx_interfaces/QueryObjects)
              ~/capture_keyframe, ~/clear_keyframes (std_srvs/Trigger)
  publishes   ~/status (langx_interfaces/NodeStatus; transient-local), /diagnostics

Depth and pose are matched to each image by timestamp (node.sync_tolerance), without
message_filters (not installable here). tf2 is used for poses only when node.use_tf is set and
tf2_ros can be imported (it cannot where ROS comes from PyPI).

Bad input never stops the node: it is rejected, counted on ~/status and /diagnostics, and
warned about at most once per `node.warn_throttle_seconds` for each kind of problem.
"""
from __future__ import annotations

import os
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import rclpy
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rcl_interfaces.msg import SetParametersResult
from rclpy.exceptions import ParameterException
from rclpy.executors import ExternalShutdownException
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from geometry_msgs.msg import PoseStamped
from sensor_msgs.msg import CameraInfo, Image
from std_srvs.srv import Trigger

from langx_interfaces.msg import NodeStatus
from langx_interfaces.srv import QueryObjects
from langx_ros.core.config import ConfigError
from langx_ros.core.device import resolve_device
from langx_ros.core.frames import Frame, FrameError, validate_pose
from langx_ros.core.keyframes import KeyframeStore, should_capture
from langx_ros.core.query import QueryRequestError, prepare_queries
from langx_ros.ros.convert import ImageError, depth_from_image, intrinsics_from_camera_info, pose_to_matrix, rgb_from_image
from langx_ros.ros.params import build_configs, declare_parameters, unknown_overrides
from langx_ros.ros.throttle import ThrottledWarnings

STATE_NAMES = {
    NodeStatus.STATE_WAITING_FOR_INPUT: "waiting_for_input",
    NodeStatus.STATE_CAPTURING: "capturing",
    NodeStatus.STATE_RECONSTRUCTING: "reconstructing",
    NodeStatus.STATE_READY: "ready",
    NodeStatus.STATE_ERROR: "error",
}

LATCHED = QoSProfile(
    depth=1,
    history=HistoryPolicy.KEEP_LAST,
    reliability=ReliabilityPolicy.RELIABLE,
    durability=DurabilityPolicy.TRANSIENT_LOCAL,
)


@dataclass
class CameraModel:
    """The last valid camera_info."""

    K: np.ndarray
    width: int
    height: int
    frame_id: str


@dataclass
class LatestImage:
    """The last accepted colour image, its camera and what matched it in time."""

    rgb: np.ndarray
    camera: CameraModel
    stamp: object  # builtin_interfaces/Time
    frame_id: str
    depth: np.ndarray | None = None  # (H, W) metres, NaN = none
    pose: np.ndarray | None = None  # 4x4 camera-to-world

    def to_frame(self) -> Frame:
        return Frame(f"{self.frame_id}@{_seconds(self.stamp):.3f}", self.rgb, self.camera.K, self.pose, self.depth, _seconds(self.stamp))


def _seconds(stamp) -> float:
    return float(stamp.sec) + 1e-9 * float(stamp.nanosec)


def _nearest(buffer: deque, t: float, tolerance: float):
    """The (stamp, value) of ``buffer`` closest to ``t`` within ``tolerance``, else None."""
    best = min(buffer, key=lambda e: abs(e[0] - t), default=None)
    return best if best is not None and abs(best[0] - t) <= tolerance else None


class LangxNode(Node):
    """Keeps camera input, answers ~/query, reports its state."""

    def __init__(self, node_name: str = "langx_node", **kwargs):
        super().__init__(node_name, **kwargs)
        self.cfg, self.node_cfg = build_configs(declare_parameters(self))
        self.device = resolve_device(self.cfg.device)
        self.add_on_set_parameters_callback(self._check_parameters)
        self.add_post_set_parameters_callback(self._apply_parameters)
        for name in unknown_overrides(self):
            self.get_logger().warning(f"parameter '{name}' is set but not used by langx_node (a typo?)")

        self._lock = threading.Lock()
        self._camera: CameraModel | None = None
        self._latest: LatestImage | None = None
        self._accepted = 0
        self._rejected = 0
        self._last_rejection = ""
        self._field = None  # the language field; built by the reconstruction (later issue)
        self._last_query_ms = -1.0
        self._last_recon_s = -1.0
        self._warnings = ThrottledWarnings(self.get_logger().warning, self.node_cfg.warn_throttle_seconds)
        self._depths: deque = deque(maxlen=30)  # (stamp s, depth array)
        self._poses: deque = deque(maxlen=200)  # (stamp s, 4x4)
        self._keyframes = KeyframeStore(self.cfg.keyframes.directory, self.cfg.keyframes.max_keyframes)
        for why in self._keyframes.skipped:
            self.get_logger().warning(f"keyframe folder not reloaded: {why}")
        if len(self._keyframes):
            self.get_logger().info(f"reloaded {len(self._keyframes)} keyframes from {self._keyframes.root}")
        self._tf = self._make_tf_buffer() if self.node_cfg.use_tf else None

        self.create_subscription(Image, "image", self._on_image, qos_profile_sensor_data)
        self.create_subscription(CameraInfo, "camera_info", self._on_camera_info, qos_profile_sensor_data)
        self.create_subscription(Image, "depth", self._on_depth, qos_profile_sensor_data)
        self.create_subscription(PoseStamped, "pose", self._on_pose, 50)
        self.create_service(QueryObjects, "~/query", self._on_query)
        self.create_service(Trigger, "~/capture_keyframe", self._on_capture)
        self.create_service(Trigger, "~/clear_keyframes", self._on_clear)
        self._status_pub = self.create_publisher(NodeStatus, "~/status", LATCHED)
        self._diag_pub = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        self._status_timer = self.create_timer(self.node_cfg.status_period, self._publish_status)
        self._diag_timer = self.create_timer(self.node_cfg.diagnostics_period, self._publish_diagnostics)
        self._publish_status()
        self.get_logger().info(
            f"langx_node up: device={self.device}, world_frame={self.node_cfg.world_frame}, "
            f"model_dir={self.model_dir} ({'present' if self.model_dir.is_dir() else 'missing'})"
        )

    # ---- parameters ---------------------------------------------------------------------------
    @property
    def model_dir(self) -> Path:
        return Path(os.path.expanduser(self.cfg.models.model_dir))

    def _current_values(self) -> dict:
        return {name: p.value for name, p in self._parameters.items()}

    def _check_parameters(self, params: list) -> SetParametersResult:
        values = self._current_values()
        values.update({p.name: p.value for p in params})
        try:
            build_configs(values)
        except ConfigError as exc:
            return SetParametersResult(successful=False, reason=str(exc))
        return SetParametersResult(successful=True)

    def _apply_parameters(self, params: list) -> None:
        self.cfg, self.node_cfg = build_configs(self._current_values())
        self._warnings = ThrottledWarnings(self.get_logger().warning, self.node_cfg.warn_throttle_seconds)

    def _make_tf_buffer(self):
        try:
            import tf2_ros  # noqa: F401  (optional: absent where ROS comes from PyPI)
        except ImportError:
            self.get_logger().warning("node.use_tf is set but tf2_ros cannot be imported: camera poses come from the 'pose' topic")
            return None
        import tf2_ros

        buf = tf2_ros.Buffer()
        self._tf_listener = tf2_ros.TransformListener(buf, self)
        return buf

    def _tf_pose(self, frame_id: str, stamp) -> np.ndarray | None:
        if self._tf is None:
            return None
        from rclpy.time import Time

        try:
            tr = self._tf.lookup_transform(self.node_cfg.world_frame, frame_id, Time.from_msg(stamp)).transform
        except Exception as exc:  # tf2 raises several exception types
            self._warnings.warn("tf", f"no transform {self.node_cfg.world_frame} <- {frame_id}: {exc}")
            return None
        from geometry_msgs.msg import Pose

        p = Pose()
        p.position.x, p.position.y, p.position.z = tr.translation.x, tr.translation.y, tr.translation.z
        p.orientation = tr.rotation
        return pose_to_matrix(p)

    # ---- inputs -------------------------------------------------------------------------------
    def _reject(self, source: str, reason: str) -> None:
        with self._lock:
            self._rejected += 1
            self._last_rejection = f"{source}: {reason}"
        self._warnings.warn(source, f"rejected: {reason}")

    def _on_camera_info(self, msg: CameraInfo) -> None:
        try:
            K = intrinsics_from_camera_info(msg)
        except FrameError as exc:
            self._reject("camera_info", str(exc))
            return
        with self._lock:
            first = self._camera is None
            self._camera = CameraModel(K, int(msg.width), int(msg.height), msg.header.frame_id)
        if first:
            self._publish_status()

    def _on_image(self, msg: Image) -> None:
        with self._lock:
            camera = self._camera
        try:
            if camera is None:
                raise ImageError("no valid camera_info received yet (is 'camera_info' published and remapped?)")
            rgb = rgb_from_image(msg, self.node_cfg.max_image_pixels)
            if (msg.width, msg.height) != (camera.width, camera.height):
                raise ImageError(
                    f"image is {msg.width}x{msg.height} but camera_info says {camera.width}x{camera.height}"
                )
        except (ImageError, FrameError) as exc:
            self._reject("image", str(exc))
            return
        t = _seconds(msg.header.stamp)
        tol = self.node_cfg.sync_tolerance
        with self._lock:
            d = _nearest(self._depths, t, tol)
            p = _nearest(self._poses, t, tol)
        depth = d[1] if d is not None and d[1].shape == rgb.shape[:2] else None
        if d is not None and depth is None:
            self._reject("depth", f"depth is {d[1].shape[1]}x{d[1].shape[0]} but the image is {rgb.shape[1]}x{rgb.shape[0]}")
        pose = p[1] if p is not None else self._tf_pose(msg.header.frame_id, msg.header.stamp)
        latest = LatestImage(rgb, camera, msg.header.stamp, msg.header.frame_id, depth, pose)
        with self._lock:
            first = self._latest is None
            self._latest = latest
            self._accepted += 1
        if first:
            self._publish_status()
        if self.cfg.keyframes.auto_capture and pose is not None and should_capture(self._keyframes.last_pose(), pose, self.cfg.keyframes):
            self._capture(latest)

    def _on_depth(self, msg: Image) -> None:
        try:
            depth = depth_from_image(msg, self.node_cfg.max_image_pixels)
        except ImageError as exc:
            self._reject("depth", str(exc))
            return
        with self._lock:
            self._depths.append((_seconds(msg.header.stamp), depth))

    def _on_pose(self, msg: PoseStamped) -> None:
        try:
            if msg.header.frame_id and msg.header.frame_id != self.node_cfg.world_frame:
                raise ValueError(f"pose is in frame '{msg.header.frame_id}' but node.world_frame is '{self.node_cfg.world_frame}'")
            T = validate_pose(pose_to_matrix(msg.pose))
        except (ValueError, FrameError) as exc:
            self._reject("pose", str(exc))
            return
        with self._lock:
            self._poses.append((_seconds(msg.header.stamp), T))

    # ---- keyframes ----------------------------------------------------------------------------
    def _capture(self, latest: LatestImage) -> str:
        """Store ``latest`` as a keyframe; returns its id (raises FrameError when unusable)."""
        if latest.pose is None:
            raise FrameError(
                f"no camera pose within {self.node_cfg.sync_tolerance:.3f} s of the latest image "
                "(publish geometry_msgs/PoseStamped on 'pose' with matching stamps)"
            )
        with self._lock:
            kid = self._keyframes.add(latest.to_frame(), source=latest.frame_id)
        self._publish_status()
        return kid

    def _on_capture(self, request: Trigger.Request, response: Trigger.Response) -> Trigger.Response:
        with self._lock:
            latest = self._latest
        if latest is None:
            response.success, response.message = False, "no valid image received yet"
            return response
        try:
            kid = self._capture(latest)
        except (FrameError, OSError) as exc:
            response.success, response.message = False, f"not captured: {exc}"
            return response
        response.success = True
        response.message = f"captured {kid} (depth: {'yes' if latest.depth is not None else 'no'}); {len(self._keyframes)} keyframes"
        return response

    def _on_clear(self, request: Trigger.Request, response: Trigger.Response) -> Trigger.Response:
        with self._lock:
            n = self._keyframes.clear()
        self._publish_status()
        response.success, response.message = True, f"removed {n} keyframes"
        return response

    # ---- queries ------------------------------------------------------------------------------
    def _on_query(self, request: QueryObjects.Request, response: QueryObjects.Response) -> QueryObjects.Response:
        t0 = time.perf_counter()
        response.provenance = self._provenance()
        try:
            prepare_queries(list(request.queries), float(request.threshold), self.cfg.query)
            # This build has no reconstruction yet, so there is never a field to answer from.
            raise QueryRequestError(
                "no field yet: capture at least 2 keyframes and run the ~/reconstruct action first "
                f"({self._accepted} images received so far)"
            )
        except QueryRequestError as exc:
            response.success = False
            response.message = str(exc)
        response.latency_ms = (time.perf_counter() - t0) * 1000.0
        self._last_query_ms = response.latency_ms
        return response

    # ---- state reporting ----------------------------------------------------------------------
    def _provenance(self) -> str:
        if self._field is None:
            return f"no field; models are loaded at the first reconstruction from {self.model_dir}"
        return str(getattr(self._field, "provenance", "unknown"))

    def _state(self) -> int:
        if self._field is not None:
            return NodeStatus.STATE_READY
        if self._latest is None:
            return NodeStatus.STATE_WAITING_FOR_INPUT
        return NodeStatus.STATE_CAPTURING

    def _publish_status(self) -> None:
        msg = NodeStatus()
        msg.header.stamp = self.get_clock().now().to_msg()
        msg.header.frame_id = self.node_cfg.world_frame
        with self._lock:
            msg.state = self._state()
            msg.images_accepted = self._accepted
            msg.images_rejected = self._rejected
            msg.last_rejection = self._last_rejection
        msg.state_name = STATE_NAMES[msg.state]
        msg.num_keyframes = len(self._keyframes)
        msg.field_ready = self._field is not None
        msg.device = str(self.device)
        msg.provenance = self._provenance()
        msg.last_reconstruction_seconds = float(self._last_recon_s)
        msg.last_query_latency_ms = float(self._last_query_ms)
        if msg.state == NodeStatus.STATE_WAITING_FOR_INPUT:
            msg.message = "waiting for camera_info and image" if self._camera is None else "waiting for image"
        self._status_pub.publish(msg)

    def _publish_diagnostics(self) -> None:
        with self._lock:
            state, accepted, rejected, last = self._state(), self._accepted, self._rejected, self._last_rejection
            camera = self._camera
        st = DiagnosticStatus()
        st.name = f"{self.get_name()}: language field"
        st.hardware_id = str(self.device)
        if state == NodeStatus.STATE_ERROR:
            st.level, st.message = DiagnosticStatus.ERROR, "last reconstruction failed"
        elif state == NodeStatus.STATE_WAITING_FOR_INPUT:
            st.level, st.message = DiagnosticStatus.WARN, "no valid camera input yet"
        elif rejected and last:
            st.level, st.message = DiagnosticStatus.WARN, f"{STATE_NAMES[state]}; rejected inputs: {last}"
        else:
            st.level, st.message = DiagnosticStatus.OK, STATE_NAMES[state]
        pairs = {
            "state": STATE_NAMES[state],
            "device": str(self.device),
            "model_dir": f"{self.model_dir} ({'present' if self.model_dir.is_dir() else 'missing'})",
            "models": self._provenance(),
            "camera_info": "none" if camera is None else f"{camera.width}x{camera.height} fx={camera.K[0, 0]:.1f}",
            "images_accepted": str(accepted),
            "images_rejected": str(rejected),
            "last_rejection": last,
            "keyframes": f"{len(self._keyframes)} in {self._keyframes.root}",
            "field": "none" if self._field is None else "ready",
            "last_reconstruction_s": f"{self._last_recon_s:.2f}" if self._last_recon_s >= 0 else "never",
            "last_query_latency_ms": f"{self._last_query_ms:.2f}" if self._last_query_ms >= 0 else "never",
        }
        st.values = [KeyValue(key=k, value=v) for k, v in pairs.items()]
        arr = DiagnosticArray()
        arr.header.stamp = self.get_clock().now().to_msg()
        arr.status = [st]
        self._diag_pub.publish(arr)


def main(args: list[str] | None = None) -> int:
    """Console entry point: ``langx_node --ros-args --params-file config/langx.yaml``."""
    rclpy.init(args=args)
    try:
        node = LangxNode()
    except (ConfigError, ParameterException, ValueError) as exc:
        print(f"langx_node: cannot start: {exc}", file=sys.stderr)
        rclpy.try_shutdown()
        return 2
    try:
        rclpy.spin(node)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        node.destroy_node()
        rclpy.try_shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
