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
from langx_ros.core.field.surface import take_rows, unpack_records
from langx_ros.core.instances import LOGIT_CLAMP, AnswerPlan, AnswerShape, CaptureGate, FieldTables, RankWeights, threshold_logit

if TYPE_CHECKING:
    from langx_ros.core.field.model import LanguageField
    from langx_ros.core.field.surface import SurfaceSamples


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
    points: np.ndarray  # (M, 3) float32 (query.points: surface samples or Gaussian centres)
    colors: np.ndarray  # (M, 3) uint8
    relevancy: np.ndarray  # (M,) float32, of the Gaussian each point belongs to
    gaussian_ids: np.ndarray  # (G,) int64 ascending: the instance's Gaussians (indices into the field; all of them)
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


def answer_plan(field: "LanguageField", cfg: QueryConfig, codebook_size: int, gate: CaptureGate | None = None) -> AnswerPlan:
    """The field's :class:`AnswerPlan` for these query settings (built once, kept on the field;
    ``gate``: see :class:`~langx_ros.core.instances.CaptureGate`, None for single-threaded use)."""
    radius = cfg.cluster_radius if cfg.cluster_radius > 0 else max(3.0 * field.point_spacing(), cfg.min_cluster_radius)
    use_labelled = cfg.instance_consensus_weight > 0 and field.labelled is not None
    use_views = cfg.instance_views_weight > 0 and field.agree_views is not None
    shape = AnswerShape(cap=0, radius=radius, relative_cutoff=cfg.relative_cutoff,
                        min_points=cfg.min_instance_points, max_instances=cfg.max_instances,
                        weights=RankWeights(cfg.instance_match_weight, cfg.instance_density_weight,
                                            cfg.instance_consensus_weight, cfg.instance_views_weight), rounds=None)
    key = (shape, float(cfg.min_opacity), int(codebook_size), bool(cfg.cuda_graph), use_labelled, use_views)
    plans = field.plans()
    if key not in plans:
        tables = FieldTables.of(field, cfg.min_opacity, codebook_size, use_labelled, use_views, field.codebook_features())
        start = min(1 << 14, 1 << max(0, (field.num_gaussians - 1).bit_length()))
        mode = "graph" if cfg.cuda_graph and field.device.type == "cuda" else "eager"
        plans[key] = AnswerPlan(tables, shape, codebook_size, mode=mode, start_cap=start, gate=gate)
    return plans[key]


