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
from langx_ros.core.device import to_device, to_host

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


# relevancies are clamped to [1e-6, 1 - 1e-6] before their logit is used (+-13.8)
LOGIT_CLAMP = math.log((1 - 1e-6) / 1e-6)


def logit_table(field: "LanguageField", text: torch.Tensor, canonical: torch.Tensor) -> torch.Tensor:
    """(Q, K) relevancy logit of every codebook entry for every query (``relevancy_logits``,
    clamped to +-LOGIT_CLAMP).

    LangSplat's relevancy is min over canonical phrases of softmax(10 [f.q, f.c]) =
    sigmoid(10 (f.q - max_c f.c)): it saturates near 1 for every feature merely related to the
    query (with label embeddings, "sofa" scores 0.97 for "wooden shelf" and the shelf 0.9999).
    The logit undoes the saturation: it is 10 x the margin over the canonical phrases."""
    from langx_ros.core.relevancy import relevancy_logits

    feats = field.codebook_features()  # unit length
    return relevancy_logits(feats, text.to(feats.device), canonical.to(feats.device), normalised=True).clamp(-LOGIT_CLAMP, LOGIT_CLAMP)


def relevancy_table(field: "LanguageField", text: torch.Tensor, canonical: torch.Tensor) -> torch.Tensor:
    """(Q, K) relevancy of every codebook entry to every query."""
    return torch.sigmoid(logit_table(field, text, canonical))


# Voxel keys pack (x, y, z) voxel coordinates, offset by 2^20, into 21 bits each: keys sort as
# (x, y, z) and a neighbouring voxel's key differs by a fixed offset. +-2^20 voxels about the origin
# (+-63 km at 6 cm) are covered; points beyond are clamped into the outermost voxels.
_KEY_BITS = 21
_KEY_OFF = 1 << (_KEY_BITS - 1)
# the key offsets of all 26 neighbours and of the voxel itself
_NEIGHBOURS = np.array([(dx << 2 * _KEY_BITS) + (dy << _KEY_BITS) + dz for dx in (-1, 0, 1) for dy in (-1, 0, 1)
                        for dz in (-1, 0, 1)], np.int64)
# one half of the 26-neighbourhood (the other half is its negation): keys order as (x, y, z), so
# the positive offsets are the neighbours after the voxel
_HALF_NEIGHBOURS = _NEIGHBOURS[_NEIGHBOURS > 0]
# Voxel graphs up to this size are solved on the host (scipy), larger ones on the device. Measured
# on one H100 (bench/query.py, flat patches): host 1.0 ms at 57-229 voxels, 3.9 ms at 918, 6.3 ms at
# 8264; device 1.3 ms at 57-229 voxels, 1.5-1.8 ms from 2066 to 22956 (launch-bound).
HOST_COMPONENT_VOXELS = 512


def voxel_keys(points: torch.Tensor, radius: float) -> torch.Tensor:
    """(M,) int64 key of each point's voxel of edge ``radius`` (see ``_KEY_BITS``), on the points' device."""
    v = torch.floor(points.double() / radius).long().clamp(-_KEY_OFF + 1, _KEY_OFF - 2) + _KEY_OFF
    return (v[:, 0] << 2 * _KEY_BITS) + (v[:, 1] << _KEY_BITS) + v[:, 2]


def _components_host(uniq: np.ndarray) -> np.ndarray:
    """Connected components (nv,) of the touching-voxel graph of sorted unique keys, numbered in
    order of each component's smallest key (scipy labels components in node order)."""
    from scipy.sparse import csr_matrix
    from scipy.sparse.csgraph import connected_components

    nv = uniq.shape[0]
    nk = uniq[:, None] + _HALF_NEIGHBOURS[None, :]  # (nv, 13): rows are sources, so edges come out grouped
    pos = np.minimum(np.searchsorted(uniq, nk), nv - 1)
    hit = uniq[pos] == nk
    indptr = np.zeros(nv + 1, np.int64)
    np.cumsum(hit.sum(1), out=indptr[1:])
    dst = pos[hit]
    graph = csr_matrix((np.ones(dst.shape[0]), dst, indptr), shape=(nv, nv))
    return connected_components(graph, directed=False)[1].astype(np.int64)


