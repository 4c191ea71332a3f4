"""Ground-truth object labels of real posed RGB-D scenes, checked in 3D across views.

Two label sources share one interface, :class:`SceneLabels` (``names``: id -> object name, ids
from 1, 0 = no label; ``ids(frame)``: the frame's (H, W) uint8 id map):

* **Drawn polygons** (``<label_dir>/annotations.json``, format below; :class:`PolygonLabels`).
  An object is drawn as 2D polygons in *some* frames. In a drawn frame its pixels are the
  polygon's pixels that have depth, refined with depth (background seen inside the polygon, and
  optionally the surface the object stands on, are dropped). The refined masks are
  back-projected through depth and pose into the object's 3D surface points; in every other
  frame the object's pixels are those whose depth agrees (:func:`depth_tolerance`, 3 cm up to
  3.2 m) with an object point projected onto or next to them. That is a depth test: parts hidden
  behind something else are not labelled. Pixels without depth never get a label: they are
  unknown (``SceneLabels.known``), not background.
* **Per-pixel id images** (``<data_dir>/frame-XXXXXX.ids.png`` + ``<data_dir>/labels.json``
  mapping ``"id": "name"``, ``"0"`` = background; :class:`IdPngLabels`), taken as stored.

:func:`load_scene_labels` picks the source from what the folder holds.

``annotations.json`` (keys not listed here, such as ``"notes"``, are ignored)::

    {
      "scene": "rgbd-3dmatch-seq01",     # the data folder's name (see default_data_root)
      "image_size": [640, 480],          # width, height the polygons were drawn at
      "drawn_on": "colour",              # or "depth": which image the polygons follow
      "tolerance_m": 0.03,               # depth agreement for propagation (optional) ...
      "tolerance_z2": 0.003,             # ... or this times depth^2 where larger (optional)
      "objects": [                       # painted in this order: a later object wins a pixel
        {"id": 3, "name": "side table",  # id optional (default: position from 1), 1..255
         "frames": {
           "frame-000000": {
             "polygons": [[[x, y], ...], ...],  # pixel column, row; one or more parts
             "box": [x0, y0, x1, y1],           # optional: one more part, a rectangle
             "exclude": [[[x, y], ...]],        # optional: pixels taken out again
             "seeds": [[x, y], ...],            # optional: components always kept
             "depth_range": [near, far],        # optional: metres
             "keep": "parts",                   # optional: "parts" (default) | "all"
             "min_part": 0.3,                   # optional, see below
             "support_plane": false,            # optional: drop the surface it stands on
             "plane_margin": 0.015              # optional: metres, for support_plane
           }}}]}

Refinement of a drawn frame, polygon by polygon: its pixels with depth (inside ``depth_range``,
outside ``exclude``) are split into depth-connected components (4-neighbours whose depths differ
by less than :func:`depth_step` join); ``"parts"`` keeps the largest component, every other one of
at least ``min_part`` of its size that does not lie behind it (:func:`keep_parts`), and those
holding a seed; ``"all"`` keeps every pixel. With
``support_plane`` a plane is fitted (RANSAC) to the depth in an 8-pixel band around the polygon,
which for an object on a table is mostly table top, and pixels within ``plane_margin`` of it are
dropped before the components, in the drawn frame and wherever the object is propagated.

Objects are painted in file order, so list supports (a table) before what stands on them (a
mug); an object's 3D points leave out the pixels of its drawn frames that a later object's drawn
mask takes.

This module imports no ROS package; OpenCV and SciPy are imported where they are needed.
"""
from __future__ import annotations

import json
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from langx_ros.core.frames import Frame, load_rgbd_frame, rays_at

ANNOTATIONS_FILE = "annotations.json"
DEFAULT_TOLERANCE = 0.03  # metres: depth agreement for propagation and the cross-view check ...
DEFAULT_TOLERANCE_Z2 = 0.003  # ... or this times depth^2 where larger (depth noise grows as z^2)
DEFAULT_VOXEL = 0.005  # metres: spacing of the 3D points an object is propagated from
DEFAULT_MIN_PART = 0.3
DEFAULT_PLANE_MARGIN = 0.015  # metres: pixels this close to the support plane are dropped


def default_data_root() -> Path:
    """Where the real data sets live by default: ``<repository>/../shared/data``."""
    return Path(__file__).resolve().parents[2].parent / "shared" / "data"


# --------------------------------------------------------------------------------------------
# Geometry helpers
# --------------------------------------------------------------------------------------------


def depth_tolerance(z: np.ndarray, tolerance: float = DEFAULT_TOLERANCE,
                    tolerance_z2: float = DEFAULT_TOLERANCE_Z2) -> np.ndarray:
    """Depth agreement (m) at depth ``z``: ``max(tolerance, tolerance_z2 * z^2)`` (3 cm up to
    3.2 m with the defaults; a structured-light sensor's depth step grows as z^2)."""
    return np.maximum(tolerance, tolerance_z2 * np.square(z))


