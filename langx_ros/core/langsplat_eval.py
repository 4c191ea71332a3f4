"""LangSplat's 2D evaluation rules (LERF-OVS mIoU and localisation), reproduced exactly.

The rules of LangSplat's official evaluation (``eval/evaluate_iou_loc.py`` and ``eval/utils.py``
of minghanqin/LangSplat, run with ``--mask_thresh 0.4`` by its ``eval.sh``), restated here:

Mean filter
    ``cv2.filter2D`` of the float32 map with a 30 x 30 kernel of ones / 900 (float64), default
    border (``BORDER_REFLECT_101``) and default anchor, i.e. the window of pixel ``(r, c)`` is rows
    ``r - 15 .. r + 14`` and columns ``c - 15 .. c + 14``. OpenCV's own arithmetic (it may use a
    DFT for kernels this large) decides which pixels tie exactly for the maximum, so the filter is
    called the same way here rather than rewritten.

Mask (mIoU), per level
    ``smoothed = 0.5 * (raw + filtered)`` (float32); ``n = (s - min s) / (max(s - min s) + 1e-9)``
    and ``clip(2 n - 1, 0, 1) > threshold`` (float32 arithmetic, threshold compared as float32);
    then a majority vote (:func:`majority_clean`). The level whose *smoothed* map has the highest
    maximum gives the mask (first level on ties).

Localisation
    The level whose *filtered* map (no 0.5 mix) has the highest maximum (first level on ties);
    every pixel of that filtered map equal to its maximum is a candidate. A category is localised
    when some candidate ``(row, col)`` lies in some of its boxes, ``min(x1, x2) <= col <=
    max(x1, x2)`` and ``min(y1, y2) <= row <= max(y1, y2)`` (edges included). It counts once
    however many of its boxes are hit, and accuracy divides by the number of (frame, category)
    pairs, not boxes.

The IoU level and the localisation level are chosen by different maps and can differ.
"""
from __future__ import annotations

from typing import NamedTuple, Sequence

import numpy as np

BOX_PX = 30  # side of the mean filter of the official evaluation
THRESHOLD = 0.4  # --mask_thresh of the official eval.sh
CLEAN_RADIUS = 3  # half-width of the majority vote window (7 x 7)
NORM_EPS = np.float32(1e-9)  # added to the normaliser, in float32 as in the official torch code


def box_mean(maps: np.ndarray, size: int = BOX_PX) -> np.ndarray:
    """Mean filter of one (H, W) map or of a (L, H, W) stack of maps, float32, same shape.

    ``cv2.filter2D`` with a ``size`` x ``size`` kernel of ``1 / size**2`` (float64), the default
    (reflect-101) border and anchor ``(size // 2, size // 2)``. A stack is filtered level by
    level; the official localisation filters the levels as one multi-channel image, which
    OpenCV does channel by channel with the same result, bit for bit (and more slowly).
    """
    import cv2

    kernel = np.ones((size, size), np.float64) / float(size * size)
    a = np.asarray(maps, np.float32)
    if a.ndim == 2:
        return cv2.filter2D(np.ascontiguousarray(a), -1, kernel)
    if a.ndim != 3:
        raise ValueError(f"box_mean expects (H, W) or (L, H, W); got shape {a.shape}")
    return np.stack([cv2.filter2D(np.ascontiguousarray(x), -1, kernel) for x in a]) if len(a) else a.copy()


def smooth(raw: np.ndarray, filtered: np.ndarray) -> np.ndarray:
    """The map the mask is cut from: ``0.5 * (raw + filtered)`` in float32 (any matching shapes)."""
    return np.float32(0.5) * (np.asarray(raw, np.float32) + np.asarray(filtered, np.float32))


def normalise(smoothed: np.ndarray) -> np.ndarray:
    """``clip(2 n - 1, 0, 1)`` of the min-max normalised (H, W) map, float32 throughout.

    ``n = (s - min s) / (max(s - min s) + 1e-9)``; a constant map gives all zeros.
    """
    s = np.asarray(smoothed, np.float32)
    shifted = s - s.min()
    n = shifted / (shifted.max() + NORM_EPS)
    return np.clip(n * np.float32(2.0) + np.float32(-1.0), np.float32(0.0), np.float32(1.0))


def threshold_mask(smoothed: np.ndarray, threshold: float = THRESHOLD) -> np.ndarray:
    """(H, W) bool: ``normalise(smoothed) > threshold`` (threshold as float32), before cleaning."""
    return normalise(smoothed) > np.float32(threshold)


def _window_bounds(n: int, radius: int) -> tuple[np.ndarray, np.ndarray]:
    """Start and end (exclusive) of the vote window along an axis of length ``n``.

    ``[max(0, i - radius), min(i + radius + 1, n - 1))``: the official window never reaches the
    last row (column), because its end is clipped to ``n - 1`` rather than ``n``.
    """
    i = np.arange(n)
    lo = np.maximum(0, i - radius)
    hi = np.maximum(np.minimum(i + radius + 1, n - 1), lo)
    return lo, hi


