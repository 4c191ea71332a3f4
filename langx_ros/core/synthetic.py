"""Synthetic scenes with known geometry and labels: for tests, benchmarks and the demo.

A floor (a textured square) with a few labelled objects (axis-aligned boxes and spheres) is
ray-cast exactly from cameras on a circle around it. Every view comes with its true depth,
world normals and per-pixel instance ids (0 = floor, -1 = nothing hit), so lifting and querying
can be scored against the truth.

The **oracle-feature protocol** gives every instance a fixed unit vector standing for its
label's language embedding; :class:`OracleTextEncoder` maps the label text to the same vector.
It measures lifting, compression and querying, not CLIP, and every result built on it must say
so (``ORACLE_PROVENANCE``).
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import numpy as np

from langx_ros.core.frames import Frame, pixel_rays

ORACLE_PROVENANCE = "oracle-feature protocol (instance labels as features; not CLIP)"


@dataclass(frozen=True)
class SceneObject:
    """A labelled primitive: 'box' (center, half-extents) or 'sphere' (center, radius in size[0])."""

    label: str
    kind: str
    center: tuple[float, float, float]
    size: tuple[float, float, float]
    color: tuple[int, int, int]


@dataclass
class SyntheticScene:
    """Objects on a floor square of half-width ``floor_half``, and the views rendered of it."""

    objects: list[SceneObject]
    floor_half: float = 2.0
    floor_label: str = "floor"
    frames: list[Frame] = field(default_factory=list)
    normals: list[np.ndarray] = field(default_factory=list)  # (H, W, 3) world normals per frame
    instances: list[np.ndarray] = field(default_factory=list)  # (H, W) int: -1 none, 0 floor, k object k-1

    @property
    def labels(self) -> list[str]:
        """Instance labels by id: 0 is the floor, k >= 1 is objects[k-1]."""
        return [self.floor_label] + [o.label for o in self.objects]

    def surface_points(self, instance: int, spacing: float = 0.02) -> np.ndarray:
        """Points on the visible surface of an object (id >= 1) at about ``spacing`` metres."""
        o = self.objects[instance - 1]
        c = np.asarray(o.center)
        if o.kind == "sphere":
            n = max(64, int(4 * np.pi * o.size[0] ** 2 / spacing**2))
            g = np.random.default_rng(instance).normal(size=(n, 3))
            pts = c + o.size[0] * g / np.linalg.norm(g, axis=1, keepdims=True)
        else:
            h = np.asarray(o.size)
            faces = []
            for axis in range(3):
                a, b = [i for i in range(3) if i != axis]
                ua = np.arange(-h[a], h[a] + 1e-9, spacing)
                ub = np.arange(-h[b], h[b] + 1e-9, spacing)
                A, B = np.meshgrid(ua, ub)
                for sign in (-1, 1):
                    f = np.zeros((A.size, 3))
                    f[:, a], f[:, b], f[:, axis] = A.ravel(), B.ravel(), sign * h[axis]
                    faces.append(f)
            pts = c + np.concatenate(faces)
        return pts[pts[:, 2] > 1e-3]  # the face on the floor is never seen


def default_objects() -> list[SceneObject]:
    """Four distinct objects on the floor."""
    return [
        SceneObject("sofa", "box", (-0.8, 0.6, 0.3), (0.7, 0.3, 0.3), (90, 60, 40)),
        SceneObject("coffee table", "box", (0.6, 0.5, 0.2), (0.35, 0.35, 0.2), (200, 170, 120)),
        SceneObject("printer", "box", (0.5, -0.7, 0.15), (0.25, 0.2, 0.15), (230, 230, 235)),
        SceneObject("beach ball", "sphere", (-0.6, -0.6, 0.3), (0.3, 0.3, 0.3), (220, 60, 50)),
    ]


def look_at(eye: np.ndarray, target: np.ndarray, up: np.ndarray = np.array([0.0, 0.0, 1.0])) -> np.ndarray:
    """4x4 camera-to-world pose (OpenCV axes) at ``eye`` looking at ``target``."""
    f = target - eye
    f = f / np.linalg.norm(f)
    r = np.cross(f, up)
    r = r / np.linalg.norm(r)
    d = np.cross(f, r)
    T = np.eye(4)
    T[:3, 0], T[:3, 1], T[:3, 2], T[:3, 3] = r, d, f, eye
    return T


def orbit_poses(n: int, radius: float = 3.2, height: float = 1.8, start_deg: float = 0.0, span_deg: float = 360.0) -> list[np.ndarray]:
    """``n`` poses on a circle around the origin, looking at it."""
    span = span_deg if span_deg < 360 else 360.0 * (n - 1) / n if n > 1 else 0.0
    angles = np.deg2rad(start_deg + np.linspace(0.0, span, n))
    return [look_at(np.array([radius * np.cos(a), radius * np.sin(a), height]), np.array([0.0, 0.0, 0.2])) for a in angles]


def intrinsics(width: int, height: int, fov_deg: float = 60.0) -> np.ndarray:
    f = 0.5 * width / np.tan(np.deg2rad(fov_deg) / 2)
    return np.array([[f, 0, width / 2], [0, f, height / 2], [0, 0, 1.0]])


def _hit_box(o: np.ndarray, d: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    with np.errstate(divide="ignore", invalid="ignore"):
        t1 = (lo - o) / d
        t2 = (hi - o) / d
    tmin = np.minimum(t1, t2)
    tmax = np.maximum(t1, t2)
    t_near = np.nanmax(tmin, axis=-1)
    t_far = np.nanmin(tmax, axis=-1)
    hit = (t_near <= t_far) & (t_near > 1e-6)
    axis = np.nanargmax(tmin, axis=-1)
    n = np.zeros_like(d)
    idx = np.arange(d.shape[0])
    n[idx, axis] = -np.sign(d[idx, axis])
    return np.where(hit, t_near, np.inf), n


def _hit_sphere(o: np.ndarray, d: np.ndarray, c: np.ndarray, r: float) -> tuple[np.ndarray, np.ndarray]:
    oc = o - c
    a = np.sum(d * d, -1)
    b = 2 * np.sum(oc * d, -1)
    cc = np.sum(oc * oc, -1) - r * r
    disc = b * b - 4 * a * cc
    with np.errstate(invalid="ignore"):
        t = (-b - np.sqrt(disc)) / (2 * a)
    t = np.where((disc >= 0) & (t > 1e-6), t, np.inf)
    p = o + np.where(np.isfinite(t), t, 0)[:, None] * d
    return t, (p - c) / r


def render_view(scene: SyntheticScene, pose: np.ndarray, K: np.ndarray, width: int, height: int, frame_id: str) -> tuple[Frame, np.ndarray, np.ndarray]:
    """Ray-cast one view: (Frame with rgb/depth/pose, world normals (H,W,3), instance ids (H,W))."""
    rays_c = pixel_rays(K, width, height).reshape(-1, 3)
    d = rays_c @ pose[:3, :3].T  # world directions; t along d is camera depth (z)
    o = np.broadcast_to(pose[:3, 3], d.shape)
    best_t = np.full(d.shape[0], np.inf)
    normal = np.zeros_like(d)
    inst = np.full(d.shape[0], -1, np.int64)
    # floor z = 0 inside the square
    with np.errstate(divide="ignore", invalid="ignore"):
        tf = -o[:, 2] / d[:, 2]
    pf = o + np.where(np.isfinite(tf), tf, 0)[:, None] * d
    on_floor = (tf > 1e-6) & (np.abs(pf[:, 0]) <= scene.floor_half) & (np.abs(pf[:, 1]) <= scene.floor_half)
    best_t = np.where(on_floor, tf, best_t)
    normal[on_floor] = [0, 0, 1]
    inst[on_floor] = 0
    for k, obj in enumerate(scene.objects, start=1):
        c = np.asarray(obj.center)
        if obj.kind == "sphere":
            t, n = _hit_sphere(o, d, c, obj.size[0])
        else:
            h = np.asarray(obj.size)
            t, n = _hit_box(o, d, c - h, c + h)
        closer = t < best_t
        best_t = np.where(closer, t, best_t)
        normal[closer] = n[closer]
        inst[closer] = k
    hit = np.isfinite(best_t)
    p = o + np.where(hit, best_t, 0)[:, None] * d
    # colours: object base colour or a floor checkerboard, Lambertian shading + ambient
    base = np.zeros_like(d)
    checker = ((np.floor(p[:, 0] / 0.25) + np.floor(p[:, 1] / 0.25)) % 2)[:, None]
    base[inst == 0] = (np.array([150.0, 150, 140]) + 50 * checker[inst == 0]) / 255.0
    for k, obj in enumerate(scene.objects, start=1):
        stripes = 0.85 + 0.15 * np.cos(p[inst == k, 2] * 40.0)[:, None]  # texture for photometric cues
        base[inst == k] = np.asarray(obj.color) / 255.0 * stripes
    light = np.array([0.4, 0.3, 0.85])
    light /= np.linalg.norm(light)
    shade = 0.45 + 0.55 * np.clip(normal @ light, 0, 1)
    rgb = np.clip(base * shade[:, None], 0, 1)
    rgb[~hit] = 0
    depth = np.where(hit, best_t, np.nan).astype(np.float32)
    normal[~hit] = np.nan
    frame = Frame(frame_id, (rgb * 255 + 0.5).astype(np.uint8).reshape(height, width, 3), K, pose,
                  depth.reshape(height, width), instances=inst.reshape(height, width))
    return frame, normal.reshape(height, width, 3).astype(np.float32), inst.reshape(height, width)


def make_scene(n_views: int = 4, width: int = 64, height: int = 48, objects: list[SceneObject] | None = None,
               start_deg: float = 20.0, span_deg: float = 360.0, radius: float = 3.2, height_m: float = 1.8) -> SyntheticScene:
    """A scene and ``n_views`` rendered views on an orbit."""
    scene = SyntheticScene(objects if objects is not None else default_objects())
    K = intrinsics(width, height)
    for i, pose in enumerate(orbit_poses(n_views, radius, height_m, start_deg, span_deg)):
        f, n, ins = render_view(scene, pose, K, width, height, f"view-{i:03d}")
        scene.frames.append(f)
        scene.normals.append(n)
        scene.instances.append(ins)
    return scene


def _unit_vector(key: str, dim: int) -> np.ndarray:
    seed = int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "little")
    v = np.random.default_rng(seed).normal(size=dim)
    return (v / np.linalg.norm(v)).astype(np.float32)


class OracleTextEncoder:
    """Text -> the oracle vector of a scene label (exact match, case-insensitive), else a
    deterministic vector of its own. Part of the oracle-feature protocol: not a language model."""

    provenance = ORACLE_PROVENANCE

    def __init__(self, labels: list[str], dim: int = 512):
        self.dim = dim
        self.labels = list(labels)
        self.vectors = {lab.lower(): _unit_vector("label:" + lab.lower(), dim) for lab in labels}

    def encode(self, texts: list[str]) -> np.ndarray:
        """(len(texts), dim) unit vectors."""
        return np.stack([self.vectors.get(t.strip().lower(), _unit_vector("text:" + t.strip().lower(), self.dim)) for t in texts])


class OracleSemantics:
    """SemanticSource of the oracle-feature protocol: one level whose segments are the true
    instances of each frame, each carrying its label's vector (from any text encoder: the
    synthetic OracleTextEncoder, or a real text model so that free text resolves)."""

    levels = ["instance"]

    def __init__(self, instances: dict[str, np.ndarray], label_features: np.ndarray, provenance: str = ORACLE_PROVENANCE):
        self._instances = instances
        self._features = np.asarray(label_features, dtype=np.float32)
        self.provenance = provenance

    @classmethod
    def from_scene(cls, scene: SyntheticScene, encoder) -> "OracleSemantics":
        return cls({f.frame_id: ins for f, ins in zip(scene.frames, scene.instances)}, encoder.encode(scene.labels))

    def segment_features(self, frame: Frame) -> list[tuple[np.ndarray, np.ndarray]]:
        ids = frame.instances if frame.instances is not None else self._instances.get(frame.frame_id)
        if ids is None:
            raise KeyError(f"oracle-feature protocol: frame {frame.frame_id} has no instance ids")
        ids = np.where(ids < len(self._features), ids, -1).astype(np.int64)  # ids without a label: no segment
        return [(ids, self._features)]
