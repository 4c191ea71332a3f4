"""Oriented bounding boxes of answered objects: the box a grasp planner takes.

An axis-aligned box of a rotated object overstates its size (a 30 x 10 cm box turned by 45
degrees is 28 x 28 cm axis-aligned). The oriented box here: one axis is the direction of least
spread of the points (principal component analysis: a flat object's normal, a tray's thickness)
or one of the frame's axes; in the plane across it, OpenCV's minimum-area rectangle (rotating
calipers over the convex hull) gives the other two; the smallest of these boxes wins (see
:func:`oriented_box`). Axes are then ordered by edge length
(x longest, z shortest) and made right-handed, each with a deterministic sign (its
largest-magnitude world component positive, z = x cross y).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class OrientedBox:
    """A box in the points' frame: centre (3,), rotation (3, 3) whose columns are the box's x, y,
    z axes, and full edge lengths (3,) along them (x >= y >= z)."""

    center: np.ndarray
    rotation: np.ndarray
    size: np.ndarray

    def quaternion_xyzw(self) -> np.ndarray:
        """The rotation as a unit quaternion (x, y, z, w), geometry_msgs/Quaternion order."""
        from scipy.spatial.transform import Rotation

        return Rotation.from_matrix(self.rotation).as_quat()

    def corners(self) -> np.ndarray:
        """(8, 3) corners."""
        signs = np.array([[sx, sy, sz] for sx in (-1, 1) for sy in (-1, 1) for sz in (-1, 1)], np.float64)
        return self.center + (signs * self.size / 2) @ self.rotation.T


def _signed(axis: np.ndarray) -> np.ndarray:
    return axis if axis[np.argmax(np.abs(axis))] >= 0 else -axis


def _box_across(normal: np.ndarray, s: np.ndarray, pt: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(axes (3, 3) as columns, centre, size): ``normal`` is one axis; the minimum-area rectangle of
    the sample ``s`` (K, 3) in the plane across it gives the other two; extents from all points ``pt`` (3, M)."""
    import cv2

    u = np.cross(normal, [1.0, 0.0, 0.0] if abs(normal[0]) < 0.9 else [0.0, 1.0, 0.0])
    u /= np.linalg.norm(u)
    v = np.cross(normal, u)
    angle = np.radians(cv2.minAreaRect(np.stack([s @ u, s @ v], axis=1).astype(np.float32))[2])
    e1 = np.cos(angle) * u + np.sin(angle) * v  # the rectangle's edge directions in the plane
    e2 = -np.sin(angle) * u + np.cos(angle) * v
    axes = np.stack([e1, e2, normal], axis=1)
    local = axes.T @ pt  # (3, M)
    lo, hi = local.min(1), local.max(1)
    return axes, axes @ ((lo + hi) / 2), hi - lo


def oriented_box(points: np.ndarray, orientation_points: int = 10_000) -> OrientedBox:
    """The oriented bounding box of ``points`` (M, 3); every point lies inside it.

    Candidates: the box across the direction of least spread (PCA) and the boxes across each of
    the frame's axes (across z: the gravity-aligned box when z is up), each with the minimum-area
    rectangle in the plane across; the one of least volume is returned (every edge grown by 0.1 %
    of the diagonal first, so flat and straight sets compare by area and length), so it is never
    larger than the axis-aligned box. Orientations are found from at most ``orientation_points``
    points (an even stride), extents from all. Fewer than 4 points give the axis-aligned box.
    """
    p = np.asarray(points, np.float64).reshape(-1, 3)
    if len(p) == 0:
        return OrientedBox(np.zeros(3), np.eye(3), np.zeros(3))
    pt = np.ascontiguousarray(p.T)  # (3, M): reductions along contiguous rows are ~8x faster than down columns
    lo, hi = pt.min(1), pt.max(1)
    best = (np.eye(3), (lo + hi) / 2, hi - lo)
    eps = 1e-3 * float(np.linalg.norm(hi - lo))
    if len(p) >= 4:
        s = p[:: max(1, len(p) // orientation_points)]
        q = s - s.mean(0)
        for n in [np.linalg.eigh(q.T @ q)[1][:, 0], *np.eye(3)]:  # least spread first; ties keep the earlier
            cand = _box_across(n, s, pt)
            if np.prod(cand[2] + eps) < np.prod(best[2] + eps) * (1 - 1e-9):
                best = cand
    axes, center, size = best
    order = np.argsort(-size, kind="stable")
    x, y = _signed(axes[:, order[0]]), _signed(axes[:, order[1]])
    z = np.cross(x, y)
    return OrientedBox(center, np.stack([x, y, z], axis=1), size[order])