def _components_device(uniq: torch.Tensor) -> torch.Tensor:
    """As :func:`_components_host`, on the keys' device: min-label propagation with pointer
    jumping over a dense (nv, 27) neighbour table (a missing neighbour is the voxel itself: no
    compaction, no synchronisation), four kernels a round and one synchronisation per four rounds.
    A label is always a voxel of the same component, never above the voxel's own index, and never
    grows; once every voxel's label equals the smallest among its neighbours' (checked after each
    four rounds), a component's labels are one, its smallest voxel."""
    dev = uniq.device
    nv = uniq.shape[0]
    nk = uniq[:, None] + to_device(_NEIGHBOURS, dev)[None, :]  # (nv, 27) neighbour keys, the voxel itself included
    pos = torch.searchsorted(uniq, nk).clamp_(max=nv - 1)
    ids = torch.arange(nv, device=dev)
    nb = torch.where(uniq[pos] == nk, pos, ids[:, None])
    labels = ids
    while True:
        for _ in range(4):
            labels = labels[nb].amin(dim=1)
            labels = labels[labels[labels]]  # pointer jumping, two steps
        if torch.equal(labels[nb].amin(dim=1), labels):  # a fixed point (every label is then a root)
            break
    roots = labels == ids
    return (torch.cumsum(roots, 0) - 1)[labels]


def voxel_components(uniq: torch.Tensor, host_max: int | None = None) -> tuple[torch.Tensor, int]:
    """Component of every voxel (sorted unique :func:`voxel_keys`; touching voxels, 26-neighbourhood,
    are linked), on the keys' device, numbered 0..I-1 in order of each component's smallest key;
    and I. Graphs up to ``host_max`` voxels are solved by scipy on the host, larger ones by label
    propagation on the keys' device; both give the same numbering. ``None``: on a CPU always
    scipy (2 cores: 4.2 ms against 10.1 ms for torch at 2895 voxels), on a GPU up to
    ``HOST_COMPONENT_VOXELS``."""
    nv = int(uniq.shape[0])
    if nv == 0:
        return torch.zeros(0, dtype=torch.long, device=uniq.device), 0
    if host_max is None:
        host_max = nv if uniq.device.type == "cpu" else HOST_COMPONENT_VOXELS
    if nv <= host_max:
        comp = _components_host(uniq.cpu().numpy())
        return to_device(comp, uniq.device), int(comp.max()) + 1
    comp = _components_device(uniq)
    return comp, int(comp.max()) + 1


def connected_instances(points: torch.Tensor | np.ndarray, radius: float, host_max: int | None = None) -> torch.Tensor:
    """Instance label (M,) per point, on the points' device: points fall into voxels of edge
    ``radius``; voxels that touch (26-neighbourhood) are linked, and instances are the connected
    components of that voxel graph (:func:`voxel_components`). Two points closer than ``radius``
    always share an instance; points in touching voxels (up to 2 * sqrt(3) * radius apart) do too.
    Labels are 0..I-1, in order of each component's smallest voxel key (deterministic).

    The per-point work (voxel keys, the unique voxels, the labels) stays on the points' device;
    only the voxel graph, a few hundred to thousand keys for one object, goes to the host when it
    is small (``host_max``, see :func:`voxel_components`), because there it costs less than the
    device's launches.
    """
    pts = torch.as_tensor(points)
    if pts.shape[0] == 0:
        return torch.zeros(0, dtype=torch.long, device=pts.device)
    uniq, inv = torch.unique(voxel_keys(pts, radius), return_inverse=True)
    comp, _ = voxel_components(uniq, host_max)
    return comp[inv]


@dataclass
class Candidates:
    """Gaussians selected for one query, before instance separation (tensors on the field's device)."""

    level: int
    peak: float  # highest relevancy among selectable Gaussians at that level
    cutoff: float  # relevancy a Gaussian needed to be selected
    ids: torch.Tensor  # (S,) selected Gaussian indices
    relevancy: torch.Tensor  # (S,) their relevancy
    logit: torch.Tensor  # (S,) its logit (see logit_table)