def select_3d(field: "LanguageField", queries: Sequence[str], text: torch.Tensor, canonical: torch.Tensor,
              threshold: float, cfg: QueryConfig, gate: CaptureGate | None = None) -> list[Match3D]:
    """3D answers: per query the instance with the most evidence, weighed by how well it matches
    (or "no match"); every other instance that passes is offered in ``alternatives``.

    Selection (core/instances.py, :func:`~langx_ros.core.instances.select_mask`): only observed,
    opaque enough Gaussians; the level with the highest peak; relevancy >= threshold and a logit
    above LangSplat's relative cutoff. Instances are the connected components of the selected
    centres' touching voxels (cluster_radius); instances smaller than ``min_instance_points`` are
    noise. An instance's evidence is the sum over its Gaussians of relevancy times observed weight
    (the registration's blending weight at the answering level), so a large, well-seen, relevant
    object beats a few stray Gaussians of high relevancy (which objects are relevant enough at
    all is the logit cutoff's decision); the rank weighs that evidence by the odds of the
    instance's mean relevancy and the views that agree (:func:`~langx_ros.core.instances.rank_keys`).
    The points are the surface samples the instance's Gaussians own, or their centres
    (``query.points``, :func:`instance_points`); each carries its Gaussian's surface normal.

    All of it runs on the field's device in fixed shapes, on CUDA as one replayed CUDA graph per
    call (``query.cuda_graph``); the host gets the returned points and a few numbers per query.
    Where other threads use the GPU too, pass their :class:`~langx_ros.core.instances.CaptureGate`
    (the Engine does).
    """
    if field.num_gaussians == 0:
        return [_no_match(q, 0.0, threshold, field.levels[0], "the field has no Gaussians") for q in queries]
    out = []
    vote = cfg.sample_vote and cfg.points == "surface" and field.surface is not None and field.surface.code is not None
    # the relevancy logits are computed in the answer's graph and come back with it (res.logit)
    plan = answer_plan(field, cfg, field.codebook_features().shape[0], gate)
    for q, res in zip(queries, plan.run_text(text, canonical, threshold)):
        level = field.levels[res.level]
        if res.peak < threshold:
            out.append(_no_match(q, res.peak, threshold, level, f"no match above threshold {threshold:.2f} (best {res.peak:.2f})"))
            continue
        if res.passing == 0:
            cutoff = max(threshold, 1.0 / (1.0 + math.exp(-res.cut_logit)))
            out.append(_no_match(q, res.peak, threshold, level, f"only {res.selected} scattered Gaussians above {cutoff:.2f} "
                                 f"(no group of >= {cfg.min_instance_points})"))
            continue
        insts = []
        bounds = np.concatenate([[0], np.cumsum(res.counts)])
        filt = None
        if vote:
            # the selection's logit cut, as the device compared it (float32)
            cutoff = max(np.float32(res.cut_logit), np.float32(threshold_logit(threshold)))
            filt = SampleFilter.of(field.surface, res.level, res.logit, cutoff, cfg.unlabelled_points)
        for rank, ev in enumerate(res.evidence.tolist()):
            rows = res.rows[bounds[rank]: bounds[rank + 1]]
            pts = instance_points(field, rows, res.gid[bounds[rank]: bounds[rank + 1]], cfg, filt)
            insts.append(Match3D(q, True, float(rows[:, 9].max()), threshold, level, res.passing, pts.points, pts.colors,
                                 pts.relevancy, pts.gaussian_ids,
                                 f"level {level}; instance {rank + 1} of {res.passing}; {len(pts.gaussian_ids)} Gaussians, "
                                 f"{len(pts.points)} {pts.source}; evidence {ev:.1f}",
                                 normals=pts.normals, rank=rank, evidence=ev))
        insts[0].alternatives = insts[1:]
        out.append(insts[0])
    return out


@dataclass
class InstancePoints:
    """The points one instance returns (see :func:`instance_points`)."""

    points: np.ndarray  # (M, 3) float32
    colors: np.ndarray  # (M, 3) uint8
    normals: np.ndarray  # (M, 3) float32
    relevancy: np.ndarray  # (M,) float32
    gaussian_ids: np.ndarray  # (G,) int64 ascending
    source: str  # what the points are, for the answer's message


@dataclass
class SampleFilter:
    """Which surface samples one answer keeps by their own labels (``query.sample_vote``): tables
    by codebook entry + 1 (entry -1: no view labels the sample)."""

    code: np.ndarray  # (M,) int32 each sample's own entry at the answer's level, + 1 (SurfaceSamples.level_code)
    keep: np.ndarray  # (K + 1,) bool: the entry's logit passes the cut (no label: as asked)
    relevancy: np.ndarray  # (K + 1,) float32 the entry's relevancy (no label: NaN, the owner's is used)

    @classmethod
    def of(cls, surface: "SurfaceSamples", level: int, logit: np.ndarray, cutoff: float,
           unlabelled: bool = True) -> "SampleFilter":
        """For the query's (K,) ``logit`` table and the selection's logit ``cutoff`` at ``level``;
        ``unlabelled``: whether samples no view labels are kept (``query.unlabelled_points``)."""
        lg = np.asarray(logit, np.float32)
        keep = np.concatenate([[unlabelled], lg >= np.float32(cutoff)])
        rel = np.concatenate([[np.nan], 1.0 / (1.0 + np.exp(-lg))]).astype(np.float32)
        return cls(surface.level_code(level), keep, rel)