def depth_step(z: np.ndarray) -> np.ndarray:
    """Largest depth difference (m) between 4-neighbours of one surface at depth ``z`` (m)."""
    return 0.02 + 0.01 * np.square(z)


def pixel_points(frame: Frame, mask: np.ndarray) -> np.ndarray:
    """(M, 3) world points of the pixels of ``mask`` that have depth (row-major order)."""
    if frame.depth is None or frame.pose is None:
        raise ValueError(f"frame {frame.frame_id}: needs depth and pose")
    rows, cols = np.nonzero(mask & np.isfinite(frame.depth))
    pts_cam = rays_at(frame.K, rows, cols) * frame.depth[rows, cols, None].astype(np.float64)
    return pts_cam @ frame.pose[:3, :3].T + frame.pose[:3, 3]


def project(points: np.ndarray, frame: Frame) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Project world points into ``frame``.

    Returns:
        (rows, cols, z, inside): integer pixel indices, camera depth (m), and whether the point
        lies in front of the camera and inside the image (rows/cols are only valid there).
    """
    R, t = frame.pose[:3, :3], frame.pose[:3, 3]
    pc = (np.asarray(points, np.float64) - t) @ R  # R^T (p - t), row vectors
    z = pc[:, 2]
    with np.errstate(divide="ignore", invalid="ignore"):
        x, y = pc[:, 0] / z, pc[:, 1] / z
        u = frame.K[0, 0] * x + frame.K[0, 1] * y + frame.K[0, 2]
        v = frame.K[1, 1] * y + frame.K[1, 2]
        inside = (z > 1e-6) & (u >= 0) & (u < frame.width) & (v >= 0) & (v < frame.height)
    cols = np.where(inside, np.floor(np.nan_to_num(u)), 0).astype(np.int64)
    rows = np.where(inside, np.floor(np.nan_to_num(v)), 0).astype(np.int64)
    return rows, cols, z, inside


def depth_at(points: np.ndarray, frame: Frame) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Where world ``points`` land in ``frame`` and what its depth reads there.

    Returns:
        (index, rows, cols, z, depth) for the points inside the image and in front of the camera:
        their indices into ``points``, pixel, camera depth (m) and ``frame``'s depth at that pixel
        (NaN = no reading).
    """
    rows, cols, z, inside = project(points, frame)
    index = np.flatnonzero(inside)
    r, c = rows[index], cols[index]
    return index, r, c, z[index], frame.depth[r, c]


def voxel_downsample(points: np.ndarray, voxel: float) -> np.ndarray:
    """One point per occupied voxel (the mean of its points), ordered by voxel; deterministic."""
    points = np.asarray(points, np.float64).reshape(-1, 3)
    if len(points) == 0 or voxel <= 0:
        return points.copy()
    keys = np.floor(points / voxel).astype(np.int64)
    _, inverse, counts = np.unique(keys, axis=0, return_inverse=True, return_counts=True)
    inverse = inverse.reshape(-1)
    sums = np.zeros((len(counts), 3))
    np.add.at(sums, inverse, points)
    return sums / counts[:, None]


