"""TriMap helpers: pose interpolation and modality encode/decode round trips."""
from __future__ import annotations

import numpy as np
import pytest

from langx_ros.core.frames import validate_pose
from langx_ros.core.synthetic import look_at
from langx_ros.core.trimap.modalities import ids_to_rgb, normals_to_rgb, palette, rgb_to_ids, rgb_to_normals
from langx_ros.core.trimap.poses import interpolate_poses


def test_interpolated_poses_are_rigid_and_move_monotonically():
    a = look_at(np.array([3.0, 0, 1.5]), np.zeros(3))
    b = look_at(np.array([0.0, 3.0, 1.0]), np.zeros(3))
    poses = interpolate_poses(a, b, 9)
    assert len(poses) == 9 and np.array_equal(poses[0], a) and np.array_equal(poses[-1], b)
    for T in poses:
        validate_pose(T, tol=1e-9)
    d = [np.linalg.norm(T[:3, 3] - a[:3, 3]) for T in poses]
    assert d == sorted(d)
    mid = poses[4]
    assert np.allclose(mid[:3, 3], (a[:3, 3] + b[:3, 3]) / 2)
    with pytest.raises(ValueError):
        interpolate_poses(a, b, 1)


def test_normals_round_trip():
    rng = np.random.default_rng(0)
    n = rng.normal(size=(16, 16, 3))
    n /= np.linalg.norm(n, axis=-1, keepdims=True)
    n[0, 0] = np.nan
    back = rgb_to_normals(normals_to_rgb(n))
    assert np.allclose(back[1:], n[1:], atol=1e-6)
    assert np.isnan(back[0, 0]).all()


def test_palette_ids_round_trip_with_noise():
    colors = palette(40)
    assert len({tuple(c) for c in colors}) == 40
    ids = np.random.default_rng(1).integers(-1, 40, (24, 32))
    rgb = ids_to_rgb(ids, colors)
    noisy = np.clip(rgb + np.random.default_rng(2).normal(0, 0.03, rgb.shape), 0, 1)  # generation is not exact
    assert np.array_equal(rgb_to_ids(noisy, colors), ids)
    with pytest.raises(ValueError):
        ids_to_rgb(np.array([[40]]), colors)
