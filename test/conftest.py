"""Shared test set-up: ROS isolation for every test process, the data folder, markers."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

# Before anything imports rclpy: keep DDS discovery on loopback (never multicast on the LAN).
os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data" / "rgbd-3dmatch-seq01"


@pytest.fixture
def rgbd_folder() -> Path:
    """The real posed RGB-D frames; tests using them skip (with the reason) where absent."""
    if not DATA.is_dir():
        pytest.skip(f"real RGB-D data not present at {DATA} (only developers of langx_ros have it)")
    return DATA