def depth_components(depth: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Label the depth-connected components of ``mask`` (pixels with finite depth only).

    Two 4-neighbours join when their depths differ by less than :func:`depth_step`.

    Returns:
        (H, W) int64: component index from 0, -1 outside the mask or without depth.
    """
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    valid = mask & np.isfinite(depth)
    index = np.full(depth.shape, -1, np.int64)
    n = int(valid.sum())
    index[valid] = np.arange(n)
    if n == 0:
        return index
    edges_a, edges_b = [], []
    for a_sl, b_sl in (((slice(None), slice(None, -1)), (slice(None), slice(1, None))),
                       ((slice(None, -1), slice(None)), (slice(1, None), slice(None)))):
        da, db = depth[a_sl], depth[b_sl]
        both = valid[a_sl] & valid[b_sl]
        with np.errstate(invalid="ignore"):
            near = both & (np.abs(da - db) < depth_step(np.minimum(da, db)))
        edges_a.append(index[a_sl][near])
        edges_b.append(index[b_sl][near])
    ea, eb = np.concatenate(edges_a), np.concatenate(edges_b)
    graph = coo_matrix((np.ones(len(ea), np.int8), (ea, eb)), shape=(n, n))
    _, comp = connected_components(graph, directed=False)
    out = np.full(depth.shape, -1, np.int64)
    out[valid] = comp
    return out


def fit_plane_ransac(points: np.ndarray, threshold: float = 0.01, iterations: int = 300,
                     seed: int = 0) -> tuple[np.ndarray, float] | None:
    """The plane ``n . p + d = 0`` (unit ``n``) with most points within ``threshold`` m,
    refined by least squares on them; None with fewer than 3 points. Deterministic (``seed``)."""
    points = np.asarray(points, np.float64)
    if len(points) < 3:
        return None
    rng = np.random.default_rng(seed)
    best, best_count = None, -1
    for _ in range(iterations):
        a, b, c = points[rng.choice(len(points), 3, replace=False)]
        n = np.cross(b - a, c - a)
        norm = np.linalg.norm(n)
        if norm < 1e-9:
            continue
        n /= norm
        count = int(np.count_nonzero(np.abs(points @ n - n @ a) < threshold))
        if count > best_count:
            best, best_count = (n, -float(n @ a)), count
    if best is None:
        return None
    n, d = best
    inl = points[np.abs(points @ n + d) < threshold]
    centre = inl.mean(axis=0)
    _, _, vt = np.linalg.svd(inl - centre, full_matrices=False)
    n = vt[-1]
    return n, -float(n @ centre)


def support_plane(frame: Frame, inside: np.ndarray, ring: int = 8) -> tuple[np.ndarray, float] | None:
    """The world plane an object drawn as ``inside`` stands on: fitted (RANSAC) to the depth
    pixels of a ``ring``-pixel band around ``inside`` (for an object on a table the band is mostly
    table top). None where the band has too few depth pixels."""
    from scipy.ndimage import binary_dilation

    band = binary_dilation(inside, iterations=ring) & ~inside
    return fit_plane_ransac(pixel_points(frame, band))


def near_plane(frame: Frame, mask: np.ndarray, plane: tuple[np.ndarray, float], margin: float) -> np.ndarray:
    """(H, W) bool: pixels of ``mask`` whose 3D (world) point lies within ``margin`` m of ``plane``."""
    n, d = plane
    out = np.zeros(mask.shape, bool)
    rows, cols = np.nonzero(mask & np.isfinite(frame.depth))
    pts = pixel_points(frame, mask)  # same row-major order as np.nonzero
    out[rows, cols] = np.abs(pts @ n + d) < margin
    return out


def keep_parts(depth: np.ndarray, comp: np.ndarray, min_part: float = DEFAULT_MIN_PART) -> np.ndarray:
    """Which depth-connected components of a drawn polygon belong to the object.

    The largest component is the object; another component is kept when it has at least
    ``min_part`` of the largest one's pixels and does not lie behind it (its median depth is not
    beyond the largest component's 98th-percentile depth plus :func:`depth_step`): background
    seen inside the polygon around or through the object is dropped, separate parts of the object
    at its own depth (legs, a second cushion) are kept.

    Args:
        depth: (H, W) metres.
        comp: (H, W) component index from :func:`depth_components` (-1 = none).

    Returns:
        (n_components,) bool.
    """
    idx = comp[comp >= 0]
    sizes = np.bincount(idx)
    keep = np.zeros(len(sizes), bool)
    if len(sizes) == 0:
        return keep
    main = int(np.argmax(sizes))
    keep[main] = True
    d = depth[comp >= 0]
    limit = float(np.percentile(d[idx == main], 98))
    limit += float(depth_step(np.asarray(limit)))
    order = np.argsort(idx, kind="stable")
    starts = np.concatenate([[0], np.cumsum(sizes)])
    ds = d[order]
    for c in range(len(sizes)):
        if c != main and sizes[c] >= min_part * sizes[main]:
            keep[c] = float(np.median(ds[starts[c]:starts[c + 1]])) <= limit
    return keep


def rasterise(polygons: list[np.ndarray], width: int, height: int) -> np.ndarray:
    """(H, W) bool: the union of filled polygons (vertices = pixel column, row; edges included)."""
    import cv2

    m = np.zeros((height, width), np.uint8)
    for poly in polygons:
        p = np.round(np.asarray(poly, np.float64)).astype(np.int32).reshape(-1, 2)
        if len(p) >= 3:
            cv2.fillPoly(m, [p], 1)
        elif len(p) > 0:
            cv2.polylines(m, [p], False, 1)
    return m.astype(bool)


def splat_agreement(points: np.ndarray, spacing: float, frame: Frame, tolerance: float = DEFAULT_TOLERANCE,
                    tolerance_z2: float = DEFAULT_TOLERANCE_Z2) -> np.ndarray:
    """Pixels of ``frame`` whose depth agrees with a projected point: the propagation test.

    Every point covers the square of pixels within ``r = ceil(0.6 f spacing / z)`` (at most 6)
    of where it projects, so a surface sampled every ``spacing`` metres leaves no holes. A covered
    pixel is labelled when its own depth agrees with the point's (:func:`depth_tolerance`): a
    point hidden behind a nearer surface, or a background pixel next to the object, fails.

    Returns:
        (H, W) bool.
    """
    out = np.zeros((frame.height, frame.width), bool)
    if frame.depth is None or len(points) == 0:
        return out
    rows, cols, z, inside = project(points, frame)
    rows, cols, z = rows[inside], cols[inside], z[inside]
    if len(z) == 0:
        return out
    tol = depth_tolerance(z, tolerance, tolerance_z2)
    f = 0.5 * (frame.K[0, 0] + frame.K[1, 1])
    radius = np.clip(np.ceil(0.6 * f * spacing / z), 0, 6).astype(np.int64)
    depth = frame.depth
    h, w = depth.shape
    rmax = int(radius.max())
    for dy in range(-rmax, rmax + 1):
        for dx in range(-rmax, rmax + 1):
            sel = radius >= max(abs(dy), abs(dx))
            r, c, zz, tt = rows[sel] + dy, cols[sel] + dx, z[sel], tol[sel]
            ok = (r >= 0) & (r < h) & (c >= 0) & (c < w)
            r, c, zz, tt = r[ok], c[ok], zz[ok], tt[ok]
            d = depth[r, c]
            with np.errstate(invalid="ignore"):
                agree = np.abs(d - zz) < tt
            out[r[agree], c[agree]] = True
    return out


# --------------------------------------------------------------------------------------------
# The label interface
# --------------------------------------------------------------------------------------------


class SceneLabels(ABC):
    """Object labels of one scene: ``names`` (id -> name, ids from 1) and per-frame id maps."""

    names: dict[int, str]

    @abstractmethod
    def ids(self, frame: Frame) -> np.ndarray:
        """(H, W) integer id map of ``frame``: 0 = no label, else a key of ``names``."""

    def known(self, frame: Frame) -> np.ndarray:
        """(H, W) bool: the pixels whose id the labels can tell (an id of 0 there means no object
        of ``names``); elsewhere the labels cannot say what the pixel shows. All of them unless a
        source says otherwise."""
        return np.ones((frame.height, frame.width), bool)

    def id_of(self, name: str) -> int:
        """The id of the object called ``name`` (exact match)."""
        for k, v in self.names.items():
            if v == name:
                return k
        raise KeyError(f"no object named {name!r}; objects: {sorted(self.names.values())}")


class IdPngLabels(SceneLabels):
    """Labels stored as ``<frame_id>.ids.png`` (uint8 ids) beside the frames, named by
    ``labels.json``; id 0 ("background") is no label. The ids are used as stored."""

    def __init__(self, data_dir: str | Path):
        self.data_dir = Path(data_dir)
        raw = json.loads((self.data_dir / "labels.json").read_text())
        self.names = {int(k): str(v) for k, v in sorted(raw.items(), key=lambda kv: int(kv[0])) if int(k) != 0}

    def ids(self, frame: Frame) -> np.ndarray:
        import cv2

        path = self.data_dir / f"{frame.frame_id}.ids.png"
        img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        if img is None:
            raise FileNotFoundError(f"no id image {path}")
        if img.ndim == 3:
            img = img[:, :, 0]
        if img.shape != (frame.height, frame.width):
            img = cv2.resize(img, (frame.width, frame.height), interpolation=cv2.INTER_NEAREST)
        return img.astype(np.uint8)


@dataclass
class DrawnFrame:
    """An object's annotation in one frame (see the module docstring for the fields)."""

    polygons: list[np.ndarray]
    exclude: list[np.ndarray] = field(default_factory=list)
    seeds: list[tuple[int, int]] = field(default_factory=list)
    depth_range: tuple[float, float] | None = None
    keep: str = "parts"
    min_part: float = DEFAULT_MIN_PART
    support_plane: bool = False
    plane_margin: float = DEFAULT_PLANE_MARGIN


@dataclass
class LabelledObject:
    """One object of a polygon label file."""

    object_id: int
    name: str
    frames: dict[str, DrawnFrame]


def _parse_drawn(entry: dict, where: str) -> DrawnFrame:
    polys = [np.asarray(p, np.float64).reshape(-1, 2) for p in entry.get("polygons", [])]
    if "box" in entry:  # x0, y0, x1, y1
        x0, y0, x1, y1 = entry["box"]
        polys.append(np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]], np.float64))
    if not polys:
        raise ValueError(f"{where}: no polygons")
    keep = entry.get("keep", "parts")
    if keep not in ("parts", "all"):
        raise ValueError(f"{where}: keep must be 'parts' or 'all', got {keep!r}")
    rng = entry.get("depth_range")
    return DrawnFrame(
        polygons=polys,
        exclude=[np.asarray(p, np.float64).reshape(-1, 2) for p in entry.get("exclude", [])],
        seeds=[(int(x), int(y)) for x, y in entry.get("seeds", [])],
        depth_range=None if rng is None else (float(rng[0]), float(rng[1])),
        keep=keep,
        min_part=float(entry.get("min_part", DEFAULT_MIN_PART)),
        support_plane=bool(entry.get("support_plane", False)),
        plane_margin=float(entry.get("plane_margin", DEFAULT_PLANE_MARGIN)),
    )


