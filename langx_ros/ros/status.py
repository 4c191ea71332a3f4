"""~/status (NodeStatus, transient-local) and /diagnostics of langx_node."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rclpy.node import Node

from langx_interfaces.msg import NodeStatus
from langx_ros.ros.inputs import CameraInputs
from langx_ros.ros.query_server import QueryServer
from langx_ros.ros.state import NodeState

STATE_NAMES = {
    NodeStatus.STATE_WAITING_FOR_INPUT: "waiting_for_input",
    NodeStatus.STATE_CAPTURING: "capturing",
    NodeStatus.STATE_RECONSTRUCTING: "reconstructing",
    NodeStatus.STATE_READY: "ready",
    NodeStatus.STATE_ERROR: "error",
}


@dataclass
class NodeFacts:
    """What the reports say about the node itself (settings, device, models)."""

    world_frame: str
    device: str
    provenance: str  # of the field, or where models would come from
    semantics: str
    model_dir: str  # with 'present' / 'missing'
    model_loading: str
    weights: dict[str, str]


class StatusReporter:
    """Publishes the node's state; ``facts()`` gives the current NodeFacts."""

    def __init__(self, node: Node, state: NodeState, inputs: CameraInputs, queries: QueryServer, facts: Callable[[], NodeFacts],
                 latched_qos):
        self.node, self.state, self.inputs, self.queries, self._facts = node, state, inputs, queries, facts
        self._status_pub = node.create_publisher(NodeStatus, "~/status", latched_qos)
        self._diag_pub = node.create_publisher(DiagnosticArray, "/diagnostics", 10)

    def _state(self) -> int:  # with state.lock held
        st = self.state
        if st.progress is not None:
            return NodeStatus.STATE_RECONSTRUCTING
        if st.field is not None:
            return NodeStatus.STATE_READY
        if st.last_error:
            return NodeStatus.STATE_ERROR
        if self.inputs.latest is None:
            return NodeStatus.STATE_WAITING_FOR_INPUT
        return NodeStatus.STATE_CAPTURING

    def publish_status(self) -> None:
        facts = self._facts()
        msg = NodeStatus()
        msg.header.stamp = self.node.get_clock().now().to_msg()
        msg.header.frame_id = facts.world_frame
        st, inp = self.state, self.inputs
        with st.lock:
            msg.state = self._state()
            f, progress, last_error = st.field, st.progress, st.last_error
            msg.num_keyframes = len(st.keyframes)
            msg.last_reconstruction_seconds = float(st.last_recon_s)
        with inp.lock:
            msg.images_accepted = inp.accepted
            msg.images_rejected = inp.rejected
            msg.last_rejection = inp.last_rejection
        img = inp.image_rate()
        msg.image_rate_hz, msg.camera_rate_hz, msg.images_lost_estimate, msg.input_behind = img
        msg.state_name = STATE_NAMES[msg.state]
        msg.field_ready = f is not None
        msg.num_gaussians = 0 if f is None else f.num_gaussians
        msg.device = facts.device
        msg.provenance = facts.provenance
        msg.last_query_latency_ms = float(self.queries.last_latency_ms)
        if msg.state == NodeStatus.STATE_WAITING_FOR_INPUT:
            msg.message = "waiting for camera_info and image" if inp.camera is None else "waiting for image"
        elif msg.state == NodeStatus.STATE_RECONSTRUCTING and progress is not None:
            msg.message = f"{progress.stage} {progress.total * 100:.0f}%: {progress.detail}"
        elif msg.state == NodeStatus.STATE_ERROR:
            msg.message = last_error
        self._status_pub.publish(msg)

    def publish_diagnostics(self) -> None:
        facts = self._facts()
        st, inp = self.state, self.inputs
        with st.lock:
            state, f, last_error, recon_s = self._state(), st.field, st.last_error, st.last_recon_s
            keyframes = f"{len(st.keyframes)} in {st.keyframes.root}"
        with inp.lock:
            accepted, rejected, last, camera = inp.accepted, inp.rejected, inp.last_rejection, inp.camera
            rejected_by = ", ".join(f"{k} {v}" for k, v in sorted(inp.rejected_by.items())) or "none"
        rates, behind = inp.rate_summaries()
        d = DiagnosticStatus()
        d.name = f"{self.node.get_name()}: language field"
        d.hardware_id = facts.device
        if state == NodeStatus.STATE_ERROR:
            d.level, d.message = DiagnosticStatus.ERROR, f"last reconstruction failed: {last_error}"
        elif state == NodeStatus.STATE_WAITING_FOR_INPUT:
            d.level, d.message = DiagnosticStatus.WARN, "no valid camera input yet"
        elif behind:
            d.level, d.message = DiagnosticStatus.WARN, (f"{STATE_NAMES[state]}; input falls behind the camera on "
                                                         f"{', '.join(behind)}: {rates[behind[0]]}")
        elif rejected and last:
            d.level, d.message = DiagnosticStatus.WARN, f"{STATE_NAMES[state]}; rejected inputs: {last}"
        else:
            d.level, d.message = DiagnosticStatus.OK, STATE_NAMES[state]
        q_ms = self.queries.last_latency_ms
        pairs = {
            "state": STATE_NAMES[state],
            "device": facts.device,
            "model_dir": facts.model_dir,
            "models": facts.provenance,
            "model loading": facts.model_loading,
            **{f"weights: {k}": v for k, v in facts.weights.items()},
            "camera_info": "none" if camera is None else f"{camera.width}x{camera.height} fx={camera.K[0, 0]:.1f}",
            "images_accepted": str(accepted),
            "images_rejected": str(rejected),
            "rejected by the node, per topic": rejected_by,
            **{f"input {t}": v for t, v in rates.items()},
            "last_rejection": last,
            "keyframes": keyframes,
            "field": "none" if f is None else f"{f.num_gaussians} Gaussians",
            "semantics": facts.semantics,
            "last_reconstruction_s": f"{recon_s:.2f}" if recon_s >= 0 else "never",
            "last_query_latency_ms": f"{q_ms:.2f}" if q_ms >= 0 else "never",
            **self.queries.stats(),
        }
        d.values = [KeyValue(key=k, value=v) for k, v in pairs.items()]
        arr = DiagnosticArray()
        arr.header.stamp = self.node.get_clock().now().to_msg()
        arr.status = [d]
        self._diag_pub.publish(arr)
