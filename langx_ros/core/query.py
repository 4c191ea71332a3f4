"""Text queries: request checking, 3D selection with instances, 2D relevancy maps and masks."""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Sequence

import numpy as np
import torch

from langx_ros.core.boxes import OrientedBox, oriented_box
from langx_ros.core.config import QueryConfig

if TYPE_CHECKING:
    from langx_ros.core.field.model import LanguageField


class QueryRequestError(ValueError):
    """The request itself is unusable (empty, too many or too long queries, bad threshold)."""


@dataclass(frozen=True)
class QueryRequest:
    """A checked request: trimmed query texts and the threshold to apply."""

    queries: tuple[str, ...]
    threshold: float


def prepare_queries(queries: Sequence[str], threshold: float, cfg: QueryConfig) -> QueryRequest:
    """Check and normalise a query request.

    Args:
        queries: the texts as sent; each is trimmed of surrounding white space.
        threshold: relevancy threshold; <= 0 selects ``cfg.threshold``.
        cfg: limits and the default threshold.

    Raises:
        QueryRequestError: with a message fit for the caller.
    """
    if len(queries) == 0:
        raise QueryRequestError("no queries given: send at least one text in 'queries'")
    if len(queries) > cfg.max_queries:
        raise QueryRequestError(
            f"too many queries: {len(queries)} > max_queries = {cfg.max_queries} (split the request)"
        )
    texts = []
    for i, q in enumerate(queries):
        t = q.strip()
        if not t:
            raise QueryRequestError(f"query {i} is empty")
        if len(t) > cfg.max_query_chars:
            raise QueryRequestError(
                f"query {i} is {len(t)} characters long; the limit is max_query_chars = {cfg.max_query_chars}"
            )
        texts.append(t)
    if not math.isfinite(threshold) or threshold > 1.0:
        raise QueryRequestError(f"threshold must be in (0, 1] or <= 0 for the default; got {threshold}")
    return QueryRequest(tuple(texts), cfg.threshold if threshold <= 0 else float(threshold))


# --------------------------------------------------------------------------------------------
# Answering queries from a LanguageField
# --------------------------------------------------------------------------------------------


@dataclass
class Match3D:
    """The answer to one query in 3D (world frame)."""

    query: str
    found: bool
    score: float  # peak relevancy of the returned instance (or the best seen when not found)
    threshold: float
    level: str  # semantic level that answered
    num_instances: int
    points: np.ndarray  # (M, 3) float32
    colors: np.ndarray  # (M, 3) uint8
    relevancy: np.ndarray  # (M,) float32
    gaussian_ids: np.ndarray  # (M,) int64 indices into the field
    message: str
    normals: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros((0, 3), np.float32))  # (M, 3) unit surface normals
    rank: int = 0  # 0 = the instance with the most evidence
    evidence: float = 0.0  # sum over its Gaussians of relevancy x observed weight
    alternatives: list["Match3D"] = dataclasses.field(default_factory=list)  # the other instances that pass, by evidence
    _obb: OrientedBox | None = dataclasses.field(default=None, repr=False, compare=False)

    @property
    def centroid(self) -> np.ndarray:
        return self.points.mean(0) if len(self.points) else np.zeros(3)

    @property
    def box(self) -> tuple[np.ndarray, np.ndarray]:
        """(center, size) of the axis-aligned box."""
        if not len(self.points):
            return np.zeros(3), np.zeros(3)
        lo, hi = self.points.min(0), self.points.max(0)
        return (lo + hi) / 2, hi - lo

    @property
    def oriented_box(self) -> OrientedBox:
        """The oriented bounding box of the points (core/boxes.py; computed once)."""
        if self._obb is None:
            self._obb = oriented_box(self.points)
        return self._obb


def relevancy_table(field: "LanguageField", text: torch.Tensor, canonical: torch.Tensor) -> torch.Tensor:
    """(Q, K) relevancy of every codebook entry to every query."""
    from langx_ros.core.relevancy import relevancy

    feats = field.codebook_features()
    return relevancy(feats, text.to(feats.device), canonical.to(feats.device)).reshape(-1, feats.shape[0])


