"""Oriented bounding boxes of answers (core/boxes.py)."""
from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from langx_ros.core.boxes import oriented_box


def _inside(box, pts, tol=1e-9):
    local = (pts - box.center) @ box.rotation
    return np.all(np.abs(local) <= box.size / 2 + tol)


def test_a_rotated_box_of_points_is_recovered_tighter_than_the_axis_aligned_one():
    rng = np.random.default_rng(0)
    R = Rotation.from_euler("zyx", [45, 10, 5], degrees=True).as_matrix()
    edges = np.array([0.30, 0.10, 0.04])
    # points on the six faces, as a depth sensor sees a box (not inside it)
    local = rng.uniform(-0.5, 0.5, (3000, 3)) * edges
    face = rng.integers(0, 3, 3000)
    local[np.arange(3000), face] = np.sign(rng.uniform(-1, 1, 3000)) * edges[face] / 2
    pts = local @ R.T + [1.0, 2.0, 0.5]
    box = oriented_box(pts)
    assert box.size == pytest.approx(edges, abs=0.006)  # x longest, z shortest
    assert np.allclose(np.abs(box.rotation.T @ R), np.eye(3), atol=0.03)  # same axes up to sign
    assert np.linalg.det(box.rotation) == pytest.approx(1.0) and box.center == pytest.approx([1.0, 2.0, 0.5], abs=0.005)
    assert _inside(box, pts)
    aabb = pts.max(0) - pts.min(0)
    assert np.prod(box.size) < 0.3 * np.prod(aabb)
    q = box.quaternion_xyzw()
    assert Rotation.from_quat(q).as_matrix() == pytest.approx(box.rotation, abs=1e-9)
    corners = box.corners()
    assert corners.shape == (8, 3) and _inside(box, corners, tol=1e-6)


def test_axis_signs_are_deterministic_and_the_frame_right_handed():
    rng = np.random.default_rng(1)
    pts = rng.uniform(-1, 1, (500, 3)) * [0.5, 0.2, 0.05]
    a, b = oriented_box(pts), oriented_box(pts[::-1].copy())
    assert np.allclose(a.rotation, b.rotation) and np.allclose(a.size, b.size)
    for k in range(2):
        axis = a.rotation[:, k]
        assert axis[np.argmax(np.abs(axis))] > 0
    assert np.allclose(np.cross(a.rotation[:, 0], a.rotation[:, 1]), a.rotation[:, 2])


def test_degenerate_inputs():
    empty = oriented_box(np.zeros((0, 3)))
    assert np.all(empty.size == 0) and np.allclose(empty.rotation, np.eye(3))
    # points on a line: a box along it (not the 1 x 2 m axis-aligned rectangle)
    line = np.outer(np.linspace(0, 1, 20), [1.0, 2.0, 0.0])
    box = oriented_box(line)
    assert box.size == pytest.approx([np.sqrt(5), 0, 0], abs=1e-6)
    assert np.allclose(box.rotation[:, 0], np.array([1.0, 2.0, 0.0]) / np.sqrt(5), atol=1e-6) and _inside(box, line, 1e-6)
    # fewer than 4 points: the axis-aligned box, axes ordered by edge length
    two = oriented_box(np.array([[0.0, 0, 0], [1, 3, 2]]))
    assert two.size == pytest.approx([3, 2, 1]) and two.center == pytest.approx([0.5, 1.5, 1.0])
    assert np.allclose(np.abs(two.rotation), [[0, 0, 1], [1, 0, 0], [0, 1, 0]])


def test_an_axis_aligned_object_keeps_its_axis_aligned_box():
    """A noisy axis-aligned couch: the least-spread direction is tilted by the noise; the box is
    never larger than the axis-aligned one."""
    rng = np.random.default_rng(3)
    pts = rng.uniform(-0.5, 0.5, (4000, 3)) * [1.4, 0.6, 0.6] + rng.normal(0, 0.01, (4000, 3))
    box = oriented_box(pts)
    aabb = pts.max(0) - pts.min(0)
    assert np.prod(box.size) <= np.prod(aabb) * (1 + 1e-9) and _inside(box, pts)


def test_orientation_from_a_subsample_still_bounds_every_point():
    rng = np.random.default_rng(2)
    pts = rng.normal(size=(50_000, 3)) * [1.0, 0.3, 0.1]
    box = oriented_box(pts, orientation_points=500)
    assert _inside(box, pts)
