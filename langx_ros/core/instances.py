"""3D answers in fixed shapes: selection, instances, ranking and returned points on the device.

Everything between one query's (K,) relevancy logits and its returned points is a fixed sequence
of tensor operations over buffers of a fixed capacity (``cap`` candidate Gaussians): no
``nonzero``, ``unique`` or host round trip in between. On CUDA the sequence is captured once per
field and capacity as a CUDA graph and replayed (one launch instead of ~140, one wait per call,
:class:`AnswerPlan`); on a CPU the same functions run eagerly.

Instances are the connected components of the touching-voxel graph of the selected centres
(voxels of edge ``radius``, 26-neighbourhood), found by min-label propagation with pointer jumping
over a (cap, 27) neighbour table; a component is named by its smallest voxel key, so the
numbering is the same on every device.
"""
from __future__ import annotations

import logging
import threading
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Iterator

import numpy as np
import torch

from langx_ros.core.device import to_host

if TYPE_CHECKING:
    from langx_ros.core.field.model import LanguageField

log = logging.getLogger(__name__)

# Voxel keys pack (x, y, z) voxel coordinates, offset by 2^20, into 21 bits each: keys sort as
# (x, y, z) and a neighbouring voxel's key differs by a fixed offset. +-2^20 voxels about the origin
# (+-63 km at 6 cm) are covered; points beyond are clamped into the outermost voxels (coordinates
# 1 .. 2^21 - 2, so every neighbour key fits in 63 bits and none reaches EMPTY_KEY).
_KEY_BITS = 21
_KEY_OFF = 1 << (_KEY_BITS - 1)
EMPTY_KEY = torch.iinfo(torch.int64).max  # the key of padding (no point), above every real key
# the key offsets of all 26 neighbours and of the voxel itself
NEIGHBOURS = np.array([(dx << 2 * _KEY_BITS) + (dy << _KEY_BITS) + dz for dx in (-1, 0, 1) for dy in (-1, 0, 1)
                       for dz in (-1, 0, 1)], np.int64)
# relevancies are clamped to [1e-6, 1 - 1e-6] before their logit is used (+-13.8)
LOGIT_CLAMP = float(np.log((1 - 1e-6) / 1e-6))
# label-propagation rounds inside a captured graph; a selection that needs more (a chain of
# more than ~3^8 voxels) is finished eagerly (AnswerPlan checks convergence with the results)
GRAPH_ROUNDS = 8
# largest capacity captured: a graph keeps its memory pool (buffers proportional to the capacity,
# the (cap, 27) int64 neighbour tables the largest) for the field's lifetime; a query selecting
# more Gaussians than this runs eagerly, its memory freed afterwards
GRAPH_MAX_CAP = 1 << 18


def threshold_logit(threshold: float) -> float:
    """The logit of a relevancy threshold (inf for 1: nothing passes), what selections compare logits with."""
    return float(np.log(threshold / (1 - threshold))) if threshold < 1 else float("inf")


def voxel_keys(points: torch.Tensor, radius: float) -> torch.Tensor:
    """(M,) int64 key of each point's voxel of edge ``radius`` (see ``_KEY_BITS``), on the points' device."""
    v = torch.floor(points.double() / radius).long().clamp(-_KEY_OFF + 1, _KEY_OFF - 2) + _KEY_OFF
    return (v[:, 0] << 2 * _KEY_BITS) + (v[:, 1] << _KEY_BITS) + v[:, 2]