class PolygonLabels(SceneLabels):
    """Labels drawn as polygons in some frames and propagated in 3D to the others.

    Args:
        spec: the parsed ``annotations.json``.
        data_dir: the posed RGB-D folder the drawn frames are loaded from (only when needed).
        frames: already loaded frames by id, used instead of loading from ``data_dir``.
        voxel: spacing (m) of the 3D points an object is propagated from.
    """

    def __init__(self, spec: dict, data_dir: str | Path | None = None, frames: dict[str, Frame] | None = None,
                 voxel: float = DEFAULT_VOXEL):
        self.scene = str(spec.get("scene", ""))
        size = spec.get("image_size", [640, 480])
        self.image_size = (int(size[0]), int(size[1]))
        self.tolerance = float(spec.get("tolerance_m", DEFAULT_TOLERANCE))
        self.tolerance_z2 = float(spec.get("tolerance_z2", DEFAULT_TOLERANCE_Z2))
        self.drawn_on = str(spec.get("drawn_on", "colour"))
        self.voxel = float(voxel)
        self.data_dir = None if data_dir is None else Path(data_dir)
        self._frames: dict[str, Frame] = dict(frames or {})
        self.objects: list[LabelledObject] = []
        for i, obj in enumerate(spec["objects"], start=1):
            oid = int(obj.get("id", i))
            name = str(obj["name"])
            drawn = {fid: _parse_drawn(e, f"object {name!r} frame {fid}") for fid, e in sorted(obj.get("frames", {}).items())}
            self.objects.append(LabelledObject(oid, name, drawn))
        ids = [o.object_id for o in self.objects]
        if len(set(ids)) != len(ids) or min(ids, default=1) < 1 or max(ids, default=1) > 255:
            raise ValueError(f"object ids must be unique and in 1..255, got {ids}")
        self.names = {o.object_id: o.name for o in self.objects}
        self._clouds: dict[int, tuple[np.ndarray, float]] = {}
        self._planes: dict[int, list[tuple[tuple[np.ndarray, float], float]]] = {}

    # -- drawn frames ------------------------------------------------------------------------

    def drawn_frames(self, object_id: int) -> list[str]:
        """The frames ``object_id`` was drawn in (sorted)."""
        return sorted(self._object(object_id).frames)

    def _object(self, object_id: int) -> LabelledObject:
        for o in self.objects:
            if o.object_id == object_id:
                return o
        raise KeyError(f"no object with id {object_id}")

    def _scaled(self, polys: list[np.ndarray], frame: Frame) -> list[np.ndarray]:
        sx, sy = frame.width / self.image_size[0], frame.height / self.image_size[1]
        return [p * [sx, sy] for p in polys]

    def drawn_mask(self, object_id: int, frame: Frame) -> np.ndarray:
        """(H, W) bool: the object's refined mask in a frame it was drawn in (see module doc).

        Each polygon is refined on its own, so a small part drawn as its own polygon (a second
        table) is not dropped beside a large one.
        """
        drawn = self._object(object_id).frames[frame.frame_id]
        out = np.zeros((frame.height, frame.width), bool)
        if frame.depth is None:
            return out
        valid = np.isfinite(frame.depth)
        if drawn.depth_range is not None:
            near, far = drawn.depth_range
            with np.errstate(invalid="ignore"):
                valid &= (frame.depth >= near) & (frame.depth <= far)
        if drawn.exclude:
            valid &= ~rasterise(self._scaled(drawn.exclude, frame), frame.width, frame.height)
        sx, sy = frame.width / self.image_size[0], frame.height / self.image_size[1]
        seeds = [(int(y * sy), int(x * sx)) for x, y in drawn.seeds]
        for poly in self._scaled(drawn.polygons, frame):
            inside = rasterise([poly], frame.width, frame.height)
            mask = inside & valid
            if drawn.support_plane and mask.any():
                plane = support_plane(frame, inside)
                if plane is not None:
                    mask &= ~near_plane(frame, mask, plane, drawn.plane_margin)
            if drawn.keep == "all" or not mask.any():
                out |= mask
                continue
            comp = depth_components(frame.depth, mask)
            keep = keep_parts(frame.depth, comp, drawn.min_part)
            for r, c in seeds:
                if 0 <= r < frame.height and 0 <= c < frame.width and comp[r, c] >= 0:
                    keep[comp[r, c]] = True
            out |= (comp >= 0) & keep[np.maximum(comp, 0)]
        return out

    def polygon_mask(self, drawn: DrawnFrame, frame: Frame) -> np.ndarray:
        """(H, W) bool: the drawn polygons minus the excluded ones, unrefined."""
        m = rasterise(self._scaled(drawn.polygons, frame), frame.width, frame.height)
        if drawn.exclude:
            m &= ~rasterise(self._scaled(drawn.exclude, frame), frame.width, frame.height)
        return m

    # -- 3D points and propagation -----------------------------------------------------------

    def _frame(self, frame_id: str) -> Frame:
        if frame_id not in self._frames:
            if self.data_dir is None:
                raise ValueError(f"frame {frame_id} is needed for propagation but no data folder was given")
            self._frames[frame_id] = load_rgbd_frame(self.data_dir, frame_id)
        return self._frames[frame_id]

    def cloud(self, object_id: int) -> tuple[np.ndarray, float]:
        """The object's 3D points from its drawn frames (voxel-downsampled) and their spacing (m).

        A drawn frame contributes its refined mask minus the drawn masks of objects painted
        after this one in that frame.
        """
        if object_id not in self._clouds:
            obj = self._object(object_id)
            later = self.objects[[o.object_id for o in self.objects].index(object_id) + 1:]
            parts = []
            for fid in sorted(obj.frames):
                frame = self._frame(fid)
                mask = self.drawn_mask(object_id, frame)
                for o in later:
                    if fid in o.frames:
                        mask &= ~self.drawn_mask(o.object_id, frame)
                parts.append(pixel_points(frame, mask))
            pts = voxel_downsample(np.concatenate(parts) if parts else np.zeros((0, 3)), self.voxel)
            spacing = self.voxel
            if len(pts) >= 2:
                from scipy.spatial import cKDTree

                d, _ = cKDTree(pts).query(pts, k=2)
                spacing = max(self.voxel, float(np.median(d[:, 1])))
            self._clouds[object_id] = (pts, spacing)
        return self._clouds[object_id]

    def object_mask(self, object_id: int, frame: Frame) -> np.ndarray:
        """(H, W) bool: the object's pixels in ``frame`` before painting: drawn or propagated."""
        if frame.frame_id in self._object(object_id).frames:
            return self.drawn_mask(object_id, frame)
        if frame.depth is None or frame.pose is None:
            return np.zeros((frame.height, frame.width), bool)
        pts, spacing = self.cloud(object_id)
        mask = splat_agreement(pts, spacing, frame, self.tolerance, self.tolerance_z2)
        for plane, margin in self.support_planes(object_id):
            mask &= ~near_plane(frame, mask, plane, margin)
        return mask

    def support_planes(self, object_id: int) -> list[tuple[tuple[np.ndarray, float], float]]:
        """(world plane, margin) of each drawn frame with ``support_plane``: a propagated mask
        leaves out pixels that close to the surface the object stands on (the contact band)."""
        if object_id not in self._planes:
            planes = []
            for fid, drawn in sorted(self._object(object_id).frames.items()):
                if drawn.support_plane:
                    frame = self._frame(fid)
                    for poly in self._scaled(drawn.polygons, frame):  # as in drawn_mask
                        plane = support_plane(frame, rasterise([poly], frame.width, frame.height))
                        if plane is not None:
                            planes.append((plane, drawn.plane_margin))
            self._planes[object_id] = planes
        return self._planes[object_id]

    def ids(self, frame: Frame) -> np.ndarray:
        out = np.zeros((frame.height, frame.width), np.uint8)
        for o in self.objects:
            out[self.object_mask(o.object_id, frame)] = o.object_id
        if frame.depth is not None:
            out[~np.isfinite(frame.depth)] = 0
        else:
            out[:] = 0
        return out

    def known(self, frame: Frame) -> np.ndarray:
        """Pixels with depth: labels are made in 3D, so a pixel without a depth reading never gets
        one, whatever it shows (the lounge's printer lies mostly in the 40 columns at the right
        border that 3DMatch's depth does not cover; 13 % of a lounge frame has no depth)."""
        if frame.depth is None:
            return np.zeros((frame.height, frame.width), bool)
        return np.isfinite(frame.depth) & (frame.depth > 0)