# the 13 voxel offsets of one half of a 26-neighbourhood (the other half is their negation)
_HALF_NEIGHBOURS = [(dx, dy, dz) for dx in (-1, 0, 1) for dy in (-1, 0, 1) for dz in (-1, 0, 1) if (dx, dy, dz) > (0, 0, 0)]


def connected_instances(points: torch.Tensor | np.ndarray, radius: float) -> torch.Tensor:
    """Instance label (M,) per point, computed on the points' device (no host round trip of the
    points): points fall into voxels of edge ``radius``; voxels that touch (26-neighbourhood)
    are linked, and instances are the connected components of that voxel graph. Two points
    closer than ``radius`` always share an instance; points in touching voxels (up to
    2 * sqrt(3) * radius apart) do too. Labels are 0..I-1, in order of each component's smallest
    voxel key (deterministic).

    On a GPU the cost is kernel launches and synchronisations, not arithmetic: one sync for the
    voxel count, one per three rounds of label propagation (a few for any object), none else.
    """
    pts = torch.as_tensor(points)
    dev = pts.device
    if pts.shape[0] == 0:
        return torch.zeros(0, dtype=torch.long, device=dev)
    vox = torch.floor(pts.double() / radius).long()
    vox = vox - vox.min(0).values + 1  # >= 1, so a neighbour offset of -1 stays >= 0
    span = vox.max(0).values + 2
    key = (vox[:, 0] * span[1] + vox[:, 1]) * span[2] + vox[:, 2]
    uniq, inv = torch.unique(key, return_inverse=True)  # sorted voxel keys (the one sync for the count)
    nv = uniq.shape[0]
    d = torch.tensor(_HALF_NEIGHBOURS, device=dev)
    offs = (d[:, 0] * span[1] + d[:, 1]) * span[2] + d[:, 2]  # (13,) key offsets, on the device
    nk = (uniq[None, :] + offs[:, None]).reshape(-1)  # all 13 neighbour keys of every voxel at once
    pos = torch.searchsorted(uniq, nk).clamp(max=nv - 1)
    src = torch.arange(nv, device=dev).repeat(offs.shape[0])
    dst = torch.where(uniq[pos] == nk, pos, src)  # a missing neighbour is a self-loop (no compaction, no sync)
    labels = torch.arange(nv, device=dev)
    while True:  # min-label propagation with pointer jumping; converged when a round changes nothing
        before = labels
        for _ in range(3):  # a few rounds between (synchronising) convergence checks
            m = torch.minimum(labels[src], labels[dst])
            labels = labels.scatter_reduce(0, src, m, reduce="amin").scatter_reduce(0, dst, m, reduce="amin")
            labels = labels[labels]
            labels = labels[labels]
        if torch.equal(labels, before):
            break
    roots = labels == torch.arange(nv, device=dev)  # every component's smallest voxel is its root
    comp = torch.cumsum(roots, 0) - 1  # components numbered by their root's key
    return comp[labels][inv]


@dataclass
class Candidates:
    """Gaussians selected for one query, before instance separation (tensors on the field's device)."""

    level: int
    peak: float  # highest relevancy among selectable Gaussians at that level
    cutoff: float  # relevancy a Gaussian needed to be selected
    ids: torch.Tensor  # (S,) selected Gaussian indices
    relevancy: torch.Tensor  # (S,) their relevancy


def relevancy_logit(rel: torch.Tensor) -> torch.Tensor:
    """log(r / (1 - r)) of relevancies r (clamped to [1e-6, 1 - 1e-6]).

    LangSplat's relevancy is min over canonical phrases of softmax(10 [f.q, f.c]) =
    sigmoid(10 (f.q - max_c f.c)): it saturates near 1 for every feature merely related to the
    query (with label embeddings, "sofa" scores 0.97 for "wooden shelf" and the shelf 0.9999).
    The logit undoes the saturation: it is 10 x the margin over the canonical phrases."""
    r = rel.clamp(1e-6, 1 - 1e-6)
    return torch.log(r) - torch.log1p(-r)


