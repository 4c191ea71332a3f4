"""langx_node: the ROS 2 face of langx_ros.

Interfaces (names relative to the node, remap as usual):
  subscribes  image (sensor_msgs/Image: rgb8, bgr8, rgba8, bgra8, mono8; sensor-data QoS)
              camera_info (sensor_msgs/CameraInfo; sensor-data QoS)
  services    ~/query (langx_interfaces/QueryObjects)
  publishes   ~/status (langx_interfaces/NodeStatus; transient-local), /diagnostics

Bad input never stops the node: it is rejected, counted on ~/status and /diagnostics, and
warned about at most once per `node.warn_throttle_seconds` for each kind of problem.
"""
from __future__ import annotations

import os
import sys
import threading
import time
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
from sensor_msgs.msg import CameraInfo, Image

from langx_interfaces.msg import NodeStatus
from langx_interfaces.srv import QueryObjects
from langx_ros.core.config import ConfigError
from langx_ros.core.device import resolve_device
from langx_ros.core.frames import FrameError
from langx_ros.core.query import QueryRequestError, prepare_queries
from langx_ros.ros.convert import ImageError, intrinsics_from_camera_info, rgb_from_image
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
    """The last accepted colour image and its camera."""

    rgb: np.ndarray
    camera: CameraModel
    stamp: object  # builtin_interfaces/Time
    frame_id: str


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

        self.create_subscription(Image, "image", self._on_image, qos_profile_sensor_data)
        self.create_subscription(CameraInfo, "camera_info", self._on_camera_info, qos_profile_sensor_data)
        self.create_service(QueryObjects, "~/query", self._on_query)
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
        with self._lock:
            first = self._latest is None
            self._latest = LatestImage(rgb, camera, msg.header.stamp, msg.header.frame_id)
            self._accepted += 1
        if first:
            self._publish_status()

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
        msg.num_keyframes = 0
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
            "keyframes": "0",
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