def load_scene_labels(label_dir: str | Path, data_dir: str | Path | None = None,
                      frames: dict[str, Frame] | None = None) -> SceneLabels:
    """Labels of a scene, from whichever layout ``label_dir`` holds.

    Args:
        label_dir: a folder with ``annotations.json`` (drawn polygons), or a data folder with
            ``*.ids.png`` and ``labels.json`` (per-pixel ids).
        data_dir: for drawn polygons, the posed RGB-D folder (default:
            ``default_data_root() / <the file's "scene">``).
        frames: for drawn polygons, frames already loaded, by id.

    Raises:
        FileNotFoundError: neither layout is there.
    """
    label_dir = Path(label_dir)
    if (label_dir / ANNOTATIONS_FILE).is_file():
        spec = json.loads((label_dir / ANNOTATIONS_FILE).read_text())
        if data_dir is None:
            data_dir = default_data_root() / str(spec.get("scene", label_dir.name))
        return PolygonLabels(spec, data_dir, frames)
    if (label_dir / "labels.json").is_file() and any(label_dir.glob("*.ids.png")):
        return IdPngLabels(label_dir)
    raise FileNotFoundError(f"{label_dir}: neither {ANNOTATIONS_FILE} nor labels.json with *.ids.png")


# --------------------------------------------------------------------------------------------
# Evaluation helpers
# --------------------------------------------------------------------------------------------