def select_candidates(field: "LanguageField", text: torch.Tensor, canonical: torch.Tensor, threshold: float,
                      cfg: QueryConfig) -> list[Candidates]:
    """The device-side part of 3D selection, for every query (no host copies of all N).

    Only selectable Gaussians (opaque enough and observed: ``LanguageField.selectable``) count.
    Level choice: the level whose highest relevancy among them is largest. Selection:
    relevancy >= threshold, and a relevancy logit (:func:`relevancy_logit`) >= lo +
    relative_cutoff * (hi - lo) over the selectable Gaussians (LangSplat's normalise-and-cut
    rule, applied to logits because the relevancy saturates). An empty ``ids`` means none
    reached the threshold.

    A Gaussian's relevancy is that of its codebook entry, so the statistics (peak, lo, hi) are
    taken over the K entries that selectable Gaussians use, and the cut is a (K,) table of
    passing entries: the only work over all N Gaussians is one gather per query.
    """
    table = relevancy_table(field, text, canonical)  # (Q, K)
    logit = relevancy_logit(table)
    ok, present = field.selectable(cfg.min_opacity, table.shape[1])  # (N, L), (L, K)
    dev = table.device
    peaks = torch.where(present[None], table[:, None, :], torch.tensor(-1.0, device=dev)).max(dim=2).values  # (Q, L)
    big = torch.tensor(1e9, device=dev)
    hi = torch.where(present[None], logit[:, None, :], -big).max(dim=2).values
    lo = torch.where(present[None], logit[:, None, :], big).min(dim=2).values
    levels = hi.argmax(dim=1)  # the level with the highest peak (the logit is monotonic)
    cut = lo + cfg.relative_cutoff * (hi - lo)
    rows = torch.arange(table.shape[0], device=dev)
    stats = torch.stack([peaks[rows, levels].double(), cut[rows, levels].double(), levels.double()], 1).cpu().tolist()  # one sync
    idx = field.code_index()
    out = []
    for qi, (best, cut_q, lvl_f) in enumerate(stats):
        lvl = int(lvl_f)
        if best < threshold:
            e = torch.empty(0, dtype=torch.long, device=dev)
            out.append(Candidates(lvl, best, threshold, e, e.float()))
            continue
        passing = (table[qi] >= threshold) & (logit[qi] >= cut_q)  # (K,) entries that pass
        codes = idx[:, lvl]
        ids = torch.nonzero(passing[codes] & ok[:, lvl]).squeeze(1)
        cutoff = max(threshold, 1.0 / (1.0 + math.exp(-cut_q)) if abs(cut_q) < 700 else float(cut_q > 0))
        out.append(Candidates(lvl, best, cutoff, ids, table[qi, codes[ids]]))
    return out


