"""langx_node: the ROS 2 face of langx_ros.

Interfaces (names relative to the node, remap as usual):
  subscribes  image (sensor_msgs/Image: rgb8, bgr8, rgba8, bgra8, mono8; sensor-data QoS)
              camera_info (sensor_msgs/CameraInfo; sensor-data QoS)
              depth (sensor_msgs/Image: 16UC1 millimetres or 32FC1 metres; sensor-data QoS; optional)
              pose (geometry_msgs/PoseStamped: camera-to-world, OpenCV camera axes, in node.world_frame)
              instances (sensor_msgs/Image 16UC1/mono16 instance ids, 65535 = none; generated scenes only,
                  for semantics.source = oracle)
              ~/query_text (std_msgs/String: runs a query, answers on the ~/query/* topics)
  services    ~/query (langx_interfaces/QueryObjects)
              ~/capture_keyframe, ~/clear_keyframes (std_srvs/Trigger)
              ~/save_field, ~/load_field (langx_interfaces/FieldFile; names inside node.field_directory)
  actions     ~/reconstruct (langx_interfaces/Reconstruct; feedback per stage, cancellable)
  publishes   ~/status (langx_interfaces/NodeStatus; transient-local), /diagnostics
              ~/field/cloud (PointCloud2 of the field; transient-local)
              ~/query/cloud, ~/query/markers (MarkerArray), ~/query/mask (mono8), ~/query/relevancy (rgb8)

Depth and pose are matched to each image by timestamp (node.sync_tolerance), without
message_filters (not installable here). tf2 is used for poses only when node.use_tf is set and
tf2_ros can be imported (it cannot where ROS comes from PyPI).

Requests are never dropped silently: services take requests off a middleware queue of
node.service_queue_depth; ~/query hands them to bounded workers (query_server.py) and every
request is served or refused with a reason (busy, waited too long).

Bad input never stops the node: it is rejected, counted on ~/status and /diagnostics, and
warned about at most once per `node.warn_throttle_seconds` for each kind of problem.

The node class only wires its parts, one job each: camera input and matching (inputs.py),
keyframe capture (capture.py), the reconstruction action (reconstruct_action.py), queries
(query_server.py), saved fields (field_store.py), status and diagnostics (status.py); they share
the field, the progress and the keyframe store through one NodeState (state.py).
"""
from __future__ import annotations

import os
import sys
import threading
import time
from pathlib import Path

import numpy as np
import rclpy
from rcl_interfaces.msg import SetParametersResult
from rclpy.callback_groups import ReentrantCallbackGroup
from rclpy.exceptions import ParameterException
from rclpy._rclpy_pybind11 import RCLError
from rclpy.context import Context
from rclpy.executors import Executor, ExternalShutdownException, MultiThreadedExecutor
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import PointCloud2
from std_msgs.msg import Header

from langx_ros.core.config import ConfigError
from langx_ros.core.device import resolve_device
from langx_ros.core.engine import Camera, Engine
from langx_ros.core.keyframes import KeyframeStore
from langx_ros.core.models import inventory
from langx_ros.core.query import QueryRequestError
from langx_ros.ros.capture import KeyframeCapture
from langx_ros.ros.convert import cloud_to_msg, pose_to_matrix, stamp_from_seconds
from langx_ros.ros.field_store import FieldStore
from langx_ros.ros.inputs import CameraInputs
from langx_ros.ros.params import build_configs, declare_parameters, unknown_overrides
from langx_ros.ros.query_server import QueryServer
from langx_ros.ros.reconstruct_action import ReconstructAction
from langx_ros.ros.state import NodeState
from langx_ros.ros.status import NodeFacts, StatusReporter
from langx_ros.ros.throttle import ThrottledWarnings

LATCHED = QoSProfile(
    depth=1,
    history=HistoryPolicy.KEEP_LAST,
    reliability=ReliabilityPolicy.RELIABLE,
    durability=DurabilityPolicy.TRANSIENT_LOCAL,
)