def object_points(frames: list[Frame], labels: SceneLabels, object_id: int, voxel: float = 0.01,
                  id_maps: dict[str, np.ndarray] | None = None, min_agreement: float = 0.0,
                  agreement_px: int = 2, tolerance: float = DEFAULT_TOLERANCE,
                  tolerance_z2: float = DEFAULT_TOLERANCE_Z2) -> np.ndarray:
    """(M, 3) world points of an object's observed surface: its labelled depth pixels in all
    ``frames``, voxel-downsampled (``voxel`` metres; one mean point per voxel).

    ``min_agreement`` > 0: a labelled pixel counts only where the other frames that see its point
    (it projects onto their depth within :func:`depth_tolerance`) label it the object at least
    this often (agreeing: the object's label within ``agreement_px`` pixels, so an outline a pixel
    or two off between views, or poses a few mm apart, is no disagreement); a point no other frame
    sees counts. A label that spills past an object's outline onto the surface behind it (the
    shelf's tissue box: its right edge, 30 cm behind, which the next view sees tens of pixels away
    from the box) is then not taken for the object's surface. ``id_maps`` (frame id -> id map)
    reuses id maps already computed.
    """
    usable = [f for f in frames if f.depth is not None and f.pose is not None]
    maps = {f.frame_id: id_maps[f.frame_id] if id_maps is not None and f.frame_id in id_maps else labels.ids(f)
            for f in usable}
    parts = []
    near: dict[str, np.ndarray] = {}  # frame id -> the object's label dilated by agreement_px
    for fa in usable:
        pts = pixel_points(fa, maps[fa.frame_id] == object_id)
        if min_agreement > 0 and len(pts):
            seen = np.zeros(len(pts), np.int64)
            agree = np.zeros(len(pts), np.int64)
            for fb in usable:
                if fb is fa:
                    continue
                i, r, c, z, d = depth_at(pts, fb)
                with np.errstate(invalid="ignore"):
                    vis = np.abs(z - d) < depth_tolerance(z, tolerance, tolerance_z2)  # NaN depth: False
                if fb.frame_id not in near:
                    near[fb.frame_id] = _dilate(maps[fb.frame_id] == object_id, agreement_px)
                seen[i] += vis
                agree[i] += vis & near[fb.frame_id][r, c]
            pts = pts[(seen == 0) | (agree >= min_agreement * seen)]
        parts.append(pts)
    return voxel_downsample(np.concatenate(parts) if parts else np.zeros((0, 3)), voxel)


