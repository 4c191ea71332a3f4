"""The node's spin loop: a SIGTERM that shuts the context down mid-wait is a clean stop, other rcl errors are not."""
from __future__ import annotations

import pytest
from rclpy._rclpy_pybind11 import RCLError

from langx_ros.ros.node import spin_until_shutdown


class _Context:
    def __init__(self, ok: bool) -> None:
        self._ok = ok

    def ok(self) -> bool:
        return self._ok


class _Executor:
    """Raises what rclpy's executor raises when the signal handler's shutdown lands while it builds its wait set."""

    def __init__(self, exc: BaseException | None) -> None:
        self.exc = exc

    def spin(self) -> None:
        if self.exc is not None:
            raise self.exc


def test_invalid_context_after_shutdown_is_a_clean_stop():
    err = RCLError("failed to initialize wait set: the given context is not valid")
    spin_until_shutdown(_Executor(err), _Context(ok=False))  # no exception: main() goes on to return 0


def test_rcl_error_on_a_live_context_is_raised():
    with pytest.raises(RCLError):
        spin_until_shutdown(_Executor(RCLError("something else broke")), _Context(ok=True))


def test_keyboard_interrupt_is_a_clean_stop_and_other_errors_propagate():
    spin_until_shutdown(_Executor(KeyboardInterrupt()), _Context(ok=True))
    with pytest.raises(ValueError):
        spin_until_shutdown(_Executor(ValueError("bug")), _Context(ok=False))
