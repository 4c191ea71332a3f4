"""Keyframe capture of langx_node: ~/capture_keyframe, ~/clear_keyframes and automatic capture.

A capture takes the newest image once its depth, pose and instance ids arrived (each topic in
use), waiting up to node.capture_wait; failing that the newest recent complete image that is no
keyframe yet, else the newest image with what matched, and says so.
"""
from __future__ import annotations

import threading
import time
from typing import Callable

from rclpy.node import Node
from std_srvs.srv import Trigger

from langx_ros.core.config import LangxConfig
from langx_ros.core.frames import FrameError
from langx_ros.core.keyframes import KeyframeStore, should_capture
from langx_ros.ros.convert import stamp_seconds
from langx_ros.ros.inputs import CameraInputs, LatestImage
from langx_ros.ros.params import NodeConfig


class KeyframeCapture:
    """Stores matched images of ``inputs`` in ``store`` (guarded by ``lock``, which the node's
    other parts hold when they read the store); ``changed()`` runs after every change."""

    def __init__(self, node: Node, inputs: CameraInputs, store: KeyframeStore, lock: threading.Lock,
                 cfg: Callable[[], tuple[LangxConfig, NodeConfig]], changed: Callable[[], None],
                 warn: Callable[[str, str], None], qos, callback_group):
        self.inputs, self.store, self.lock = inputs, store, lock
        self._cfg, self._changed, self._warn = cfg, changed, warn
        self._last_auto_stamp = -1.0
        # reentrant: a capture waits for late depth/pose/instances while the subscriptions keep running
        node.create_service(Trigger, "~/capture_keyframe", self._on_capture, qos_profile=qos, callback_group=callback_group)
        node.create_service(Trigger, "~/clear_keyframes", self._on_clear, qos_profile=qos)

    def maybe_auto_capture(self) -> None:
        cfg, _ = self._cfg()
        if not cfg.keyframes.auto_capture:
            return
        m = self.inputs.latest_matched()
        if m is None or m.pose is None or stamp_seconds(m.stamp) <= self._last_auto_stamp:
            return
        if should_capture(self.store.last_pose(), m.pose, cfg.keyframes):
            self._last_auto_stamp = stamp_seconds(m.stamp)
            try:
                self.capture(m)
            except (FrameError, OSError) as exc:
                self._warn("keyframes", f"automatic capture failed: {exc}")

    def capture(self, latest: LatestImage) -> str:
        """Store ``latest`` as a keyframe; returns its id (raises FrameError when unusable)."""
        if latest.pose is None:
            raise FrameError(
                f"no camera pose within {self._cfg()[1].sync_tolerance:.3f} s of the latest image "
                "(publish geometry_msgs/PoseStamped on 'pose' with matching stamps)"
            )
        with self.lock:
            kid = self.store.add(latest.to_frame(), source=latest.frame_id)
        self._changed()
        return kid

    def _stored(self, m: LatestImage) -> bool:
        """Whether ``m`` is a keyframe already."""
        with self.lock:
            return self.store.holding(stamp_seconds(m.stamp), m.frame_id) is not None

    def _wait_matched(self) -> tuple[LatestImage | None, list[str], str]:
        """The image to capture, what it lacks and a note on the choice (see the module's doc)."""
        newest = self.inputs.newest()
        if newest is None:
            return None, [], ""
        wait = self._cfg()[1].capture_wait
        deadline = time.monotonic() + wait
        while True:
            m = self.inputs.matched(newest)
            missing = self.inputs.missing(m)
            if not missing or time.monotonic() >= deadline:
                break
            time.sleep(0.01)
        if not missing:
            return m, [], ""
        complete = self.inputs.newest_matched(lambda c: not self.inputs.missing(c) and not self._stored(c))
        if complete is not None:
            age = stamp_seconds(newest.stamp) - stamp_seconds(complete.stamp)
            return complete, [], f"the newest image had no matching {', '.join(missing)} within {wait:g} s: took one {age:.3f} s older"
        if m.pose is None:
            m = self.inputs.latest_matched() or m
            missing = self.inputs.missing(m)
        return m, missing, f"no matching {', '.join(missing)} within {wait:g} s" if missing else ""

    def _on_capture(self, request: Trigger.Request, response: Trigger.Response) -> Trigger.Response:
        latest, missing, note = self._wait_matched()
        if latest is None:
            response.success, response.message = False, "no valid image received yet"
            return response
        try:
            kid = self.capture(latest)
        except (FrameError, OSError) as exc:
            response.success, response.message = False, f"not captured: {exc}"
            return response
        response.success = True
        parts = [f"depth: {'yes' if latest.depth is not None else 'no'}"]
        if latest.instances is not None:
            parts.append("instances: yes")
        if note:
            parts.append(note)
        response.message = f"captured {kid} ({'; '.join(parts)}); {len(self.store)} keyframes"
        return response

    def _on_clear(self, request: Trigger.Request, response: Trigger.Response) -> Trigger.Response:
        with self.lock:
            n = self.store.clear()
        self._changed()
        response.success, response.message = True, f"removed {n} keyframes"
        return response
