"""Semantic registration: each Gaussian's language code from the views that actually see it.

Training-free, as Dr. Splat and Occam's LGS do it. Gaussian i gets the feature

    f_i = sum_v sum_p w_i(v, p) f_v(p) / sum_v sum_p w_i(v, p)

where w_i(v, p) = T_i(p) alpha_i(p) is its alpha-blending weight in pixel p of view v (the
weight that renders colour) and f_v(p) the language feature of the segment that pixel lies in;
the weights are normalised per view, so each view that sees the Gaussian has one vote (a near
view, where it covers many pixels, does not outvote several far ones).
f_i is then quantised by the LQC onto the same codebook the queries use.

The weights come from one backward pass per view and chunk of segments, with either rasterizer
(gsplat on CUDA, the torch compositor on the CPU): the gradient of sum_p <g(p), render(p)> with
respect to Gaussian i's feature channels is sum_p w_i(p) g(p); with g the one-hot map of the
view's segments it is Gaussian i's weight inside every segment at once.

Only evidence from views in which the Gaussian lies on the observed surface counts (surface
support): its centre projects inside the image at a depth that agrees with the view's depth
(the sensor's where it has a reading, else the field's own rendered depth). Hidden Gaussians
(behind surfaces: transmittance ~0), floaters in front of surfaces and Gaussians no view sees
get no evidence; a Gaussian whose evidence at a level is below ``min_weight`` is *unobserved*
there and is never selected by a query.

Cross-view vote: a segment mislabelled in one view (SAM/CLIP noise) would pull the mean of
every Gaussian it covers, and a near view, where a Gaussian covers many pixels, would outweigh
two far ones. In each of ``vote_rounds`` rounds every view that supports a Gaussian casts one
vote, split over its segments by blending weight, and each segment's share is weighted by how
well its feature agrees with the Gaussian's current one, k = exp((cos - 1) / vote_width): the
label most views give wins (mean shift towards the mode of the views) and a Gaussian's
evidence becomes the blending weight that agrees with its feature, so contested Gaussians
count less when a query weighs instances by evidence. Each round is one more backward pass per
view and chunk of segments.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from langx_ros.core.config_fields import param
from langx_ros.core.field.gaussians import gaussian_normals, normals_facing
from langx_ros.core.field.render import RenderOutput, rasterize

SEMANTIC_MODES = ("register", "train", "register+train")


@dataclass
class RegistrationConfig:
    """How Gaussians get their language codes and when they count as observed."""

    mode: str = param(
        "register",
        "How Gaussians get language codes: 'register' (training-free: each Gaussian takes the "
        "blending-weighted mean feature of the pixels it renders in the views where it lies on the "
        "observed surface, quantised by the LQC; the field trains geometry only), 'train' (the "
        "LangScene-X semantic losses alone), 'register+train' (registration after the geometry "
        "phase initialises the semantic training). Every mode marks unobserved Gaussians.",
        choices=SEMANTIC_MODES,
    )
    min_weight: float = param(
        0.1, "Evidence (sum of blending weights over supported views, in pixels) a Gaussian needs at a level to count as observed there.",
        min=0.0, max=1e6,
    )
    support_abs: float = param(0.03, "Surface support: largest depth difference (m) between a Gaussian's centre and the view's depth.", min=0.0, max=10.0)
    support_rel: float = param(0.02, "Surface support: ... or this fraction of the depth, whichever is larger.", min=0.0, max=1.0)
    chunk: int = param(64, "Segments registered per backward pass (bounds memory: N x chunk floats).", min=1, max=4096)
    vote_rounds: int = param(
        2, "Cross-view vote: rounds that re-weight each view's segment feature by its agreement with the Gaussian's "
        "current feature, so a label only a minority of the evidence gives (a mislabelled segment) drops out; "
        "0 = the plain weighted mean. Each round costs one more pass over the views. A round judges agreement (the "
        "evidence and agreeing views the instance rank weighs) against the feature it starts from: after one round "
        "that is the plain mean, which a minority label pulls away from every view's (one view of four mislabelling "
        "a floor: 0.04 agreeing views instead of 2.1), so the default is two.", min=0, max=10,
    )
    vote_width: float = param(
        0.05, "Cross-view vote: kernel width in cosine distance, weight exp((cos - 1) / width). Label embeddings of "
        "different objects lie >= 0.3 apart; lower it for features that crowd together.", min=1e-4, max=10.0,
    )
    segment_check: float = param(
        0.35, "Cross-view segment check, before the vote: another view that sees a segment's pixels on its own surface "
        "contradicts the segment where its labels there agree less than this (the vote kernel's weight, averaged over "
        "the pixels); a segment that more views contradict than agree with (its own view agreeing) is left out. It catches a misread segment that only "
        "few views see on the surface, where the per-Gaussian vote has too few voters (a shelf bin's wall seen by "
        "two views, both misreading it as the tissue box: agreement near 0). 0.25-0.5 judge alike on the real-scene "
        "benchmark's worst cases; 0.35 keeps a little more of segments the other views only partly label alike "
        "(noisy lounge 2D mIoU 0.53-0.54 -> 0.53-0.57). 0 = off.", min=0.0, max=1.0,
    )
    segment_check_votes: int = param(
        20, "Cross-view segment check: fewest of a segment's sampled pixels another view must see labelled on its "
        "surface to give an opinion (one per view); a segment no view gives one on is kept.", min=1, max=10_000_000,
    )
    segment_check_px: int = param(4, "Cross-view segment check: pixel stride of the samples of each segment.", min=1, max=64)
    segment_check_sensor: bool = param(
        False, "Cross-view segment check: lift a segment's pixels with the sensor's depth only (where it has none, they are "
        "not judged; a view without any sensor depth uses the field's), not the field's rendered depth in the sensor's "
        "holes, which is least sure where sensors fail (dark, shiny, small objects). Measured (H200, 640x480, one "
        "geometry per scene): lounge and kitchen unchanged, the noisy shelf mixed (seed 1 precision 0.79 -> 0.97 but "
        "recall 0.89 -> 0.75; seeds 0/2 precision 0.98/0.99 -> 0.94/0.95), so off by default.",
    )


@dataclass
class RegistrationView:
    """One view to register from: camera, optional sensor depth, and per level the segment id
    map with one feature per segment (a level with no features is skipped)."""

    viewmat: torch.Tensor  # (4, 4) world-to-camera
    K: torch.Tensor  # (3, 3)
    width: int
    height: int
    seg: torch.Tensor | None  # (L, H, W) int segment ids, -1 = none
    features: Sequence[torch.Tensor]  # per level (S_l, F) feature of segment s; (0, *) = none
    depth: torch.Tensor | None = None  # (H, W) metres, NaN = no reading


@dataclass
class Registration:
    """Per-Gaussian results of a registration (tensors on the field's device)."""

    features: list[torch.Tensor | None]  # per level (N, F) weighted mean feature (None: no level features)
    evidence: torch.Tensor  # (N, L) supported blending weight inside labelled pixels, per level
    weight: torch.Tensor  # (N,) supported blending weight over all pixels
    normals: torch.Tensor  # (N, 3) unit normals facing the view that saw the Gaussian most
    support_views: torch.Tensor  # (N,) number of views with surface support
    labelled: torch.Tensor | None = None  # (N, L) supported blending weight inside labelled pixels, agreeing or not
    agree_views: torch.Tensor | None = None  # (N, L) number of views whose labels there mostly agree with the result
    # per view (H, W) the depth surface support used: the sensor's reading, else the field's rendered depth where its
    # opacity > 0.5, else NaN
    view_depth: list[torch.Tensor] | None = None
    # the views as registered: their segments after the cross-view segment check (None: as given)
    views: list[RegistrationView] | None = None
    dropped_segments: int = 0  # segments the check left out, over all views and levels
    # per view (H, W) m: the standard deviation of the depths of the Gaussians blended into each pixel (their
    # centres' camera depth, weighted as blended; NaN where the field is not opaque): large where a pixel mixes surfaces
    view_spread: list[torch.Tensor] | None = None

    def observed(self, min_weight: float) -> torch.Tensor:
        """(N, L) bool: enough evidence at each level."""
        return self.evidence >= min_weight


def surface_support(means: torch.Tensor, viewmat: torch.Tensor, K: torch.Tensor, depth: torch.Tensor,
                    abs_tol: float, rel_tol: float) -> torch.Tensor:
    """(N,) bool: the centre projects inside the image, in front of the camera, at a depth within
    max(abs_tol, rel_tol * depth) of ``depth`` (H, W) at its pixel (NaN = no reading: no support)."""
    return surface_pixels(means, viewmat, K, depth, abs_tol, rel_tol) >= 0


def surface_pixels(means: torch.Tensor, viewmat: torch.Tensor, K: torch.Tensor, depth: torch.Tensor,
                   abs_tol: float, rel_tol: float) -> torch.Tensor:
    """(N,) int64: the flat pixel index (row x W + column) each point lies on where it has surface
    support there (:func:`surface_support`), else -1."""
    h, w = depth.shape
    pc = means @ viewmat[:3, :3].T + viewmat[:3, 3]
    z = pc[:, 2]
    zs = z.clamp(min=1e-6)
    u = torch.floor(K[0, 0] * pc[:, 0] / zs + K[0, 2]).long()
    v = torch.floor(K[1, 1] * pc[:, 1] / zs + K[1, 2]).long()
    inside = (z > 1e-6) & (u >= 0) & (u < w) & (v >= 0) & (v < h)
    flat = v.clamp(0, h - 1) * w + u.clamp(0, w - 1)
    d = depth.reshape(-1)[flat]
    tol = torch.clamp(rel_tol * d, min=abs_tol)
    return torch.where(inside & torch.isfinite(d) & ((z - d).abs() <= tol), flat, -1)


def blend_weights(geom: dict[str, torch.Tensor], targets: torch.Tensor, viewmat: torch.Tensor, K: torch.Tensor,
                  width: int, height: int, backend: str = "auto") -> torch.Tensor:
    """(N, C) sum over pixels of each Gaussian's blending weight times ``targets`` (H, W, C).

    One forward and one backward pass of the rasterizer: the gradient of sum <targets, render>
    with respect to per-Gaussian channels. ``geom``: activated means, quats, scales, opacities.
    """
    return _blend(geom, targets, viewmat, K, width, height, backend)[0]


def _blend(geom: dict[str, torch.Tensor], targets: torch.Tensor, viewmat: torch.Tensor, K: torch.Tensor,
           width: int, height: int, backend: str, extra: torch.Tensor | None = None) -> tuple[torch.Tensor, RenderOutput]:
    """:func:`blend_weights` and the forward render it made (alpha and expected depth of the view;
    ``extra`` (N, E) features are rendered alongside, in the output's channels after the targets')."""
    n, c = geom["means"].shape[0], targets.shape[-1]
    ch = torch.zeros(n, c, device=geom["means"].device, dtype=torch.float32, requires_grad=True)
    with torch.enable_grad():
        feats = ch if extra is None else torch.cat([ch, extra.detach()], 1)
        out = rasterize(geom["means"], geom["quats"], geom["scales"], geom["opacities"], feats, viewmat, K, width, height,
                        backend=backend)
        (out.features[..., :c] * targets).sum().backward()
    return ch.grad.detach(), out


@torch.no_grad()
def register(geom: dict[str, torch.Tensor], views: Sequence[RegistrationView], num_levels: int, cfg: RegistrationConfig,
             backend: str = "auto", check_cancel: Callable[[], None] | None = None,
             depth_spread: bool = False) -> Registration:
    """Register the segment features of ``views`` onto the Gaussians ``geom`` (activated
    means, quats, scales, opacities; detached).

    Costs per view: one backward pass for the total weights (its forward render also gives the
    field's depth, used where the sensor has none) and, for the mean and for each vote round,
    one per ``cfg.chunk`` segments of each level. ``depth_spread``: that forward render also
    carries the centres' depth and its square, for ``Registration.view_spread`` (else None).
    """
    means = geom["means"].detach()
    geom = {k: geom[k].detach() for k in ("means", "quats", "scales", "opacities")}
    n, dev = means.shape[0], means.device
    weight = torch.zeros(n, device=dev)
    best = torch.zeros(n, device=dev)
    normals = gaussian_normals(geom["quats"], geom["scales"])
    facing = normals.clone()
    support_views = torch.zeros(n, dtype=torch.int32, device=dev)
    supports: list[torch.Tensor] = []
    totals: list[torch.Tensor] = []
    depths: list[torch.Tensor] = []
    spreads: list[torch.Tensor] = []
    for view in views:
        if check_cancel is not None:
            check_cancel()
        vm, K = view.viewmat.to(dev), view.K.to(dev)
        ones = torch.ones(view.height, view.width, 1, device=dev)
        z = means @ vm[2, :3] + vm[2, 3] if depth_spread else None  # (N,) the centres' camera depth
        w_ones, rendered = _blend(geom, ones, vm, K, view.width, view.height, backend,
                                  torch.stack([z, z * z], 1) if depth_spread else None)
        opaque = rendered.alpha[..., 0] > 0.5
        nan = torch.full_like(rendered.depth[..., 0], float("nan"))
        field_depth = torch.where(opaque, rendered.depth[..., 0], nan)
        if depth_spread:
            acc = rendered.alpha[..., 0].clamp_min(1e-6)
            ez, ez2 = rendered.features[..., 1] / acc, rendered.features[..., 2] / acc
            spreads.append(torch.where(opaque, (ez2 - ez * ez).clamp_min(0).sqrt(), nan).detach())
        if view.depth is not None:  # the sensor where it has a reading, the field's own surface elsewhere
            depth = view.depth.to(dev)
            field_depth = torch.where(torch.isfinite(depth), depth, field_depth)
        sup = surface_support(means, vm, K, field_depth.detach(), cfg.support_abs, cfg.support_rel)
        depths.append(field_depth.detach())
        supports.append(sup)
        support_views += sup.to(torch.int32)
        w_all = w_ones[:, 0] * sup
        totals.append(w_all)
        weight += w_all
        more = w_all > best
        best = torch.where(more, w_all, best)
        center = -vm[:3, :3].T @ vm[:3, 3]
        facing = torch.where(more[:, None], normals_facing(normals, means, center), facing)
    dropped = 0
    if cfg.segment_check > 0:
        views, dropped = checked_segments(views, depths, num_levels, cfg)
    acc = _accumulate(geom, views, supports, totals, num_levels, cfg, backend, None, check_cancel)
    for _ in range(cfg.vote_rounds):
        acc = _accumulate(geom, views, supports, totals, num_levels, cfg, backend, acc.features, check_cancel)
    return Registration(acc.features, acc.evidence, weight, facing, support_views, acc.labelled, acc.agree_views, depths,
                        list(views), dropped, spreads if depth_spread else None)


def _level_features(views: Sequence[RegistrationView], lvl: int, dev: torch.device) -> list[tuple[int, torch.Tensor]]:
    """The views with segments and features at level ``lvl``: (index into ``views``, (S, F) unit
    features on ``dev``)."""
    return [(j, F.normalize(v.features[lvl].to(dev, torch.float32), dim=-1)) for j, v in enumerate(views)
            if v.seg is not None and lvl < len(v.features) and v.features[lvl].shape[0] > 0]


@torch.no_grad()
def segment_agreement(views: Sequence[RegistrationView], view_depth: Sequence[torch.Tensor], num_levels: int,
                      cfg: RegistrationConfig) -> list[list[tuple[torch.Tensor, torch.Tensor] | None]]:
    """Per view and level, (agreeing (S,), contradicting (S,)): how many other views agree with
    each of its segments and how many contradict it.

    Every ``cfg.segment_check_px``-th pixel of a segment with a depth (the sensor's with
    ``cfg.segment_check_sensor`` where the view has one, else ``view_depth``: the registration's,
    the sensor's else the field's) is lifted to 3D; another view that sees the
    point on its surface (:func:`surface_pixels`) and has a segment there votes with the vote
    kernel's weight exp((cos - 1) / vote_width) between the two segments' features. A view with at
    least ``cfg.segment_check_votes`` votes on a segment gives one opinion, the mean of its votes:
    it contradicts the segment below ``cfg.segment_check``, else agrees (one opinion per view, as
    in the registration's vote: a near view that sees much of a segment does not outvote two that
    see less). None: the view has no segments at that level.
    """
    from langx_ros.core.frames import rays_at

    out: list[list[tuple[torch.Tensor, torch.Tensor] | None]] = [[None] * num_levels for _ in views]
    if not views:
        return out
    st, dev = cfg.segment_check_px, view_depth[0].device
    rays: dict[int, torch.Tensor] = {}  # per view, the sampled pixels' rays (built once, shared by the levels)
    for lvl in range(num_levels):
        labelled = _level_features(views, lvl, dev)
        segs = {j: views[j].seg[lvl].to(dev).long() for j, _ in labelled}  # once per view, not per pair
        for a, fa in labelled:
            va = views[a]
            seg = segs[a][::st, ::st]
            d = (va.depth.to(dev) if cfg.segment_check_sensor and va.depth is not None else view_depth[a])[::st, ::st]
            if a not in rays:
                rows, cols = np.meshgrid(np.arange(0, va.height, st), np.arange(0, va.width, st), indexing="ij")
                rays[a] = torch.as_tensor(rays_at(va.K.detach().cpu().numpy().astype(np.float64), rows, cols),
                                          dtype=torch.float32, device=dev)
            ok = (seg >= 0) & torch.isfinite(d)
            sa = seg[ok]
            vm = va.viewmat.to(dev)
            pts = (rays[a][ok] * d[ok][:, None] - vm[:3, 3]) @ vm[:3, :3]  # camera -> world (R^T (x - t))
            agreeing = torch.zeros(fa.shape[0], device=dev)
            contradicting = torch.zeros(fa.shape[0], device=dev)
            for b, fb in labelled:
                if b == a or not len(pts):
                    continue
                vb = views[b]
                pix = surface_pixels(pts, vb.viewmat.to(dev), vb.K.to(dev), view_depth[b].to(dev), cfg.support_abs, cfg.support_rel)
                sb = torch.where(pix >= 0, segs[b].reshape(-1)[pix.clamp(min=0)], -1)
                has = sb >= 0
                k = torch.exp(((fa[sa[has]] * fb[sb[has]]).sum(-1) - 1.0) / cfg.vote_width)
                agree = torch.zeros_like(agreeing).index_add_(0, sa[has], k)
                votes = torch.zeros_like(agreeing).index_add_(0, sa[has], torch.ones_like(k))
                counts = votes >= cfg.segment_check_votes
                low = agree < cfg.segment_check * votes
                agreeing += (counts & ~low).float()
                contradicting += (counts & low).float()
            out[a][lvl] = (agreeing, contradicting)
    return out


@torch.no_grad()
def checked_segments(views: Sequence[RegistrationView], view_depth: Sequence[torch.Tensor], num_levels: int,
                     cfg: RegistrationConfig) -> tuple[list[RegistrationView], int]:
    """``views`` with every segment a majority of the views that see it contradict left out (its
    pixels -1): more contradicting views (:func:`segment_agreement`) than agreeing ones, its own
    view counted as agreeing (one view against one is a tie, and a tie keeps it). Returns
    (views, number of segments left out)."""
    out, dropped = [], 0
    for va, per in zip(views, segment_agreement(views, view_depth, num_levels, cfg)):
        bad = [None if r is None else r[1] > r[0] + 1 for r in per]
        if not any(b is not None and bool(b.any()) for b in bad):
            out.append(va)
            continue
        seg = va.seg.clone()
        for lvl, b in enumerate(bad):
            if b is not None and bool(b.any()):
                s = seg[lvl].to(b.device).long()
                drop = b[s.clamp(min=0)] & (s >= 0)
                seg[lvl] = torch.where(drop, torch.full_like(s, -1), s).to(seg.device, seg.dtype)
                dropped += int(b.sum())
        out.append(replace(va, seg=seg))
    return out, dropped


@dataclass
class _Accumulated:
    features: list[torch.Tensor | None]  # per level (N, F) mean segment feature
    evidence: torch.Tensor  # (N, L) blending weight behind it (agreeing weight in a vote round)
    labelled: torch.Tensor  # (N, L) blending weight inside labelled pixels of supporting views
    agree_views: torch.Tensor  # (N, L) views whose labelled weight mostly (>= half) agrees


def _accumulate(geom: dict[str, torch.Tensor], views: Sequence[RegistrationView], supports: Sequence[torch.Tensor],
                totals: Sequence[torch.Tensor], num_levels: int, cfg: RegistrationConfig, backend: str,
                current: list[torch.Tensor | None] | None,
                check_cancel: Callable[[], None] | None) -> _Accumulated:
    """Per level the (N, F) mean segment feature of every Gaussian and (N, L) the blending weight
    behind it. Every supporting view weighs 1 in total (``totals``: its (N,) blending weight over
    all pixels), shared over its segments by blending weight. With ``current`` (a vote round)
    each share is also weighted by its agreement with the Gaussian's current feature, the
    evidence is the agreeing blending weight, and a Gaussian with none keeps ``current``.
    Also counted: the labelled weight behind it, agreeing or not, and the views that mostly
    agree (without ``current`` every view with labelled weight agrees)."""
    n, dev = geom["means"].shape[0], geom["means"].device
    evidence = torch.zeros(n, num_levels, device=dev)
    labelled = torch.zeros(n, num_levels, device=dev)
    agree_views = torch.zeros(n, num_levels, device=dev)
    feats: list[torch.Tensor | None] = [None] * num_levels
    votes = [torch.zeros(n, device=dev) for _ in range(num_levels)]
    unit = [F.normalize(c, dim=-1) if c is not None else None for c in current] if current is not None else None
    for view, sup, total in zip(views, supports, totals):
        if check_cancel is not None:
            check_cancel()
        if view.seg is None:
            continue
        vm, K = view.viewmat.to(dev), view.K.to(dev)
        for lvl in range(num_levels):
            f_seg = view.features[lvl] if lvl < len(view.features) else None
            if f_seg is None or f_seg.shape[0] == 0:
                continue
            f_seg = F.normalize(f_seg.to(dev, torch.float32), dim=-1)
            seg = view.seg[lvl].to(dev).long()
            if feats[lvl] is None:
                feats[lvl] = torch.zeros(n, f_seg.shape[1], device=dev)
            raw_v, agree_v = torch.zeros(n, device=dev), torch.zeros(n, device=dev)  # this view's labelled / agreeing weight
            for s0 in range(0, f_seg.shape[0], cfg.chunk):
                s1 = min(s0 + cfg.chunk, f_seg.shape[0])
                onehot = (seg[..., None] == torch.arange(s0, s1, device=dev)).float()  # (H, W, c)
                if not onehot.any():
                    continue
                w = blend_weights(geom, onehot, vm, K, view.width, view.height, backend) * sup[:, None]  # (N, c)
                raw_v += w.sum(1)
                if unit is not None and unit[lvl] is not None:
                    w = w * torch.exp((unit[lvl] @ f_seg[s0:s1].T - 1.0) / cfg.vote_width)
                agree_v += w.sum(1)
                share = w / total[:, None].clamp(min=1e-12)  # one vote per view
                votes[lvl] += share.sum(1)
                feats[lvl] += share @ f_seg[s0:s1]
            evidence[:, lvl] += agree_v
            labelled[:, lvl] += raw_v
            agree_views[:, lvl] += ((raw_v > 0) & (agree_v >= 0.5 * raw_v)).float()
    for lvl in range(num_levels):
        if feats[lvl] is not None:
            mean = feats[lvl] / votes[lvl][:, None].clamp(min=1e-30)
            if current is not None and current[lvl] is not None:
                mean = torch.where(evidence[:, lvl : lvl + 1] > 0, mean, current[lvl])
            feats[lvl] = mean
    return _Accumulated(feats, evidence, labelled, agree_views)


@torch.no_grad()
def registered_codes(reg: Registration, lqc, current: torch.Tensor, means: torch.Tensor) -> torch.Tensor:
    """(N, L * D) codes per level: the LQC quantisation of the registered feature of every Gaussian
    with any evidence there; a Gaussian with none takes the code of its nearest neighbour with
    evidence (so rendered code maps, the 2D answers, have no holes; it stays unobserved and is
    never selected in 3D). Levels without features keep ``current``."""
    from scipy.spatial import cKDTree

    n, levels = reg.evidence.shape
    d = current.shape[1] // levels
    out = current.detach().clone().reshape(n, levels, d)
    for lvl, f in enumerate(reg.features):
        if f is None:
            continue
        seen = reg.evidence[:, lvl] > 0
        ids = torch.nonzero(seen).squeeze(1)
        if ids.numel() == 0:
            continue
        out[ids, lvl] = lqc.quantize(f[ids].to(lqc.codebook.device))[1].to(out)
        rest = torch.nonzero(~seen).squeeze(1)
        if rest.numel():
            m = means.detach().cpu().numpy()
            _, nn = cKDTree(m[ids.cpu().numpy()]).query(m[rest.cpu().numpy()], k=1, workers=-1)
            out[rest, lvl] = out[ids[torch.as_tensor(nn, device=ids.device)], lvl]
    return out.reshape(n, levels * d)


@torch.no_grad()
def register_points(points: torch.Tensor, views: Sequence[RegistrationView], view_depth: Sequence[torch.Tensor],
                    num_levels: int, cfg: RegistrationConfig, chunk: int = 1 << 15) -> list[tuple[torch.Tensor, torch.Tensor] | None]:
    """The registration's cross-view vote for measured surface points (core/field/surface.py).

    Each point takes the features of the segments it lies in, in every view that sees it: it
    projects inside the image at a depth within max(support_abs, support_rel x depth) of that
    view's depth ``view_depth`` (the registration's: the sensor's, else the field's rendered
    depth), and the pixel has a segment. One vote per view; then ``cfg.vote_rounds`` rounds
    re-weight each view's feature by its agreement with the point's current one,
    exp((cos - 1) / vote_width), as :func:`register` does for Gaussians, so a segment mislabelled
    in a minority of the views drops out. A point is labelled from the views, not through the
    Gaussian that owns it, so a Gaussian fitted to one view's mislabelled pixels does not pass its
    label to points the other views see as something else.

    Returns per level None (no view has features there) or (features (M, F) unit, mean of the
    agreeing votes (zeros where no view votes), votes (M,) the number of views that voted).
    """
    dev = points.device
    m = points.shape[0]
    # per level, the views with features there: (index into views, their unit features)
    per_level = [_level_features(views, lvl, dev) for lvl in range(num_levels)]
    out: list[tuple[torch.Tensor, torch.Tensor] | None] = [
        (torch.zeros(m, pv[0][1].shape[1], device=dev), torch.zeros(m, device=dev)) if pv else None for pv in per_level]
    used = sorted({j for pv in per_level for j, _ in pv})
    for s0 in range(0, m, chunk):
        p = points[s0: s0 + chunk]
        # the pixel each point lies on in each view that sees it (-1: not seen), once for all levels
        pix = {j: surface_pixels(p, views[j].viewmat.to(dev), views[j].K.to(dev), view_depth[j].to(dev), cfg.support_abs,
                                 cfg.support_rel) for j in used}
        for lvl, pv in enumerate(per_level):
            if not pv:
                continue
            feats, votes = out[lvl]
            segs = [torch.where(pix[j] >= 0, views[j].seg[lvl].to(dev).long().reshape(-1)[pix[j].clamp(min=0)], -1)
                    for j, _ in pv]  # (c,) segment per view, -1 none
            mean = torch.zeros(p.shape[0], feats.shape[1], device=dev)
            for rnd in range(cfg.vote_rounds + 1):
                unit = F.normalize(mean, dim=-1) if rnd else None
                acc = torch.zeros_like(mean)
                for (_, fv), s in zip(pv, segs):
                    f = fv[s.clamp(min=0)] * (s >= 0)[:, None]
                    w = torch.exp(((unit * f).sum(-1) - 1.0) / cfg.vote_width) if unit is not None else torch.ones(p.shape[0], device=dev)
                    acc += w[:, None] * f
                mean = torch.where(acc.norm(dim=-1, keepdim=True) > 0, acc, mean)
            feats[s0: s0 + chunk] = F.normalize(mean, dim=-1)
            votes[s0: s0 + chunk] = sum((s >= 0).float() for s in segs)
    return out