def select_3d(field: "LanguageField", queries: Sequence[str], text: torch.Tensor, canonical: torch.Tensor,
              threshold: float, cfg: QueryConfig) -> list[Match3D]:
    """3D answers: per query the instance with the most evidence, weighed by how well it matches
    (or "no match"); every other instance that passes is offered in ``alternatives``.

    Selection as in :func:`select_candidates`; instances are :func:`connected_instances` of the
    selected centres (cluster_radius), computed on the field's device; instances smaller than
    ``min_instance_points`` are noise. An instance's evidence is the sum over its Gaussians of
    relevancy times observed weight (the registration's blending weight at the answering level),
    so a large, well-seen, relevant object beats a few stray Gaussians of high relevancy (which
    objects are relevant enough at all is the logit cutoff's decision); the rank weighs that
    evidence by the odds of the instance's mean relevancy (:func:`_rank_instances`).
    Each point carries its Gaussian's surface normal.
    """
    radius = cfg.cluster_radius if cfg.cluster_radius > 0 else max(3.0 * field.point_spacing(), cfg.min_cluster_radius)
    means = field.params["means"].detach()
    out = []
    for q, c in zip(queries, select_candidates(field, text, canonical, threshold, cfg)):
        level = field.levels[c.level]
        if c.ids.numel() == 0:
            out.append(_no_match(q, c.peak, threshold, level, f"no match above threshold {threshold:.2f} (best {c.peak:.2f})"))
            continue
        labels = connected_instances(means[c.ids], radius)
        sizes = torch.zeros(c.ids.shape[0], dtype=torch.long, device=labels.device).index_add_(0, labels, torch.ones_like(labels))
        w = field.evidence[c.ids, c.level] if field.evidence is not None else torch.ones_like(c.relevancy)
        per = [None if t is None else t[c.ids, c.level] for t in (field.labelled, field.agree_views)]
        order, mass = _rank_instances(labels, sizes, c.relevancy, w.double(), cfg, *per)
        top = order[: cfg.max_instances]
        *mass_h, n_all = torch.cat([mass[top], (mass >= 0).sum()[None].double()]).cpu().tolist()  # one synchronisation
        n_ok = sum(m >= 0 for m in mass_h)
        if n_ok == 0:
            out.append(_no_match(q, c.peak, threshold, level,
                                 f"only {int(c.ids.numel())} scattered Gaussians above {c.cutoff:.2f} (no group of >= {cfg.min_instance_points})"))
            continue
        insts = _instances(field, q, threshold, level, c, labels, top[:n_ok], mass_h[:n_ok], int(n_all), cfg)
        insts[0].alternatives = insts[1:]
        out.append(insts[0])
    return out


