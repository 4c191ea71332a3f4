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
"""
from __future__ import annotations

import os
import re
import sys
import threading
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import rclpy
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rcl_interfaces.msg import SetParametersResult
from rclpy.action import ActionServer, CancelResponse, GoalResponse
from rclpy.callback_groups import ReentrantCallbackGroup
from rclpy.exceptions import ParameterException
from rclpy.executors import ExternalShutdownException, MultiThreadedExecutor
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import PointCloud2
from std_msgs.msg import Header

from langx_interfaces.action import Reconstruct
from langx_interfaces.msg import NodeStatus
from langx_interfaces.srv import FieldFile
from langx_ros.core.config import ConfigError
from langx_ros.core.device import resolve_device
from langx_ros.core.engine import Camera, Engine
from langx_ros.core.atomic import recover_dirs
from langx_ros.core.field.io import is_saved_field, load_field, save_field
from langx_ros.core.field.train import Cancelled
from langx_ros.core.models import inventory
from langx_ros.core.reconstruct import STAGES, failure_message
from langx_ros.core.keyframes import KeyframeStore
from langx_ros.core.query import QueryRequestError
from langx_ros.ros.convert import cloud_to_msg, pose_to_matrix
from langx_ros.ros.params import build_configs, declare_parameters, unknown_overrides
from langx_ros.ros.query_server import QueryServer
from langx_ros.ros.capture import KeyframeCapture
from langx_ros.ros.inputs import CameraInputs
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
class Progress:
    """Shared state of a running reconstruction (written by the worker, read by feedback/status)."""

    stage: str = "validate"
    stage_progress: float = 0.0
    detail: str = ""
    cancel: threading.Event = field(default_factory=threading.Event)
    _entered: list[str] = field(default_factory=lambda: ["validate"])  # stages begun since the last snapshot
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def update(self, stage: str, fraction: float, detail: str) -> None:
        """The reconstruction's progress callback."""
        with self._lock:
            if stage != self.stage:
                self._entered.append(stage)
            self.stage, self.stage_progress, self.detail = stage, fraction, detail

    @property
    def total(self) -> float:
        return self._total(self.stage, self.stage_progress)

    @staticmethod
    def _total(stage: str, fraction: float) -> float:
        i = STAGES.index(stage) if stage in STAGES else 0
        return (i + fraction) / len(STAGES)

    def snapshot(self) -> list[tuple[str, float, float, str]]:
        """(stage, stage fraction, overall fraction, detail) of every stage begun since the last
        snapshot, then of the current one: a stage shorter than the feedback period is still
        reported (as done), and the overall fraction never goes back."""
        with self._lock:
            passed = [st for st in self._entered if st != self.stage]
            self._entered = []
            cur = (self.stage, self.stage_progress, self._total(self.stage, self.stage_progress), self.detail)
        return [(st, 1.0, self._total(st, 1.0), "done") for st in passed] + [cur]


NAME_RE = re.compile(r"^[A-Za-z0-9_-][A-Za-z0-9._-]{0,63}$")  # no leading dot: hidden names are the store's own