class LangxNode(Node):
    """Wires the parts of langx_node (see the module's doc) and keeps its parameters."""

    def __init__(self, node_name: str = "langx_node", **kwargs):
        super().__init__(node_name, **kwargs)
        self.cfg, self.node_cfg = build_configs(declare_parameters(self))
        self._weights = inventory(self.cfg)  # refreshed when parameters change and after each reconstruction
        self.device = resolve_device(self.cfg.device)
        self.add_on_set_parameters_callback(self._check_parameters)
        self.add_post_set_parameters_callback(self._apply_parameters)
        log = self.get_logger()
        for name in unknown_overrides(self):
            log.warning(f"parameter '{name}' is set but not used by langx_node (a typo?)")
        nc = self.node_cfg
        if nc.mask_queue_limit > nc.executor_threads - 4:
            log.warning(f"node.mask_queue_limit ({nc.mask_queue_limit}) leaves fewer than 4 of node.executor_threads "
                        f"({nc.executor_threads}) free: during a burst of mask queries cheap ones wait for a thread")
        self._warnings = ThrottledWarnings(log.warning, nc.warn_throttle_seconds)
        keyframes = KeyframeStore(self.cfg.keyframes.directory, self.cfg.keyframes.max_keyframes)
        for what in keyframes.recovered:
            log.warning(f"keyframes at start: {what}")
        for why in keyframes.skipped:
            log.warning(f"keyframe folder not reloaded: {why}")
        if len(keyframes):
            log.info(f"reloaded {len(keyframes)} keyframes from {keyframes.root}")
        self.state = NodeState(keyframes)
        self._tf = self._make_tf_buffer() if nc.use_tf else None
        self.engine = Engine(self.cfg, self.device)
        self._models_state = "loaded at first use"
        if nc.load_models == "start":
            self._preload()
        elif nc.load_models == "background":
            self._models_state = "loading in the background"
            threading.Thread(target=self._preload, name="langx-preload", daemon=True).start()

        group = ReentrantCallbackGroup()
        # requests wait in the middleware up to this depth before the executor takes them (default 10 loses bursts)
        srv_qos = QoSProfile(depth=nc.service_queue_depth, history=HistoryPolicy.KEEP_LAST,
                             reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.VOLATILE)
        self._field_pub = self.create_publisher(PointCloud2, "~/field/cloud", LATCHED)
        self._inputs = CameraInputs(self, lambda: self.node_cfg, self._tf_pose, self._warn, self._publish_status,
                                    lambda: self._capture.maybe_auto_capture())
        self._capture = KeyframeCapture(self, self._inputs, keyframes, self.state.lock, lambda: (self.cfg, self.node_cfg),
                                        self._publish_status, self._warn, srv_qos, group)
        self._queries = QueryServer(
            self, self.engine, self._field_or_error, self._view,
            lambda: (m := self._inputs.latest_matched()) is not None and m.pose is not None,
            self._world_header, self._provenance, self._warn, nc, srv_qos, group)
        self._store = FieldStore(self, nc.field_directory, self.state, self.device, self._field_changed, srv_qos, group,
                                 self.engine.gpu)
        self._action = ReconstructAction(self, self.engine, self.state,
                                         lambda new: self._field_changed() if new else self._publish_status(),
                                         self._refresh_weights, srv_qos, group)
        self._status = StatusReporter(self, self.state, self._inputs, self._queries, self._facts, LATCHED)
        self._status_timer = self.create_timer(nc.status_period, self._publish_status)
        self._diag_timer = self.create_timer(nc.diagnostics_period, self._status.publish_diagnostics)
        self._publish_status()
        log.info(f"langx_node up: device={self.device}, world_frame={nc.world_frame}, "
                 f"model_dir={self.model_dir} ({'present' if self.model_dir.is_dir() else 'missing'})")
        for name, where in self._weights.items():
            log.info(f"  {name}: {where}")

    def close(self) -> None:
        """Refuse what is still queued (each caller gets an answer) and stop the request workers."""
        self._queries.close()

    # ---- models and parameters ----------------------------------------------------------------
    def _preload(self) -> None:
        t0 = time.perf_counter()
        try:
            what = self.engine.preload()
        except Exception as exc:  # missing weights: said here, and again by whatever needs them
            self._models_state = f"not loaded: {type(exc).__name__}: {exc}"
            self.get_logger().warning(f"models not preloaded: {exc}")
            return
        self._models_state = f"ready in {time.perf_counter() - t0:.1f} s: {what}"
        self.get_logger().info(f"models {self._models_state}")

    def _refresh_weights(self) -> None:
        self._weights = inventory(self.cfg)  # weights may have been copied in meanwhile

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
        self._weights = inventory(self.cfg)
        self._warnings = ThrottledWarnings(self.get_logger().warning, self.node_cfg.warn_throttle_seconds)

    def _warn(self, kind: str, text: str) -> None:
        self._warnings.warn(kind, text)

    # ---- poses from tf2 (optional) ------------------------------------------------------------
    def _make_tf_buffer(self):
        try:
            import tf2_ros  # (optional: absent where ROS comes from PyPI)
        except ImportError:
            self.get_logger().warning("node.use_tf is set but tf2_ros cannot be imported: camera poses come from the 'pose' topic")
            return None
        buf = tf2_ros.Buffer()
        self._tf_listener = tf2_ros.TransformListener(buf, self)
        return buf

    def _tf_pose(self, frame_id: str, stamp) -> np.ndarray | None:
        if self._tf is None:
            return None
        from geometry_msgs.msg import Pose
        from rclpy.time import Time

        try:
            tr = self._tf.lookup_transform(self.node_cfg.world_frame, frame_id, Time.from_msg(stamp)).transform
        except Exception as exc:  # tf2 raises several exception types
            self._warn("tf", f"no transform {self.node_cfg.world_frame} <- {frame_id}: {exc}")
            return None
        p = Pose()
        p.position.x, p.position.y, p.position.z = tr.translation.x, tr.translation.y, tr.translation.z
        p.orientation = tr.rotation
        return pose_to_matrix(p)

    # ---- the field, as queries and RViz see it ------------------------------------------------
    def _field_changed(self) -> None:
        """A new field answers queries: show it on ~/field/cloud and ~/status."""
        with self.state.lock:
            f = self.state.field
        if f is not None:
            try:  # the first query then pays no plan building (CUDA graph capture)
                self.engine.prepare_field(f)
            except Exception as exc:  # noqa: BLE001 - the first query builds it then, and reports what fails
                self.get_logger().warning(f"could not prepare 3D queries on the new field: {exc}")
            with self.engine.gpu.use():  # no CUDA graph capture in another thread meanwhile
                pts, cols, normals = f.selectable_cloud(self.cfg.query.min_opacity)  # what queries can select
            self._field_pub.publish(cloud_to_msg(pts, cols, None, self._world_header(), normals))
        self._publish_status()

    def _world_header(self) -> Header:
        return Header(stamp=self.get_clock().now().to_msg(), frame_id=self.node_cfg.world_frame)

    def _view(self, view: str) -> tuple[Camera, Header, np.ndarray]:
        """(camera, header for images of that view, its RGB) for 'latest' or a keyframe id."""
        latest = self._inputs.latest
        with self.state.lock:
            frame = self.state.keyframes.frames.get(view)
            known = self.state.keyframes.ids()
        if view in ("", "latest"):
            latest = self._inputs.latest_matched()
            if latest is None:
                raise QueryRequestError("view 'latest': no image received yet")
            if latest.pose is None:
                raise QueryRequestError("view 'latest' has no camera pose (publish 'pose' or ask for a keyframe id)")
            f = latest.to_frame()
            return Camera.of(f, latest.frame_id), Header(stamp=latest.stamp, frame_id=latest.frame_id), f.rgb
        if frame is None:
            shown = ", ".join(known[:10]) + (" ..." if len(known) > 10 else "")
            raise QueryRequestError(f"unknown view '{view[:80]}' (use 'latest' or a keyframe id: {shown or 'none captured'})")
        frame_id = latest.frame_id if latest is not None else "camera"
        return Camera.of(frame, frame_id), Header(stamp=stamp_from_seconds(frame.stamp), frame_id=frame_id), frame.rgb

    def _field_or_error(self):
        """The field queries answer from; raises QueryRequestError saying why there is none."""
        with self.state.lock:
            field_, progress, n_kf = self.state.field, self.state.progress, len(self.state.keyframes)
        if field_ is not None:
            return field_
        if progress is not None:
            raise QueryRequestError(f"reconstructing: no field yet ({progress.stage}, {progress.total * 100:.0f}%)")
        raise QueryRequestError("no field yet: capture at least 2 keyframes and run the ~/reconstruct action first "
                                f"({self._inputs.accepted} images, {n_kf} keyframes so far)")

    # ---- reporting ----------------------------------------------------------------------------
    def _provenance(self) -> str:
        f = self.state.field
        if f is None:
            return f"no field; models are loaded at the first reconstruction from {self.model_dir} (semantics: {self.cfg.semantics.source})"
        return f.provenance_text()

    def _facts(self) -> NodeFacts:
        return NodeFacts(self.node_cfg.world_frame, str(self.device), self._provenance(), self.cfg.semantics.source,
                         f"{self.model_dir} ({'present' if self.model_dir.is_dir() else 'missing'})",
                         f"{self.node_cfg.load_models}: {self._models_state}", dict(self._weights))

    def _publish_status(self) -> None:
        if hasattr(self, "_status"):  # parts publish on change; before the reporter exists there is nothing to say
            self._status.publish_status()