def majority_clean(mask: np.ndarray, radius: int = CLEAN_RADIUS) -> np.ndarray:
    """(H, W) bool: a pixel is set when strictly more than half of its window is set.

    The window is the (2 radius + 1)^2 square around the pixel, clipped at the image and cut
    off before the last row and column (see :func:`_window_bounds`); a tie (possible in the
    clipped, even-sized windows) gives "not set", as does an empty window (images 1 pixel wide).
    Every pixel votes on the input mask, not on already-cleaned pixels. The counts are exact
    integer box sums (zero outside the image, the last row and column zeroed first).
    """
    import cv2

    m = np.asarray(mask, bool)
    h, w = m.shape
    voters = m.astype(np.uint8)
    voters[-1:, :] = 0  # the last row and column are in no window
    voters[:, -1:] = 0
    k = 2 * radius + 1
    ones = cv2.boxFilter(voters, cv2.CV_32S, (k, k), normalize=False, borderType=cv2.BORDER_CONSTANT)
    r0, r1 = _window_bounds(h, radius)
    c0, c1 = _window_bounds(w, radius)
    area = (r1 - r0)[:, None] * (c1 - c0)[None, :]
    return 2 * ones.reshape(h, w) > area


def first_argmax(values: Sequence[float]) -> int:
    """Index of the largest value; the first one when several tie (numpy / torch argmax)."""
    return int(np.argmax(np.asarray(values)))


def iou_level_mask(rel_levels: np.ndarray, threshold: float = THRESHOLD, box_px: int = BOX_PX,
                   clean_radius: int = CLEAN_RADIUS, filtered: np.ndarray | None = None
                   ) -> tuple[int, np.ndarray, np.ndarray]:
    """The mask of the mIoU protocol.

    Args:
        rel_levels: (L, H, W) raw relevancy per level.
        threshold: threshold on the normalised map (official 0.4).
        box_px: mean filter side (official 30).
        clean_radius: majority vote half-width (official 3, a 7 x 7 window).
        filtered: ``box_mean(rel_levels, box_px)`` when already computed.

    Returns:
        (level, mask (H, W) bool, smoothed (H, W) float32 of that level); the level is the one
        whose smoothed map has the highest maximum, the first on ties.
    """
    raw = np.asarray(rel_levels, np.float32)
    f = box_mean(raw, box_px) if filtered is None else filtered
    smoothed = smooth(raw, f)
    level = first_argmax([float(s.max()) for s in smoothed])
    mask = majority_clean(threshold_mask(smoothed[level], threshold), clean_radius)
    return level, mask, smoothed[level]


def localisation_candidates(rel_levels: np.ndarray, box_px: int = BOX_PX, filtered: np.ndarray | None = None
                            ) -> tuple[int, np.ndarray, float]:
    """The localisation points of the official protocol.

    Args:
        rel_levels: (L, H, W) raw relevancy per level.
        box_px: mean filter side (official 30).
        filtered: ``box_mean(rel_levels, box_px)`` when already computed.

    Returns:
        (level, candidates (K, 2) int64 (row, col) in row-major order, score): the level whose
        mean-filtered map (without the 0.5 mix) has the highest maximum (the first on ties),
        every pixel of it equal to that maximum, and the maximum.
    """
    f = box_mean(rel_levels, box_px) if filtered is None else filtered
    level = first_argmax([float(x.max()) for x in f])
    score = f[level].max()
    return level, np.argwhere(f[level] == score).astype(np.int64), float(score)


def box_hits(candidates: np.ndarray, boxes: Sequence[Sequence[float]]) -> list[bool]:
    """Per box: whether some (row, col) candidate lies in it (edges included).

    Boxes are (x1, y1, x2, y2) in pixels, corners in any order; x compares with the column and
    y with the row.
    """
    pts = np.asarray(candidates, np.float64).reshape(-1, 2)
    rows, cols = pts[:, 0], pts[:, 1]
    out = []
    for x1, y1, x2, y2 in boxes:
        inside = (cols >= min(x1, x2)) & (cols <= max(x1, x2)) & (rows >= min(y1, y2)) & (rows <= max(y1, y2))
        out.append(bool(inside.any()))
    return out


def category_localised(candidates: np.ndarray, boxes: Sequence[Sequence[float]]) -> bool:
    """Whether a category counts as localised: some candidate in some of its boxes (counted once)."""
    return any(box_hits(candidates, boxes))


class ExactMap(NamedTuple):
    """The official protocol's answer for one query at one view."""

    level_index: int  # level of the mask (highest maximum of the smoothed maps)
    smoothed: np.ndarray  # (H, W) float32 0.5 * (raw + filtered) of that level
    mask: np.ndarray  # (H, W) bool cleaned mask of that level
    peak: tuple[int, int]  # (row, col): the first (row-major) localisation candidate
    score: float  # maximum of the filtered map at the localisation level
    candidates: np.ndarray  # (K, 2) int64 (row, col): every pixel tying for that maximum
    localisation_level: int  # level of the candidates (highest maximum of the filtered maps)


def langsplat_map_exact(rel_levels: np.ndarray, box_px: int = BOX_PX, threshold: float = THRESHOLD,
                        clean_px: int = 2 * CLEAN_RADIUS + 1) -> ExactMap:
    """Mask and localisation of one query from its (L, H, W) raw relevancy maps.

    ``clean_px`` is the side of the majority vote window (half-width ``clean_px // 2``).
    The mask level and the localisation level are chosen separately (see the module text).
    """
    raw = np.asarray(rel_levels, np.float32)
    if raw.ndim != 3 or raw.shape[0] == 0:
        raise ValueError(f"rel_levels must be (L, H, W) with L >= 1; got shape {raw.shape}")
    filtered = box_mean(raw, box_px)
    level, mask, smoothed = iou_level_mask(raw, threshold, box_px, clean_px // 2, filtered=filtered)
    loc_level, candidates, score = localisation_candidates(raw, box_px, filtered=filtered)
    peak = (int(candidates[0, 0]), int(candidates[0, 1])) if len(candidates) else (-1, -1)  # none: NaN maps
    return ExactMap(level, smoothed, mask, peak, score, candidates, loc_level)
