"""Frames: posed RGB(-D) images, their validation, and loading a folder of them.

Conventions: ``K`` is the 3x3 pinhole matrix in pixels; ``pose`` is the 4x4 camera-to-world
transform with OpenCV camera axes (x right, y down, z forward), metres; ``depth`` is metric
depth along z in metres, float32, NaN where there is no reading.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np


class FrameError(ValueError):
    """A frame (image, intrinsics, pose or depth) is malformed."""


@dataclass
class Frame:
    """One posed camera frame."""

    frame_id: str
    rgb: np.ndarray  # (H, W, 3) uint8
    K: np.ndarray  # (3, 3) float64
    pose: np.ndarray | None = None  # (4, 4) float64 camera-to-world, or None when unknown
    depth: np.ndarray | None = None  # (H, W) float32 metres, NaN = invalid
    stamp: float = 0.0  # seconds
    instances: np.ndarray | None = None  # (H, W) int64 instance ids, -1 = none (known only for generated scenes)

    @property
    def height(self) -> int:
        return int(self.rgb.shape[0])

    @property
    def width(self) -> int:
        return int(self.rgb.shape[1])


def validate_intrinsics(K: np.ndarray, width: int, height: int) -> np.ndarray:
    """Check a pinhole matrix against an image size; returns it as float64.

    Raises:
        FrameError: non-finite entries, non-positive focal lengths, a principal point outside
            the image, a malformed last row or a non-positive image size.
    """
    K = np.asarray(K, dtype=np.float64)
    if K.shape != (3, 3):
        raise FrameError(f"intrinsics must be 3x3, got shape {K.shape}")
    if width <= 0 or height <= 0:
        raise FrameError(f"image size must be positive, got {width}x{height}")
    if not np.all(np.isfinite(K)):
        raise FrameError("intrinsics contain NaN or inf")
    fx, fy, cx, cy = K[0, 0], K[1, 1], K[0, 2], K[1, 2]
    if fx <= 0 or fy <= 0:
        raise FrameError(f"focal lengths must be positive, got fx={fx:g}, fy={fy:g}")
    if not (0 <= cx <= width and 0 <= cy <= height):
        raise FrameError(f"principal point ({cx:g}, {cy:g}) lies outside the {width}x{height} image")
    if not np.allclose(K[2], [0.0, 0.0, 1.0]) or K[1, 0] != 0:
        raise FrameError(f"intrinsics last row must be [0, 0, 1] and K[1,0] zero, got {K.tolist()}")
    return K


def validate_pose(pose: np.ndarray, tol: float = 1e-3) -> np.ndarray:
    """Check a 4x4 rigid transform (rotation orthonormal with det +1); returns it as float64."""
    T = np.asarray(pose, dtype=np.float64)
    if T.shape != (4, 4):
        raise FrameError(f"pose must be 4x4, got shape {T.shape}")
    if not np.all(np.isfinite(T)):
        raise FrameError("pose contains NaN or inf")
    if not np.allclose(T[3], [0.0, 0.0, 0.0, 1.0], atol=tol):
        raise FrameError(f"pose last row must be [0, 0, 0, 1], got {T[3].tolist()}")
    R = T[:3, :3]
    err = np.abs(R.T @ R - np.eye(3)).max()
    if err > tol or np.linalg.det(R) <= 0:
        raise FrameError(
            f"pose rotation is not a rotation (|R^T R - I| = {err:.2g}, det = {np.linalg.det(R):.3g})"
        )
    return T


def validate_frame(frame: Frame) -> Frame:
    """Check every part of a frame; returns the frame with canonical dtypes.

    Raises:
        FrameError: naming the first problem found.
    """
    rgb = np.asarray(frame.rgb)
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise FrameError(f"frame {frame.frame_id}: rgb must be (H, W, 3) uint8, got {rgb.shape} {rgb.dtype}")
    h, w = rgb.shape[:2]
    K = validate_intrinsics(frame.K, w, h)
    pose = None if frame.pose is None else validate_pose(frame.pose)
    depth = None
    if frame.depth is not None:
        depth = np.asarray(frame.depth)
        if depth.shape != (h, w):
            raise FrameError(f"frame {frame.frame_id}: depth shape {depth.shape} != image shape {(h, w)}")
        if not np.issubdtype(depth.dtype, np.floating):
            raise FrameError(f"frame {frame.frame_id}: depth must be float metres, got {depth.dtype}")
        depth = depth.astype(np.float32, copy=True)
        depth[~np.isfinite(depth) | (depth <= 0)] = np.nan
    instances = None
    if frame.instances is not None:
        instances = np.asarray(frame.instances)
        if instances.shape != (h, w) or not np.issubdtype(instances.dtype, np.integer):
            raise FrameError(f"frame {frame.frame_id}: instance ids must be an (H, W) integer map, got {instances.shape} {instances.dtype}")
        instances = instances.astype(np.int64)
    return Frame(frame.frame_id, rgb, K, pose, depth, float(frame.stamp), instances)


# --------------------------------------------------------------------------------------------
# A folder of posed RGB-D frames (3DMatch / nvblox test-data layout):
#   frame-XXXXXX.color.png   8-bit RGB
#   frame-XXXXXX.depth.png   16-bit depth, millimetres, 0 = no reading
#   frame-XXXXXX.pose.txt    4x4 camera-to-world, metres
#   camera-intrinsics.txt    3x3 K
# --------------------------------------------------------------------------------------------

_COLOR_RE = re.compile(r"^(?P<id>.+)\.color\.(png|jpg|jpeg)$")


def list_rgbd_folder(folder: str | Path) -> list[str]:
    """Frame ids (e.g. 'frame-000000') of a posed RGB-D folder, sorted."""
    folder = Path(folder)
    ids = [m.group("id") for p in folder.iterdir() if (m := _COLOR_RE.match(p.name))]
    return sorted(ids)


def load_rgbd_frame(folder: str | Path, frame_id: str, depth_scale: float = 1000.0) -> Frame:
    """Load one frame of a posed RGB-D folder (see above); depth units/``depth_scale`` = metres."""
    import cv2  # local: only this loader needs OpenCV

    folder = Path(folder)
    K = np.loadtxt(folder / "camera-intrinsics.txt", dtype=np.float64).reshape(3, 3)
    color_path = next((folder / f"{frame_id}.color.{ext}" for ext in ("png", "jpg", "jpeg")
                       if (folder / f"{frame_id}.color.{ext}").exists()), None)
    if color_path is None:
        raise FrameError(f"{folder}: no colour image for frame {frame_id}")
    bgr = cv2.imread(str(color_path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise FrameError(f"cannot decode {color_path}")
    rgb = np.ascontiguousarray(bgr[:, :, ::-1])
    pose_path = folder / f"{frame_id}.pose.txt"
    pose = np.loadtxt(pose_path, dtype=np.float64).reshape(4, 4) if pose_path.exists() else None
    depth = None
    depth_path = folder / f"{frame_id}.depth.png"
    if depth_path.exists():
        raw = cv2.imread(str(depth_path), cv2.IMREAD_UNCHANGED)
        if raw is None or raw.dtype != np.uint16:
            raise FrameError(f"{depth_path}: expected a 16-bit depth PNG")
        depth = raw.astype(np.float32) / np.float32(depth_scale)
        depth[raw == np.iinfo(np.uint16).max] = np.nan  # 65535: the sensor's "out of range" (7-Scenes has them)
    return validate_frame(Frame(frame_id, rgb, K, pose, depth))


def depth_to_mm(depth: np.ndarray, max_mm: int = 65535) -> np.ndarray:
    """(H, W) metres (NaN = no reading) -> uint16 millimetres, 0 = no reading, clipped to ``max_mm``
    (65534 where 65535 is read back as "no reading", as :func:`load_rgbd_frame` does)."""
    return np.where(np.isfinite(depth), np.clip(np.round(depth * 1000.0), 0, max_mm), 0).astype(np.uint16)


def save_rgbd_folder(frames: list[Frame], folder: str | Path) -> Path:
    """Write posed frames (one camera: the first frame's K) as a posed RGB-D folder that
    :func:`load_rgbd_frame` reads back: frame-NNNNNN.color.png / .depth.png (mm) / .pose.txt."""
    import cv2

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    np.savetxt(folder / "camera-intrinsics.txt", frames[0].K)
    for i, f in enumerate(frames):
        stem = folder / f"frame-{i:06d}"
        cv2.imwrite(f"{stem}.color.png", f.rgb[:, :, ::-1])
        if f.depth is not None:
            cv2.imwrite(f"{stem}.depth.png", depth_to_mm(f.depth, 65534))
        if f.pose is not None:
            np.savetxt(f"{stem}.pose.txt", f.pose)
    return folder


# --------------------------------------------------------------------------------------------
# Geometry
# --------------------------------------------------------------------------------------------


def rays_at(K: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """(..., 3) camera-frame rays through the centres of pixels (rows, cols), z = 1."""
    v = np.asarray(rows, dtype=np.float64) + 0.5
    y = (v - K[1, 2]) / K[1, 1]
    x = (np.asarray(cols, dtype=np.float64) + 0.5 - K[0, 2] - K[0, 1] * y) / K[0, 0]
    return np.stack([x, y, np.ones_like(x)], axis=-1)


def pixel_rays(K: np.ndarray, width: int, height: int) -> np.ndarray:
    """(H, W, 3) camera-frame rays through pixel centres with z = 1 (so depth * ray = point)."""
    cols, rows = np.meshgrid(np.arange(width), np.arange(height))
    return rays_at(K, rows, cols)


def backproject(frame: Frame, stride: int = 1) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """World points of the valid depth pixels of ``frame``.

    Args:
        frame: a frame with depth and pose.
        stride: take every ``stride``-th pixel in x and y.

    Returns:
        (points (M, 3) float64 world metres, colors (M, 3) uint8, pixel indices (M, 2) as (row, col)).
    """
    if frame.depth is None or frame.pose is None:
        raise FrameError(f"frame {frame.frame_id}: back-projection needs depth and pose")
    rays = pixel_rays(frame.K, frame.width, frame.height)[::stride, ::stride]
    depth = frame.depth[::stride, ::stride]
    valid = np.isfinite(depth)
    rows, cols = np.nonzero(valid)
    pts_cam = rays[rows, cols] * depth[rows, cols, None]
    R, t = frame.pose[:3, :3], frame.pose[:3, 3]
    pts = pts_cam @ R.T + t
    colors = frame.rgb[::stride, ::stride][rows, cols]
    return pts, colors, np.stack([rows * stride, cols * stride], axis=1)


def normals_from_depth(depth: np.ndarray, K: np.ndarray, pose: np.ndarray | None = None) -> np.ndarray:
    """Surface normals from a depth map by central differences of back-projected points.

    Args:
        depth: (H, W) metres, NaN invalid.
        K: intrinsics.
        pose: camera-to-world; when given, normals are rotated into the world frame.

    Returns:
        (H, W, 3) float32 unit normals facing the camera (NaN where a neighbour is invalid).
    """
    h, w = depth.shape
    P = pixel_rays(K, w, h) * depth[..., None]
    dx = np.full_like(P, np.nan)
    dy = np.full_like(P, np.nan)
    dx[:, 1:-1] = P[:, 2:] - P[:, :-2]
    dy[1:-1, :] = P[2:, :] - P[:-2, :]
    n = np.cross(dx, dy)
    norm = np.linalg.norm(n, axis=-1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        n = n / norm
    # Face the camera: the normal points against the viewing ray.
    flip = np.sum(n * P, axis=-1) > 0
    n[flip] *= -1
    if pose is not None:
        n = n @ np.asarray(pose)[:3, :3].T
    n[~np.isfinite(n).all(axis=-1)] = np.nan
    return n.astype(np.float32)


def resize_frame(frame: Frame, width: int, height: int) -> Frame:
    """The frame at another resolution: colour by area averaging, depth by nearest neighbour
    (no mixing of foreground and background depths), intrinsics scaled to match."""
    import cv2

    sx, sy = width / frame.width, height / frame.height
    K = frame.K.copy()
    K[0, :] *= sx
    K[1, :] *= sy
    K[2] = [0.0, 0.0, 1.0]
    rgb = cv2.resize(frame.rgb, (width, height), interpolation=cv2.INTER_AREA)
    depth = None
    if frame.depth is not None:
        depth = cv2.resize(frame.depth, (width, height), interpolation=cv2.INTER_NEAREST)
    instances = None
    if frame.instances is not None:
        instances = cv2.resize(frame.instances.astype(np.int32), (width, height), interpolation=cv2.INTER_NEAREST).astype(np.int64)
    return Frame(frame.frame_id, rgb, K, frame.pose, depth, frame.stamp, instances)