def _rank_instances(labels: torch.Tensor, sizes: torch.Tensor, relevancy: torch.Tensor, weight: torch.Tensor,
                    cfg: QueryConfig, labelled: torch.Tensor | None = None,
                    agree_views: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Order of the instance slots (as many as ``sizes``), best first, and their evidence, -1 for
    groups smaller than ``min_instance_points`` (and for empty slots).

    Evidence = sum of relevancy x observed weight. The rank is by evidence x exp(w x m), m the
    instance's weighted mean relevancy logit and w = ``instance_match_weight`` (for w = 1:
    evidence times the odds of the instance's relevancy). Without it a large object that is
    merely related to the query (a floral mug for "white mug": both names embed alike) outweighs
    the small object the query names; with it, a logit 2.2 higher (the white mug, measured in
    the kitchen) is worth 9x the evidence. ``instance_density_weight`` d > 0 multiplies by
    (evidence per Gaussian)^d as well. Ties keep the instances' order (stable sort).

    With the registration's per-Gaussian ``labelled`` weight and ``agree_views`` count,
    ``instance_consensus_weight`` c multiplies by (sum weight / sum labelled)^c, the agreeing
    share of what the views saw there, and ``instance_views_weight`` v by the weight-averaged
    agreeing views^v (each term off at 0, or when the field lacks it).
    """
    n = sizes.shape[0]
    zeros = torch.zeros(n, device=labels.device, dtype=torch.float64)
    mass = zeros.index_add(0, labels, relevancy.double() * weight)
    valid = sizes >= max(1, cfg.min_instance_points)
    mass = torch.where(valid, mass, torch.full_like(mass, -1.0))
    use_consensus = cfg.instance_consensus_weight > 0 and labelled is not None
    use_views = cfg.instance_views_weight > 0 and agree_views is not None
    if cfg.instance_match_weight <= 0 and cfg.instance_density_weight <= 0 and not (use_consensus or use_views):
        return torch.sort(mass, descending=True, stable=True).indices, mass
    wsum = zeros.index_add(0, labels, weight).clamp(min=1e-12)
    match = zeros.index_add(0, labels, relevancy_logit(relevancy).double() * weight) / wsum
    best = torch.where(valid, match, torch.full_like(match, -1e18)).max()
    key = torch.log(mass.clamp(min=1e-300)) + cfg.instance_match_weight * (match - best)
    if cfg.instance_density_weight > 0:
        key = key + cfg.instance_density_weight * torch.log(mass.clamp(min=1e-300) / sizes.double().clamp(min=1.0))
    if use_consensus:
        seen = zeros.index_add(0, labels, labelled.double()).clamp(min=1e-12)
        key = key + cfg.instance_consensus_weight * torch.log((wsum / seen).clamp(1e-12, 1.0))
    if use_views:
        views = zeros.index_add(0, labels, agree_views.double() * weight) / wsum
        key = key + cfg.instance_views_weight * torch.log(views.clamp(min=1e-3))
    key = torch.where(valid, key, torch.full_like(key, -1e300))
    return torch.sort(key, descending=True, stable=True).indices, mass


def _subsample_key(gid: torch.Tensor) -> torch.Tensor:
    """A fixed pseudo-random key in [0, 1) per Gaussian id (a multiplicative hash): the same
    Gaussians are kept whenever an instance is subsampled, on any device."""
    return ((gid * 2654435761) % 4294967296).double() / 4294967296.0


def _instances(field: "LanguageField", q: str, threshold: float, level: str, c: Candidates, labels: torch.Tensor,
               top: torch.Tensor, evidence: list[float], n_inst: int, cfg: QueryConfig) -> list[Match3D]:
    """The instances ``top`` (label ids, best first) of a selection as Match3Ds, each subsampled to
    ``max_points`` (uniformly, by :func:`_subsample_key`), gathered and copied to the host at once."""
    k = top.shape[0]
    rank_of = torch.full((labels.shape[0],), k, dtype=torch.long, device=labels.device)
    rank_of[top] = torch.arange(k, device=labels.device)
    r = rank_of[labels]  # (S,) rank of each candidate's instance, k = not returned
    gid_all = c.ids
    order = torch.argsort(r.double() + _subsample_key(gid_all))  # by instance, then by the fixed random key
    r_sorted = r[order]
    start = torch.searchsorted(r_sorted, torch.arange(k + 1, device=r.device))
    pos = torch.arange(r_sorted.shape[0], device=r.device) - start[r_sorted.clamp(max=k)]
    sel = order[(r_sorted < k) & (pos < cfg.max_points)]  # sync: the number of returned points
    gid = gid_all[sel]
    col = (torch.sigmoid(field.params["colors"].detach()[gid]).clamp(0, 1) * 255 + 0.5).floor()
    packed = torch.cat([field.params["means"].detach()[gid], col, field.surface_normals()[gid],
                        c.relevancy[sel, None], gid[:, None], r[sel, None]], 1).double().cpu().numpy()  # one transfer
    out = []
    bounds = np.searchsorted(packed[:, 11], np.arange(k + 1))
    for rank in range(k):
        p = packed[bounds[rank]: bounds[rank + 1]]
        p = p[np.argsort(p[:, 10], kind="stable")]  # by Gaussian id
        rv = p[:, 9].astype(np.float32)
        out.append(Match3D(q, True, float(rv.max()), threshold, level, n_inst, p[:, 0:3].astype(np.float32),
                           p[:, 3:6].astype(np.uint8), rv, p[:, 10].astype(np.int64),
                           f"level {level}; instance {rank + 1} of {n_inst}; {len(p)} points; evidence {evidence[rank]:.1f}",
                           normals=p[:, 6:9].astype(np.float32), rank=rank, evidence=evidence[rank]))
    return out


def _no_match(q: str, best: float, threshold: float, level: str, message: str) -> Match3D:
    return Match3D(q, False, best, threshold, level, 0, np.zeros((0, 3), np.float32), np.zeros((0, 3), np.uint8),
                   np.zeros(0, np.float32), np.zeros(0, np.int64), message)


@dataclass
class Map2D:
    """The 2D answer to one query at one camera (LangSplat protocol, core/langsplat_eval.py)."""

    query: str
    level: str  # level whose smoothed map has the highest maximum (gives the mask)
    relevancy: np.ndarray  # (H, W) float32 smoothed relevancy of that level
    mask: np.ndarray  # (H, W) bool
    peak: tuple[int, int]  # (row, col): the first localisation candidate (row-major)
    score: float  # maximum of the box-filtered relevancy at the localisation level
    candidates: np.ndarray | None = None  # (K, 2) row, col: every pixel tying for that maximum
    localisation_level: str = ""  # level whose box-filtered map has the highest maximum


def box_filter(img: np.ndarray, size: int) -> np.ndarray:
    """Mean over a size x size box, float32, as LangSplat's evaluation filters (cv2.filter2D,
    reflect-101 border)."""
    from langx_ros.core.langsplat_eval import box_mean

    return box_mean(img, size)


def langsplat_map(rel_levels: np.ndarray, query: str, levels: Sequence[str], cfg: QueryConfig) -> Map2D:
    """Smoothing, level choice, normalisation, threshold and cleaning of LangSplat's official
    evaluation, number for number (see core/langsplat_eval.py).

    rel_levels: (L, H, W) raw relevancy per level.
    """
    from langx_ros.core.langsplat_eval import langsplat_map_exact

    r = langsplat_map_exact(np.asarray(rel_levels, np.float32), box_px=cfg.mask_box_px,
                            threshold=cfg.mask_threshold, clean_px=cfg.mask_clean_px)
    return Map2D(query, levels[r.level_index], r.smoothed, r.mask, r.peak, r.score,
                 candidates=r.candidates, localisation_level=levels[r.localisation_level])


def relevancy_from_codes(field: "LanguageField", sem: torch.Tensor, alpha: torch.Tensor, text: torch.Tensor,
                         canonical: torch.Tensor) -> torch.Tensor:
    """(Q, L, H, W) relevancy of rendered codes sem (H, W, L * D); 0 where alpha <= 0.5."""
    h, w = sem.shape[:2]
    codes = sem.reshape(h, w, len(field.levels), field.code_dim)
    idx = field.lqc.nearest(codes)  # (H, W, L)
    table = relevancy_table(field, text, canonical)  # (Q, K)
    rel = table[:, idx].permute(0, 3, 1, 2)
    return rel * (alpha[..., 0] > 0.5)[None, None]


def relevancy_maps(field: "LanguageField", viewmat: torch.Tensor, K: torch.Tensor, width: int, height: int,
                   text: torch.Tensor, canonical: torch.Tensor) -> np.ndarray:
    """(Q, L, H, W) raw relevancy of the rendered semantic codes at a camera (0 where nothing renders)."""
    r = field.render(viewmat, K, width, height)
    return relevancy_from_codes(field, r.sem, r.alpha, text, canonical).cpu().numpy().astype(np.float32)


def query_2d(field: "LanguageField", queries: Sequence[str], viewmat: torch.Tensor, K: torch.Tensor, width: int, height: int,
             text: torch.Tensor, canonical: torch.Tensor, cfg: QueryConfig) -> list[Map2D]:
    """2D relevancy maps and masks of every query at one camera."""
    maps = relevancy_maps(field, viewmat, K, width, height, text, canonical)
    return [langsplat_map(maps[i], q, field.levels, cfg) for i, q in enumerate(queries)]


def instance_mask(field: "LanguageField", gaussian_ids: np.ndarray, viewmat: torch.Tensor, K: torch.Tensor,
                  width: int, height: int) -> np.ndarray:
    """(H, W) bool: where the selected Gaussians make up most of what the camera sees.

    The selection is rendered as a channel with the field's own compositing, so the mask
    follows occlusion and is the 3D answer seen from that camera (consistent with the points).
    """
    sel = torch.zeros(field.num_gaussians, 1, device=field.device)
    sel[torch.as_tensor(gaussian_ids, dtype=torch.long, device=field.device)] = 1.0
    out = field.render_channels(sel, viewmat, K, width, height)
    frac = out.features[..., 0] / out.alpha[..., 0].clamp(min=1e-6)
    return ((frac > 0.5) & (out.alpha[..., 0] > 0.5)).cpu().numpy()
