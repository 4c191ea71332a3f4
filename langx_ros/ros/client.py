"""A small Python client of langx_node (used by the demo and the tests; handy for scripts)."""
from __future__ import annotations

import time
from typing import Callable

from langx_interfaces.action import Reconstruct
from langx_interfaces.msg import NodeStatus
from langx_interfaces.srv import FieldFile, QueryObjects
from rclpy.action import ActionClient
from std_srvs.srv import Trigger

from langx_ros.core.keyframes import held_keyframe
from langx_ros.ros.node import LATCHED
from langx_ros.ros.process import RosSession, call, spin_until


class LangxClient:
    """Talks to a langx_node named ``node`` (e.g. "/langx_node") through a RosSession. A service
    request unanswered after ``resend_after`` seconds is sent again (see ``process.call``)."""

    def __init__(self, session: RosSession, node: str = "/langx_node", resend_after: float = 3.0):
        self.s = session
        self.resend_after = resend_after
        n = session.node
        self.status: list[NodeStatus] = []
        n.create_subscription(NodeStatus, f"{node}/status", self.status.append, LATCHED)
        self._capture = n.create_client(Trigger, f"{node}/capture_keyframe")
        self._clear = n.create_client(Trigger, f"{node}/clear_keyframes")
        self._query = n.create_client(QueryObjects, f"{node}/query")
        self._save = n.create_client(FieldFile, f"{node}/save_field")
        self._load = n.create_client(FieldFile, f"{node}/load_field")
        self._action = ActionClient(n, Reconstruct, f"{node}/reconstruct")

    def wait(self, predicate: Callable[[], bool], timeout: float) -> bool:
        return spin_until(self.s.executor, predicate, timeout)

    def capture(self) -> Trigger.Response:
        return call(self.s.executor, self._capture, Trigger.Request(), attempt=self.resend_after)

    def publish_and_capture(self, publish: Callable[[], float | None], attempts: int, settle: float = 0.1) -> Trigger.Response:
        """Publish a frame (``publish``, which returns its stamp in seconds, or None), give the node
        ``settle`` seconds, ask for a keyframe; repeat until a capture succeeds or ``attempts`` run
        out. Returns the last response.

        A capture whose answer came late was asked again; the repeat is refused because the first
        request stored the image. For the frame just published that counts as success (not as a
        reason to publish and capture it once more)."""
        for _ in range(attempts):
            stamp = publish()
            self.wait(lambda: False, settle)
            res = self.capture()
            held = held_keyframe(res.message, stamp) if not res.success and stamp is not None else None
            if held is not None:
                res = Trigger.Response(success=True, message=f"captured {held} (the answer came late: a repeated request found it stored)")
            if res.success:
                break
        return res

    def clear(self) -> Trigger.Response:
        return call(self.s.executor, self._clear, Trigger.Request())

    def query(self, queries: list[str], view: str = "latest", threshold: float = 0.0, masks: bool = True, timeout: float = 60.0,
              all_instances: bool = False):
        req = QueryObjects.Request(queries=queries, threshold=threshold, view=view, return_masks=masks, all_instances=all_instances)
        return call(self.s.executor, self._query, req, timeout=timeout)

    def save(self, name: str) -> FieldFile.Response:
        return call(self.s.executor, self._save, FieldFile.Request(name=name))

    def load(self, name: str) -> FieldFile.Response:
        return call(self.s.executor, self._load, FieldFile.Request(name=name))

    def send_reconstruct(self, goal: Reconstruct.Goal, on_feedback: Callable[[Reconstruct.Feedback], None] | None = None,
                         timeout: float = 30.0):
        """Send a goal; returns the goal handle (check .accepted)."""
        if not self.wait(self._action.server_is_ready, timeout):
            raise TimeoutError("the ~/reconstruct action server did not appear")
        fut = self._action.send_goal_async(goal, feedback_callback=(lambda m: on_feedback(m.feedback)) if on_feedback else None)
        if not self.wait(fut.done, timeout):
            raise TimeoutError("the reconstruct goal was not answered")
        return fut.result()

    def result(self, handle, timeout: float = 3600.0) -> Reconstruct.Result:
        fut = handle.get_result_async()
        if not self.wait(fut.done, timeout):
            raise TimeoutError(f"the reconstruction did not finish within {timeout:.0f} s")
        return fut.result().result

    def reconstruct(self, goal: Reconstruct.Goal | None = None, on_feedback=None, timeout: float = 3600.0) -> Reconstruct.Result:
        handle = self.send_reconstruct(goal or Reconstruct.Goal(keep_previous_on_failure=True), on_feedback)
        return self.result(handle, timeout)


def query_burst(session: RosSession, requests: list[QueryObjects.Request], clients: int = 3, node: str = "/langx_node",
                timeout: float = 120.0) -> list[tuple[QueryObjects.Response | None, float]]:
    """Send ``requests`` to ``{node}/query`` all at once from ``clients`` separate client nodes
    (round robin) and wait for the answers; returns (response or None if unanswered, round trip s)
    per request, in order. Each client is warmed up with one answered request first (discovery
    can lose a first response), so what is measured is the node under the burst."""
    from rclpy.node import Node
    from rclpy.qos import QoSProfile

    qos = QoSProfile(depth=max(10, len(requests)))  # the clients must not drop answers either
    nodes = [Node(f"langx_burst_{i}", context=session.context) for i in range(clients)]
    try:
        for n in nodes:
            session.executor.add_node(n)
        cls = [n.create_client(QueryObjects, f"{node}/query", qos_profile=qos) for n in nodes]
        for c in cls:
            call(session.executor, c, QueryObjects.Request(queries=["warm-up"], view="latest"), timeout=60)
        sent, futures = [], []
        for i, req in enumerate(requests):
            sent.append(time.monotonic())
            futures.append(cls[i % clients].call_async(req))
        done_at: dict[int, float] = {}

        def all_done() -> bool:
            now = time.monotonic()
            for i, f in enumerate(futures):
                if i not in done_at and f.done():
                    done_at[i] = now
            return len(done_at) == len(futures)

        spin_until(session.executor, all_done, timeout)
        return [(f.result() if i in done_at else None, done_at[i] - sent[i] if i in done_at else float("nan"))
                for i, f in enumerate(futures)]
    finally:
        for n in nodes:
            session.executor.remove_node(n)
            n.destroy_node()
