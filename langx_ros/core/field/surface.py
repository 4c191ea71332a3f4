"""Surface samples: the field's observed surface as the key frames measured it, each point given
to the Gaussian that explains it.

A 3D answer is a set of Gaussians (core/instances.py), but Gaussian centres are a poor sample of
an object's surface: a large flat Gaussian covering 20 cm of a far whiteboard is one point,
small ones crowd where the cameras looked closely, and about half of the selectable Gaussians
of a real field sit beside or just behind others. Measured on the real lounge (H200 field,
640x480, clean labels): answering with centres, the far whiteboard scores precision 0.89,
recall 0.74 and a 13 cm centroid error; answering with the key frames' depth points that its
Gaussians own, 0.99, 0.97 and 1.2 cm.

Each key frame's depth (the sensor's reading; where it has none, the field's rendered depth
where the field is opaque, as registration's surface support uses it; a rendered point within
``rendered_gap`` of a sensor point of any key frame, or behind a reading of its own frame within
``rendered_window`` pixels, or where the Gaussians blended into its pixel spread in depth by
more than ``rendered_max_spread``, is dropped) is back-projected
through pixel centres, less the pixels beside a depth jump (flying pixels: at an object's
border a sensor, or the field's blended depth, lies between front and back), merged into voxels of ``voxel`` (the first point of each is kept, so
every sample is a measured point), and given to the candidate Gaussian (observed on a surface)
that explains it best: among the ``neighbours`` nearest centres, the one of highest opacity x
exp(-d^2 / 2), d the distance in that Gaussian's own axes with each axis at least
``scale_floor`` (sensor noise, and the thin axis of a flat Gaussian), if d <= ``max_sigma``.
Points no Gaussian explains (flying pixels at depth edges, surfaces the field dropped) belong
to none. A query then returns the samples of its Gaussians (``query.points``).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import torch

from langx_ros.core.config_fields import param
from langx_ros.core.field.render import quat_to_rotmat


@dataclass
class SurfaceConfig:
    """How a reconstruction samples its observed surface for the answers' points."""

    enabled: bool = param(
        True, "Sample the key frames' depth onto the field's Gaussians after registration, so answers return measured "
        "surface points (query.points); false = answers return Gaussian centres.",
    )
    voxel: float = param(0.01, "Edge (m) of the voxels the key frames' depth points are merged into (one sample each).",
                         min=1e-4, max=1.0)
    scale_floor: float = param(
        0.02, "A sample belongs to the Gaussian nearest in that Gaussian's own axes, each axis counted at least this "
        "long (m): depth noise, and the thin axis of flat Gaussians.", min=1e-4, max=1.0,
    )
    max_sigma: float = param(
        5.0, "... and only within this many (floored) standard deviations of its centre. Points farther from every "
        "Gaussian belong to none and are never returned. 3 -> 5 (2026-12-04, a saved H200 lounge geometry re-registered "
        "on the CPU at 640x480): the whiteboard's far end, which the views' poses put a few cm apart, had 1,325 of its "
        "33,862 ground-truth voxels without a sample (16 at 5); its centroid error 4.6 -> 1.5 cm, recall 0.99 -> 1.00, "
        "no other object's precision, recall or centroid moved by more than 0.01 / 0.3 cm.", min=0.1, max=100.0,
    )
    neighbours: int = param(16, "Nearest Gaussian centres considered for each sample.", min=1, max=256)
    edge_rel: float = param(
        0.02, "Depth pixels next to a jump are not sampled (flying pixels at object borders, where a sensor or the "
        "field's rendered depth mixes the front and the back surface): a pixel is dropped when a 4-neighbour's depth "
        "differs by more than this fraction of its depth ...", min=0.0, max=1.0,
    )
    edge_abs: float = param(0.01, "... or by more than this (m), whichever is larger.", min=0.0, max=10.0)
    rendered_gap: float = param(
        0.03, "Points from the field's rendered depth (a key frame's pixels without a sensor reading) are kept only "
        "farther than this (m) from every sensor point of the key frames: where some frame measured the surface, "
        "the field's own estimate of it (a few cm off at oblique or far views) only adds a second, offset layer. 0 = "
        "keep every rendered point. Estimated on saved H200 fields (2026-12-04, the answers' points filtered on the "
        "CPU): the real lounge's printer centroid error 5.7 -> 3.8 cm, its potted plant 1.8 -> 0.7 cm, whiteboard "
        "4.5 -> 4.7 cm, no precision or recall changed by more than 0.01; the shelf (sparse depth) tissue box 2.3 -> "
        "2.1 cm, recall 0.90 -> 0.89, 43 % fewer samples.", min=0.0, max=1.0,
    )
    rendered_window: int = param(
        10, "... and not where a sensor reading within this many pixels of the same key frame is nearer by more than "
        "rendered_gap: the field's blended depth looking through a surface the sensor measured in front (the shelf's "
        "sparse depth: points 30 cm behind the tissue box, which views labelling the box then called tissue box). "
        "0 = off. Measured 2026-12-04 by re-registering saved H200 geometries on the CPU at 640x480, 3 -> 10 px: "
        "noisy shelf (seed 1) tissue-box precision 0.81 -> 0.87, recall 0.92; clean shelf precision 0.96 -> 0.98, "
        "centroid 1.5 -> 3.5 cm (its rendered side faces go too); clean lounge unchanged (max centroid 4.6 -> 4.4 "
        "cm); 20 px: the clean tissue box's centroid 6.1 cm.", min=0, max=64,
    )
    rendered_max_spread: float = param(
        0.0, "... and not where the depths of the Gaussians the field blends into the pixel spread by more than this "
        "(m, their standard deviation, weighted as blended): the expected depth of a pixel that mixes a front surface "
        "with one behind it lies on neither. 0 = off. Measured 2026-12-07 on a saved H100 shelf field (clean labels, "
        "tissue-box precision 0.80): its 138 off-object answer points came from rendered pixels whose spread was 8.8-16 "
        "cm (10th-90th percentile; opacity 0.62 median), the box's own 1.3 cm median (90th 8.3 cm); 0.06 would drop 136 "
        "of the 138. Off by default until measured side by side on every scene (the lounge's printer is sampled "
        "mostly from rendered depth).", min=0.0, max=10.0,
    )


