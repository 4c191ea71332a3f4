"""Losses of the field: photometric (L1 + SSIM), depth, normals, semantics (L2, L_s2d, L_s3d)."""
from __future__ import annotations

import torch
import torch.nn.functional as F


def _gauss_window(size: int, sigma: float, channels: int, device, dtype) -> torch.Tensor:
    x = torch.arange(size, device=device, dtype=dtype) - (size - 1) / 2
    g = torch.exp(-(x**2) / (2 * sigma**2))
    g = g / g.sum()
    w = (g[:, None] * g[None, :])[None, None]
    return w.expand(channels, 1, size, size).contiguous()


def ssim(a: torch.Tensor, b: torch.Tensor, window: int = 11, sigma: float = 1.5) -> torch.Tensor:
    """Mean SSIM of two (H, W, C) images in [0, 1] (Gaussian window, constants of Wang et al.)."""
    x = a.permute(2, 0, 1)[None]
    y = b.permute(2, 0, 1)[None]
    C = x.shape[1]
    w = _gauss_window(window, sigma, C, x.device, x.dtype)
    pad = window // 2
    mu_x = F.conv2d(x, w, padding=pad, groups=C)
    mu_y = F.conv2d(y, w, padding=pad, groups=C)
    sxx = F.conv2d(x * x, w, padding=pad, groups=C) - mu_x**2
    syy = F.conv2d(y * y, w, padding=pad, groups=C) - mu_y**2
    sxy = F.conv2d(x * y, w, padding=pad, groups=C) - mu_x * mu_y
    c1, c2 = 0.01**2, 0.03**2
    s = ((2 * mu_x * mu_y + c1) * (2 * sxy + c2)) / ((mu_x**2 + mu_y**2 + c1) * (sxx + syy + c2))
    return s.mean()


def photometric_loss(render: torch.Tensor, target: torch.Tensor, lambda_ssim: float) -> torch.Tensor:
    """(1 - lambda) * L1 + lambda * (1 - SSIM), as in 3D Gaussian splatting."""
    l1 = (render - target).abs().mean()
    if lambda_ssim <= 0:
        return l1
    return (1 - lambda_ssim) * l1 + lambda_ssim * (1 - ssim(render, target))


def depth_loss(render: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean absolute depth error over pixels with a reading (target NaN = none)."""
    valid = torch.isfinite(target)
    if not valid.any():
        return render.sum() * 0
    return (render[valid] - target[valid]).abs().mean()


def normal_loss(render: torch.Tensor, target: torch.Tensor, max_angle_deg: float) -> torch.Tensor:
    """1 - cos between rendered and target normals, ignoring pixels whose angle exceeds
    ``max_angle_deg`` (unreliable targets: edges, depth noise) or whose target is missing.

    render, target: (H, W, 3); render need not be normalised.
    """
    valid = torch.isfinite(target).all(-1)
    r = F.normalize(render, dim=-1)
    t = torch.nan_to_num(target)
    cos = (r * t).sum(-1)
    keep = valid & (cos >= torch.cos(torch.deg2rad(torch.tensor(max_angle_deg, device=r.device))))
    if not keep.any():
        return render.sum() * 0
    return (1 - cos[keep]).mean()


def semantic_loss(render: torch.Tensor, target: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Mean squared error of rendered codes against per-pixel target codes.

    render, target: (H, W, D); valid: (H, W) bool.
    """
    if not valid.any():
        return render.sum() * 0
    return ((render[valid] - target[valid]) ** 2).sum(-1).mean()


def same_segment_pairs(seg: torch.Tensor, n_pairs: int, generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Random pixel pairs (flat indices) that lie in the same segment of ``seg`` (-1 = none)."""
    flat = seg.reshape(-1)
    idx = torch.nonzero(flat >= 0).squeeze(1)
    if idx.numel() < 2:
        e = torch.empty(0, dtype=torch.long, device=seg.device)
        return e, e
    order = idx[torch.argsort(flat[idx], stable=True)]
    ids = flat[order]
    # start and length of each segment's run in the sorted order
    change = torch.ones_like(ids, dtype=torch.bool)
    change[1:] = ids[1:] != ids[:-1]
    starts = torch.nonzero(change).squeeze(1)
    lengths = torch.diff(torch.cat([starts, torch.tensor([ids.numel()], device=seg.device)]))
    run_of = torch.cumsum(change.long(), 0) - 1
    a_pos = torch.randint(0, order.numel(), (n_pairs,), device=seg.device, generator=generator)
    r = run_of[a_pos]
    b_pos = starts[r] + (torch.rand(n_pairs, device=seg.device, generator=generator) * lengths[r]).long().clamp(max=lengths[r] - 1)
    return order[a_pos], order[b_pos]


def s2d_loss(render: torch.Tensor, seg: torch.Tensor, n_pairs: int = 4096) -> torch.Tensor:
    """L_s2d: rendered features of pixel pairs inside one mask should agree."""
    a, b = same_segment_pairs(seg, n_pairs)
    if a.numel() == 0:
        return render.sum() * 0
    f = render.reshape(-1, render.shape[-1])
    return ((f[a] - f[b]) ** 2).sum(-1).mean()


def s3d_loss(sem: torch.Tensor, neighbours: torch.Tensor) -> torch.Tensor:
    """L_s3d: a Gaussian's semantic attribute should agree with its k nearest neighbours.

    sem: (N, C); neighbours: (N, k) indices.
    """
    return ((sem[:, None, :] - sem[neighbours]) ** 2).sum(-1).mean()


def knn(points: torch.Tensor, k: int) -> torch.Tensor:
    """(N, k) indices of each point's k nearest other points (scipy's KD-tree on the CPU)."""
    from scipy.spatial import cKDTree

    p = points.detach().cpu().numpy()
    k_eff = min(k + 1, len(p))
    _, idx = cKDTree(p).query(p, k=k_eff)
    idx = idx.reshape(len(p), k_eff)[:, 1:]
    return torch.as_tensor(idx, dtype=torch.long, device=points.device)