def select_candidates(field: "LanguageField", text: torch.Tensor, canonical: torch.Tensor, threshold: float,
                      cfg: QueryConfig) -> list[Candidates]:
    """The device-side part of 3D selection, for every query (no host copies of all N).

    Only selectable Gaussians (opaque enough and observed: ``LanguageField.selectable``) count.
    Level choice: the level whose highest relevancy among them is largest. Selection:
    relevancy >= threshold, and a relevancy logit (:func:`logit_table`) >= lo +
    relative_cutoff * (hi - lo) over the selectable Gaussians (LangSplat's normalise-and-cut
    rule, applied to logits because the relevancy saturates). An empty ``ids`` means none
    reached the threshold.

    A Gaussian's relevancy is that of its codebook entry, so the statistics (hi, lo) are taken
    over the K entries that selectable Gaussians use, and the cut is a (K,) table of passing
    entries: the only work over all N Gaussians is one gather per query.
    """
    logit = logit_table(field, text, canonical)  # (Q, K)
    ok, present = field.selectable(cfg.min_opacity, logit.shape[1])  # (N, L), (L, K)
    hi = torch.where(present[None], logit[:, None, :], -2 * LOGIT_CLAMP).max(dim=2).values  # (Q, L)
    lo = torch.where(present[None], logit[:, None, :], 2 * LOGIT_CLAMP).min(dim=2).values
    levels = hi.argmax(dim=1)  # the level with the highest peak
    rows = torch.arange(logit.shape[0], device=logit.device)
    hi_q, lo_q = hi[rows, levels], lo[rows, levels]
    stats = torch.stack([hi_q, lo_q + cfg.relative_cutoff * (hi_q - lo_q), levels.float()], 1).cpu().tolist()  # one sync
    idx = field.code_index()
    thr_logit = math.log(threshold / (1 - threshold)) if threshold < 1 else math.inf
    out = []
    for qi, (hi_l, cut_q, lvl_f) in enumerate(stats):
        lvl = int(lvl_f)
        best = 1.0 / (1.0 + math.exp(-hi_l)) if hi_l >= -LOGIT_CLAMP else 0.0  # no selectable Gaussian: 0
        if best < threshold:
            e = torch.empty(0, dtype=torch.long, device=logit.device)
            out.append(Candidates(lvl, best, threshold, e, e.float(), e.float()))
            continue
        passing = logit[qi] >= max(cut_q, thr_logit)  # (K,) entries that pass
        codes = idx[:, lvl]
        ids = torch.nonzero(passing[codes] & ok[:, lvl]).squeeze(1)
        lg = logit[qi][codes[ids]]
        out.append(Candidates(lvl, best, max(threshold, 1.0 / (1.0 + math.exp(-cut_q))), ids, torch.sigmoid(lg), lg))
    return out


def select_3d(field: "LanguageField", queries: Sequence[str], text: torch.Tensor, canonical: torch.Tensor,
              threshold: float, cfg: QueryConfig) -> list[Match3D]:
    """3D answers: per query the instance with the most evidence, weighed by how well it matches
    (or "no match"); every other instance that passes is offered in ``alternatives``.

    Selection as in :func:`select_candidates`; instances are :func:`connected_instances` of the
    selected centres (cluster_radius); instances smaller than ``min_instance_points`` are noise.
    An instance's evidence is the sum over its Gaussians of relevancy times observed weight (the
    registration's blending weight at the answering level), so a large, well-seen, relevant
    object beats a few stray Gaussians of high relevancy (which objects are relevant enough at
    all is the logit cutoff's decision); the rank weighs that evidence by the odds of the
    instance's mean relevancy (:func:`_rank_instances`). Each point carries its Gaussian's
    surface normal.

    Per query the work over the selected Gaussians stays on the field's device: voxel keys, their
    unique voxels, per-instance sums (one (I, C) reduction); the host gets the voxel graph when it
    is small, the (I, C) sums, and the returned points in one transfer.
    """
    radius = cfg.cluster_radius if cfg.cluster_radius > 0 else max(3.0 * field.point_spacing(), cfg.min_cluster_radius)
    means = field.params["means"].detach()
    out = []
    for q, c in zip(queries, select_candidates(field, text, canonical, threshold, cfg)):
        level = field.levels[c.level]
        if c.ids.numel() == 0:
            out.append(_no_match(q, c.peak, threshold, level, f"no match above threshold {threshold:.2f} (best {c.peak:.2f})"))
            continue
        uniq, inv = torch.unique(voxel_keys(means[c.ids], radius), return_inverse=True)
        comp, n_labels = voxel_components(uniq)
        labels = comp[inv]  # (S,) instance of every candidate
        cols, names = _evidence_columns(field, c, cfg)
        agg = torch.zeros(n_labels, cols.shape[1], dtype=torch.float64, device=cols.device).index_add_(0, labels, cols)
        sums = dict(zip(names, agg.cpu().numpy().T))  # one synchronisation: (I, C) sums
        order, mass = _rank_instances(sums, cfg)
        n_ok = int((mass >= 0).sum())
        if n_ok == 0:
            out.append(_no_match(q, c.peak, threshold, level,
                                 f"only {int(c.ids.numel())} scattered Gaussians above {c.cutoff:.2f} (no group of >= {cfg.min_instance_points})"))
            continue
        top = order[: min(cfg.max_instances, n_ok)]  # passing instances rank before the others
        insts = _instances(field, q, threshold, level, c, labels, n_labels, top, sums["n"][top].astype(np.int64),
                           mass[top].tolist(), n_ok, cfg)
        insts[0].alternatives = insts[1:]
        out.append(insts[0])
    return out


