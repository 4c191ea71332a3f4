"""sensor_msgs <-> numpy conversions, with the checks a robot's inputs need.

No cv_bridge: the ROS 2 one is not installable here and the PyPI ``cv-bridge`` (a ROS 1 port)
misreads 16UC1 depth. These few lines of numpy handle the encodings langx_ros accepts, padded
rows (``step`` > width * pixel size) and big-endian data, and reject everything else with a
message that says what is wrong.
"""
from __future__ import annotations

import sys

import numpy as np
from sensor_msgs.msg import CameraInfo, Image
from std_msgs.msg import Header

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