def instance_points(field: "LanguageField", rows: np.ndarray, gid: np.ndarray, cfg: QueryConfig,
                    filt: SampleFilter | None = None) -> InstancePoints:
    """An instance's points from its Gaussians' answer rows (centre, colour, normal, relevancy;
    (G, 10), ascending ``gid``): with ``cfg.points == "surface"`` and surface samples on the field,
    the samples its Gaussians own (the key frames' colours; each carries its Gaussian's normal and
    relevancy), else the centres. With a :class:`SampleFilter` (``cfg.sample_vote``, samples
    labelled by the views): only the samples whose own label passes the selection's cut, and those
    no view labels unless the filter drops them (``query.unlabelled_points``); they carry their own
    label's relevancy. Where none passes, all of them (and the source says so). At most ``cfg.max_points``: a fixed uniform subsample
    (:func:`~langx_ros.core.instances.subsample_key` of the sample or Gaussian ids), kept in order."""
    from langx_ros.core.instances import subsample_key

    surf = field.surface if cfg.points == "surface" else None
    # with the vote, the samples' owners are looked up only for those no view labels
    idx, pos = surf.of(gid, owners=filt is None) if surf is not None else (np.zeros(0, np.int64), None)
    if len(idx):
        owned = kept = len(idx)
        if filt is not None:
            sc = np.take(filt.code, idx)
            ok = np.take(filt.keep, sc)
            kept = int(np.count_nonzero(ok))
            if 0 < kept < owned:
                w = np.flatnonzero(ok)
                idx, sc = np.take(idx, w), np.take(sc, w)
            rel = np.take(filt.relevancy, sc)
            if not sc.all():  # samples no view labels carry their owner's relevancy (gid ascends)
                unl = np.flatnonzero(sc == 0)
                rel[unl] = np.take(rows[:, 9], np.searchsorted(gid, np.take(surf.owner, np.take(idx, unl))))
        else:
            rel = np.take(rows[:, 9], pos).astype(np.float32)
        if len(idx) > cfg.max_points:
            keep = _subsample(subsample_key(idx), cfg.max_points)
            idx, rel = idx[keep], rel[keep]
        # whole rows gathered as fixed-size records (point, colour, normal): a fraction of the cost
        # of np.take(..., axis=0) of the (S, 3) arrays (see SurfaceSamples.records)
        rec = take_rows(field.sample_records(), idx)
        points, colors = unpack_records(rec)
        return InstancePoints(points, colors, rec[:, 4:7], rel, gid,
                              _samples_source(owned, kept, filt is not None and not filt.keep[0]))
    keep = _subsample(subsample_key(gid), cfg.max_points) if len(gid) > cfg.max_points else slice(None)
    source = ("Gaussian centres" if surf is None and cfg.points == "centres" else
              "Gaussian centres (the field has no surface samples)" if surf is None else
              "Gaussian centres (no key-frame surface sample belongs to this instance)")
    return InstancePoints(rows[keep, 0:3].astype(np.float32), rows[keep, 3:6].astype(np.uint8), rows[keep, 6:9].astype(np.float32),
                          rows[keep, 9].astype(np.float32), gid, source)


def _samples_source(owned: int, kept: int, unlabelled_dropped: bool = False) -> str:
    """What an answer's surface samples are, for its message."""
    if kept == owned:
        return "surface samples"
    if kept == 0:
        return "surface samples (the views label none of them as the query: all returned)"
    how = "otherwise or not at all" if unlabelled_dropped else "otherwise"
    return f"surface samples ({owned - kept} more that the views label {how} left out)"


