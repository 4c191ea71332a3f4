"""Text queries: request checking, 3D selection with instances, 2D relevancy maps and masks."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Sequence

import numpy as np
import torch

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


def relevancy_table(field: "LanguageField", text: torch.Tensor, canonical: torch.Tensor) -> torch.Tensor:
    """(Q, K) relevancy of every codebook entry to every query."""
    from langx_ros.core.relevancy import relevancy

    feats = field.codebook_features()
    return relevancy(feats, text.to(feats.device), canonical.to(feats.device)).reshape(-1, feats.shape[0])


def gaussian_relevancy(field: "LanguageField", text: torch.Tensor, canonical: torch.Tensor) -> torch.Tensor:
    """(Q, L, N) relevancy of every Gaussian at every level: a gather from the K-entry table."""
    table = relevancy_table(field, text, canonical)  # (Q, K)
    idx = field.code_index()  # (N, L)
    return table[:, idx].permute(0, 2, 1)


def connected_instances(points: np.ndarray, radius: float) -> np.ndarray:
    """Instance label per point: connected components of the graph linking points within ``radius``."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components
    from scipy.spatial import cKDTree

    n = len(points)
    if n == 0:
        return np.zeros(0, np.int64)
    pairs = cKDTree(points).query_pairs(radius, output_type="ndarray")
    g = coo_matrix((np.ones(len(pairs)), (pairs[:, 0], pairs[:, 1])), shape=(n, n))
    _, labels = connected_components(g, directed=False)
    return labels.astype(np.int64)


@dataclass
class Candidates:
    """Gaussians selected for one query, before instance separation (tensors on the field's device)."""

    level: int
    peak: float  # highest relevancy among visible Gaussians at that level
    cutoff: float  # relevancy a Gaussian needed to be selected
    ids: torch.Tensor  # (S,) selected Gaussian indices
    relevancy: torch.Tensor  # (S,) their relevancy


def select_candidates(field: "LanguageField", text: torch.Tensor, canonical: torch.Tensor, threshold: float,
                      cfg: QueryConfig) -> list[Candidates]:
    """The device-side part of 3D selection, for every query (no host copies of all N).

    Level choice: the level whose highest relevancy among Gaussians of opacity >= min_opacity is
    largest. Selection: relevancy >= threshold and >= min + relative_cutoff * (max - min).
    An empty ``ids`` means no Gaussian reached the threshold.
    """
    rel_all = gaussian_relevancy(field, text, canonical)  # (Q, L, N)
    visible = field.opacities() >= cfg.min_opacity
    neg = torch.tensor(-1.0, device=rel_all.device)
    rel_vis = torch.where(visible, rel_all, neg)
    peaks = rel_vis.max(dim=2).values  # (Q, L)
    levels = peaks.argmax(dim=1)  # (Q,)
    big = torch.tensor(2.0, device=rel_all.device)
    lows = torch.where(visible, rel_all, big).min(dim=2).values  # (Q, L)
    out = []
    for qi in range(rel_all.shape[0]):
        lvl = int(levels[qi])
        best, lo = float(peaks[qi, lvl]), float(lows[qi, lvl])
        if best < threshold:
            e = torch.empty(0, dtype=torch.long, device=rel_all.device)
            out.append(Candidates(lvl, best, threshold, e, e.float()))
            continue
        cutoff = max(threshold, lo + cfg.relative_cutoff * (best - lo))
        r = rel_vis[qi, lvl]
        ids = torch.nonzero(r >= cutoff).squeeze(1)
        out.append(Candidates(lvl, best, cutoff, ids, r[ids]))
    return out


