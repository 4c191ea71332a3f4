"""Surface samples: key-frame depth points, each owned by the Gaussian that explains it."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from langx_ros.core.field.surface import SurfaceConfig, SurfaceSamples, SurfaceView, surface_samples, take_rows, unpack_records


def test_samples_of_gaussians_follow_the_owner_offsets():
    owner = np.array([0, 0, 2, 2, 2, 5])
    s = SurfaceSamples(np.arange(18, dtype=np.float32).reshape(6, 3), np.zeros((6, 3), np.uint8), owner, 6)
    assert s.owned_counts().tolist() == [2, 0, 3, 0, 0, 1]
    idx, pos = s.of(np.array([2, 5, 1, 0]))
    assert idx.tolist() == [2, 3, 4, 5, 0, 1] and pos.tolist() == [0, 0, 0, 1, 3, 3]
    only, none = s.of(np.array([2, 5, 1, 0]), owners=False)
    assert only.tolist() == idx.tolist() and none is None
    idx, pos = s.of(np.array([], np.int64))
    assert len(idx) == len(pos) == 0
    with pytest.raises(ValueError, match="ascend"):
        SurfaceSamples(np.zeros((2, 3), np.float32), np.zeros((2, 3), np.uint8), np.array([1, 0]), 2)
    with pytest.raises(ValueError, match="ascend"):
        SurfaceSamples(np.zeros((1, 3), np.float32), np.zeros((1, 3), np.uint8), np.array([2]), 2)
    with pytest.raises(ValueError, match="length"):
        SurfaceSamples(np.zeros((2, 3), np.float32), np.zeros((1, 3), np.uint8), np.array([0, 1]), 2)


def test_sample_records_gather_the_points_and_colours_exactly():
    rng = np.random.default_rng(0)
    pts = rng.standard_normal((50, 3)).astype(np.float32)
    pts[3] = [np.nan, -0.0, 1e-30]  # any float bit pattern survives
    cols = rng.integers(0, 256, (50, 3)).astype(np.uint8)
    s = SurfaceSamples(pts, cols, np.sort(rng.integers(0, 7, 50)), 7)
    for idx in (np.array([3, 49, 0, 3, 17]), np.arange(50)[::-1], np.zeros(0, np.int64)):
        p, c = unpack_records(take_rows(s.records(), idx))
        assert p.shape == (len(idx), 3) and c.shape == (len(idx), 3) and p.dtype == np.float32 and c.dtype == np.uint8
        assert p.tobytes() == pts[idx].tobytes() and np.array_equal(c, cols[idx])
    assert s.records() is s.records()  # built once


def _plane_view(depth_far_cols: int = 8):
    """A 64 x 48 camera at the origin looking down +z at a wall 2 m away; the rightmost
    ``depth_far_cols`` columns read 5 m (a surface the field does not have), one pixel is NaN."""
    h, w = 48, 64
    K = torch.tensor([[60.0, 0, 32], [0, 60, 24], [0, 0, 1]])
    depth = torch.full((h, w), 2.0)
    depth[:, w - depth_far_cols:] = 5.0
    depth[0, 0] = float("nan")
    rgb = np.zeros((h, w, 3), np.uint8)
    rgb[..., 0] = np.arange(w, dtype=np.uint8)[None, :]  # red = column
    return SurfaceView(torch.eye(4), K, depth, rgb)


def _wall_gaussians():
    """Two flat Gaussians tiling the wall (left x < 0 and right x > 0), a third just in front of
    the left one that is no candidate (unobserved), and a faint one over the left one."""
    means = torch.tensor([[-0.5, 0.0, 2.0], [0.5, 0.0, 2.0], [-0.5, 0.0, 1.99], [-0.5, 0.0, 2.0]])
    scales = torch.tensor([[0.3, 0.5, 1e-3], [0.3, 0.5, 1e-3], [0.3, 0.5, 1e-3], [0.3, 0.5, 1e-3]])
    quats = torch.tensor([[1.0, 0, 0, 0]] * 4)
    opac = torch.tensor([0.9, 0.9, 0.9, 0.05])
    return {"means": means, "quats": quats, "scales": scales, "opacities": opac}, torch.tensor([True, True, False, True])


def test_wall_points_go_to_the_gaussian_that_explains_them():
    geom, cand = _wall_gaussians()
    view = _plane_view()
    s = surface_samples(geom, cand, [view], SurfaceConfig(voxel=0.001))
    assert s.num_gaussians == 4 and set(np.unique(s.owner).tolist()) == {0, 1}  # not the unobserved, not the faint one
    x = s.points[:, 0]
    assert np.all(x[s.owner == 0] < 0.05) and np.all(x[s.owner == 1] > -0.05)
    assert np.allclose(s.points[:, 2], 2.0, atol=1e-4)  # measured depth, not the Gaussians' centres
    # every 2 m pixel (all within 2.5 sigma of a wall Gaussian) is owned but the column beside the jump to 5 m; the 5 m
    # columns (no Gaussian there) and the NaN are not
    h, w = view.depth.shape
    assert len(s) == h * (w - 9) - 1
    # colours come from the pixels: red = column
    col = np.round((s.points[:, 0] / 2.0) * 60 + 32 - 0.5).astype(int)
    assert np.array_equal(s.colors[:, 0], col.astype(np.uint8))


def test_a_gaussian_explains_only_points_within_its_floored_extent():
    geom, cand = _wall_gaussians()
    view = _plane_view(0)
    view.depth[:] = 2.1  # 10 cm behind the wall Gaussians: 5 floored sigmas of 2 cm
    assert len(surface_samples(geom, cand, [view], SurfaceConfig(voxel=0.001))) == 0
    view.depth[:] = 2.03  # 1.5 floored sigmas: explained
    assert len(surface_samples(geom, cand, [view], SurfaceConfig(voxel=0.001))) > 0
    assert len(surface_samples(geom, cand, [view], SurfaceConfig(voxel=0.001, scale_floor=0.005))) == 0


def test_voxels_merge_nearby_points_and_views_add_up():
    geom, cand = _wall_gaussians()
    fine = surface_samples(geom, cand, [_plane_view()], SurfaceConfig(voxel=0.001))
    coarse = surface_samples(geom, cand, [_plane_view()], SurfaceConfig(voxel=0.1))
    keys = np.floor(coarse.points / 0.1).astype(np.int64)
    assert 0 < len(coarse) < len(fine) / 4 and len(np.unique(keys, axis=0)) == len(coarse)
    two = surface_samples(geom, cand, [_plane_view(), _plane_view()], SurfaceConfig(voxel=0.001))
    assert len(two) == len(fine)  # the same points twice merge
    views = [_plane_view(), _plane_view()]
    views[1].depth[:] = 2.03  # a second, different view: merged after each view or once, the same samples
    once = surface_samples(geom, cand, views, SurfaceConfig(voxel=0.02))
    each = surface_samples(geom, cand, views, SurfaceConfig(voxel=0.02), merge_every=1)
    assert len(once) > len(coarse) and np.array_equal(once.points, each.points) and np.array_equal(once.owner, each.owner)
    assert len(surface_samples(geom, torch.zeros(4, dtype=torch.bool), [_plane_view()], SurfaceConfig())) == 0


def test_rendered_depth_is_sampled_only_where_no_sensor_measured_the_surface():
    """surface.rendered_gap: view A's sensor measures the wall's left half; view B has no sensor
    reading and the field's rendered depth puts the wall 2 cm behind. B's points are kept only
    farther than rendered_gap from A's measured points (its right half), so the left half has one
    layer, the measured one; with rendered_gap 0, or where B's depth counts as measured, both."""
    geom, cand = _wall_gaussians()
    a, b = _plane_view(0), _plane_view(0)
    a.depth[0, 0] = 2.0  # no hole: A measures the whole left half
    a.depth[:, 32:] = float("nan")
    a.measured = torch.isfinite(a.depth)
    b.depth[:] = 2.02
    b.measured = torch.zeros_like(b.depth, dtype=torch.bool)
    cfg = SurfaceConfig(voxel=0.005)
    s = surface_samples(geom, cand, [a, b], cfg)
    measured, rendered = s.points[s.points[:, 2] < 2.01], s.points[s.points[:, 2] > 2.01]
    assert len(measured) > 100 and measured[:, 0].max() < 0.0
    assert len(rendered) > 100 and rendered[:, 0].min() > 0.0  # the right half only
    from scipy.spatial import cKDTree
    assert cKDTree(measured).query(rendered)[0].min() >= cfg.rendered_gap
    assert cKDTree(measured).query(rendered)[0].min() < cfg.rendered_gap + 0.01  # right from the gap on
    # merged after every view, the same samples
    each = surface_samples(geom, cand, [a, b], cfg, merge_every=1)
    assert np.array_equal(each.points, s.points) and np.array_equal(each.owner, s.owner)
    both = surface_samples(geom, cand, [a, b], SurfaceConfig(voxel=0.005, rendered_gap=0.0))
    assert (both.points[:, 2] > 2.01).sum() > len(rendered) and both.points[both.points[:, 2] > 2.01, 0].min() < -0.3
    b.measured = None  # a view whose depth is all the sensor's: nothing to drop
    assert (surface_samples(geom, cand, [a, b], cfg).points[:, 2] > 2.01).sum() == (both.points[:, 2] > 2.01).sum()


