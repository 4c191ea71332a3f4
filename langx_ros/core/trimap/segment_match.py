"""One id space for the masks of two key frames, so that a colour means one object in the video.

The key frames are segmented independently, so segment 3 of the first frame and segment 3 of the
second need not be the same thing. With depth and poses (what a robot has), the second frame's
pixels are carried into the first by back-projection and re-projection (points hidden behind the
first frame's own depth do not vote); a segment of the second frame takes the id of the segment
of the first that most of its visible pixels land in. The others get fresh ids. Without depth in
the second frame nothing is matched (the ids are disjoint), which only costs palette colours.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from langx_ros.core.frames import Frame, backproject
from langx_ros.core.segment import map_ids


@dataclass
class SharedIds:
    first: np.ndarray  # (H, W) int64 ids of the first key frame, -1 = none
    second: np.ndarray  # (H', W') int64 ids of the second key frame, -1 = none
    count: int  # ids used: 0..count-1
    matched: int  # segments of the second frame that took an id of the first


def _order_by_size(seg: np.ndarray) -> np.ndarray:
    ids, counts = np.unique(seg[seg >= 0], return_counts=True)
    return ids[np.argsort(-counts, kind="stable")]


def overlap_votes(seg_a: np.ndarray, seg_b: np.ndarray, frame_a: Frame, frame_b: Frame,
                  depth_tol: float = 0.05) -> tuple[np.ndarray, np.ndarray]:
    """(segment of B, segment of A) for every pixel of B with depth that lands, visible, on a
    segment of A. ``depth_tol`` is relative (a point farther than (1 + tol) x A's depth there is
    hidden); when A has no depth every landing point counts."""
    pts, _, pix = backproject(frame_b)
    sb = seg_b[pix[:, 0], pix[:, 1]]
    keep = sb >= 0
    pts, sb = pts[keep], sb[keep]
    R, t = frame_a.pose[:3, :3], frame_a.pose[:3, 3]
    cam = (pts - t) @ R  # world -> camera A
    z = cam[:, 2]
    front = z > 1e-6
    cam, z, sb = cam[front], z[front], sb[front]
    uvw = cam @ frame_a.K.T
    u = np.floor(uvw[:, 0] / z).astype(np.int64)
    v = np.floor(uvw[:, 1] / z).astype(np.int64)
    inside = (u >= 0) & (u < frame_a.width) & (v >= 0) & (v < frame_a.height)
    u, v, z, sb = u[inside], v[inside], z[inside], sb[inside]
    if frame_a.depth is not None:
        da = frame_a.depth[v, u]
        visible = np.isfinite(da) & (z <= da * (1 + depth_tol))
        u, v, sb = u[visible], v[visible], sb[visible]
    sa = seg_a[v, u]
    on = sa >= 0
    return sb[on], sa[on]


def shared_ids(seg_a: np.ndarray, seg_b: np.ndarray, frame_a: Frame, frame_b: Frame, max_ids: int,
               min_overlap: float = 0.5, min_pixels: int = 20, depth_tol: float = 0.05) -> SharedIds:
    """Ids for both key frames' masks in one space (see the module doc).

    A's segments take ids 0.. largest first; a segment of B whose visible pixels land on one
    segment of A for at least ``min_overlap`` of them (and ``min_pixels``) takes that id; the other
    segments of B follow, largest first. Segments beyond ``max_ids`` (smallest) get -1.
    """
    if max_ids < 1:
        raise ValueError("max_ids must be at least 1")
    order_a = _order_by_size(seg_a)[:max_ids]
    new_a = {int(s): i for i, s in enumerate(order_a)}
    match: dict[int, int] = {}
    if frame_b.depth is not None and frame_b.pose is not None and frame_a.pose is not None and len(order_a):
        sb, sa = overlap_votes(seg_a, seg_b, frame_a, frame_b, depth_tol)
        if len(sb):
            pairs, counts = np.unique(np.stack([sb, sa], 1), axis=0, return_counts=True)
            landed = dict(zip(*np.unique(sb, return_counts=True)))
            best: dict[int, tuple[int, int]] = {}
            for (b, a), c in zip(pairs.tolist(), counts.tolist()):
                if c > best.get(b, (-1, 0))[1]:
                    best[b] = (a, c)
            for b, (a, c) in best.items():
                if a in new_a and c >= min_pixels and c >= min_overlap * landed[b]:
                    match[b] = new_a[a]
    next_id = len(order_a)
    new_b: dict[int, int] = {}
    for s in _order_by_size(seg_b).tolist():
        if s in match:
            new_b[s] = match[s]
        elif next_id < max_ids:
            new_b[s] = next_id
            next_id += 1
    return SharedIds(map_ids(seg_a, list(new_a), list(new_a.values())), map_ids(seg_b, list(new_b), list(new_b.values())),
                     next_id, len(match))
