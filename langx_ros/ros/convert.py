"""sensor_msgs <-> numpy conversions, with the checks a robot's inputs need.

No cv_bridge: the ROS 2 one is not installable here and the PyPI ``cv-bridge`` (a ROS 1 port)
misreads 16UC1 depth. These few lines of numpy handle the encodings langx_ros accepts, padded
rows (``step`` > width * pixel size) and big-endian data, and reject everything else with a
message that says what is wrong.
"""
from __future__ import annotations

import sys

import numpy as np
from builtin_interfaces.msg import Time
from sensor_msgs.msg import CameraInfo, Image
from std_msgs.msg import Header

from langx_ros.core.boxes import OrientedBox
from langx_ros.core.frames import FrameError, validate_intrinsics


class ImageError(ValueError):
    """An Image message cannot be used (encoding, size, step or data length)."""


# encoding -> (dtype, channels)
_ENCODINGS: dict[str, tuple[np.dtype, int]] = {
    "rgb8": (np.dtype(np.uint8), 3),
    "bgr8": (np.dtype(np.uint8), 3),
    "rgba8": (np.dtype(np.uint8), 4),
    "bgra8": (np.dtype(np.uint8), 4),
    "mono8": (np.dtype(np.uint8), 1),
    "8UC1": (np.dtype(np.uint8), 1),
    "mono16": (np.dtype(np.uint16), 1),
    "16UC1": (np.dtype(np.uint16), 1),
    "32FC1": (np.dtype(np.float32), 1),
}
COLOR_ENCODINGS = ("rgb8", "bgr8", "rgba8", "bgra8", "mono8")
DEPTH_ENCODINGS = ("16UC1", "mono16", "32FC1")


def stamp_seconds(stamp) -> float:
    """builtin_interfaces/Time -> seconds (the one conversion used wherever stamps are compared)."""
    return float(stamp.sec) + 1e-9 * float(stamp.nanosec)


def stamp_from_seconds(seconds: float) -> Time:
    """Seconds -> builtin_interfaces/Time, to the nearest nanosecond (the inverse of stamp_seconds)."""
    sec, nanosec = divmod(int(round(seconds * 1e9)), 1_000_000_000)
    return Time(sec=sec, nanosec=nanosec)


def image_to_numpy(msg: Image, max_pixels: int = 0) -> np.ndarray:
    """The pixels of ``msg`` as an (H, W) or (H, W, C) array in native byte order (a copy).

    Raises:
        ImageError: unsupported encoding, zero or oversized image, step too small, or a data
            length that does not match ``step * height``.
    """
    enc = msg.encoding
    if enc not in _ENCODINGS:
        raise ImageError(f"unsupported encoding '{enc}' (accepted: {', '.join(_ENCODINGS)})")
    dtype, channels = _ENCODINGS[enc]
    h, w, step = int(msg.height), int(msg.width), int(msg.step)
    if h <= 0 or w <= 0:
        raise ImageError(f"empty image ({w}x{h})")
    if max_pixels and h * w > max_pixels:
        raise ImageError(f"image {w}x{h} has more than max_image_pixels = {max_pixels} pixels")
    row = w * channels * dtype.itemsize
    if step < row:
        raise ImageError(f"step {step} is smaller than width * pixel size = {row} for {enc} {w}x{h}")
    n = len(msg.data)
    if n != step * h:
        raise ImageError(f"data has {n} bytes but step * height = {step} * {h} = {step * h}")
    buf = np.frombuffer(msg.data, dtype=np.uint8)  # rclpy stores uint8[] as array.array('B')
    rows = buf.reshape(h, step)[:, :row]
    big = bool(msg.is_bigendian)
    arr_dtype = dtype.newbyteorder(">" if big else "<") if dtype.itemsize > 1 else dtype
    arr = np.ascontiguousarray(rows).view(arr_dtype).reshape(h, w, channels)
    arr = arr.astype(dtype, copy=True)  # native order, own memory
    return arr[:, :, 0] if channels == 1 else arr


def rgb_from_image(msg: Image, max_pixels: int = 0) -> np.ndarray:
    """A colour Image as (H, W, 3) uint8 RGB (bgr swapped, alpha dropped, mono replicated)."""
    if msg.encoding not in COLOR_ENCODINGS:
        raise ImageError(f"colour image has encoding '{msg.encoding}' (accepted: {', '.join(COLOR_ENCODINGS)})")
    a = image_to_numpy(msg, max_pixels)
    if msg.encoding == "mono8":
        return np.repeat(a[:, :, None], 3, axis=2)
    if msg.encoding.startswith("bgr"):
        a = a[:, :, 2::-1]
    return np.ascontiguousarray(a[:, :, :3])