def test_rendered_depth_that_looks_through_a_measured_surface_is_not_sampled():
    """surface.rendered_window: a sparse sensor (a dot every 4th row and column) measures the wall
    at 2 m on the left half; the field's rendered depth between the dots says 2.05 m (blended
    through the wall, and still within reach of the wall's Gaussians). Those rendered pixels are dropped; rendered pixels with no reading within
    the window (the right half) are kept, at the wall's rendered depth."""
    from langx_ros.core.field.surface import see_through

    geom, cand = _wall_gaussians()
    v = _plane_view(0)
    v.measured = torch.zeros_like(v.depth, dtype=torch.bool)
    v.measured[::4, 0:32:4] = True  # sparse readings on the left half
    v.depth[:, :32] = torch.where(v.measured[:, :32], torch.tensor(2.0), torch.tensor(2.05))
    v.depth[:, 32:] = 2.02  # no reading: the field's depth of the wall
    through = see_through(v.depth, v.measured, 3, 0.03)
    assert through[:, :29].sum() == (~v.measured[:, :29]).sum()  # every rendered pixel beside the dots
    assert not through[:, 36:].any() and not through[v.measured].any()
    s = surface_samples(geom, cand, [v], SurfaceConfig(voxel=0.005))
    assert not (s.points[:, 2] > 2.04).any()  # nothing from behind the wall
    assert (np.abs(s.points[:, 2] - 2.02) < 0.005).sum() > 100
    off = surface_samples(geom, cand, [v], SurfaceConfig(voxel=0.005, rendered_window=0))
    assert (off.points[:, 2] > 2.04).sum() > 100  # without the check: the layer behind the wall


