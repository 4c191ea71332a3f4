"""Losses of the field: photometric (L1 + SSIM), depth, normals, semantics (L2, L_s2d, L_s3d)."""
from __future__ import annotations

import math

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


def _masked_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of values where mask holds (0 when it never does); no host synchronisation."""
    m = mask.to(values.dtype)
    return (torch.nan_to_num(values) * m).sum() / m.sum().clamp(min=1.0)


def depth_loss(render: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean absolute depth error over pixels with a reading (target NaN = none)."""
    valid = torch.isfinite(target)
    return _masked_mean((render - torch.nan_to_num(target)).abs(), valid)


def normal_loss(render: torch.Tensor, target: torch.Tensor, max_angle_deg: float) -> torch.Tensor:
    """1 - cos between rendered and target normals, ignoring pixels whose angle exceeds
    ``max_angle_deg`` (unreliable targets: edges, depth noise) or whose target is missing.

    render, target: (H, W, 3); render need not be normalised.
    """
    valid = torch.isfinite(target).all(-1)
    r = F.normalize(render, dim=-1)
    t = torch.nan_to_num(target)
    cos = (r * t).sum(-1)
    keep = valid & (cos >= math.cos(math.radians(max_angle_deg)))
    return _masked_mean(1 - cos, keep)


def semantic_loss(render: torch.Tensor, target: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Mean squared error of rendered codes against per-pixel target codes.

    render, target: (H, W, D); valid: (H, W) bool.
    """
    return _masked_mean(((render - target) ** 2).sum(-1), valid)


class SegmentPairs:
    """Samples random pixel pairs lying in the same segment of an id map (-1 = none).

    The map is indexed once (pixels sorted by segment); each draw is then a few random-index
    gathers on the device, without host synchronisation.
    """

    def __init__(self, seg: torch.Tensor):
        flat = seg.reshape(-1)
        idx = torch.nonzero(flat >= 0).squeeze(1)
        order = idx[torch.argsort(flat[idx], stable=True)]
        ids = flat[order]
        self.order = order.to(torch.int32)  # per-pixel tables in int32: half the memory of int64
        change = torch.ones_like(ids, dtype=torch.bool)
        change[1:] = ids[1:] != ids[:-1]
        self.starts = torch.nonzero(change).squeeze(1)
        self.lengths = torch.diff(torch.cat([self.starts, torch.tensor([ids.numel()], device=seg.device)]))
        self.run_of = (torch.cumsum(change.long(), 0) - 1).to(torch.int32)
        self.size = int(self.order.numel())

    def sample(self, n: int, generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(a, b): flat pixel indices, pairwise in one segment (empty when the map has < 2 pixels)."""
        dev = self.order.device
        if self.size < 2:
            e = torch.empty(0, dtype=torch.long, device=dev)
            return e, e
        a_pos = torch.randint(0, self.size, (n,), device=dev, generator=generator)
        r = self.run_of[a_pos].long()
        offset = (torch.rand(n, device=dev, generator=generator) * self.lengths[r]).long()
        b_pos = self.starts[r] + torch.minimum(offset, self.lengths[r] - 1)
        return self.order[a_pos].long(), self.order[b_pos].long()


def s2d_loss(render: torch.Tensor, pairs: SegmentPairs, n_pairs: int = 4096) -> torch.Tensor:
    """L_s2d: rendered features of pixel pairs inside one mask should agree."""
    a, b = pairs.sample(n_pairs)
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