def _subsample(key: np.ndarray, max_points: int) -> np.ndarray:
    """Indices of the ``max_points`` smallest keys, in their original order."""
    return np.sort(np.argsort(key, kind="stable")[:max_points])


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
                   text: torch.Tensor, canonical: torch.Tensor, render: str = "codes") -> np.ndarray:
    """(Q, L, H, W) raw relevancy at a camera, rendered as ``render`` (``query.relevancy_2d``):

    * "codes" (LangScene-X, LangSplat): the Gaussians' codes are rendered and each pixel's blend is
      decoded by its nearest codebook entry (:func:`relevancy_from_codes`; 0 where nothing renders).
      Where Gaussians of two labels overlap, the blend of their codes can lie nearest a third label's entry.
    * "gaussians": each observed Gaussian's relevancy (of its own code's entry) is rendered, as a
      share of the observed Gaussians' blending weight (:func:`gaussian_relevancy_maps`; pixels
      without evidence read as their map's least relevant one, not 0).
    """
    if render == "gaussians":
        return gaussian_relevancy_maps(field, viewmat, K, width, height, text, canonical).cpu().numpy().astype(np.float32)
    if render != "codes":
        raise ValueError(f"relevancy rendering must be 'codes' or 'gaussians', not {render!r}")
    r = field.render(viewmat, K, width, height)
    return relevancy_from_codes(field, r.sem, r.alpha, text, canonical).cpu().numpy().astype(np.float32)


@torch.no_grad()
def gaussian_relevancy_maps(field: "LanguageField", viewmat: torch.Tensor, K: torch.Tensor, width: int, height: int,
                            text: torch.Tensor, canonical: torch.Tensor) -> torch.Tensor:
    """(Q, L, H, W) the alpha-blended relevancy of the observed Gaussians at a camera.

    Every Gaussian's relevancy per query and level is that of its own code's nearest entry; a
    pixel's is the blending-weighted mean over the observed Gaussians it sees (the Gaussians no
    view observed carry codes nothing checked: they neither raise nor lower it, as in the 3D
    selection). A pixel has no evidence where it is not opaque (alpha <= 0.5) or the observed
    Gaussians carry less than a tenth of its opacity (what :func:`instance_mask` requires of an
    answer); it reads as the least relevant pixel with evidence of its map (0 if none has any).
    """
    table = relevancy_table(field, text, canonical)  # (Q, K)
    q, n_lv = table.shape[0], len(field.levels)
    obs = field.observed().float()  # (N, L)
    rel = table[:, field.code_index()]  # (Q, N, L)
    channels = torch.cat([(rel * obs[None]).permute(1, 0, 2).reshape(field.num_gaussians, q * n_lv), obs], 1)
    out = field.render_channels(channels, viewmat, K, width, height)
    f, alpha = out.features, out.alpha[..., 0]
    weight = f[..., q * n_lv:]  # (H, W, L) observed blending weight per level
    num = f[..., :q * n_lv].reshape(height, width, q, n_lv)
    ok = _evidence_pixels(weight, alpha[..., None]) & (weight > 0)  # (H, W, L)
    mean = (num / weight.clamp_min(1e-12)[:, :, None]).clamp(0.0, 1.0).permute(2, 3, 0, 1)  # (Q, L, H, W)
    known = ok.permute(2, 0, 1)[None].expand_as(mean)
    # pixels without evidence read as the least relevant known pixel of their map: least relevant,
    # without stretching the map's range (a 0 there would, and LangSplat's normalisation with it)
    floor = torch.where(known, mean, torch.full_like(mean, float("inf"))).amin(dim=(2, 3), keepdim=True)
    floor = torch.where(torch.isfinite(floor), floor, torch.zeros_like(floor))
    return torch.where(known, mean, floor.expand_as(mean))


def query_2d(field: "LanguageField", queries: Sequence[str], viewmat: torch.Tensor, K: torch.Tensor, width: int, height: int,
             text: torch.Tensor, canonical: torch.Tensor, cfg: QueryConfig) -> list[Map2D]:
    """2D relevancy maps and masks of every query at one camera (rendered as ``cfg.relevancy_2d``)."""
    maps = relevancy_maps(field, viewmat, K, width, height, text, canonical, cfg.relevancy_2d)
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
    return ((mine > 0.5 * selectable) & _evidence_pixels(selectable, alpha)).cpu().numpy()


def _evidence_pixels(weight: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
    """Pixels an answer may speak for: opaque (alpha > 0.5), with at least a tenth of the opacity
    carried by the Gaussians that count (``weight``: their blending weight, same shape as ``alpha``)."""
    return (weight >= 0.1 * alpha) & (alpha > 0.5)