def select_3d(field: "LanguageField", queries: Sequence[str], text: torch.Tensor, canonical: torch.Tensor,
              threshold: float, cfg: QueryConfig) -> list[Match3D]:
    """3D answers: per query the best instance of Gaussians relevant to it (or "no match").

    Selection as in :func:`select_candidates`; instances are connected components of the
    selected centres (cluster_radius); the instance with the most relevancy mass above the
    cutoff is returned.
    """
    radius = cfg.cluster_radius if cfg.cluster_radius > 0 else 3.0 * field.point_spacing()
    means = field.params["means"].detach()
    colors = torch.sigmoid(field.params["colors"].detach())
    out = []
    for q, c in zip(queries, select_candidates(field, text, canonical, threshold, cfg)):
        level = field.levels[c.level]
        if c.ids.numel() == 0:
            out.append(_no_match(q, c.peak, threshold, level, f"no match above threshold {threshold:.2f} (best {c.peak:.2f})"))
            continue
        ids = c.ids.cpu().numpy()
        pts = means[c.ids].cpu().numpy().astype(np.float32)
        r_sel = c.relevancy.cpu().numpy()
        labels = connected_instances(pts, radius)
        sizes = np.bincount(labels)
        mass = np.bincount(labels, weights=r_sel - c.cutoff + 1e-6)
        ok = sizes >= cfg.min_instance_points
        if not ok.any():
            out.append(_no_match(q, c.peak, threshold, level,
                                 f"only {len(ids)} scattered Gaussians above {c.cutoff:.2f} (no group of >= {cfg.min_instance_points})"))
            continue
        mass[~ok] = -1
        keep = labels == int(np.argmax(mass))
        if keep.sum() > cfg.max_points:
            chosen = np.random.default_rng(0).choice(np.nonzero(keep)[0], cfg.max_points, replace=False)
            keep = np.zeros_like(keep)
            keep[chosen] = True
        sel_ids = ids[keep]
        rv = r_sel[keep].astype(np.float32)
        col = (colors[torch.as_tensor(sel_ids, device=colors.device)].clamp(0, 1) * 255 + 0.5).to(torch.uint8).cpu().numpy()
        out.append(Match3D(q, True, float(rv.max()), threshold, level, int(ok.sum()), pts[keep], col, rv, sel_ids.astype(np.int64),
                           f"level {level}; {int(ok.sum())} instance(s); {len(sel_ids)} points"))
    return out


def _no_match(q: str, best: float, threshold: float, level: str, message: str) -> Match3D:
    return Match3D(q, False, best, threshold, level, 0, np.zeros((0, 3), np.float32), np.zeros((0, 3), np.uint8),
                   np.zeros(0, np.float32), np.zeros(0, np.int64), message)


@dataclass
class Map2D:
    """The 2D answer to one query at one camera (LangSplat protocol)."""

    query: str
    level: str
    relevancy: np.ndarray  # (H, W) float32 smoothed relevancy of the chosen level
    mask: np.ndarray  # (H, W) bool
    peak: tuple[int, int]  # (row, col) of the box-filtered maximum (localisation)
    score: float  # maximum of the box-filtered relevancy


def box_filter(img: np.ndarray, size: int) -> np.ndarray:
    """Mean over a size x size box (edges replicated), float32."""
    import cv2

    return cv2.blur(img.astype(np.float32), (size, size), borderType=cv2.BORDER_REPLICATE)


def langsplat_map(rel_levels: np.ndarray, query: str, levels: Sequence[str], cfg: QueryConfig) -> Map2D:
    """Smoothing, level choice, normalisation, threshold and cleaning of LangSplat's evaluation.

    rel_levels: (L, H, W) raw relevancy per level.
    """
    best = None
    for li in range(rel_levels.shape[0]):
        avg = box_filter(rel_levels[li], cfg.mask_box_px)
        smoothed = 0.5 * (rel_levels[li] + avg)
        score = float(avg.max())
        if best is None or score > best[0]:
            best = (score, li, smoothed, avg)
    score, li, smoothed, avg = best  # type: ignore[misc]
    n = (smoothed - smoothed.min()) / (smoothed.max() - smoothed.min() + 1e-9)
    raw_mask = np.clip(2 * n - 1, 0, 1) > cfg.mask_threshold
    mask = box_filter(raw_mask.astype(np.float32), cfg.mask_clean_px) > 0.5
    peak = np.unravel_index(int(np.argmax(avg)), avg.shape)
    return Map2D(query, levels[li], smoothed.astype(np.float32), mask, (int(peak[0]), int(peak[1])), score)


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
