"""Field losses: masks, pairs, SSIM."""
from __future__ import annotations

import math

import torch

from langx_ros.core.field import losses as L


def test_segment_pairs_stay_inside_one_segment():
    seg = torch.tensor([[0, 0, 1, -1], [2, 1, 1, -1], [2, 2, 0, 3]])
    pairs = L.SegmentPairs(seg)
    a, b = pairs.sample(500, generator=torch.Generator().manual_seed(0))
    flat = seg.reshape(-1)
    assert (flat[a] == flat[b]).all() and (flat[a] >= 0).all()
    assert set(flat[a].tolist()) == {0, 1, 2, 3}  # every segment gets drawn
    assert L.SegmentPairs(torch.full((2, 2), -1)).sample(5)[0].numel() == 0


def test_masked_losses_ignore_missing_targets():
    render = torch.full((2, 3), 2.0)
    target = torch.tensor([[1.0, float("nan"), 2.0], [float("nan")] * 3])
    assert L.depth_loss(render, target).item() == 0.5
    assert L.depth_loss(render, torch.full((2, 3), float("nan"))).item() == 0.0


def test_normal_loss_angle_mask():
    up = torch.tensor([0.0, 0.0, 1.0])
    render = up.expand(1, 2, 3).clone()
    tilt = torch.tensor([0.0, math.sin(0.2), math.cos(0.2)])
    flipped = -up
    target = torch.stack([tilt, flipped])[None]
    # the flipped target is beyond the 60 degree mask: only the tilted pixel counts
    assert abs(L.normal_loss(render * 3, target, 60.0).item() - (1 - math.cos(0.2))) < 1e-6


def test_ssim_is_one_for_identical_images_and_lower_otherwise():
    g = torch.Generator().manual_seed(0)
    a = torch.rand(32, 32, 3, generator=g)
    assert abs(L.ssim(a, a).item() - 1.0) < 1e-5
    assert L.ssim(a, torch.rand(32, 32, 3, generator=g)).item() < 0.2


def test_s3d_pulls_neighbours_together():
    pts = torch.tensor([[0.0, 0, 0], [0.1, 0, 0], [5.0, 0, 0], [5.1, 0, 0]])
    nb = L.knn(pts, 1)
    assert nb[:, 0].tolist() == [1, 0, 3, 2]
    sem = torch.tensor([[1.0], [1.0], [0.0], [2.0]])
    assert L.s3d_loss(sem, nb).item() == 2.0  # (0 + 0 + 4 + 4) / 4


def test_train_view_gathers_targets_from_one_code_per_segment():
    """The compact view (uint8 colour, int32 ids, a code per segment) yields the per-pixel
    targets the losses expect; a level without features gives none (L_s2d only)."""
    from langx_ros.core.field.train import TrainView

    seg = torch.tensor([[[0, 1], [-1, 1]], [[0, 0], [0, -1]]], dtype=torch.int32)  # (L=2, 2, 2)
    codes = [torch.tensor([[1.0, 0, 0], [0, 2.0, 0]]), torch.zeros(0, 3)]
    rgb = torch.tensor([[[0, 255, 51]] * 2] * 2, dtype=torch.uint8)
    v = TrainView(rgb, torch.eye(3), torch.eye(4), seg=seg, codes=codes)
    assert torch.allclose(v.rgb_target()[0, 0], torch.tensor([0.0, 1.0, 0.2]))
    target, valid = v.semantic_target(0)
    assert target.shape == (2, 2, 3) and valid.tolist() == [[True, True], [False, True]]
    assert target[0, 1].tolist() == [0.0, 2.0, 0.0] and target[1, 1].tolist() == [0.0, 2.0, 0.0]
    assert v.semantic_target(1) is None
    assert v.nbytes() == 12 + 36 + 64 + 32 + 24  # uint8 colour, K, viewmat, int32 ids, codes
    a, b = L.SegmentPairs(seg[0]).sample(64)
    assert a.dtype == torch.long and (seg[0].reshape(-1)[a] == seg[0].reshape(-1)[b]).all()