def depth_from_image(msg: Image, max_pixels: int = 0) -> np.ndarray:
    """A depth Image as (H, W) float32 metres; NaN where invalid (0, negative, NaN, inf).

    16UC1/mono16 are millimetres (REP 118); 32FC1 is metres.
    """
    if msg.encoding not in DEPTH_ENCODINGS:
        raise ImageError(f"depth image has encoding '{msg.encoding}' (accepted: {', '.join(DEPTH_ENCODINGS)})")
    a = image_to_numpy(msg, max_pixels)
    d = a.astype(np.float32) * np.float32(0.001) if a.dtype == np.uint16 else a.astype(np.float32)
    d[~np.isfinite(d) | (d <= 0)] = np.nan
    if a.dtype == np.uint16:
        d[a == np.iinfo(np.uint16).max] = np.nan  # 65535 mm: out-of-range sentinel of 16-bit depth cameras
    return d


def numpy_to_image(arr: np.ndarray, encoding: str, header: Header | None = None) -> Image:
    """An Image message from an array (dense rows, native byte order)."""
    if encoding not in _ENCODINGS:
        raise ImageError(f"unsupported encoding '{encoding}'")
    dtype, channels = _ENCODINGS[encoding]
    a = np.ascontiguousarray(arr, dtype=dtype)
    if (channels == 1 and a.ndim != 2) or (channels > 1 and (a.ndim != 3 or a.shape[2] != channels)):
        raise ImageError(f"array shape {a.shape} does not fit encoding {encoding}")
    msg = Image()
    if header is not None:
        msg.header = header
    msg.height, msg.width = int(a.shape[0]), int(a.shape[1])
    msg.encoding = encoding
    msg.is_bigendian = int(sys.byteorder == "big" and dtype.itemsize > 1)
    msg.step = int(a.shape[1] * channels * dtype.itemsize)
    msg.data = a.tobytes()
    return msg


def intrinsics_from_camera_info(msg: CameraInfo) -> np.ndarray:
    """The 3x3 K of a CameraInfo, checked against its image size.

    Raises:
        FrameError: zeros (an uncalibrated camera), NaN, principal point outside the image...
    """
    K = np.asarray(msg.k, dtype=np.float64).reshape(3, 3)
    try:
        return validate_intrinsics(K, int(msg.width), int(msg.height))
    except FrameError as exc:
        raise FrameError(f"camera_info: {exc}") from None


def camera_info_from_intrinsics(K: np.ndarray, width: int, height: int, header: Header | None = None) -> CameraInfo:
    """A CameraInfo for an undistorted pinhole camera."""
    msg = CameraInfo()
    if header is not None:
        msg.header = header
    msg.width, msg.height = int(width), int(height)
    msg.distortion_model = "plumb_bob"
    msg.d = [0.0] * 5
    msg.k = [float(v) for v in np.asarray(K, dtype=np.float64).reshape(9)]
    msg.r = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0]
    P = np.zeros((3, 4))
    P[:, :3] = np.asarray(K, dtype=np.float64)
    msg.p = [float(v) for v in P.reshape(12)]
    return msg


# --------------------------------------------------------------------------------------------
# Poses, point clouds, markers
# --------------------------------------------------------------------------------------------