def voxel_slots(keys: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The distinct voxels of ``keys`` (M,) in fixed shapes: ``uniq`` (M,), their keys ascending
    followed by ``EMPTY_KEY`` padding, and ``slot`` (M,), each key's index in ``uniq``. Padding
    keys (``EMPTY_KEY``) share one slot, which no real voxel touches."""
    sk, perm = torch.sort(keys)
    new = torch.ones_like(sk, dtype=torch.bool)
    new[1:] = sk[1:] != sk[:-1]
    s_sorted = torch.cumsum(new, 0) - 1
    slot = torch.empty_like(s_sorted).scatter_(0, perm, s_sorted)
    uniq = torch.full_like(sk, EMPTY_KEY).scatter_(0, s_sorted, sk)
    return uniq, slot


def neighbour_table(uniq: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
    """(M, 27) slot of each touching voxel of every slot of ``uniq`` (:func:`voxel_slots`), the
    slot itself where that neighbour is absent or the slot is padding. ``offsets``: ``NEIGHBOURS``
    on the keys' device."""
    m = uniq.shape[0]
    real = uniq != EMPTY_KEY
    nk = torch.where(real, uniq, 0)[:, None] + offsets[None, :]  # no overflow: padding is offset from 0
    pos = torch.searchsorted(uniq, nk).clamp_(max=m - 1)
    own = torch.arange(m, device=uniq.device)[:, None]
    return torch.where((uniq[pos] == nk) & real[:, None], pos, own)


def propagate(nb: torch.Tensor, labels: torch.Tensor, rounds: int) -> torch.Tensor:
    """``rounds`` rounds of min-label propagation over the neighbour table ``nb`` (M, 27), each
    followed by two pointer jumps. A label is always a slot of the same component, never above
    the slot's own index and never growing; at the fixed point (:func:`is_fixed_point`) each
    component's labels are its smallest slot."""
    for _ in range(rounds):
        labels = labels[nb].min(dim=1).values  # (min is about twice as fast as amin on a CPU)
        labels = labels[labels[labels]]
    return labels


def is_fixed_point(nb: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """0-d bool tensor: no label changes under another round (no host wait)."""
    return (labels[nb].min(dim=1).values == labels).all()


def component_roots(uniq: torch.Tensor, offsets: torch.Tensor, rounds: int | None) -> tuple[torch.Tensor, torch.Tensor]:
    """Components of the touching-voxel graph of ``uniq`` (:func:`voxel_slots`) by label
    propagation from every slot's own index: (M,) the smallest slot of each slot's component, and
    a 0-d bool tensor, whether that is final. ``rounds``: exactly that many rounds over all M
    slots (capturable, no host wait); None: only over the real voxels (one host wait to count
    them), until the labels are final (a host check every four rounds)."""
    m = uniq.shape[0]
    labels = torch.arange(m, device=uniq.device)
    if rounds is not None:
        nb = neighbour_table(uniq, offsets)
        labels = propagate(nb, labels, rounds)
        return labels, is_fixed_point(nb, labels)
    nv = int((uniq != EMPTY_KEY).sum())
    nb = neighbour_table(uniq[:nv], offsets)
    own = labels[:nv]
    while True:
        own = propagate(nb, own, 4)
        done = is_fixed_point(nb, own)
        if bool(done):
            return torch.cat([own, labels[nv:]]), done


def connected_instances(points: torch.Tensor | np.ndarray, radius: float) -> torch.Tensor:
    """Instance label (M,) per point, on the points' device: points fall into voxels of edge
    ``radius``; voxels that touch (26-neighbourhood) are linked, and instances are the connected
    components of that voxel graph. Two points closer than ``radius`` always share an instance;
    points in touching voxels (up to 2 * sqrt(3) * radius apart) do too. Labels are 0..I-1, in
    order of each component's smallest voxel key (deterministic, the same on every device)."""
    pts = torch.as_tensor(points)
    if pts.shape[0] == 0:
        return torch.zeros(0, dtype=torch.long, device=pts.device)
    uniq, slot = voxel_slots(voxel_keys(pts, radius))
    roots, _ = component_roots(uniq, torch.as_tensor(NEIGHBOURS, device=pts.device), None)
    is_root = (roots == torch.arange(roots.shape[0], device=pts.device)) & (uniq != EMPTY_KEY)
    return (torch.cumsum(is_root, 0) - 1)[roots][slot]


def subsample_key(gid: np.ndarray) -> np.ndarray:
    """A fixed pseudo-random key in [0, 2^32) per id (a multiplicative hash, a bijection of ids
    mod 2^32): the same points are kept whenever an answer is subsampled."""
    return (gid.astype(np.int64) * 2654435761) % 4294967296


@dataclass(frozen=True)
class RankWeights:
    """The instance rank's exponents (``QueryConfig.instance_*_weight``; see :func:`rank_keys`)."""

    match: float = 1.0
    density: float = 0.0
    consensus: float = 0.0
    views: float = 0.0


@dataclass(frozen=True)
class AnswerShape:
    """Everything fixed about one captured 3D answer: buffer sizes and the rule's constants."""

    cap: int  # candidate Gaussians the buffers hold (0: exactly as many as selected, eager only)
    radius: float  # voxel edge (m) of instance separation
    relative_cutoff: float
    min_points: int  # smaller instances are noise
    max_instances: int  # instances returned
    weights: RankWeights
    rounds: int | None  # label-propagation rounds (None: until converged, eager only)


# meta vector: [peak, cut logit, level, selected, instances passing, converged] + per returned
# instance: points (max_instances) + evidence (max_instances)
_META = 6


def rank_keys(sums: dict[str, torch.Tensor], min_points: int, w: RankWeights) -> tuple[torch.Tensor, torch.Tensor]:
    """Per instance (from per-instance sums of :func:`evidence_columns`): the rank key (higher
    ranks first, -inf for groups smaller than ``min_points``) and the evidence (-1 for those).

    Evidence = sum of relevancy x observed weight. The key is log evidence + w.match x m, m the
    instance's weight-averaged relevancy logit (for w.match = 1: evidence times the odds of the
    instance's relevancy). Without it a large object that is merely related to the query (a
    floral mug for "white mug": both names embed alike) outweighs the small object the query
    names; with it, a logit 2.2 higher (the white mug, measured in the kitchen) is worth 9x the
    evidence. w.density d > 0 adds d x log(evidence per Gaussian). With the registration's
    per-Gaussian labelled weight and agreeing views, w.consensus c adds c x log(sum weight / sum
    labelled), the agreeing share of what the views saw there, and w.views v adds v x log of the
    weight-averaged agreeing views (each term off at 0, or when the field lacks it).
    """
    n = sums["n"]
    valid = n >= max(1, min_points)
    mass = torch.where(valid, sums["mass"], -1.0)
    wsum = sums["w"].clamp(min=1e-12)
    log_mass = torch.log(mass.clamp(min=1e-300))
    key = log_mass + w.match * (sums["logit"] / wsum)
    if w.density > 0:
        key = key + w.density * (log_mass - torch.log(n.clamp(min=1.0)))
    if "labelled" in sums:
        key = key + w.consensus * torch.log((wsum / sums["labelled"].clamp(min=1e-12)).clamp(1e-12, 1.0))
    if "views" in sums:
        key = key + w.views * torch.log((sums["views"] / wsum).clamp(min=1e-3))
    return torch.where(valid, key, -torch.inf), mass


@dataclass
class FieldTables:
    """What a 3D answer reads from a field, on its device (built once per field and min_opacity)."""

    code: torch.Tensor  # (L, N) int64 codebook entry per level, K where the Gaussian is not selectable
    present: torch.Tensor  # (L, K) bool: the entry is the code of some selectable Gaussian at that level
    means: torch.Tensor  # (N, 3)
    evidence: torch.Tensor | None  # (N, L) observed weight; None = 1
    labelled: torch.Tensor | None  # (N, L) or None (not used)
    views: torch.Tensor | None  # (N, L) or None (not used)
    answer: torch.Tensor  # (N, 9) centre, colour, normal (LanguageField.answer_table)
    offsets: torch.Tensor  # NEIGHBOURS on the device
    features: torch.Tensor | None = None  # (K, F) unit codebook features (for answers from text); None = logits only

    @classmethod
    def of(cls, field: "LanguageField", min_opacity: float, codebook_size: int, use_labelled: bool,
           use_views: bool, features: torch.Tensor | None = None) -> "FieldTables":
        """``features``: the field's (K, F) codebook features, for answers from text (AnswerPlan.run_text)."""
        ok, present = field.selectable(min_opacity, codebook_size)
        code = torch.where(ok, field.code_index(), codebook_size).T.contiguous()
        dev = field.device
        return cls(code, present, field.params["means"].detach(), field.evidence,
                   field.labelled if use_labelled else None, field.agree_views if use_views else None,
                   field.answer_table(), torch.as_tensor(NEIGHBOURS, device=dev),
                   features)


def text_logit(features: torch.Tensor, text: torch.Tensor, canonical: torch.Tensor) -> torch.Tensor:
    """(K,) relevancy logit of every codebook entry for one query: 10 x the margin of its text
    embedding ``text`` (F,) over the canonical phrases (C, F) (``relevancy_logits``), clamped to
    +-LOGIT_CLAMP; ``features`` (K, F) unit length. Fixed shapes, so the CUDA graph of an answer
    from text computes it (core/query.py ``logit_table`` is the same for a table of queries)."""
    from langx_ros.core.relevancy import relevancy_logits

    return relevancy_logits(features, text, canonical, normalised=True)[0].clamp(-LOGIT_CLAMP, LOGIT_CLAMP)


def select_mask(t: FieldTables, logit: torch.Tensor, thr_logit: torch.Tensor, threshold: torch.Tensor,
                relative_cutoff: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Which Gaussians one query selects, all on the device.

    Only selectable Gaussians (opaque enough and observed) count. Level: the one whose highest
    logit among them is largest. Selection: relevancy >= threshold, and logit >= lo +
    relative_cutoff x (hi - lo) over the selectable Gaussians at that level (LangSplat's
    normalise-and-cut rule, on logits because the relevancy saturates); nothing when the peak
    relevancy is below the threshold. The statistics are taken over the K codebook entries that
    selectable Gaussians use, so the work over all N Gaussians is one gather.

    Returns: mask (N,) bool, each Gaussian's entry at that level (N,) (K: not selectable), the
    level (1,) long, peak relevancy and cut logit (0-d), and the (K + 1,) logit table with a
    padding entry for "not selectable".
    """
    c = LOGIT_CLAMP
    hi = torch.where(t.present, logit[None], -2 * c).amax(dim=1)  # (L,)
    lo = torch.where(t.present, logit[None], 2 * c).amin(dim=1)
    lvl = hi.argmax().reshape(1)  # (1,): a 0-d tensor index would be read on the host (a sync)
    hi_q, lo_q = hi.gather(0, lvl)[0], lo.gather(0, lvl)[0]
    peak = torch.where(hi_q >= -c, torch.sigmoid(hi_q.double()), 0.0)  # no selectable Gaussian: 0
    cut = lo_q + relative_cutoff * (hi_q - lo_q)
    passing = (logit >= torch.maximum(cut, thr_logit)) & (peak >= threshold)
    passing = torch.cat([passing, passing.new_zeros(1)])  # entry K: not selectable
    codes = t.code.index_select(0, lvl)[0]
    logit_ext = torch.cat([logit, logit.new_zeros(1)])
    return passing[codes], codes, lvl, peak, cut, logit_ext


def evidence_columns(t: FieldTables, ids: torch.Tensor, lvl: torch.Tensor, lg: torch.Tensor,
                     real: torch.Tensor) -> dict[str, torch.Tensor]:
    """(S,) float64 per-candidate terms whose per-instance sums :func:`rank_keys` needs (zero for
    padding): n (1), mass (relevancy x observed weight), w (the weight), logit (x weight), and
    where used, labelled (the labelled weight) and views (agreeing views x weight). ``lvl``: (1,)
    the level; ``lg``: the candidates' (S,) relevancy logits; ``real``: (S,) bool, not padding."""
    r = real.float()
    lvl = lvl.expand_as(ids)
    w = (t.evidence[ids, lvl] if t.evidence is not None else torch.ones_like(r)) * r
    cols = {"n": r, "mass": torch.sigmoid(lg) * w, "w": w, "logit": lg * w}
    if t.labelled is not None:
        cols["labelled"] = t.labelled[ids, lvl] * r
    if t.views is not None:
        cols["views"] = t.views[ids, lvl] * w
    return {name: c.double() for name, c in cols.items()}


def compact(mask: torch.Tensor, cap: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The indices of the True entries of ``mask`` (N,), ascending, in ``cap`` slots: ids (cap,)
    (padding points at a valid index), real (cap,) bool, and the 0-d count (may exceed cap: the
    rest is cut). Fixed capacity: the j-th True entry is the first index whose running count
    reaches j + 1 (no host wait); ``cap`` 0: exactly as many slots as entries (``nonzero``, a
    host wait; eager only)."""
    dev = mask.device
    if cap > 0:
        csum = torch.cumsum(mask, 0)
        slots = torch.arange(cap, device=dev)
        return torch.searchsorted(csum, slots + 1).clamp_(max=mask.shape[0] - 1), slots < csum[-1], csum[-1]
    ids = torch.nonzero(mask).squeeze(1)
    n = ids.shape[0]
    slots = torch.arange(max(1, n), device=dev)
    return torch.cat([ids, ids.new_zeros(max(1, n) - n)]), slots < n, torch.tensor(n, device=dev)


def answer(t: FieldTables, logit: torch.Tensor, thr_logit: torch.Tensor, threshold: torch.Tensor,
           shape: AnswerShape) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One query's 3D answer in fixed shapes (capturable when ``shape.rounds`` is set).

    Args:
        t: the field's tables; logit: (K,) relevancy logit of every codebook entry;
        thr_logit, threshold: 0-d tensors, the threshold's logit and the threshold.
    Returns:
        rows (cap, 10) float32: centre, colour, normal, relevancy of the returned instances'
        Gaussians, by instance rank then Gaussian id (the first sum(counts) rows count); gid (cap,)
        their Gaussian ids;
        meta (6 + 2 max_instances,) float64: peak relevancy, cut logit, level, Gaussians selected
        (may exceed cap: then the rest is incomplete), instances that pass, converged (1/0), then
        each returned instance's Gaussian count and its evidence.
    """
    dev = logit.device
    k = shape.max_instances
    mask, codes, lvl, peak, cut, logit_ext = select_mask(t, logit, thr_logit, threshold, shape.relative_cutoff)
    ids, real, selected = compact(mask, shape.cap)
    cap = ids.shape[0]
    lg = logit_ext[codes[ids]]
    cols = evidence_columns(t, ids, lvl, lg, real)
    keys = torch.where(real, voxel_keys(t.means[ids], shape.radius), EMPTY_KEY)
    uniq, slot = voxel_slots(keys)
    roots, converged = component_roots(uniq, t.offsets, shape.rounds)
    inst = roots[slot]  # (cap,) instance of every candidate: its smallest voxel slot
    agg = torch.zeros(cap, len(cols), dtype=torch.float64, device=dev).index_add_(0, inst, torch.stack(list(cols.values()), 1))
    key, mass = rank_keys({name: agg[:, i] for i, name in enumerate(cols)}, shape.min_points, shape.weights)
    order = torch.sort(-key, stable=True).indices  # ties keep the smallest voxel key first
    top = order[:k]
    top_ok = mass[top] >= 0
    kk = top.shape[0]
    rank_of = torch.full((cap,), k, dtype=torch.long, device=dev)
    rank_of.scatter_(0, top, torch.where(top_ok, torch.arange(kk, device=dev), k))
    r = torch.where(real, rank_of[inst], k)  # (cap,) rank of each candidate's instance, k = not returned
    # candidates are in ascending Gaussian id, so a stable sort by rank (16-bit keys: a short radix
    # sort) orders them by rank, then id
    sel = torch.sort(r.to(torch.int16), stable=True).indices
    count = torch.diff(torch.searchsorted(r[sel], torch.arange(k + 1, device=dev)), append=ids.new_full((1,), cap))
    gid = ids[sel]
    rows = torch.cat([t.answer[gid], torch.sigmoid(lg[sel])[:, None]], 1)
    ev = torch.zeros(k, dtype=torch.float64, device=dev)
    ev[:kk] = torch.where(top_ok, mass[top], 0.0)
    head = torch.stack([peak.double(), cut.double(), lvl[0].double(), selected.double(), (mass >= 0).sum().double(),
                        converged.double()])
    meta = torch.cat([head, count[:k].double(), ev])
    return rows, gid, meta


class CaptureGate:
    """Keeps CUDA graph captures apart from every other GPU use that goes through it.

    While one thread captures, other threads' ordinary CUDA calls fail or spoil the capture
    (measured on an H100, torch 2.11: two threads querying and one training while another thread
    captured gave "Cannot copy between CPU and CUDA tensors during CUDA graph capture" in the
    others and an invalidated capture). So GPU work registers with :meth:`use` (shared, waits
    only while a capture runs), and :meth:`capture` succeeds only when the calling thread is the
    only user; otherwise the plan answers eagerly this time and captures on a later call. The
    Engine owns one gate for all its GPU work (building, answering, loading, publishing).
    """

    def __init__(self):
        self._cv = threading.Condition()
        self._users: dict[int, int] = {}  # thread id -> nested uses
        self._capturing = False

    @contextmanager
    def use(self) -> Iterator[None]:
        me = threading.get_ident()
        with self._cv:
            self._cv.wait_for(lambda: not self._capturing or self._users.get(me, 0) > 0)
            self._users[me] = self._users.get(me, 0) + 1
        try:
            yield
        finally:
            with self._cv:
                self._users[me] -= 1
                if self._users[me] == 0:
                    del self._users[me]
                self._cv.notify_all()

    @contextmanager
    def capture(self) -> Iterator[bool]:
        """Yields True (and keeps other users out) if no other thread uses the GPU now, else False."""
        me = threading.get_ident()
        with self._cv:
            ok = not self._capturing and all(t == me for t in self._users)
            self._capturing = self._capturing or ok
        try:
            yield ok
        finally:
            if ok:
                with self._cv:
                    self._capturing = False
                    self._cv.notify_all()


@dataclass
class AnswerResult:
    """One query's answer on the host (see :func:`answer`)."""

    rows: np.ndarray  # (P, 10) of the returned instances, by rank then Gaussian id
    gid: np.ndarray  # (P,)
    peak: float
    cut_logit: float
    level: int
    selected: int
    passing: int
    counts: np.ndarray  # (R,) Gaussians of each returned instance
    evidence: np.ndarray  # (R,)
    logit: np.ndarray | None = None  # (K,) float32 the query's relevancy logit per codebook entry (what it answered)


def _result(rows: np.ndarray, gid: np.ndarray, meta: np.ndarray, k: int, logit: np.ndarray | None = None) -> AnswerResult:
    """The host's part of an answer: the returned instances' rows (every Gaussian of each; the
    caller subsamples the points it returns, core/query.py)."""
    n_ret = int(min(k, meta[4]))
    counts = meta[_META: _META + n_ret].astype(np.int64)
    n = int(counts.sum())
    return AnswerResult(rows[:n], gid[:n], float(meta[0]), float(meta[1]), int(meta[2]), int(meta[3]), int(meta[4]), counts,
                        meta[_META + k: _META + k + n_ret].copy(), logit)


class AnswerPlan:
    """Answers 3D queries against one field: :func:`answer` on its device, as a CUDA graph there.

    Built once per field and query settings (the field's tables are read in place, so the field
    must not change afterwards). On CUDA, :func:`answer` is captured per capacity (a power of
    two, grown when a query selects more Gaussians than it holds, up to ``GRAPH_MAX_CAP``; larger
    selections run eagerly) and replayed: the host copies
    the query's logits in, launches one graph, and queues the copies of its results; one wait per
    call. A selection whose components need more than ``GRAPH_ROUNDS`` propagation rounds is
    finished eagerly. With a :class:`CaptureGate`, a capture waits for a moment when no other
    thread uses the GPU (until then the query is answered eagerly). If capture fails (an
    unsupported torch build), the plan logs a warning and answers eagerly from then on (``mode``
    says which).
    """

    def __init__(self, tables: FieldTables, shape: AnswerShape, codebook_size: int, mode: str = "graph",
                 start_cap: int = 1 << 14, gate: CaptureGate | None = None):
        if mode not in ("graph", "eager"):
            raise ValueError(f"AnswerPlan mode must be 'graph' or 'eager', not {mode!r}")
        if not 0 < shape.max_instances < (1 << 15) - 1:
            raise ValueError(f"max_instances must be in 1..32766 (ranks sort as 16-bit keys), not {shape.max_instances}")
        self.t = tables
        self.shape = shape  # cap and rounds are set per capture / call
        self.k = codebook_size
        self.device = tables.means.device
        # "graph" on a CPU replays the same fixed shapes without a capture (what the tests check)
        self.mode = "cuda-graph" if mode == "graph" and self.device.type == "cuda" else \
            "fixed-shape" if mode == "graph" else "eager"
        self._cap = start_cap
        self._graphs: dict[tuple, tuple] = {}
        self._lock = threading.Lock()
        self._gate = gate  # None: this process captures whenever it needs to (a script, one thread)

    @torch.no_grad()
    def run(self, logits: torch.Tensor, threshold: float) -> list[AnswerResult]:
        """Answers for each row of ``logits`` (Q, K) at ``threshold``."""
        logits = logits.to(self.device, torch.float32)
        return self._run([(row,) for row in logits], ("logit",), threshold)

    @torch.no_grad()
    def run_text(self, text: torch.Tensor, canonical: torch.Tensor, threshold: float) -> list[AnswerResult]:
        """Answers for each text embedding of ``text`` (Q, F) against the ``canonical`` phrases
        (C, F) at ``threshold``: the relevancy logits (:func:`text_logit`) are computed inside the
        replayed graph (one launch per query instead of a table's dozen), and each result carries them."""
        if self.t.features is None:
            raise ValueError("this field's tables have no codebook features: answer from logits (run)")
        text = text.to(self.device, torch.float32).reshape(-1, self.t.features.shape[1])
        canonical = canonical.to(self.device, torch.float32)
        return self._run([(row, canonical) for row in text], ("text", tuple(canonical.shape)), threshold)

    def _run(self, inputs: list[tuple[torch.Tensor, ...]], kind: tuple, threshold: float) -> list[AnswerResult]:
        thr_logit = threshold_logit(threshold)
        with self._lock:
            if self.mode != "eager":
                try:
                    return [self._finish(inp, kind, res, thr_logit, threshold)
                            for inp, res in zip(inputs, self._replay(inputs, kind, thr_logit, threshold))]
                except _NotNow:  # other threads use the GPU: capture on a later call
                    pass
                except RuntimeError as exc:  # capture unsupported here: answer eagerly, and say so
                    log.warning("3D answers: CUDA graph capture failed (%s); answering eagerly", exc)
                    self.mode = "eager"
            return [self._eager(inp, kind, thr_logit, threshold) for inp in inputs]

    def _answer_fn(self, kind: tuple, shape: AnswerShape):
        """f(*inputs, thr_logit, threshold) -> one query's :func:`answer` and its logits, packed
        into one byte tensor (:func:`pack_answer`: one copy to the host instead of four)."""
        if kind[0] == "logit":
            return lambda logit, thr, th: pack_answer(*answer(self.t, logit, thr, th, shape), logit)

        def from_text(text: torch.Tensor, canonical: torch.Tensor, thr: torch.Tensor, th: torch.Tensor) -> torch.Tensor:
            logit = text_logit(self.t.features, text, canonical)
            return pack_answer(*answer(self.t, logit, thr, th, shape), logit)
        return from_text

    def _eager(self, inp: tuple[torch.Tensor, ...], kind: tuple, thr_logit: float, threshold: float) -> AnswerResult:
        """:func:`answer` run eagerly with buffers of exactly the selection's size and label
        propagation until it converges."""
        thr = torch.tensor(thr_logit, device=self.device)
        th = torch.tensor(float(threshold), device=self.device)
        shape = replace(self.shape, cap=0, rounds=None)
        (packed,) = to_host(self._answer_fn(kind, shape)(*inp, thr, th))
        rows, gid, meta, logit = unpack_answer(packed, self.k, shape.max_instances)
        return _result(rows, gid, meta, shape.max_instances, logit)

    def _graph(self, cap: int, kind: tuple = ("logit",)) -> tuple:
        """The graph of :func:`answer` at capacity ``cap`` for inputs of ``kind`` (logits, or text
        and canonical phrases of a shape), its static inputs, its output and the threshold values
        its inputs hold (captured once; without CUDA, a stand-in that reruns :func:`answer` into
        the same output)."""
        key = (cap, kind)
        if key not in self._graphs:
            dev = self.device
            ins = (torch.zeros(self.k, device=dev),) if kind[0] == "logit" else \
                (torch.zeros(self.t.features.shape[1], device=dev), torch.zeros(kind[1], device=dev))
            static = ins + (torch.zeros((), device=dev), torch.zeros((), device=dev))
            fn = self._answer_fn(kind, replace(self.shape, cap=cap, rounds=GRAPH_ROUNDS))
            if self.mode == "cuda-graph":
                with self._gate.capture() if self._gate is not None else nullcontext(True) as ok:
                    if not ok:
                        raise _NotNow()
                    graph, outs = self._capture(fn, static)
            else:
                outs = fn(*static)
                graph = _Rerun(lambda: fn(*static), outs)
            self._graphs[key] = (graph, static, outs, [None])  # [None]: the thresholds in static (none yet)
        return self._graphs[key]

    def _capture(self, fn, static: tuple) -> tuple:
        """(graph, outputs) of ``fn(*static)`` captured on CUDA, after a warm-up run on a side stream."""
        dev = self.device
        side = torch.cuda.Stream(dev)
        side.wait_stream(torch.cuda.current_stream(dev))
        with torch.cuda.stream(side):  # warm-up outside the capture (allocator, kernels)
            fn(*static)
        torch.cuda.current_stream(dev).wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph, capture_error_mode="thread_local"):
            outs = fn(*static)
        return graph, outs

    def _replay(self, inputs: list[tuple[torch.Tensor, ...]], kind: tuple, thr_logit: float, threshold: float) -> list[tuple]:
        """Replays the graph for every query's inputs, queueing each result's copy to the host; one wait."""
        cap = self._cap
        graph, static, outs, filled = self._graph(cap, kind)
        *s_in, s_thr, s_th = static
        if filled[0] != (thr_logit, threshold):  # two launches saved when unchanged
            s_thr.fill_(thr_logit)
            s_th.fill_(threshold)
            filled[0] = (thr_logit, threshold)
        queued = []
        for inp in inputs:
            for s_x, x in zip(s_in, inp):
                s_x.copy_(x)
            graph.replay()
            # queued copies (stream-ordered before the next replay); on a CPU the outputs are the host copies
            queued.append((cap, outs.to("cpu", non_blocking=True) if outs.is_cuda else outs.clone()))
        if self.device.type == "cuda":
            torch.cuda.current_stream(self.device).synchronize()
        return queued

    def _finish(self, inp: tuple[torch.Tensor, ...], kind: tuple, res: tuple, thr_logit: float, threshold: float) -> AnswerResult:
        """A replayed result on the host; a selection larger than the buffers is answered again
        with buffers grown to the next power of two, one whose components did not converge within
        the graph's rounds eagerly."""
        cap, packed = res
        rows, gid, meta, logit = unpack_answer(packed.numpy(), self.k, self.shape.max_instances)
        if meta[3] > cap:
            need = 1 << int(np.ceil(np.log2(meta[3])))
            if need > GRAPH_MAX_CAP:
                return self._eager(inp, kind, thr_logit, threshold)
            self._cap = max(self._cap, need)
            for small in [c for c in self._graphs if c[0] < self._cap]:  # outgrown: free their buffers
                del self._graphs[small]
            return self._finish(inp, kind, self._replay([inp], kind, thr_logit, threshold)[0], thr_logit, threshold)
        if meta[5] == 0:
            return self._eager(inp, kind, thr_logit, threshold)
        return _result(rows, gid, meta, self.shape.max_instances, logit)


def pack_answer(rows: torch.Tensor, gid: torch.Tensor, meta: torch.Tensor, logit: torch.Tensor) -> torch.Tensor:
    """One query's :func:`answer` outputs and (K,) logits as one uint8 tensor (gid, meta, rows,
    logit: each starts 8-byte aligned), so the host fetches them in one copy."""
    return torch.cat([gid.reshape(-1).view(torch.uint8), meta.reshape(-1).view(torch.uint8),
                      rows.reshape(-1).contiguous().view(torch.uint8), logit.reshape(-1).contiguous().view(torch.uint8)])


def unpack_answer(packed: np.ndarray, k: int, max_instances: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(rows (cap, 10) float32, gid (cap,) int64, meta float64, logit (K,) float32) of a
    :func:`pack_answer` buffer on the host (views into it), for ``k`` codebook entries."""
    n_meta = _META + 2 * max_instances
    cap = (packed.nbytes - 8 * n_meta - 4 * k) // 48
    gid = packed[: 8 * cap].view(np.int64)
    meta = packed[8 * cap: 8 * (cap + n_meta)].view(np.float64)
    rows = packed[8 * (cap + n_meta): 8 * (cap + n_meta) + 40 * cap].view(np.float32).reshape(cap, 10)
    return rows, gid, meta, packed[8 * (cap + n_meta) + 40 * cap:].view(np.float32)


class _Rerun:
    """A CUDA graph's stand-in on a CPU: ``replay()`` reruns the function into the same output."""

    def __init__(self, fn, outs: torch.Tensor):
        self.fn, self.outs = fn, outs

    def replay(self) -> None:
        self.outs.copy_(self.fn())


class _NotNow(Exception):
    """A capture must wait: other threads use the GPU."""