def _evidence_columns(field: "LanguageField", c: Candidates, cfg: QueryConfig) -> tuple[torch.Tensor, list[str]]:
    """(S, C) float64 per-candidate terms whose per-instance sums :func:`_rank_instances` needs,
    and their names: n (1), mass (relevancy x observed weight), w (the weight), logit (relevancy
    logit x weight), and where the rank uses them and the field has them, labelled (the labelled
    weight) and views (agreeing views x weight)."""
    rel = c.relevancy
    w = field.evidence[:, c.level][c.ids] if field.evidence is not None else torch.ones_like(rel)
    cols = {"n": torch.ones_like(rel), "mass": rel * w, "w": w, "logit": c.logit * w}
    if cfg.instance_consensus_weight > 0 and field.labelled is not None:
        cols["labelled"] = field.labelled[:, c.level][c.ids]
    if cfg.instance_views_weight > 0 and field.agree_views is not None:
        cols["views"] = field.agree_views[:, c.level][c.ids] * w
    return torch.stack(list(cols.values()), 1).double(), list(cols)


def _rank_instances(sums: dict[str, np.ndarray], cfg: QueryConfig) -> tuple[np.ndarray, np.ndarray]:
    """Order of the instances, best first, and their evidence, -1 for groups smaller than
    ``min_instance_points`` (those rank last). ``sums``: per-instance sums of the
    :func:`_evidence_columns` (host arrays of length I).

    Evidence = sum of relevancy x observed weight. The rank is by evidence x exp(w x m), m the
    instance's weighted mean relevancy logit and w = ``instance_match_weight`` (for w = 1:
    evidence times the odds of the instance's relevancy). Without it a large object that is
    merely related to the query (a floral mug for "white mug": both names embed alike) outweighs
    the small object the query names; with it, a logit 2.2 higher (the white mug, measured in
    the kitchen) is worth 9x the evidence. ``instance_density_weight`` d > 0 multiplies by
    (evidence per Gaussian)^d as well. Ties keep the instances' order (stable sort).

    With the registration's per-Gaussian labelled weight and agreeing views,
    ``instance_consensus_weight`` c multiplies by (sum weight / sum labelled)^c, the agreeing
    share of what the views saw there, and ``instance_views_weight`` v by the weight-averaged
    agreeing views^v (each term off at 0, or when the field lacks it).
    """
    n = sums["n"]
    valid = n >= max(1, cfg.min_instance_points)
    mass = np.where(valid, sums["mass"], -1.0)
    if cfg.instance_match_weight <= 0 and cfg.instance_density_weight <= 0 and not ({"labelled", "views"} & set(sums)):
        return np.argsort(-mass, kind="stable"), mass
    wsum = np.maximum(sums["w"], 1e-12)
    match = sums["logit"] / wsum
    log_mass = np.log(np.maximum(mass, 1e-300))
    key = log_mass + cfg.instance_match_weight * match
    if cfg.instance_density_weight > 0:
        key = key + cfg.instance_density_weight * (log_mass - np.log(np.maximum(n, 1.0)))
    if "labelled" in sums:
        key = key + cfg.instance_consensus_weight * np.log(np.clip(wsum / np.maximum(sums["labelled"], 1e-12), 1e-12, 1.0))
    if "views" in sums:
        key = key + cfg.instance_views_weight * np.log(np.maximum(sums["views"] / wsum, 1e-3))
    key = np.where(valid, key, -np.inf)
    return np.argsort(-key, kind="stable"), mass