class YieldingMultiThreadedExecutor(MultiThreadedExecutor):
    """rclpy's MultiThreadedExecutor, yielding the GIL after handing each ready callback to its pool.

    In rclpy 7.1 (Jazzy) the spinning thread goes straight back to building its wait set after it
    submits a callback, and holds the GIL while the pool's workers wait for it, so callbacks run
    late and best-effort topics overflow their queue (rclpy issues #1452, fixed upstream by #1547
    with the same yield). Measured here (2-core CPU, loopback, a 30 Hz 64x48 image topic with
    sensor-data QoS and a trivial callback, 16 threads): 23-29 of 55 frames received with the plain
    executor, 55 of 55 with this one; langx_node's own input-rate test received 16-33 of 55.
    """

    def _spin_once_impl(self, timeout_sec=None, wait_condition=lambda: False) -> None:
        super()._spin_once_impl(timeout_sec, wait_condition)
        time.sleep(0)  # let a worker take the GIL and run what was just submitted


def spin_until_shutdown(executor: Executor, context: Context) -> None:
    """Spin until Ctrl-C or SIGTERM. rclpy's signal handler shuts the context down from another thread; when that
    lands while the executor builds its wait set, rcl reports 'the given context is not valid' instead of
    ExternalShutdownException. That is the same clean stop; any other rcl error, or one on a live context, is raised."""
    try:
        executor.spin()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except RCLError:
        if context.ok():
            raise


def main(args: list[str] | None = None) -> int:
    """Console entry point: ``langx_node --ros-args --params-file config/langx.yaml``."""
    rclpy.init(args=args)
    try:
        node = LangxNode()
    except (ConfigError, ParameterException, ValueError) as exc:
        print(f"langx_node: cannot start: {exc}", file=sys.stderr)
        rclpy.try_shutdown()
        return 2
    executor = YieldingMultiThreadedExecutor(num_threads=node.node_cfg.executor_threads)
    executor.add_node(node)
    try:
        spin_until_shutdown(executor, node.context)
    finally:
        node.close()
        node.destroy_node()
        rclpy.try_shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
