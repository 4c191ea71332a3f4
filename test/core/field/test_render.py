"""The rasterizer: the torch compositor on the CPU (gsplat itself is checked on the GPU machine)."""
from __future__ import annotations

import math

import pytest
import torch

from langx_ros.core.field.render import BACKEND_TORCH, project, quat_to_rotmat, rasterize

K = torch.tensor([[40.0, 0, 16], [0, 40.0, 12], [0, 0, 1]], dtype=torch.float64)
EYE = torch.eye(4, dtype=torch.float64)


def _random_scene(n=40, seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    means = torch.stack([torch.rand(n, generator=g) * 1.6 - 0.8, torch.rand(n, generator=g) * 1.2 - 0.6,
                         2 + torch.rand(n, generator=g) * 2], -1).to(dtype)
    quats = torch.randn(n, 4, generator=g).to(dtype)
    scales = (0.03 + 0.1 * torch.rand(n, 3, generator=g)).to(dtype)
    opac = (0.2 + 0.75 * torch.rand(n, generator=g)).to(dtype)
    feats = torch.rand(n, 5, generator=g).to(dtype)
    return means, quats, scales, opac, feats


def _dense_reference(means, quats, scales, opac, feats, viewmat, K, W, H):
    """Straightforward O(N * H * W) compositing with gsplat's rules, for comparison."""
    m2, con, z, radii = project(means, quats, scales, viewmat, K, W, H)
    vis = (z > 0.01) & (m2[:, 0] + radii[:, 0] > 0) & (m2[:, 0] - radii[:, 0] < W) & (m2[:, 1] + radii[:, 1] > 0) & (m2[:, 1] - radii[:, 1] < H)
    order = torch.argsort(z)
    order = order[vis[order]]
    ys, xs = torch.meshgrid(torch.arange(H, dtype=means.dtype) + 0.5, torch.arange(W, dtype=means.dtype) + 0.5, indexing="ij")
    img = torch.zeros(H, W, feats.shape[1], dtype=means.dtype)
    T = torch.ones(H, W, dtype=means.dtype)
    acc = torch.zeros(H, W, dtype=means.dtype)
    done = torch.zeros(H, W, dtype=torch.bool)
    for i in order.tolist():
        dx, dy = xs - m2[i, 0], ys - m2[i, 1]
        inside = (dx.abs() <= radii[i, 0] + 1) & (dy.abs() <= radii[i, 1] + 1)
        s = 0.5 * (con[i, 0] * dx**2 + con[i, 2] * dy**2) + con[i, 1] * dx * dy
        a = torch.clamp(opac[i] * torch.exp(-s), max=0.999)
        a = torch.where((a >= 1 / 255) & (s >= 0) & inside & ~done, a, torch.zeros_like(a))
        nextT = T * (1 - a)
        stop = nextT <= 1e-4
        a = torch.where(stop, torch.zeros_like(a), a)
        done = done | stop
        img += (a * T)[..., None] * feats[i]
        acc += a * T
        T = torch.where(stop, T, nextT)
    return img, acc


def test_single_gaussian_matches_the_closed_form():
    means = torch.tensor([[0.0, 0.0, 2.0]], dtype=torch.float64)
    quats = torch.tensor([[1.0, 0, 0, 0]], dtype=torch.float64)
    scales = torch.full((1, 3), 0.05, dtype=torch.float64)
    out = rasterize(means, quats, scales, torch.tensor([0.8], dtype=torch.float64), torch.tensor([[1.0, 0.5]], dtype=torch.float64),
                    EYE, K, 32, 24, backend="torch")
    assert out.backend == BACKEND_TORCH
    # 2D std = f * s / z = 1 px, plus eps2d 0.3 on the variance; pixel (16, 12) has centre (16.5, 12.5)
    var = (40 * 0.05 / 2) ** 2 + 0.3
    expected = 0.8 * math.exp(-0.5 * (0.5**2 + 0.5**2) / var)
    assert out.alpha[12, 16, 0].item() == pytest.approx(expected, rel=1e-9)
    assert out.features[12, 16].tolist() == pytest.approx([expected, 0.5 * expected], rel=1e-9)
    assert out.depth[12, 16, 0].item() == pytest.approx(2.0)
    assert out.alpha[0, 0, 0].item() == 0.0  # far outside 3.33 sigma


def test_front_gaussian_occludes():
    means = torch.tensor([[0.0, 0.0, 2.0], [0.0, 0.0, 3.0]], dtype=torch.float64)
    quats = torch.tensor([[1.0, 0, 0, 0]] * 2, dtype=torch.float64)
    scales = torch.full((2, 3), 0.2, dtype=torch.float64)
    feats = torch.tensor([[1.0, 0.0], [0.0, 1.0]], dtype=torch.float64)
    out = rasterize(means, quats, scales, torch.tensor([0.99, 0.99], dtype=torch.float64), feats, EYE, K, 32, 24, backend="torch")
    f = out.features[12, 16]
    assert f[0] > 0.9 and f[1] < 0.05
    assert out.depth[12, 16, 0] < 2.05


def test_matches_dense_reference_on_a_random_scene():
    scene = _random_scene()
    out = rasterize(*scene, EYE, K, 32, 24, backend="torch")
    ref_img, ref_acc = _dense_reference(*scene, EYE, K, 32, 24)
    assert (out.alpha[..., 0] > 0.01).float().mean() > 0.3  # the scene covers the image
    assert torch.allclose(out.features, ref_img, atol=1e-9)
    assert torch.allclose(out.alpha[..., 0], ref_acc, atol=1e-9)


def test_gradients_match_finite_differences():
    means, quats, scales, opac, feats = _random_scene(n=6, seed=3)
    params = [means.clone().requires_grad_(), scales.clone().requires_grad_(), opac.clone().requires_grad_(), feats.clone().requires_grad_()]

    def f(m, s, o, c):
        out = rasterize(m, quats, s, o, c, EYE, K, 16, 12, backend="torch")
        return (out.features * torch.linspace(0.1, 1, 5, dtype=torch.float64)).sum() + out.alpha.sum()

    assert torch.autograd.gradcheck(f, params, eps=1e-6, atol=1e-4, rtol=1e-3)


def test_project_uses_the_rotation_and_scales():
    q = torch.tensor([[math.cos(math.pi / 8), 0, 0, math.sin(math.pi / 8)]], dtype=torch.float64)  # 45 deg about z
    R = quat_to_rotmat(q)[0]
    assert torch.allclose(R @ torch.tensor([1.0, 0, 0], dtype=torch.float64), torch.tensor([0.7071067811865476, 0.7071067811865476, 0], dtype=torch.float64))
    means = torch.tensor([[0.0, 0.0, 2.0]], dtype=torch.float64)
    _, con_iso, _, _ = project(means, torch.tensor([[1.0, 0, 0, 0]], dtype=torch.float64), torch.tensor([[0.1, 0.1, 0.1]], dtype=torch.float64), EYE, K, 32, 24)
    _, con_rot, _, _ = project(means, q, torch.tensor([[0.2, 0.05, 0.1]], dtype=torch.float64), EYE, K, 32, 24)
    assert abs(con_iso[0, 1]) < 1e-12 and abs(con_rot[0, 1]) > 1e-3  # an anisotropic, rotated footprint


def test_refuses_views_that_would_exhaust_memory():
    scene = _random_scene()
    with pytest.raises(MemoryError, match="Gaussian-pixel pairs"):
        rasterize(*scene, EYE, K, 32, 24, backend="torch", max_pairs=100)


def test_gsplat_backend_needs_cuda():
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA: gsplat is compared on the GPU by bench/compare_rasterizers.py")
    with pytest.raises(ValueError, match="CUDA"):
        rasterize(*_random_scene(dtype=torch.float32), EYE.float(), K.float(), 32, 24, backend="gsplat")