def _subsample_key(gid: torch.Tensor) -> torch.Tensor:
    """A fixed pseudo-random key in [0, 2^32) per Gaussian id (a multiplicative hash, a bijection
    of ids mod 2^32): the same Gaussians are kept whenever an instance is subsampled, on any device."""
    return (gid * 2654435761) % 4294967296


def _instances(field: "LanguageField", q: str, threshold: float, level: str, c: Candidates, labels: torch.Tensor,
               n_labels: int, top: np.ndarray, sizes: np.ndarray, evidence: list[float], n_inst: int,
               cfg: QueryConfig) -> list[Match3D]:
    """The instances ``top`` (of the ``n_labels`` in ``labels``, best first; ``sizes`` their Gaussian
    counts; ``n_inst`` of them pass) of a selection as Match3Ds, each subsampled to ``max_points``
    (uniformly, by :func:`_subsample_key`), gathered and copied to the host at once."""
    k = len(top)
    dev = labels.device
    rank_of = np.full(n_labels, k, np.int64)  # k = not returned
    rank_of[top] = np.arange(k)
    r = to_device(rank_of, dev)[labels]  # (S,) rank of each candidate's instance
    counts = np.minimum(sizes, cfg.max_points)
    order = torch.argsort((r << 32) + _subsample_key(c.ids))  # by instance rank, then by the fixed random key
    if (sizes > cfg.max_points).any():  # drop each instance's points beyond max_points, keeping the order
        start = to_device(np.concatenate([[0], np.cumsum(sizes)]), dev)
        r_sorted = r[order]
        keep = (r_sorted < k) & (torch.arange(order.shape[0], device=dev) - start[r_sorted] < cfg.max_points)
        order = order[torch.argsort(keep.logical_not().to(torch.int32), stable=True)]
    sel = order[: int(counts.sum())]
    gid = c.ids[sel]
    rows, gid = to_host(torch.cat([field.answer_table()[gid], c.relevancy[sel, None]], 1), gid)  # one wait
    out = []
    bounds = np.concatenate([[0], np.cumsum(counts)])
    for rank in range(k):
        o = bounds[rank] + np.argsort(gid[bounds[rank]: bounds[rank + 1]])  # by Gaussian id
        p = rows[o]
        rv = p[:, 9]
        out.append(Match3D(q, True, float(rv.max()), threshold, level, n_inst, p[:, 0:3].copy(),
                           p[:, 3:6].astype(np.uint8), rv.copy(), gid[o],
                           f"level {level}; instance {rank + 1} of {n_inst}; {len(p)} points; evidence {evidence[rank]:.1f}",
                           normals=p[:, 6:9].copy(), rank=rank, evidence=evidence[rank]))
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


def instance_mask(field: "LanguageField", match: Match3D, viewmat: torch.Tensor, K: torch.Tensor, width: int, height: int,
                  min_opacity: float = QueryConfig.min_opacity) -> np.ndarray:
    """(H, W) bool: where the 3D answer ``match`` is what the camera sees.

    The answer's Gaussians and the selectable ones (opaque enough and observed at the answer's
    level: what any answer could contain) are rendered as two channels with the field's own
    compositing, so the mask follows occlusion. A pixel is the answer's where its Gaussians carry
    more than half of the selectable Gaussians' blending weight, the selectable ones carry at least
    a tenth of the pixel's opacity, and the pixel is opaque (> 0.5). Unobserved Gaussians (about
    half of a real field: hidden, floating, never checked by a view) neither count for nor against
    the answer, as in the 3D selection; a pixel covered only by them is not the answer's. Measured
    on the real lounge's held-out view, mean IoU over its 8 objects against counting every
    Gaussian: 0.41 -> 0.69 (640x480 field, one H100), 0.52 -> 0.58 (160x120, CPU).
    """
    lvl = field.levels.index(match.level)
    ok = field.selectable_gaussians(min_opacity)
    sel = torch.zeros(field.num_gaussians, device=field.device)
    sel[torch.as_tensor(match.gaussian_ids, dtype=torch.long, device=field.device)] = 1.0
    out = field.render_channels(torch.stack([sel, ok[:, lvl].float()], 1), viewmat, K, width, height)
    mine, selectable, alpha = out.features[..., 0], out.features[..., 1], out.alpha[..., 0]
    return ((mine > 0.5 * selectable) & (selectable >= 0.1 * alpha) & (alpha > 0.5)).cpu().numpy()
