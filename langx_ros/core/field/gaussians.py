"""Gaussian parameters: initialisation from a point cloud, activation, surface normals.

Stored raw (as gsplat's strategies expect): ``means`` (N, 3), ``quats`` (N, 4, w-first),
``scales`` (N, 3, log), ``opacities`` (N, logit), ``colors`` (N, 3, logit) and ``sem``
(N, L * D): one D-dim LQC code per segmentation level, rendered like colour.
"""
from __future__ import annotations

import numpy as np
import torch
from scipy.spatial import cKDTree

from langx_ros.core.field.render import quat_to_rotmat


def voxel_downsample(points: np.ndarray, voxel: float, *extra: np.ndarray) -> tuple[np.ndarray, ...]:
    """Keep one point (the first) per voxel of edge ``voxel``; ``extra`` arrays follow along."""
    if voxel <= 0:
        return (points, *extra)
    keys = np.floor(points / voxel).astype(np.int64)
    _, first = np.unique(keys, axis=0, return_index=True)
    first.sort()
    return (points[first], *(e[first] for e in extra))


def quats_from_normals(normals: np.ndarray) -> np.ndarray:
    """(N, 4) w-first unit quaternions rotating +z onto each normal."""
    z = np.array([0.0, 0.0, 1.0])
    n = normals / np.linalg.norm(normals, axis=1, keepdims=True)
    axis = np.cross(np.broadcast_to(z, n.shape), n)
    s = np.linalg.norm(axis, axis=1)
    c = n @ z
    half = 0.5 * np.arctan2(s, c)
    axis_u = np.where(s[:, None] > 1e-9, axis / np.maximum(s[:, None], 1e-12), np.array([1.0, 0.0, 0.0]))
    q = np.concatenate([np.cos(half)[:, None], axis_u * np.sin(half)[:, None]], axis=1)
    return q.astype(np.float32)


def init_from_points(
    points: np.ndarray,
    colors: np.ndarray,
    normals: np.ndarray | None,
    sem_channels: int,
    max_gaussians: int,
    flatness: float = 0.1,
    initial_opacity: float = 0.5,
    device: torch.device | str = "cpu",
    seed: int = 0,
) -> torch.nn.ParameterDict:
    """Gaussians on a point cloud.

    Args:
        points: (M, 3) world points. colors: (M, 3) uint8. normals: (M, 3) or None.
        sem_channels: channels of the semantic attribute (levels * code dim).
        max_gaussians: the cloud is voxel-downsampled (then randomly subsampled) to at most this.
        flatness: with normals, the scale along the normal is this fraction of the others
            (surface Gaussians lie flat on the surface).
        initial_opacity: starting opacity of every Gaussian.

    Returns:
        A ParameterDict with raw parameters (see the module doc).
    """
    pts = np.asarray(points, dtype=np.float64)
    cols = np.asarray(colors, dtype=np.float64) / 255.0
    nrm = None if normals is None else np.asarray(normals, dtype=np.float64)
    if len(pts) == 0:
        raise ValueError("cannot initialise Gaussians from an empty point cloud")
    if len(pts) > max_gaussians:
        # voxel size from the bounding volume of the bulk of the points (a few outliers, such as
        # depth readings of 65 m, must not make the voxels huge), then a random cut to the budget
        extent = (np.percentile(pts, 99, axis=0) - np.percentile(pts, 1, axis=0)).clip(min=1e-3)
        voxel = float((np.prod(extent) / max_gaussians) ** (1 / 3)) * 0.5
        extra = (cols,) if nrm is None else (cols, nrm)
        while True:
            out = voxel_downsample(pts, voxel, *extra)
            if len(out[0]) <= 4 * max_gaussians:
                break
            voxel *= 1.5
        pts, cols = out[0], out[1]
        nrm = None if nrm is None else out[2]
        if len(pts) > max_gaussians:
            keep = np.random.default_rng(seed).choice(len(pts), max_gaussians, replace=False)
            keep.sort()
            pts, cols = pts[keep], cols[keep]
            nrm = None if nrm is None else nrm[keep]
    tree = cKDTree(pts)
    k = min(4, len(pts))
    dist, _ = tree.query(pts, k=k)
    nn = dist[:, 1:].mean(axis=1) if k > 1 else np.full(len(pts), 0.01)
    nn = np.clip(nn, 1e-4, np.percentile(nn, 99) if len(nn) > 10 else nn.max())
    scales = np.repeat(nn[:, None], 3, axis=1)
    if nrm is not None and np.isfinite(nrm).all():
        quats = quats_from_normals(nrm)
        scales[:, 2] *= flatness
    else:
        quats = np.tile(np.array([1.0, 0.0, 0.0, 0.0], np.float32), (len(pts), 1))
    cols = np.clip(cols, 0.02, 0.98)
    p0 = float(np.clip(initial_opacity, 1e-3, 1 - 1e-3))
    t = lambda a: torch.tensor(np.asarray(a), dtype=torch.float32, device=device)  # noqa: E731
    return torch.nn.ParameterDict(
        {
            "means": torch.nn.Parameter(t(pts)),
            "quats": torch.nn.Parameter(t(quats)),
            "scales": torch.nn.Parameter(t(np.log(scales))),
            "opacities": torch.nn.Parameter(t(np.full(len(pts), np.log(p0 / (1 - p0))))),
            "colors": torch.nn.Parameter(t(np.log(cols / (1 - cols)))),
            "sem": torch.nn.Parameter(torch.zeros(len(pts), sem_channels, device=device)),
        }
    )


def gaussian_normals(quats: torch.Tensor, scales: torch.Tensor) -> torch.Tensor:
    """(N, 3) unit normal of each Gaussian: its axis of smallest scale (sign arbitrary)."""
    R = quat_to_rotmat(quats)
    axis = torch.argmin(scales, dim=1)
    return R[torch.arange(R.shape[0], device=R.device), :, axis]


def normals_facing(normals: torch.Tensor, means: torch.Tensor, camera_center: torch.Tensor) -> torch.Tensor:
    """Flip normals to face a camera at ``camera_center``."""
    to_cam = camera_center[None, :] - means
    sign = torch.where((normals * to_cam).sum(-1, keepdim=True) < 0, -1.0, 1.0)
    return normals * sign
