"""Run langx_node as a child process and talk to it: shared by the demo and the tests.

There is no `ros2 launch` where ROS 2 comes from PyPI, so programs that need a node start it
themselves: a plain process with ROS arguments, its log in a file, stopped with SIGTERM.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, Sequence

import rclpy
from rclpy.client import Client
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node


def ros_env(domain_id: int, log_dir: str | Path | None = None, base: dict | None = None) -> dict[str, str]:
    """An environment for ROS processes isolated on loopback in ``domain_id``."""
    env = dict(os.environ if base is None else base)
    env["ROS_DOMAIN_ID"] = str(domain_id)
    env["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
    env["PYTHONUNBUFFERED"] = "1"
    env.setdefault("AMENT_PREFIX_PATH", sys.prefix)
    if log_dir is not None:
        env["ROS_LOG_DIR"] = str(log_dir)
    return env


class NodeProcess:
    """langx_node in a subprocess: ``<command> --ros-args <ros_args>``.

    ``command`` defaults to ``python -m langx_ros.ros.node``; the console script ``langx_node``
    works the same.
    """

    def __init__(
        self,
        ros_args: Sequence[str],
        env: dict[str, str],
        log_path: str | Path,
        command: Sequence[str] | None = None,
    ):
        self.log_path = Path(log_path)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(
            [*(command or [sys.executable, "-m", "langx_ros.ros.node"]), "--ros-args", *ros_args],
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    def alive(self) -> bool:
        return self.proc.poll() is None

    def log(self) -> str:
        if not self._log.closed:
            self._log.flush()
        return self.log_path.read_text(errors="replace")

    def stop(self, timeout: float = 10.0) -> int:
        """SIGTERM, then SIGKILL after ``timeout`` s; returns the exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self._log.close()
        return int(self.proc.returncode)

    def __enter__(self) -> "NodeProcess":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


CAMERA_TOPICS = ("image", "camera_info", "depth", "pose", "instances")


def node_args(keyframes: str | Path, fields: str | Path, params_file: str | Path | None = None, camera: str = "/camera") -> list[str]:
    """langx_node's ROS arguments for a program that plays a camera to it: the parameter file
    (None = the node's defaults), its own keyframe and field folders, and the camera topics
    (CAMERA_TOPICS) remapped under ``camera``."""
    args = ["--params-file", str(params_file)] if params_file is not None else []
    args += ["-p", f"keyframes.directory:={keyframes}", "-p", f"node.field_directory:={fields}"]
    for t in CAMERA_TOPICS:
        args += ["-r", f"{t}:={camera}/{t}"]
    return args


def spin_until(executor: SingleThreadedExecutor, predicate: Callable[[], bool], timeout: float) -> bool:
    """Spin ``executor`` until ``predicate()`` holds or ``timeout`` seconds pass."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        executor.spin_once(timeout_sec=0.05)
    return predicate()


def call(executor: SingleThreadedExecutor, client: Client, request, timeout: float = 30.0, attempt: float = 3.0):
    """Call a service and wait for the answer (waits for the service first).

    DDS discovery is not atomic: a service can look ready while its response channel to us is
    not yet matched, and that first response is then lost. So an unanswered request is sent
    again after ``attempt`` seconds (doubling each time) until ``timeout``. Use it for requests
    that are safe to repeat.
    """
    deadline = time.monotonic() + timeout
    if not spin_until(executor, client.service_is_ready, timeout):
        raise TimeoutError(f"service {client.srv_name} did not appear within {timeout:.0f} s")
    wait = attempt
    while True:
        future = client.call_async(request)
        remaining = deadline - time.monotonic()
        executor.spin_until_future_complete(future, timeout_sec=max(0.0, min(wait, remaining)))
        if future.done():
            return future.result()
        client.remove_pending_request(future)
        if time.monotonic() >= deadline:
            raise TimeoutError(f"service {client.srv_name} did not answer within {timeout:.0f} s")
        wait *= 2


class RosSession:
    """An rclpy context + one node + an executor, for a program that talks to langx_node."""

    def __init__(self, node_name: str, domain_id: int | None = None):
        self.context = rclpy.Context()
        rclpy.init(context=self.context, domain_id=domain_id)
        self.node = Node(node_name, context=self.context)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)

    def close(self) -> None:
        self.executor.shutdown()
        self.node.destroy_node()
        rclpy.try_shutdown(context=self.context)

    def __enter__(self) -> "RosSession":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