def test_rendered_depth_that_blends_surfaces_apart_in_depth_is_not_sampled():
    """surface.rendered_max_spread: rendered pixels (no sensor reading) whose blended Gaussians
    spread in depth by more than the limit (a pixel mixing a front surface and one behind it) are
    not sampled; sensor readings are, whatever the spread; 0 (the default) turns the check off."""
    geom, cand = _wall_gaussians()
    v = _plane_view(0)
    v.measured = torch.zeros_like(v.depth, dtype=torch.bool)
    v.measured[:12] = True  # the sensor's rows
    v.spread = torch.full_like(v.depth, 0.01)
    v.spread[:, 40:] = 0.15  # these columns blend two surfaces 30 cm apart
    h, w = v.depth.shape
    cfg = SurfaceConfig(voxel=0.001, rendered_window=0, rendered_max_spread=0.06)
    all_px = len(surface_samples(geom, cand, [v], SurfaceConfig(voxel=0.001, rendered_window=0, rendered_max_spread=0.0)))
    kept = len(surface_samples(geom, cand, [v], cfg))
    assert len(surface_samples(geom, cand, [v], SurfaceConfig(voxel=0.001, rendered_window=0))) == all_px  # default: off
    assert kept == all_px - (h - 12) * (w - 40) and kept < all_px
    v.spread = None  # not known: nothing to drop
    assert len(surface_samples(geom, cand, [v], cfg)) == all_px


