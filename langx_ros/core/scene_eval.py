"""Scoring 3D answers against labelled scenes: per object found, 3D precision and recall against
the object's observed surface, centroid error, wrong-object answers, and held-out 2D IoU.

Used by bench/real_scene.py (full size, GPU) and the CPU tests (small size) alike.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

SURFACE_TOL = 0.05  # metres: a returned point is on the object when within this of its observed surface
# metres: surface points of one label farther apart than ~this are separate instances (two sofas).
# 0.10: on the lounge and kitchen labels the split is the same for gaps of 0.10-0.40 m (two sofas,
# two side tables, two cabinet runs); at 0.05 m the sparse depth of far surfaces breaks one object
# into pieces (the whiteboard at ~3.5 m into 4, the plant at ~5 m into 12), and an answer covering
# the whole object was scored against one piece (recall 0.44, centroid error 0.57 m).
INSTANCE_GAP = 0.10


@dataclass
class ObjectScore:
    """How one query for one labelled object was answered."""

    name: str
    found: bool
    score: float
    points: int
    precision: float  # returned points within SURFACE_TOL of the object's observed surface
    recall: float  # surface points of the answered instance within SURFACE_TOL of a returned point
    centroid_error: float  # metres, |answer centroid - answered instance's surface centroid| (nan when not found)
    wrong_object: bool  # found, but most returned points are off the object
    nearest_other: str  # where most off-object points lie: another labelled object, "unlabelled" (near none), or ""
    instances: int = 0
    recall_all: float = 0.0  # the same over every instance of the label (two sofas: both)
    # the same between surface centroids (mean of the SURFACE_TOL voxels each set occupies), so it does not
    # depend on where the cameras sampled the object densely (near views) or sparsely (far ones)
    surface_centroid_error: float = float("nan")
    iou_2d: dict[str, float] = field(default_factory=dict)  # held-out view -> IoU of the LangSplat mask
    iou_3d: dict[str, float] = field(default_factory=dict)  # held-out view -> IoU of the 3D answer rendered
    # the off-object points by where they lie: the nearest other labelled object within SURFACE_TOL, else
    # "unlabelled" (background, or a surface no label covers); most first
    off_object: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict:
        return asdict(self)


def surface_instances(points: np.ndarray, gap: float = INSTANCE_GAP) -> np.ndarray:
    """(K,) instance id of each surface point of one label (a label may name two sofas)."""
    import torch

    from langx_ros.core.instances import connected_instances

    return connected_instances(torch.as_tensor(np.asarray(points, np.float64)), gap / 2).numpy()


def surface_centroid(points: np.ndarray, voxel: float = SURFACE_TOL) -> np.ndarray:
    """(3,) mean of the centres of the occupied ``voxel`` cells (each the mean of its points): the
    centroid of the surface, not of the sampling."""
    p = np.asarray(points, np.float64).reshape(-1, 3)
    _, inv, counts = np.unique(np.floor(p / voxel).astype(np.int64), axis=0, return_inverse=True, return_counts=True)
    cells = np.zeros((len(counts), 3))
    np.add.at(cells, inv.reshape(-1), p)
    return (cells / counts[:, None]).mean(0)


def score_points(name: str, found: bool, score: float, points: np.ndarray, surfaces: dict[str, np.ndarray],
                 tol: float = SURFACE_TOL, instances: int = 0) -> ObjectScore:
    """Score an answer's (M, 3) world points for the object ``name`` against every labelled
    object's observed surface points (``surfaces``: name -> (K, 3)).

    Where the label covers several instances (separate surface parts), recall and centroid
    error are those of the instance most of the answer's on-object points lie on; ``recall_all``
    is over all of them.
    """
    from scipy.spatial import cKDTree

    gt = surfaces[name]
    pts = np.asarray(points, np.float64).reshape(-1, 3)
    if not found or len(pts) == 0 or len(gt) == 0:
        return ObjectScore(name, bool(found and len(pts)), float(score), len(pts), 0.0, 0.0, float("nan"), False, "", instances)
    d, nearest = cKDTree(gt).query(pts)
    on = d <= tol
    covered = cKDTree(pts).query(gt)[0] <= tol
    precision = float(on.mean())
    comp = surface_instances(gt)
    answered = int(np.bincount(comp[nearest[on]]).argmax()) if on.any() else int(np.bincount(comp[nearest]).argmax())
    inst = comp == answered
    off = off_object_counts(pts[~on], {k: v for k, v in surfaces.items() if k != name}, tol)
    nearest_other = next(iter(off), "")
    err = float(np.linalg.norm(pts.mean(0) - gt[inst].mean(0)))
    err_surface = float(np.linalg.norm(surface_centroid(pts) - surface_centroid(gt[inst])))
    return ObjectScore(name, True, float(score), len(pts), precision, float(covered[inst].mean()), err, precision < 0.5,
                       nearest_other, instances, float(covered.mean()), surface_centroid_error=err_surface, off_object=off)


def off_object_counts(points: np.ndarray, others: dict[str, np.ndarray], tol: float = SURFACE_TOL) -> dict[str, int]:
    """Where (M, 3) off-object ``points`` lie: each counted on the nearest of the ``others``
    (name -> surface points) within ``tol``, else on "unlabelled"; most first (ties by name)."""
    from scipy.spatial import cKDTree

    if not len(points):
        return {}
    names = [k for k, v in others.items() if len(v)]
    dist = np.full((len(names) + 1, len(points)), np.inf)
    dist[-1] = tol  # "unlabelled" wins unless some object is within tol
    for i, k in enumerate(names):
        d = cKDTree(others[k]).query(points)[0]
        dist[i] = np.where(d <= tol, d, np.inf)
    where = np.argmin(dist, 0)  # ties (a point exactly tol away) go to the object listed first
    counts = np.bincount(where, minlength=len(names) + 1)
    labels = names + ["unlabelled"]
    return {labels[i]: int(counts[i]) for i in sorted(np.flatnonzero(counts), key=lambda i: (-counts[i], labels[i]))}


def summarise(scores: list[ObjectScore]) -> dict:
    """Means over objects and the counts the targets are stated in."""
    found = [s for s in scores if s.found]
    iou2 = [v for s in scores for v in s.iou_2d.values()]
    iou3 = [v for s in scores for v in s.iou_3d.values()]
    mean = lambda xs: float(np.mean(xs)) if len(xs) else float("nan")  # noqa: E731
    return {
        "objects": len(scores),
        "found": len(found),
        "wrong_object": sum(s.wrong_object for s in scores),
        "mean_precision": mean([s.precision for s in found]),
        "min_precision": min([s.precision for s in found], default=float("nan")),
        "mean_recall": mean([s.recall for s in found]),
        "min_recall": min([s.recall for s in found], default=float("nan")),
        "mean_centroid_error": mean([s.centroid_error for s in found]),
        "max_centroid_error": max([s.centroid_error for s in found], default=float("nan")),
        "mean_surface_centroid_error": mean([s.surface_centroid_error for s in found]),
        "max_surface_centroid_error": max([s.surface_centroid_error for s in found], default=float("nan")),
        "miou_2d": mean(iou2),
        "miou_3d_rendered": mean(iou3),
    }


def format_table(scores: list[ObjectScore]) -> str:
    """A fixed-width table of per-object scores."""
    lines = [f"{'object':<22} {'found':>5} {'score':>6} {'points':>7} {'prec':>5} {'recall':>6} {'c.err m':>7} {'s.c.err':>7} "
             f"{'wrong':>5} {'2D IoU':>6} {'3D->2D':>6}  off-object points on"]
    for s in scores:
        i2 = np.mean(list(s.iou_2d.values())) if s.iou_2d else float("nan")
        i3 = np.mean(list(s.iou_3d.values())) if s.iou_3d else float("nan")
        lines.append(f"{s.name[:22]:<22} {str(s.found):>5} {s.score:6.3f} {s.points:7d} {s.precision:5.2f} {s.recall:6.2f} "
                     f"{s.centroid_error:7.3f} {s.surface_centroid_error:7.3f} {str(s.wrong_object):>5} {i2:6.2f} {i3:6.2f}  "
                     + ", ".join(f"{k} {v}" for k, v in s.off_object.items()))
    return "\n".join(lines)
