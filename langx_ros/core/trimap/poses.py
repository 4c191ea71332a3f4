"""Camera poses of generated in-between frames: interpolation between the two key frames.

The robot knows the poses of its key frames; a generated frame i of n (0 and n-1 being the key
frames) gets the rotation slerp-ed and the translation lerp-ed at t = i / (n - 1). This is the
initial guess the method needs (LangScene-X estimates poses of generated frames with a
reconstruction model instead); the video model follows a smooth camera path between its two
conditions, which a constant-speed geodesic approximates.
"""
from __future__ import annotations

import numpy as np
from scipy.spatial.transform import Rotation, Slerp

from langx_ros.core.frames import validate_pose


def interpolate_poses(first: np.ndarray, last: np.ndarray, n: int) -> list[np.ndarray]:
    """``n`` >= 2 camera-to-world poses from ``first`` to ``last`` inclusive (rotation slerp,
    translation lerp); both ends are returned exactly."""
    if n < 2:
        raise ValueError(f"need at least 2 frames to interpolate, got {n}")
    a, b = validate_pose(first), validate_pose(last)
    rots = Rotation.from_matrix(np.stack([a[:3, :3], b[:3, :3]]))
    ts = np.linspace(0.0, 1.0, n)
    R = Slerp([0.0, 1.0], rots)(ts).as_matrix()
    out = []
    for i, t in enumerate(ts):
        T = np.eye(4)
        T[:3, :3] = R[i]
        T[:3, 3] = (1 - t) * a[:3, 3] + t * b[:3, 3]
        out.append(T)
    out[0], out[-1] = a.copy(), b.copy()
    return out
