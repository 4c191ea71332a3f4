"""Shared test set-up: ROS isolation for every test process, the data folder, markers."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

# Before anything imports rclpy: keep DDS discovery on loopback (never multicast on the LAN).
os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")

REPO = Path(__file__).resolve().parents[1]
DATA_ROOT = REPO.parent / "shared" / "data"
DATA = DATA_ROOT / "rgbd-3dmatch-seq01"


@pytest.fixture
def rgbd_folder() -> Path:
    """The real posed RGB-D frames; tests using them skip (with the reason) where absent."""
    if not DATA.is_dir():
        pytest.skip(f"real RGB-D data not present at {DATA} (only developers of langx_ros have it)")
    return DATA


@pytest.fixture
def real_data_root():
    """``(name) -> Path`` of a real data set under ../shared/data; skips (with the reason) where absent."""
    def get(name: str) -> Path:
        folder = DATA_ROOT / name
        if not folder.is_dir():
            pytest.skip(f"real RGB-D data not present at {folder} (only developers of langx_ros have it)")
        return folder
    return get