def test_depth_jumps_are_not_sampled():
    """Flying pixels: both sides of a jump are dropped, smooth slopes and holes are not edges."""
    from langx_ros.core.field.surface import depth_edges

    d = torch.full((5, 6), 2.0)
    d[:, 3:] = 3.0  # a step between columns 2 and 3
    d[0, 0] = float("nan")
    d[4, :3] = torch.tensor([2.0, 2.02, 2.04])  # a slope of 1 % per pixel: no edge at 2 %
    e = depth_edges(d, 0.02, 0.01)
    assert e[:, 2].all() and e[:, 3].all() and not e[:, [0, 1, 4, 5]].any()
    assert not depth_edges(d, 0.6, 0.01).any()  # a 1 m jump is within 60 % of 2 m
    geom, cand = _wall_gaussians()
    view = _plane_view(0)
    view.depth[:, 40] = 2.4  # one column of flying pixels between the wall and the background
    s = surface_samples(geom, cand, [view], SurfaceConfig(voxel=0.001))
    h, w = view.depth.shape
    assert len(s) == h * (w - 3) - 1  # the column and its two neighbours are gone; the NaN pixel too


def test_the_map_cloud_shows_the_samples_of_selectable_gaussians():
    """LanguageField.selectable_cloud (~/field/cloud): the samples of observed, opaque Gaussians with
    the camera's colours and their owner's normal; without samples, the selectable centres."""
    from langx_ros.core.field.model import LanguageField

    n = 4
    params = {"means": torch.arange(12, dtype=torch.float32).reshape(4, 3), "quats": torch.tensor([[1.0, 0, 0, 0]] * n),
              "scales": torch.full((n, 3), -3.0), "opacities": torch.tensor([4.0, 4.0, -8.0, 4.0]),  # Gaussian 2 faint
              "colors": torch.zeros(n, 3), "sem": torch.zeros(n, 3)}
    normals = torch.tensor([[0.0, 0, 1], [0, 1, 0], [1, 0, 0], [0, 0, -1]])
    f = LanguageField(params, None, ["s"], meta={"min_weight": 0.5}, evidence=torch.tensor([[1.0], [1.0], [1.0], [0.0]]),
                      normals=normals)  # Gaussian 3 unobserved
    pts, cols, nrm = f.selectable_cloud(0.1)
    assert np.array_equal(pts, params["means"][:2].numpy()) and np.array_equal(nrm, normals[:2].numpy())
    owner = np.array([0, 1, 1, 2, 3])
    f.surface = SurfaceSamples(np.full((5, 3), 7, np.float32) * owner[:, None], np.arange(15, dtype=np.uint8).reshape(5, 3), owner, n)
    pts, cols, nrm = f.selectable_cloud(0.1)
    assert np.array_equal(pts[:, 0], [0, 7, 7]) and np.array_equal(cols[:, 0], [0, 3, 6])
    assert np.array_equal(nrm, normals[[0, 1, 1]].numpy())
