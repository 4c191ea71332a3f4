"""Back-projection, normals from depth, resizing."""
from __future__ import annotations

import numpy as np
import pytest

from langx_ros.core.frames import Frame, FrameError, backproject, normals_from_depth, resize_frame
from langx_ros.core.synthetic import look_at

K = np.array([[50.0, 0, 20], [0, 50.0, 15], [0, 0, 1]])


def test_backprojection_of_a_plane_lands_on_the_plane():
    pose = look_at(np.array([0.0, 0.0, 2.0]), np.array([0.0, 0.01, 0.0]))  # looking down at z = 0
    # depth of the plane z = 0 seen from this camera, per pixel: solve along each ray
    from langx_ros.core.frames import pixel_rays

    rays = pixel_rays(K, 40, 30) @ pose[:3, :3].T
    depth = (-pose[2, 3] / rays[..., 2]).astype(np.float32)
    depth[0, 0] = np.nan  # a hole stays a hole
    f = Frame("p", np.full((30, 40, 3), 7, np.uint8), K, pose, depth)
    pts, cols, pix = backproject(f)
    assert len(pts) == 40 * 30 - 1
    assert np.abs(pts[:, 2]).max() < 1e-6
    assert (cols == 7).all() and not ((pix[:, 0] == 0) & (pix[:, 1] == 0)).any()
    n = normals_from_depth(depth, K, pose)
    inner = n[2:-2, 2:-2].reshape(-1, 3)
    assert np.allclose(inner, [0, 0, 1], atol=1e-4)  # world up, facing the camera
    assert np.isnan(n[0]).all()  # borders have no central difference


def test_backprojection_needs_depth_and_pose():
    with pytest.raises(FrameError, match="needs depth and pose"):
        backproject(Frame("x", np.zeros((30, 40, 3), np.uint8), K))


def test_camera_frame_normals_face_the_camera():
    depth = np.full((30, 40), 3.0, np.float32)  # a fronto-parallel wall
    n = normals_from_depth(depth, K)
    assert np.allclose(n[5:-5, 5:-5].reshape(-1, 3), [0, 0, -1], atol=1e-6)


def test_resize_scales_intrinsics_and_keeps_depth_values():
    depth = np.where(np.arange(40)[None, :] < 20, 1.0, 5.0).astype(np.float32).repeat(30, 0)
    f = Frame("r", np.zeros((30, 40, 3), np.uint8), K, np.eye(4), depth)
    g = resize_frame(f, 20, 15)
    assert g.K[0, 0] == pytest.approx(25.0) and g.K[0, 2] == pytest.approx(10.0) and g.K[1, 2] == pytest.approx(7.5)
    assert set(np.unique(g.depth)) <= {1.0, 5.0}  # no mixed depths at the edge