@dataclass
class SurfaceView:
    """One key frame to sample: camera, the depth to back-project, colour."""

    viewmat: torch.Tensor  # (4, 4) world-to-camera
    K: torch.Tensor  # (3, 3)
    depth: torch.Tensor  # (H, W) metres, NaN = no surface there
    rgb: np.ndarray  # (H, W, 3) uint8
    measured: torch.Tensor | None = None  # (H, W) bool: the depth is the sensor's there (None: everywhere)
    # (H, W) m: the spread (standard deviation) of the depths of the Gaussians blended into each pixel of the
    # field's rendered depth (None: not known; see SurfaceConfig.rendered_max_spread)
    spread: torch.Tensor | None = None


@dataclass
class SurfaceSamples:
    """Measured surface points, each owned by one Gaussian (host arrays, ordered by owner)."""

    points: np.ndarray  # (M, 3) float32 world metres
    colors: np.ndarray  # (M, 3) uint8, the key frame's pixel
    owner: np.ndarray  # (M,) int64 ascending: the Gaussian each sample belongs to
    num_gaussians: int
    # (M, L) int32 per level the codebook entry of the sample's own label (the views' vote,
    # registration.register_points), -1 where no view labels it; None: not labelled (older fields)
    code: np.ndarray | None = None
    _start: np.ndarray | None = field(default=None, repr=False)
    _level_code: dict = field(default_factory=dict, init=False, repr=False, compare=False)  # derived from code
    _records: np.ndarray | None = field(default=None, init=False, repr=False, compare=False)  # derived: see records()

    def __post_init__(self) -> None:
        if not (len(self.points) == len(self.colors) == len(self.owner)):
            raise ValueError("surface samples: points, colors and owner differ in length")
        if self.code is not None and (self.code.ndim != 2 or len(self.code) != len(self.owner)):
            raise ValueError("surface samples: code must be (samples, levels)")
        if len(self.owner) and (np.any(np.diff(self.owner) < 0) or self.owner[0] < 0 or self.owner[-1] >= self.num_gaussians):
            raise ValueError(f"surface samples: owners must ascend within 0..{self.num_gaussians - 1}")

    @classmethod
    def empty(cls, num_gaussians: int) -> "SurfaceSamples":
        return cls(np.zeros((0, 3), np.float32), np.zeros((0, 3), np.uint8), np.zeros(0, np.int64), num_gaussians)

    def __len__(self) -> int:
        return len(self.owner)

    def level_code(self, level: int) -> np.ndarray:
        """(M,) int32 contiguous: ``code`` at one level, plus one (0 = no label), for table lookups (cached)."""
        if level not in self._level_code:
            self._level_code[level] = np.ascontiguousarray(self.code[:, level], dtype=np.int32) + 1
        return self._level_code[level]

    def records(self) -> np.ndarray:
        """(M, 4) float32 contiguous: each sample's point and, in the 4th column's bytes, its colour
        (3 uint8, one pad byte), for the answers' gathers (cached; gather whole rows with
        :func:`take_rows`, split them with :func:`unpack_records`): one gather of 16-byte rows
        costs a fraction of the gathers of the (M, 3) points and colours (on a 2-core CPU, 19.6k of
        2M samples: 0.03 against 0.2-0.5 ms)."""
        if self._records is None:
            packed = np.zeros((len(self.owner), 4), np.float32)
            packed[:, :3] = self.points
            packed.view(np.uint8).reshape(-1, 16)[:, 12:15] = self.colors
            self._records = packed
        return self._records

    def owned_counts(self) -> np.ndarray:
        """(N,) samples each Gaussian owns."""
        return np.diff(self.start())

    def start(self) -> np.ndarray:
        """(N + 1,) the first sample of each Gaussian (CSR offsets)."""
        if self._start is None:
            self._start = np.searchsorted(self.owner, np.arange(self.num_gaussians + 1))
        return self._start

    def of(self, gaussians: np.ndarray, owners: bool = True) -> tuple[np.ndarray, np.ndarray | None]:
        """The samples of ``gaussians`` (G,) ids: (sample indices (S,), index into ``gaussians`` of
        each sample's owner (S,); None with ``owners`` False, which saves its expansion), in the
        order of ``gaussians``."""
        g = np.asarray(gaussians, np.int64)
        st = self.start()
        lo = np.take(st, g)
        n = np.take(st, g + 1) - lo
        ends = np.cumsum(n)
        idx = np.repeat(lo - (ends - n), n)  # sample index - output position, constant along each Gaussian's run
        idx += np.arange(len(idx))
        return idx, (np.repeat(np.arange(len(g)), n) if owners else None)


