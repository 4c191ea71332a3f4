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


def test_colours_far_from_every_palette_colour_get_no_id():
    colors = palette(8)
    px = np.stack([colors[3], colors[3] * 0.5 + colors[5] * 0.5, colors[5] + 0.02])  # a blend sits between two colours
    assert list(rgb_to_ids(px, colors)[[0, 2]]) == [3, 5]
    strict = rgb_to_ids(px, colors, max_distance=0.1)
    assert strict[0] == 3 and strict[1] == -1 and strict[2] == 5
    import torch

    as_tensor = rgb_to_ids(torch.as_tensor(px), colors, max_distance=0.1)  # decoded on the model's device
    assert isinstance(as_tensor, torch.Tensor) and as_tensor.tolist() == strict.tolist()


def test_shared_ids_follow_the_objects_across_key_frames():
    """Two views of a generated scene, segmented independently (the second's ids shuffled): after
    matching in 3D, each object visible in both has ONE id in both maps."""
    import dataclasses

    from langx_ros.core.synthetic import make_scene
    from langx_ros.core.trimap.segment_match import shared_ids

    scene = make_scene(8, 64, 48, span_deg=120.0)
    a, b = scene.frames[0], scene.frames[1]
    ins_a, ins_b = scene.instances[0], scene.instances[1]
    perm = np.random.default_rng(3).permutation(int(ins_b.max()) + 1) + 10
    seg_b = np.where(ins_b >= 0, perm[np.clip(ins_b, 0, None)], -1)  # same objects, unrelated ids
    ids = shared_ids(ins_a, seg_b, a, b, max_ids=64)
    both = sorted(set(np.unique(ins_a[ins_a >= 0])) & set(np.unique(ins_b[ins_b >= 0])))
    assert len(both) >= 3 and ids.matched >= len(both) - 1
    agree = 0
    for obj in both:
        ia, ib = np.unique(ids.first[ins_a == obj]), np.unique(ids.second[ins_b == obj])
        assert len(ia) == 1 and len(ib) == 1  # one id per object in each frame
        agree += int(ia[0] == ib[0])
    assert agree >= len(both) - 1  # (a sliver seen from one side only may stay unmatched)
    # ids of different objects stay different
    firsts = [int(np.unique(ids.first[ins_a == o])[0]) for o in np.unique(ins_a[ins_a >= 0])]
    assert len(firsts) == len(set(firsts))
    # without depth nothing can be matched: disjoint ids; the cap leaves the smallest out
    no_depth = shared_ids(ins_a, seg_b, a, dataclasses.replace(b, depth=None), max_ids=64)
    assert no_depth.matched == 0 and not set(np.unique(no_depth.first)) & set(np.unique(no_depth.second)) - {-1}
    capped = shared_ids(ins_a, seg_b, a, b, max_ids=2)
    assert set(np.unique(capped.first)) <= {-1, 0, 1} and capped.count <= 2