class LangxNode(Node):
    """Keeps camera input, answers ~/query, reports its state."""

    def __init__(self, node_name: str = "langx_node", **kwargs):
        super().__init__(node_name, **kwargs)
        self.cfg, self.node_cfg = build_configs(declare_parameters(self))
        self._weights = inventory(self.cfg)  # refreshed when parameters change and after each reconstruction
        self.device = resolve_device(self.cfg.device)
        self.add_on_set_parameters_callback(self._check_parameters)
        self.add_post_set_parameters_callback(self._apply_parameters)
        for name in unknown_overrides(self):
            self.get_logger().warning(f"parameter '{name}' is set but not used by langx_node (a typo?)")
        if self.node_cfg.mask_queue_limit > self.node_cfg.executor_threads - 4:
            self.get_logger().warning(
                f"node.mask_queue_limit ({self.node_cfg.mask_queue_limit}) leaves fewer than 4 of node.executor_threads "
                f"({self.node_cfg.executor_threads}) free: during a burst of mask queries cheap ones wait for a thread")

        self._lock = threading.Lock()  # the field, the reconstruction's progress and the keyframe store
        self._field = None  # the LanguageField ~/query answers from (built by ~/reconstruct or loaded)
        self._last_recon_s = -1.0
        self._warnings = ThrottledWarnings(self.get_logger().warning, self.node_cfg.warn_throttle_seconds)
        self._keyframes = KeyframeStore(self.cfg.keyframes.directory, self.cfg.keyframes.max_keyframes)
        for what in self._keyframes.recovered:
            self.get_logger().warning(f"keyframes at start: {what}")
        for why in self._keyframes.skipped:
            self.get_logger().warning(f"keyframe folder not reloaded: {why}")
        if len(self._keyframes):
            self.get_logger().info(f"reloaded {len(self._keyframes)} keyframes from {self._keyframes.root}")
        self._tf = self._make_tf_buffer() if self.node_cfg.use_tf else None
        self.engine = Engine(self.cfg, self.device)
        self._progress: Progress | None = None  # set while a reconstruction runs
        self._models_state = "loaded at first use"
        if self.node_cfg.load_models == "start":
            self._preload()
        elif self.node_cfg.load_models == "background":
            self._models_state = "loading in the background"
            threading.Thread(target=self._preload, name="langx-preload", daemon=True).start()
        self._last_error = ""
        self._field_dir = Path(os.path.expanduser(self.node_cfg.field_directory))
        for what in recover_dirs(self._field_dir, is_saved_field):
            self.get_logger().warning(f"saved fields at start: {what}")
        group = ReentrantCallbackGroup()

        # requests wait in the middleware up to this depth before the executor takes them (default 10 loses bursts)
        srv_qos = QoSProfile(depth=self.node_cfg.service_queue_depth, history=HistoryPolicy.KEEP_LAST,
                             reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.VOLATILE)
        nc = self.node_cfg
        self._inputs = CameraInputs(self, lambda: self.node_cfg, self._tf_pose, self._warnings_warn, self._publish_status,
                                    lambda: self._capture.maybe_auto_capture())
        self._capture = KeyframeCapture(self, self._inputs, self._keyframes, self._lock, lambda: (self.cfg, self.node_cfg),
                                        self._publish_status, self._warnings_warn, srv_qos, group)
        self._queries = QueryServer(
            self, self.engine, self._field_or_error, self._view,
            lambda: (m := self._inputs.latest_matched()) is not None and m.pose is not None,
            self._world_header, self._provenance, self._warnings_warn,
            {"query_queue_limit": nc.query_queue_limit, "mask_queue_limit": nc.mask_queue_limit, "query_max_wait": nc.query_max_wait},
            srv_qos, group)
        self.create_service(FieldFile, "~/save_field", self._on_save, qos_profile=srv_qos, callback_group=group)
        self.create_service(FieldFile, "~/load_field", self._on_load, qos_profile=srv_qos, callback_group=group)
        self._action = ActionServer(self, Reconstruct, "~/reconstruct", execute_callback=self._execute,
                                    goal_callback=lambda goal: GoalResponse.ACCEPT,
                                    cancel_callback=lambda goal: CancelResponse.ACCEPT, callback_group=group,
                                    goal_service_qos_profile=srv_qos, result_service_qos_profile=srv_qos,
                                    cancel_service_qos_profile=srv_qos)
        self._field_pub = self.create_publisher(PointCloud2, "~/field/cloud", LATCHED)
        self._status_pub = self.create_publisher(NodeStatus, "~/status", LATCHED)
        self._diag_pub = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        self._status_timer = self.create_timer(self.node_cfg.status_period, self._publish_status)
        self._diag_timer = self.create_timer(self.node_cfg.diagnostics_period, self._publish_diagnostics)
        self._publish_status()
        self.get_logger().info(
            f"langx_node up: device={self.device}, world_frame={self.node_cfg.world_frame}, "
            f"model_dir={self.model_dir} ({'present' if self.model_dir.is_dir() else 'missing'})"
        )
        for name, where in self._weights.items():
            self.get_logger().info(f"  {name}: {where}")

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
        self._weights = inventory(self.cfg)
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

    # ---- reconstruction -----------------------------------------------------------------------
    def _execute(self, goal_handle):
        goal = goal_handle.request
        result = Reconstruct.Result()

        def finish(ok: bool, message: str, status: str):
            result.success, result.message = ok, message
            getattr(goal_handle, status)()
            if not ok:
                self.get_logger().warning(f"reconstruction: {message}")
            return result

        with self._lock:
            if self._progress is not None:
                return finish(False, "a reconstruction is already running (cancel it first)", "abort")
            try:
                ids = self.engine.check_build(list(goal.keyframe_ids), self._keyframes.ids(), int(goal.iterations))
            except ValueError as exc:
                return finish(False, str(exc), "abort")
            frames = [self._keyframes.frames[i] for i in ids]
            progress = self._progress = Progress()
        self._publish_status()
        outcome: dict = {}

        def work():
            try:
                outcome["result"] = self.engine.build(frames, int(goal.iterations), progress=progress.update,
                                                      cancel=progress.cancel.is_set, use_trimap=bool(goal.use_trimap))
            except BaseException as exc:  # reported to the caller, never raised in the executor
                outcome["error"] = exc

        t0 = time.perf_counter()
        worker = threading.Thread(target=work, name="langx-reconstruct", daemon=True)
        worker.start()
        fb = Reconstruct.Feedback()
        fb.num_stages = len(STAGES)

        def send_feedback():
            for stage, fraction, overall, detail in progress.snapshot():
                fb.stage, fb.stage_index = stage, STAGES.index(stage) if stage in STAGES else 0
                fb.stage_progress, fb.progress, fb.detail = float(fraction), float(overall), detail
                goal_handle.publish_feedback(fb)

        while worker.is_alive():
            if goal_handle.is_cancel_requested:
                progress.cancel.set()
            send_feedback()
            worker.join(0.2)
        send_feedback()  # the stages begun since the last tick, and where it ended
        elapsed = time.perf_counter() - t0
        stage_at_end = progress.stage
        self._weights = inventory(self.cfg)  # weights may have been copied in meanwhile
        with self._lock:
            self._progress = None
        result.total_seconds = float(elapsed)
        err = outcome.get("error")
        if isinstance(err, Cancelled) or (err is None and goal_handle.is_cancel_requested):
            with self._lock:
                cleared = not goal.keep_previous_on_failure and self._field is not None
                if not goal.keep_previous_on_failure:
                    self._field = None
            msg = ("cancelled; the previous field was cleared (keep_previous_on_failure is false)" if cleared else
                   "cancelled; the previous field (if any) is still in use" if goal.keep_previous_on_failure else "cancelled")
            self._publish_status()
            return finish(False, msg, "canceled")
        if err is not None:
            text, expected = failure_message(err, stage_at_end)
            if not expected:
                self.get_logger().error("reconstruction failed:\n" + "".join(traceback.format_exception(err)))
            with self._lock:
                self._last_error = text
                if not goal.keep_previous_on_failure:
                    self._field = None
            self._publish_status()
            return finish(False, text, "abort")
        res = outcome["result"]
        with self._lock:
            self._field = res.field
            self._last_recon_s = elapsed
            self._last_error = ""
        self._publish_field_cloud()
        self._publish_status()
        result.num_gaussians = res.field.num_gaussians
        result.num_keyframes = len(frames)
        result.num_generated_frames = len(res.field.meta.get("generated_frames", []))
        result.stage_names = list(res.timings)
        result.stage_seconds = [float(v) for v in res.timings.values()]
        result.provenance = res.field.provenance_text()
        self.get_logger().info(f"reconstruction done in {elapsed:.1f} s: {res.field.num_gaussians} Gaussians; {result.provenance}")
        return finish(True, f"field with {res.field.num_gaussians} Gaussians from {len(frames)} keyframes in {elapsed:.1f} s", "succeed")

    def _publish_field_cloud(self) -> None:
        with self._lock:
            f = self._field
        if f is None:
            return
        keep = ((f.opacities() >= self.cfg.query.min_opacity) & f.observed().any(1)).cpu().numpy()  # what queries can select
        pts = f.params["means"].detach().cpu().numpy()[keep]
        cols = f.colors_uint8()[keep]
        self._field_pub.publish(cloud_to_msg(pts, cols, None, self._world_header(), f.surface_normals().cpu().numpy()[keep]))

    # ---- queries ------------------------------------------------------------------------------
    def _world_header(self) -> Header:
        return Header(stamp=self.get_clock().now().to_msg(), frame_id=self.node_cfg.world_frame)

    def _view(self, view: str) -> tuple[Camera, Header, np.ndarray]:
        """(camera, header for images of that view, its RGB) for 'latest' or a keyframe id."""
        latest = self._inputs.latest
        with self._lock:
            frame = self._keyframes.frames.get(view)
            known = self._keyframes.ids()
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
        stamp = Header().stamp
        stamp.sec, stamp.nanosec = int(frame.stamp), int((frame.stamp % 1) * 1e9)
        return Camera.of(frame, frame_id), Header(stamp=stamp, frame_id=frame_id), frame.rgb

    def _field_or_error(self):
        """The field queries answer from; raises QueryRequestError saying why there is none."""
        with self._lock:
            field_ = self._field
            progress = self._progress
        if field_ is not None:
            return field_
        if progress is not None:
            raise QueryRequestError(f"reconstructing: no field yet ({progress.stage}, {progress.total * 100:.0f}%)")
        raise QueryRequestError(
            "no field yet: capture at least 2 keyframes and run the ~/reconstruct action first "
            f"({self._inputs.accepted} images, {len(self._keyframes)} keyframes so far)"
        )

    def _warnings_warn(self, kind: str, text: str) -> None:
        self._warnings.warn(kind, text)

    # ---- saving and loading ------------------------------------------------------------------
    def _field_path(self, name: str) -> Path:
        if not NAME_RE.match(name) or name in (".", ".."):
            raise ValueError(f"invalid field name '{name[:80]}': use 1-64 letters, digits, '.', '_' or '-', not starting with '.' (no paths)")
        root = self._field_dir.resolve()
        path = root / name  # not resolved: a saved field is a link to its current version
        if path.parent != root or name in (".", ".."):
            raise ValueError(f"field name '{name}' leaves {root}")
        return path

    def _on_save(self, request: FieldFile.Request, response: FieldFile.Response) -> FieldFile.Response:
        with self._lock:
            f = self._field
        try:
            path = self._field_path(request.name)
            if f is None:
                raise ValueError("no field to save yet")
            save_field(f, path)
        except (ValueError, OSError) as exc:
            response.success, response.message = False, str(exc)
            return response
        response.success, response.message, response.path = True, f"saved {f.num_gaussians} Gaussians", str(path)
        return response

    def _on_load(self, request: FieldFile.Request, response: FieldFile.Response) -> FieldFile.Response:
        try:
            path = self._field_path(request.name)
            if not path.is_dir():
                raise ValueError(f"no saved field named '{request.name}' in {self._field_dir}")
            f = load_field(path, self.device)
        except (ValueError, OSError) as exc:
            response.success, response.message = False, str(exc)
            return response
        with self._lock:
            self._field = f
        self._publish_field_cloud()
        self._publish_status()
        response.success, response.message, response.path = True, f"loaded {f.num_gaussians} Gaussians ({f.provenance_text()})", str(path)
        return response

    def close(self) -> None:
        """Refuse what is still queued (each caller gets an answer) and stop the request workers."""
        self._queries.close()

    # ---- state reporting ----------------------------------------------------------------------
    def _provenance(self) -> str:
        f = self._field
        if f is None:
            return f"no field; models are loaded at the first reconstruction from {self.model_dir} (semantics: {self.cfg.semantics.source})"
        return f.provenance_text()

    def _state(self) -> int:
        if self._progress is not None:
            return NodeStatus.STATE_RECONSTRUCTING
        if self._field is not None:
            return NodeStatus.STATE_READY
        if self._last_error:
            return NodeStatus.STATE_ERROR
        if self._inputs.latest is None:
            return NodeStatus.STATE_WAITING_FOR_INPUT
        return NodeStatus.STATE_CAPTURING

    def _publish_status(self) -> None:
        msg = NodeStatus()
        msg.header.stamp = self.get_clock().now().to_msg()
        msg.header.frame_id = self.node_cfg.world_frame
        inp = self._inputs
        with self._lock:
            msg.state = self._state()
        with inp.lock:
            msg.images_accepted = inp.accepted
            msg.images_rejected = inp.rejected
            msg.last_rejection = inp.last_rejection
            img, now = inp.rates["image"], time.monotonic()
            msg.image_rate_hz, msg.camera_rate_hz = float(img.rate_hz(now)), float(img.camera_hz())
            msg.images_lost_estimate, msg.input_behind = int(img.lost), bool(img.behind(now))
        msg.state_name = STATE_NAMES[msg.state]
        msg.num_keyframes = len(self._keyframes)
        f = self._field
        msg.field_ready = f is not None
        msg.num_gaussians = 0 if f is None else f.num_gaussians
        msg.device = str(self.device)
        msg.provenance = self._provenance()
        msg.last_reconstruction_seconds = float(self._last_recon_s)
        msg.last_query_latency_ms = float(self._queries.last_latency_ms)
        if msg.state == NodeStatus.STATE_WAITING_FOR_INPUT:
            msg.message = "waiting for camera_info and image" if self._inputs.camera is None else "waiting for image"
        elif msg.state == NodeStatus.STATE_RECONSTRUCTING and self._progress is not None:
            msg.message = f"{self._progress.stage} {self._progress.total * 100:.0f}%: {self._progress.detail}"
        elif msg.state == NodeStatus.STATE_ERROR:
            msg.message = self._last_error
        self._status_pub.publish(msg)

    def _publish_diagnostics(self) -> None:
        inp = self._inputs
        with self._lock:
            state = self._state()
        with inp.lock:
            accepted, rejected, last, camera = inp.accepted, inp.rejected, inp.last_rejection, inp.camera
            rejected_by = ", ".join(f"{k} {v}" for k, v in sorted(inp.rejected_by.items())) or "none"
        rates, behind = inp.rate_summaries()
        st = DiagnosticStatus()
        st.name = f"{self.get_name()}: language field"
        st.hardware_id = str(self.device)
        if state == NodeStatus.STATE_ERROR:
            st.level, st.message = DiagnosticStatus.ERROR, f"last reconstruction failed: {self._last_error}"
        elif state == NodeStatus.STATE_WAITING_FOR_INPUT:
            st.level, st.message = DiagnosticStatus.WARN, "no valid camera input yet"
        elif behind:
            st.level, st.message = DiagnosticStatus.WARN, (f"{STATE_NAMES[state]}; input falls behind the camera on "
                                                           f"{', '.join(behind)}: {rates[behind[0]]}")
        elif rejected and last:
            st.level, st.message = DiagnosticStatus.WARN, f"{STATE_NAMES[state]}; rejected inputs: {last}"
        else:
            st.level, st.message = DiagnosticStatus.OK, STATE_NAMES[state]
        pairs = {
            "state": STATE_NAMES[state],
            "device": str(self.device),
            "model_dir": f"{self.model_dir} ({'present' if self.model_dir.is_dir() else 'missing'})",
            "models": self._provenance(),
            "model loading": f"{self.node_cfg.load_models}: {self._models_state}",
            **{f"weights: {k}": v for k, v in self._weights.items()},
            "camera_info": "none" if camera is None else f"{camera.width}x{camera.height} fx={camera.K[0, 0]:.1f}",
            "images_accepted": str(accepted),
            "images_rejected": str(rejected),
            "rejected by the node, per topic": rejected_by,
            **{f"input {t}": v for t, v in rates.items()},
            "last_rejection": last,
            "keyframes": f"{len(self._keyframes)} in {self._keyframes.root}",
            "field": "none" if self._field is None else f"{self._field.num_gaussians} Gaussians",
            "semantics": self.cfg.semantics.source,
            "last_reconstruction_s": f"{self._last_recon_s:.2f}" if self._last_recon_s >= 0 else "never",
            "last_query_latency_ms": f"{self._queries.last_latency_ms:.2f}" if self._queries.last_latency_ms >= 0 else "never",
            **self._queries.stats(),
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
    executor = MultiThreadedExecutor(num_threads=node.node_cfg.executor_threads)
    executor.add_node(node)
    try:
        executor.spin()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        node.close()
        node.destroy_node()
        rclpy.try_shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