def pose_to_matrix(pose) -> np.ndarray:
    """geometry_msgs/Pose -> 4x4 (rotation from the quaternion, which is normalised first).

    Raises:
        ValueError: a non-finite or zero quaternion / position.
    """
    q = np.array([pose.orientation.w, pose.orientation.x, pose.orientation.y, pose.orientation.z], dtype=np.float64)
    t = np.array([pose.position.x, pose.position.y, pose.position.z], dtype=np.float64)
    n = np.linalg.norm(q)
    if not (np.all(np.isfinite(q)) and np.all(np.isfinite(t))) or n < 1e-9:
        raise ValueError(f"pose is not a valid rigid transform (position {t.tolist()}, quaternion wxyz {q.tolist()})")
    if abs(n - 1.0) > 1e-3:
        raise ValueError(f"pose quaternion is not unit length (|q| = {n:.4f})")
    w, x, y, z = q / n
    T = np.eye(4)
    T[:3, :3] = [
        [1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
        [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
        [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)],
    ]
    T[:3, 3] = t
    return T


def matrix_to_pose(T: np.ndarray):
    """4x4 rigid transform -> geometry_msgs/Pose."""
    from geometry_msgs.msg import Pose

    R = np.asarray(T, dtype=np.float64)[:3, :3]
    tr = np.trace(R)
    if tr > 0:
        s = 2.0 * np.sqrt(tr + 1.0)
        w, x, y, z = 0.25 * s, (R[2, 1] - R[1, 2]) / s, (R[0, 2] - R[2, 0]) / s, (R[1, 0] - R[0, 1]) / s
    else:
        i = int(np.argmax(np.diag(R)))
        j, k = (i + 1) % 3, (i + 2) % 3
        s = 2.0 * np.sqrt(1.0 + R[i, i] - R[j, j] - R[k, k])
        q = np.zeros(3)
        q[i] = 0.25 * s
        q[j] = (R[j, i] + R[i, j]) / s
        q[k] = (R[k, i] + R[i, k]) / s
        w = (R[k, j] - R[j, k]) / s
        x, y, z = q
    p = Pose()
    p.position.x, p.position.y, p.position.z = (float(v) for v in np.asarray(T)[:3, 3])
    p.orientation.w, p.orientation.x, p.orientation.y, p.orientation.z = float(w), float(x), float(y), float(z)
    return p


CLOUD_FIELDS = ("x", "y", "z", "rgb", "relevancy")
NORMAL_FIELDS = ("normal_x", "normal_y", "normal_z")


def cloud_to_msg(points: np.ndarray, colors: np.ndarray, relevancy: np.ndarray | None, header: Header,
                 normals: np.ndarray | None = None):
    """sensor_msgs/PointCloud2 with float32 x, y, z, rgb (0x00RRGGBB packed in a float, the RViz
    convention) and relevancy, plus normal_x, normal_y, normal_z (PCL's names) when ``normals``
    (N, 3) are given; dense, unordered (height 1)."""
    from sensor_msgs.msg import PointCloud2, PointField

    n = len(points)
    names = CLOUD_FIELDS + (NORMAL_FIELDS if normals is not None else ())
    dtype = np.dtype([(f, "<f4") for f in names])
    arr = np.zeros(n, dtype=dtype)
    p = np.asarray(points, dtype=np.float32).reshape(-1, 3)
    arr["x"], arr["y"], arr["z"] = p[:, 0], p[:, 1], p[:, 2]
    c = np.asarray(colors, dtype=np.uint32).reshape(-1, 3)
    arr["rgb"] = ((c[:, 0] << 16) | (c[:, 1] << 8) | c[:, 2]).astype(np.uint32).view(np.float32)
    arr["relevancy"] = 0.0 if relevancy is None else np.asarray(relevancy, dtype=np.float32)
    if normals is not None:
        nm = np.asarray(normals, dtype=np.float32).reshape(-1, 3)
        arr["normal_x"], arr["normal_y"], arr["normal_z"] = nm[:, 0], nm[:, 1], nm[:, 2]
    msg = PointCloud2()
    msg.header = header
    msg.height, msg.width = 1, n
    msg.fields = [PointField(name=f, offset=4 * i, datatype=PointField.FLOAT32, count=1) for i, f in enumerate(names)]
    msg.is_bigendian = False
    msg.point_step = dtype.itemsize
    msg.row_step = dtype.itemsize * n
    msg.is_dense = True
    msg.data = arr.tobytes()
    return msg


def cloud_from_msg(msg) -> dict[str, np.ndarray]:
    """Read the float32 fields of a PointCloud2 (any layout of FLOAT32 fields); rgb unpacked to (N, 3) uint8."""
    from sensor_msgs.msg import PointField

    n = msg.width * msg.height
    raw = np.frombuffer(msg.data, dtype=np.uint8).reshape(n, msg.point_step)
    out: dict[str, np.ndarray] = {}
    for f in msg.fields:
        if f.datatype != PointField.FLOAT32:
            continue
        col = np.ascontiguousarray(raw[:, f.offset : f.offset + 4]).view(">f4" if msg.is_bigendian else "<f4").reshape(n)
        if f.name == "rgb":
            u = col.astype(np.float32).view(np.uint32)
            out["rgb"] = np.stack([(u >> 16) & 255, (u >> 8) & 255, u & 255], 1).astype(np.uint8)
        else:
            out[f.name] = col.astype(np.float32)
    return out


def match_markers(boxes: list[tuple[str, OrientedBox, float]], header: Header, ns: str = "langx"):
    """visualization_msgs/MarkerArray: DELETEALL first, then per match its oriented box and a text
    label above it.

    boxes: (label, oriented box (core/boxes.py), score) in the header's frame.
    """
    from visualization_msgs.msg import Marker, MarkerArray

    arr = MarkerArray()
    clear = Marker()
    clear.header = header
    clear.ns = ns
    clear.action = Marker.DELETEALL
    arr.markers.append(clear)
    palette = [(0.9, 0.2, 0.2), (0.2, 0.7, 0.9), (0.3, 0.9, 0.3), (0.95, 0.8, 0.2), (0.8, 0.4, 0.9)]
    for i, (label, obb, score) in enumerate(boxes):
        r, g, b = palette[i % len(palette)]
        center, top = obb.center, float(obb.corners()[:, 2].max())
        box = Marker()
        box.header, box.ns, box.id = header, ns, 2 * i
        box.type, box.action = Marker.CUBE, Marker.ADD
        box.pose.position.x, box.pose.position.y, box.pose.position.z = (float(v) for v in center)
        q = box.pose.orientation
        q.x, q.y, q.z, q.w = (float(v) for v in obb.quaternion_xyzw())
        box.scale.x, box.scale.y, box.scale.z = (max(float(v), 0.01) for v in obb.size)
        box.color.r, box.color.g, box.color.b, box.color.a = r, g, b, 0.35
        text = Marker()
        text.header, text.ns, text.id = header, ns, 2 * i + 1
        text.type, text.action = Marker.TEXT_VIEW_FACING, Marker.ADD
        text.pose.position.x, text.pose.position.y = float(center[0]), float(center[1])
        text.pose.position.z = top + 0.1
        text.pose.orientation.w = 1.0
        text.scale.z = 0.12
        text.color.r, text.color.g, text.color.b, text.color.a = 1.0, 1.0, 1.0, 1.0
        text.text = f"{label} ({score:.2f})"
        arr.markers += [box, text]
    return arr