def unpack_records(records: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(points (S, 3) float32, colours (S, 3) uint8) of gathered :meth:`SurfaceSamples.records`
    rows, or of rows that carry more columns after those four (views into them)."""
    flat = np.ascontiguousarray(records, np.float32)
    return flat[:, :3], flat[:, 3:4].view(np.uint8)[:, :3]


def take_rows(rows: np.ndarray, index: np.ndarray) -> np.ndarray:
    """``rows[index]`` of a 2-D array, gathered as one record per row (np.take of (S, 10) float32
    rows along axis 0 costs about twice as much)."""
    rows = np.ascontiguousarray(rows)
    if rows.size == 0:
        return rows[index]
    rec = rows.view(np.dtype((np.void, rows.itemsize * rows.shape[1]))).reshape(-1)
    return np.take(rec, index).view(rows.dtype).reshape(-1, rows.shape[1])


def depth_edges(depth: torch.Tensor, rel: float, abs_tol: float) -> torch.Tensor:
    """(H, W) bool: pixels of ``depth`` (NaN = none) with a 4-neighbour whose depth differs by more
    than max(abs_tol, rel x depth); pixels without a reading have no edges."""
    d = depth
    tol = torch.clamp(rel * d, min=abs_tol)
    edge = torch.zeros_like(d, dtype=torch.bool)
    for dim in (0, 1):
        n = d.shape[dim]
        a, b = d.narrow(dim, 0, n - 1), d.narrow(dim, 1, n - 1)
        jump = (a - b).abs()  # NaN (no reading on either side) compares False
        edge.narrow(dim, 0, n - 1).logical_or_(jump > tol.narrow(dim, 0, n - 1))
        edge.narrow(dim, 1, n - 1).logical_or_(jump > tol.narrow(dim, 1, n - 1))
    return edge


def see_through(depth: torch.Tensor, measured: torch.Tensor, window: int, gap: float) -> torch.Tensor:
    """(H, W) bool: the unmeasured pixels of ``depth`` (where ``measured`` is False: the field's
    rendered depth) that lie more than ``gap`` (m) behind a sensor reading within ``window``
    pixels: the field's blended depth looking through a surface the sensor measured in front."""
    sensor = torch.where(measured & torch.isfinite(depth), depth, torch.full_like(depth, float("inf")))
    nearest = -torch.nn.functional.max_pool2d(-sensor[None, None], 2 * window + 1, stride=1, padding=window)[0, 0]
    return ~measured & torch.isfinite(depth) & (depth > nearest + gap)


def _backproject(view: SurfaceView, cfg: SurfaceConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """World points (P, 3) and flat pixel indices (P,) of the finite depth pixels of ``view`` that
    are not on a depth jump (:func:`depth_edges`)."""
    from langx_ros.core.frames import pixel_rays

    h, w = view.depth.shape
    dev = view.depth.device
    rays = torch.as_tensor(pixel_rays(view.K.detach().cpu().numpy().astype(np.float64), w, h), dtype=torch.float32, device=dev)
    d = view.depth
    ok = torch.isfinite(d) & (d > 0) & ~depth_edges(d, cfg.edge_rel, cfg.edge_abs)
    if view.measured is not None and cfg.rendered_window > 0 and cfg.rendered_gap > 0:
        ok &= ~see_through(d, view.measured.to(dev), cfg.rendered_window, cfg.rendered_gap)
    if view.measured is not None and view.spread is not None and cfg.rendered_max_spread > 0:
        ok &= view.measured.to(dev) | ~(view.spread.to(dev) > cfg.rendered_max_spread)
    pix = torch.nonzero(ok.reshape(-1)).squeeze(1)
    cam = rays.reshape(-1, 3)[pix] * d.reshape(-1)[pix, None]
    c2w = torch.linalg.inv(view.viewmat.to(dev, torch.float64)).float()
    return cam @ c2w[:3, :3].T + c2w[:3, 3], pix


def _first_per_voxel(points: torch.Tensor, voxel: float) -> torch.Tensor:
    """Ascending indices of the first of ``points`` (P, 3) in each voxel of edge ``voxel`` (on their device)."""
    from langx_ros.core.instances import voxel_keys

    _, inv = torch.unique(voxel_keys(points, voxel), return_inverse=True)
    order = torch.arange(points.shape[0], device=points.device)
    first = torch.full((int(inv.max()) + 1,), points.shape[0], dtype=torch.long, device=points.device)
    return torch.sort(first.scatter_reduce_(0, inv, order, "amin")).values


@torch.no_grad()
def surface_samples(geom: dict[str, torch.Tensor], candidates: torch.Tensor, views: Sequence[SurfaceView],
                    cfg: SurfaceConfig, chunk: int = 1 << 16, merge_every: int = 1 << 23) -> SurfaceSamples:
    """Sample the depth of ``views`` onto the Gaussians ``geom`` (activated means, quats, scales,
    opacities) that ``candidates`` (N,) bool allows (see the module docstring). Depth points are
    merged into voxels whenever more than ``merge_every`` wait (and at the end), so many key
    frames do not hold all their pixels at once; ``chunk`` samples are assigned at a time. With
    ``cfg.rendered_gap`` > 0 the points of a view's unmeasured pixels (``SurfaceView.measured``)
    within that distance of a measured point are dropped."""
    from scipy.spatial import cKDTree

    means = geom["means"].detach()
    n, dev = means.shape[0], means.device
    cand = torch.nonzero(candidates.to(dev)).squeeze(1)
    # per kind (measured by a sensor, rendered by the field): points and colours
    pts = {k: [torch.zeros(0, 3, device=dev)] for k in (True, False)}
    cols = {k: [torch.zeros(0, 3, dtype=torch.uint8, device=dev)] for k in (True, False)}

    def merge(kind: bool) -> None:  # keep the first point of each voxel (earlier views first)
        p, c = torch.cat(pts[kind]), torch.cat(cols[kind])
        first = _first_per_voxel(p, cfg.voxel) if len(p) else torch.zeros(0, dtype=torch.long, device=dev)
        pts[kind][:], cols[kind][:] = [p[first]], [c[first]]

    separate = cfg.rendered_gap > 0
    for v in views:
        p, pix = _backproject(v, cfg)
        p, pix = p.to(dev), pix.to(dev)
        c = torch.as_tensor(v.rgb.reshape(-1, 3), device=dev)[pix]
        meas = v.measured.to(dev).reshape(-1)[pix] if separate and v.measured is not None else torch.ones_like(pix, dtype=torch.bool)
        for kind, sel in ((True, meas), (False, ~meas)):
            if sel.any():
                pts[kind].append(p[sel])
                cols[kind].append(c[sel])
                if sum(len(x) for x in pts[kind]) > merge_every:  # bounds memory for many key frames
                    merge(kind)
    merge(True)
    merge(False)
    if len(pts[False][0]) and len(pts[True][0]):
        far = cKDTree(pts[True][0].cpu().numpy()).query(pts[False][0].cpu().numpy(), distance_upper_bound=cfg.rendered_gap,
                                                         workers=-1)[0] >= cfg.rendered_gap
        keep = torch.as_tensor(far, device=dev)
        pts[False][:], cols[False][:] = [pts[False][0][keep]], [cols[False][0][keep]]
    if len(pts[False][0]):  # one sample per voxel: the measured point where a voxel has both
        pts[True].append(pts[False][0])
        cols[True].append(cols[False][0])
        merge(True)
    if len(pts[True][0]) == 0 or cand.numel() == 0:
        return SurfaceSamples.empty(n)
    points, colors = pts[True][0].cpu().numpy(), cols[True][0].cpu().numpy()
    k = min(cfg.neighbours, int(cand.numel()))
    cm = means[cand]
    reach = float(cfg.max_sigma * max(cfg.scale_floor, float(geom["scales"][cand].max())))
    _, nn = cKDTree(cm.cpu().numpy()).query(points, k=k, distance_upper_bound=reach, workers=-1)
    nn = torch.as_tensor(np.asarray(nn, np.int64).reshape(len(points), k), device=dev)
    rot = quat_to_rotmat(geom["quats"].detach()[cand])  # (C, 3, 3): columns are the axes
    inv_s = 1.0 / geom["scales"].detach()[cand].clamp(min=cfg.scale_floor)
    opac = geom["opacities"].detach()[cand].reshape(-1)
    owner = torch.full((len(points),), -1, dtype=torch.long, device=dev)
    sp = torch.as_tensor(points, dtype=torch.float32, device=dev)
    for s0 in range(0, len(points), chunk):
        idx = nn[s0: s0 + chunk]
        real = idx < cm.shape[0]  # cKDTree marks missing neighbours with the count
        j = torch.where(real, idx, 0)
        local = torch.einsum("skj,skji->ski", sp[s0: s0 + chunk, None, :] - cm[j], rot[j]) * inv_s[j]
        d2 = (local * local).sum(-1)
        score = torch.where(real & (d2 <= cfg.max_sigma ** 2), opac[j] * torch.exp(-0.5 * d2), -1.0)
        best = score.argmax(1)
        ok = score.gather(1, best[:, None])[:, 0] >= 0
        owner[s0: s0 + chunk] = torch.where(ok, cand[j.gather(1, best[:, None])[:, 0]], -1)
    owner_np = owner.cpu().numpy()
    keep = owner_np >= 0
    order = np.argsort(owner_np[keep], kind="stable")
    return SurfaceSamples(points[keep][order].astype(np.float32), colors[keep][order].astype(np.uint8),
                          owner_np[keep][order], n)
