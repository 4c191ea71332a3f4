"""Integration-test plumbing: a real langx_node process and a real rclpy client, on loopback."""
from __future__ import annotations

import itertools
import os
from pathlib import Path
from typing import Callable, Iterator

import pytest

from langx_ros.ros.process import NodeProcess, RosSession, ros_env

REPO = Path(__file__).resolve().parents[2]
PARAMS = REPO / "config" / "langx.yaml"

_seed = int(os.environ.get("ROS_DOMAIN_ID", os.getpid() % 100))
_counter = itertools.count()


def unique_domain_id() -> int:
    """A ROS_DOMAIN_ID of this test's own (1..100), offset from the run's ROS_DOMAIN_ID."""
    return 1 + (_seed + 7 * next(_counter)) % 100


@pytest.fixture
def start_node(tmp_path: Path) -> Iterator[Callable[..., tuple[NodeProcess, RosSession]]]:
    """Start langx_node with ROS args in a fresh domain; yields (process, client session)."""
    started: list[tuple[NodeProcess, RosSession]] = []

    def _start(*ros_args: str, command: list[str] | None = None, keyframes: Path | None = None) -> tuple[NodeProcess, RosSession]:
        domain = unique_domain_id()
        env = ros_env(domain, log_dir=tmp_path / f"ros_logs_{domain}")
        args = list(ros_args) or ["--params-file", str(PARAMS)]
        # never write into the user's home from a test
        args += ["-p", f"keyframes.directory:={keyframes or tmp_path / f'keyframes_{domain}'}",
                 "-p", f"node.field_directory:={tmp_path / 'fields'}"]
        proc = NodeProcess(args, env, tmp_path / f"node_{domain}.log", command=command)
        session = RosSession("langx_test_client", domain_id=domain)
        started.append((proc, session))
        return proc, session

    yield _start
    for proc, session in started:
        session.close()
        was_running = proc.alive()
        code = proc.stop()
        if was_running:  # a running node must stop cleanly on SIGTERM
            assert code == 0, f"langx_node exited with {code} on SIGTERM; log:\n{proc.log()}"
