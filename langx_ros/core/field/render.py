"""Rendering Gaussians: gsplat's CUDA rasterizer, or a small dense compositor on the CPU.

One functional entry point, :func:`rasterize`, in the style of ``gsplat.rasterization``: plain
tensors in, tensors out. On CUDA it calls gsplat. gsplat has no CPU rasterizer, so on the CPU a
small differentiable alpha compositor written here follows gsplat's conventions (EWA projection
with the same Jacobian clamping, ``eps2d`` = 0.3 added to the 2D covariance, pixel centres at
+0.5, alpha clamped to 0.999 and dropped below 1/255, front-to-back compositing that stops once
transmittance would fall to 1e-4, expected depth). It is a
named substitute for tests and small settings (``BACKEND_TORCH``), checked against gsplat on a
GPU by ``bench/compare_rasterizers.py``. It is sparse: each Gaussian touches only the pixels of
its 3.33-sigma box, so time and memory grow with the covered area, not N * H * W.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

BACKEND_GSPLAT = "gsplat"
BACKEND_TORCH = "torch compositor (CPU substitute for gsplat)"


@dataclass
class RenderOutput:
    """What a view renders to (channel-last, like gsplat)."""

    features: torch.Tensor  # (H, W, C) alpha-weighted sum of the Gaussians' features
    alpha: torch.Tensor  # (H, W, 1) accumulated opacity
    depth: torch.Tensor  # (H, W, 1) expected depth (0 where alpha is 0)
    backend: str
    means2d: torch.Tensor | None = None  # (N, 2) projected centres (gsplat: grads for densification)
    radii: torch.Tensor | None = None  # (N,) or (N, 2) screen radii; 0 = not visible
    info: dict | None = None  # gsplat's meta dict (for its densification strategies)


def quat_to_rotmat(quats: torch.Tensor) -> torch.Tensor:
    """(N, 4) quaternions (w, x, y, z; any norm) -> (N, 3, 3) rotation matrices."""
    q = F.normalize(quats, dim=-1)
    w, x, y, z = q.unbind(-1)
    return torch.stack(
        [
            1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y),
            2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x),
            2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y),
        ],
        dim=-1,
    ).reshape(q.shape[:-1] + (3, 3))


def project(
    means: torch.Tensor, quats: torch.Tensor, scales: torch.Tensor, viewmat: torch.Tensor, K: torch.Tensor,
    width: int, height: int, eps2d: float = 0.3,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """EWA projection of 3D Gaussians (gsplat's pinhole conventions).

    Returns:
        means2d (N, 2) pixels, conics (N, 3) = upper triangle of the inverse 2D covariance
        (a, b, c), depths (N,) camera z, radii (N, 2) 3.33-sigma extents in pixels.
    """
    R_wc, t_wc = viewmat[:3, :3], viewmat[:3, 3]
    mc = means @ R_wc.T + t_wc
    Rg = quat_to_rotmat(quats)
    M = Rg * scales[:, None, :]
    cov_w = M @ M.transpose(1, 2)
    cov_c = R_wc @ cov_w @ R_wc.T
    tx, ty, tz = mc.unbind(-1)
    fx, fy, cx, cy = K[0, 0], K[1, 1], K[0, 2], K[1, 2]
    tan_fovx, tan_fovy = 0.5 * width / fx, 0.5 * height / fy
    lim_xp, lim_xn = (width - cx) / fx + 0.3 * tan_fovx, cx / fx + 0.3 * tan_fovx
    lim_yp, lim_yn = (height - cy) / fy + 0.3 * tan_fovy, cy / fy + 0.3 * tan_fovy
    txc = tz * torch.clamp(tx / tz, min=-lim_xn, max=lim_xp)
    tyc = tz * torch.clamp(ty / tz, min=-lim_yn, max=lim_yp)
    zero = torch.zeros_like(tz)
    J = torch.stack([fx / tz, zero, -fx * txc / tz**2, zero, fy / tz, -fy * tyc / tz**2], -1).reshape(-1, 2, 3)
    cov2d = J @ cov_c @ J.transpose(1, 2) + eps2d * torch.eye(2, dtype=means.dtype, device=means.device)
    det = (cov2d[:, 0, 0] * cov2d[:, 1, 1] - cov2d[:, 0, 1] * cov2d[:, 1, 0]).clamp(min=1e-10)
    conics = torch.stack([cov2d[:, 1, 1] / det, -0.5 * (cov2d[:, 0, 1] + cov2d[:, 1, 0]) / det, cov2d[:, 0, 0] / det], -1)
    means2d = torch.stack([fx * tx / tz + cx, fy * ty / tz + cy], -1)
    radii = torch.stack([torch.ceil(3.33 * cov2d[:, 0, 0].sqrt()), torch.ceil(3.33 * cov2d[:, 1, 1].sqrt())], -1)
    return means2d, conics, tz, radii


def _rasterize_torch(
    means: torch.Tensor, quats: torch.Tensor, scales: torch.Tensor, opacities: torch.Tensor, features: torch.Tensor,
    viewmat: torch.Tensor, K: torch.Tensor, width: int, height: int, near_plane: float, max_pairs: int,
) -> RenderOutput:
    """Sparse front-to-back compositing in plain torch (differentiable by autograd).

    Each visible Gaussian is paired with the pixels of its 3.33-sigma box; pairs are sorted by
    (pixel, depth) and composited with a segmented cumulative sum of log(1 - alpha) (float64).
    """
    means2d, conics, depths, radii = project(means, quats, scales, viewmat, K, width, height)
    visible = (
        (depths > near_plane)
        & (means2d[:, 0] + radii[:, 0] > 0) & (means2d[:, 0] - radii[:, 0] < width)
        & (means2d[:, 1] + radii[:, 1] > 0) & (means2d[:, 1] - radii[:, 1] < height)
    )
    radii = torch.where(visible[:, None], radii, torch.zeros_like(radii)).to(torch.int32)
    C = features.shape[1]
    dev, dt = means.device, features.dtype
    n_pix = width * height
    out_f = torch.zeros(n_pix, C, dtype=dt, device=dev)
    out_a = torch.zeros(n_pix, dtype=dt, device=dev)
    out_d = torch.zeros(n_pix, dtype=dt, device=dev)
    idx = torch.nonzero(visible).squeeze(1)
    if idx.numel() > 0:
        with torch.no_grad():
            m2 = means2d[idx].detach()
            r = radii[idx].to(m2.dtype)
            x0 = torch.clamp(torch.floor(m2[:, 0] - r[:, 0]), 0, width - 1).long()
            x1 = torch.clamp(torch.ceil(m2[:, 0] + r[:, 0]), 0, width - 1).long()
            y0 = torch.clamp(torch.floor(m2[:, 1] - r[:, 1]), 0, height - 1).long()
            y1 = torch.clamp(torch.ceil(m2[:, 1] + r[:, 1]), 0, height - 1).long()
            bw, bh = x1 - x0 + 1, y1 - y0 + 1
            counts = bw * bh
            total = int(counts.sum())
            if total > max_pairs:
                raise MemoryError(
                    f"the torch compositor would need {total} Gaussian-pixel pairs (> {max_pairs}); "
                    "render smaller images or fewer Gaussians, or use gsplat on CUDA"
                )
            local_g = torch.repeat_interleave(torch.arange(idx.numel(), device=dev), counts)
            offsets = torch.cumsum(counts, 0) - counts
            k = torch.arange(total, device=dev) - offsets[local_g]
            px = x0[local_g] + k % bw[local_g]
            py = y0[local_g] + k // bw[local_g]
        g = idx[local_g]
        dx = px.to(dt) + 0.5 - means2d[g, 0]
        dy = py.to(dt) + 0.5 - means2d[g, 1]
        con = conics[g]
        sigma = 0.5 * (con[:, 0] * dx * dx + con[:, 2] * dy * dy) + con[:, 1] * dx * dy
        alpha = torch.clamp_max(opacities[g] * torch.exp(-sigma), 0.999)
        with torch.no_grad():
            keep = (sigma >= 0) & (alpha >= 1.0 / 255.0)
            pid = (py * width + px)[keep]
            rank = torch.empty_like(depths, dtype=torch.long)
            rank[torch.argsort(depths, stable=True)] = torch.arange(depths.numel(), device=dev)
            key = pid * depths.numel() + rank[g[keep]]
            order = torch.argsort(key)
            pid = pid[order]
        sel = torch.nonzero(keep).squeeze(1)[order]
        a = alpha[sel]
        gs = g[sel]
        log1m = torch.log1p(-a.to(torch.float64))
        cs = torch.cumsum(log1m, 0)
        with torch.no_grad():
            first = torch.ones_like(pid, dtype=torch.bool)
            first[1:] = pid[1:] != pid[:-1]
            start = torch.cummax(torch.where(first, torch.arange(pid.numel(), device=dev), torch.zeros_like(pid)), 0).values
        base = cs[start] - log1m[start]
        log_incl = cs - base
        log_excl = log_incl - log1m
        w = (a.to(torch.float64) * torch.exp(log_excl) * (log_incl > math.log(1e-4)).to(torch.float64)).to(dt)
        out_f = out_f.index_add(0, pid, w[:, None] * features[gs])
        out_a = out_a.index_add(0, pid, w)
        out_d = out_d.index_add(0, pid, w * depths[gs])
    f = out_f.reshape(height, width, C)
    a_img = out_a.reshape(height, width, 1)
    depth = out_d.reshape(height, width, 1) / a_img.clamp(min=1e-10)
    return RenderOutput(f, a_img, depth, BACKEND_TORCH, means2d, radii)


def rasterize(
    means: torch.Tensor,
    quats: torch.Tensor,
    scales: torch.Tensor,
    opacities: torch.Tensor,
    features: torch.Tensor,
    viewmat: torch.Tensor,
    K: torch.Tensor,
    width: int,
    height: int,
    backend: str = "auto",
    near_plane: float = 0.01,
    max_pairs: int = 50_000_000,
    absgrad: bool = False,
) -> RenderOutput:
    """Render N Gaussians with C feature channels into one pinhole view.

    Args:
        means: (N, 3) world centres. quats: (N, 4) (w, x, y, z). scales: (N, 3) std devs (> 0).
        opacities: (N,) in [0, 1]. features: (N, C) per-Gaussian features (colour, normals, codes).
        viewmat: (4, 4) world-to-camera (OpenCV axes). K: (3, 3) intrinsics.
        width, height: image size in pixels.
        backend: "gsplat" (CUDA), "torch" (the compositor here), or "auto" (gsplat on CUDA
            tensors, the torch compositor otherwise).
        near_plane: Gaussians closer than this (camera z) are skipped.
        max_pairs: torch compositor only: refuse views needing more Gaussian-pixel pairs
            than this (bounds its memory; MemoryError with a message).
        absgrad: gsplat only: keep absolute 2D gradients (for its densification strategy).

    Returns:
        RenderOutput with (H, W, C) features, (H, W, 1) alpha and expected depth.
    """
    if backend == "auto":
        backend = "gsplat" if means.is_cuda else "torch"
    if backend == "torch":
        return _rasterize_torch(means, quats, scales, opacities, features, viewmat, K, width, height, near_plane, max_pairs)
    if backend != "gsplat":
        raise ValueError(f"unknown rasterizer backend '{backend}' (auto, gsplat, torch)")
    if not means.is_cuda:
        raise ValueError("the gsplat backend needs CUDA tensors (use backend='torch' on the CPU)")
    from gsplat import rasterization  # imported lazily: its CUDA extension compiles on first use

    colors, alphas, meta = rasterization(
        means, quats, scales, opacities, features, viewmat[None], K[None], width, height,
        near_plane=near_plane, render_mode="RGB+ED", packed=False, absgrad=absgrad,
    )
    out = colors[0]
    return RenderOutput(out[..., :-1], alphas[0], out[..., -1:], BACKEND_GSPLAT, meta.get("means2d"), meta.get("radii"), meta)

