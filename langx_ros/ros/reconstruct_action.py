"""~/reconstruct: the long reconstruction as a ROS 2 action (feedback per stage, cancel).

The goal is checked as the parameters are (Engine.check_build); the build runs in a worker
thread while the action thread sends feedback and watches for cancel; a failed or cancelled run
keeps the previous field unless keep_previous_on_failure is false.
"""
from __future__ import annotations

import threading
import time
import traceback
from typing import Callable

from rclpy.action import ActionServer, CancelResponse, GoalResponse
from rclpy.node import Node

from langx_interfaces.action import Reconstruct
from langx_ros.core.engine import Engine
from langx_ros.core.field.train import Cancelled
from langx_ros.core.reconstruct import STAGES, failure_message
from langx_ros.ros.state import NodeState, Progress


class ReconstructAction:
    """Serves ``~/reconstruct`` for ``node``; ``changed(new_field)`` runs after the state changed
    (with True when a new field answers queries), ``finished()`` after every run."""

    def __init__(self, node: Node, engine: Engine, state: NodeState, changed: Callable[[bool], None],
                 finished: Callable[[], None], qos, callback_group):
        self.node, self.engine, self.state = node, engine, state
        self._changed, self._finished = changed, finished
        self._server = ActionServer(node, Reconstruct, "~/reconstruct", execute_callback=self._execute,
                                    goal_callback=lambda goal: GoalResponse.ACCEPT,
                                    cancel_callback=lambda goal: CancelResponse.ACCEPT, callback_group=callback_group,
                                    goal_service_qos_profile=qos, result_service_qos_profile=qos, cancel_service_qos_profile=qos)

    def _execute(self, goal_handle):
        goal = goal_handle.request
        result = Reconstruct.Result()
        log = self.node.get_logger()
        st = self.state

        def finish(ok: bool, message: str, status: str):
            result.success, result.message = ok, message
            getattr(goal_handle, status)()
            if not ok:
                log.warning(f"reconstruction: {message}")
            return result

        with st.lock:
            if st.progress is not None:
                return finish(False, "a reconstruction is already running (cancel it first)", "abort")
            try:
                ids = self.engine.check_build(list(goal.keyframe_ids), st.keyframes.ids(), int(goal.iterations))
            except ValueError as exc:
                return finish(False, str(exc), "abort")
            frames = [st.keyframes.frames[i] for i in ids]
            progress = st.progress = Progress()
        self._changed(False)
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
        self._finished()
        with st.lock:
            st.progress = None
        result.total_seconds = float(elapsed)
        err = outcome.get("error")
        if isinstance(err, Cancelled) or (err is None and goal_handle.is_cancel_requested):
            with st.lock:
                cleared = not goal.keep_previous_on_failure and st.field is not None
                if not goal.keep_previous_on_failure:
                    st.field = None
            msg = ("cancelled; the previous field was cleared (keep_previous_on_failure is false)" if cleared else
                   "cancelled; the previous field (if any) is still in use" if goal.keep_previous_on_failure else "cancelled")
            self._changed(False)
            return finish(False, msg, "canceled")
        if err is not None:
            text, expected = failure_message(err, stage_at_end)
            if not expected:
                log.error("reconstruction failed:\n" + "".join(traceback.format_exception(err)))
            with st.lock:
                st.last_error = text
                if not goal.keep_previous_on_failure:
                    st.field = None
            self._changed(False)
            return finish(False, text, "abort")
        res = outcome["result"]
        with st.lock:
            st.field = res.field
            st.last_recon_s = elapsed
            st.last_error = ""
        self._changed(True)
        result.num_gaussians = res.field.num_gaussians
        result.num_keyframes = len(frames)
        result.num_generated_frames = len(res.field.meta.get("generated_frames", []))
        result.stage_names = list(res.timings)
        result.stage_seconds = [float(v) for v in res.timings.values()]
        result.provenance = res.field.provenance_text()
        log.info(f"reconstruction done in {elapsed:.1f} s: {res.field.num_gaussians} Gaussians; {result.provenance}")
        return finish(True, f"field with {res.field.num_gaussians} Gaussians from {len(frames)} keyframes in {elapsed:.1f} s", "succeed")