def _dilate(mask: np.ndarray, px: int) -> np.ndarray:
    """``mask`` grown by ``px`` pixels (a square neighbourhood); ``px`` 0: as it is."""
    if px <= 0:
        return mask
    from scipy import ndimage

    return ndimage.maximum_filter(mask, size=2 * px + 1)


def depth_agreement(a: Frame, b: Frame, tolerance: float = DEFAULT_TOLERANCE,
                    tolerance_z2: float = DEFAULT_TOLERANCE_Z2, stride: int = 4) -> tuple[float, int]:
    """How well two frames' geometry agrees under their poses, whatever the labels.

    Of ``a``'s depth pixels (every ``stride``-th row and column) that reproject into ``b`` onto a
    pixel with depth and are not hidden there, the fraction whose depth agrees with ``b``'s
    (:func:`depth_tolerance`). A low figure means the pair's poses (or depths) disagree, and no
    label can be consistent across that pair.

    Returns:
        (fraction, number of such pixels); NaN when there are none.
    """
    mask = np.zeros((a.height, a.width), bool)
    mask[::stride, ::stride] = True
    pts = pixel_points(a, mask)
    _, _, _, zz, d = depth_at(pts, b)
    tol = depth_tolerance(zz, tolerance, tolerance_z2)
    with np.errstate(invalid="ignore"):
        vis = np.isfinite(d) & (zz <= d + tol)
        n = int(vis.sum())
        agree = int(np.count_nonzero(np.abs(zz - d)[vis] < tol[vis]))
    return (agree / n if n else float("nan")), n


def registered_pairs(frames: list[Frame], pairs: set[tuple[str, str]] | None = None, min_agreement: float = 0.8,
                     tolerance: float = DEFAULT_TOLERANCE, tolerance_z2: float = DEFAULT_TOLERANCE_Z2,
                     stride: int = 8) -> set[tuple[str, str]]:
    """The ordered frame pairs whose geometry agrees under their poses: :func:`depth_agreement`
    at least ``min_agreement`` both ways (both orders are returned). Only ``pairs`` are tried
    when given. Label consistency is only meaningful across such pairs."""
    by_id = {f.frame_id: f for f in frames if f.depth is not None and f.pose is not None}
    todo = pairs if pairs is not None else {(a, b) for a in by_id for b in by_id if a != b}
    out: set[tuple[str, str]] = set()
    done: dict[tuple[str, str], float] = {}
    for a, b in sorted(todo):
        if a not in by_id or b not in by_id or (a, b) in out:
            continue
        for key in ((a, b), (b, a)):
            if key not in done:
                done[key] = depth_agreement(by_id[key[0]], by_id[key[1]], tolerance, tolerance_z2, stride)[0]
        if done[(a, b)] >= min_agreement and done[(b, a)] >= min_agreement:
            out |= {(a, b), (b, a)}
    return out


@dataclass(frozen=True)
class PairConsistency:
    """How one object's labels in frame ``a`` agree with its labels in frame ``b``.

    ``labelled``: the object's labelled pixels in ``a`` (all have depth);
    ``visible``: those whose 3D point, reprojected into ``b``, lands inside it on a pixel whose
    depth agrees with the point's (:func:`depth_tolerance`): ``b`` sees the same surface point
    there. A point hidden in ``b`` behind something nearer, or one ``b`` sees past (depth beyond
    it: a silhouette edge, or poses that disagree), has no counterpart and is not counted;
    ``seen_past``: how many were seen past, a measure of the pair's misregistration around the
    object rather than of its labels;
    ``agree``: of the visible ones, how many land on ``b``'s label of the same object.
    """

    a: str
    b: str
    labelled: int
    visible: int
    agree: int
    seen_past: int = 0

    @property
    def fraction(self) -> float:
        """agree / visible (NaN without visible pixels)."""
        return self.agree / self.visible if self.visible else float("nan")


def check_consistency(frames: list[Frame], labels: SceneLabels, tolerance: float = DEFAULT_TOLERANCE,
                      tolerance_z2: float = DEFAULT_TOLERANCE_Z2, id_maps: dict[str, np.ndarray] | None = None,
                      pixel_stride: int = 1) -> dict[int, dict[tuple[str, str], PairConsistency]]:
    """Cross-view check of labels in 3D: per object, per ordered frame pair (a, b), the fraction
    of the object's labelled pixels in ``a`` that, reprojected into ``b`` with depth and pose and
    visible there (depth test: ``b``'s depth agrees, see :class:`PairConsistency`), land on
    ``b``'s label of the same object.

    Only pairs where the object has labelled pixels in ``a`` are listed. ``id_maps`` (frame id ->
    id map) reuses id maps already computed; ``pixel_stride`` > 1 checks only the pixels of every
    ``pixel_stride``-th row and column of ``a`` (faster; the counts shrink accordingly).
    """
    maps = {f.frame_id: (id_maps[f.frame_id] if id_maps is not None and f.frame_id in id_maps else labels.ids(f))
            for f in frames}
    usable = [f for f in frames if f.depth is not None and f.pose is not None]
    grid = None
    out: dict[int, dict[tuple[str, str], PairConsistency]] = {}
    for oid in labels.names:
        per: dict[tuple[str, str], PairConsistency] = {}
        for fa in usable:
            mask = maps[fa.frame_id] == oid
            if pixel_stride > 1:
                if grid is None or grid.shape != mask.shape:
                    grid = np.zeros(mask.shape, bool)
                    grid[::pixel_stride, ::pixel_stride] = True
                mask &= grid
            if not mask.any():
                continue
            pts = pixel_points(fa, mask)
            for fb in usable:
                if fb is fa:
                    continue
                _, r, c, zz, d = depth_at(pts, fb)
                tol = depth_tolerance(zz, tolerance, tolerance_z2)
                with np.errstate(invalid="ignore"):
                    vis = np.abs(zz - d) < tol  # NaN depth: False
                    past = int(np.count_nonzero(d - zz >= tol))
                agree = int(np.count_nonzero(maps[fb.frame_id][r[vis], c[vis]] == oid))
                per[(fa.frame_id, fb.frame_id)] = PairConsistency(fa.frame_id, fb.frame_id, len(pts), int(vis.sum()),
                                                                  agree, past)
        out[oid] = per
    return out


def summarise_consistency(result: dict[int, dict[tuple[str, str], PairConsistency]], min_visible: int = 200,
                          pairs: set[tuple[str, str]] | None = None) -> dict[int, dict[str, float]]:
    """Per object: ``pairs`` (count of pairs with at least ``min_visible`` visible pixels, or
    only those in ``pairs`` when given), ``mean``, ``min`` and ``pooled`` (all agreeing over all
    visible pixels) of their fractions, and ``seen_past`` (seen-past over seen-past + visible
    points: how often the pairs' geometry disagrees at the object); NaN where no pair qualifies."""
    out: dict[int, dict[str, float]] = {}
    for oid, per in result.items():
        sel = [p for k, p in per.items() if p.visible >= min_visible and (pairs is None or k in pairs)]
        fr = np.array([p.fraction for p in sel])
        out[oid] = {
            "pairs": float(len(sel)),
            "mean": float(fr.mean()) if len(sel) else float("nan"),
            "min": float(fr.min()) if len(sel) else float("nan"),
            "pooled": float(sum(p.agree for p in sel) / max(1, sum(p.visible for p in sel))) if sel else float("nan"),
            "seen_past": float(sum(p.seen_past for p in sel) / max(1, sum(p.seen_past + p.visible for p in sel)))
            if sel else float("nan"),
        }
    return out
