"""Keyframes: the capture policy and an on-disk store that survives restarts.

(In core rather than the ROS layer: both are plain Python, useful from a script, and testable
without ROS.) Each keyframe is a folder ``<root>/<id>/`` holding ``rgb.png``, ``depth.png``
(uint16 millimetres, 0 = none; optional) and ``meta.json`` (K, pose, stamp, source frame id), and for generated scenes
``instances.png`` (uint16 instance ids, 65535 = none),
written under a temporary name and renamed into place, so a crash never leaves half a keyframe.
"""
from __future__ import annotations

import json
import math
import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from langx_ros.core.atomic import atomic_write_bytes, atomic_write_json, fsync_dir, recover_dirs, remove_tree
from langx_ros.core.config_fields import param
from langx_ros.core.frames import Frame, FrameError, depth_to_mm, validate_frame

_ID_RE = re.compile(r"^kf-(\d{6})$")
NO_INSTANCE = 65535  # instances.png value for "no instance"


def _held_message(stamp: float, kid: str) -> str:
    return f"this image (stamp {stamp:.6f}) is keyframe {kid} already"


def held_keyframe(message: str, stamp: float) -> str | None:
    """The keyframe id named by a refusal (see KeyframeStore.add) of the image of ``stamp`` as
    stored already, or None: a client whose capture request was repeated learns that the first
    one stored its image."""
    m = re.search(re.escape(_held_message(stamp, "@")).replace("@", r"(kf-\d{6})"), message)
    return m.group(1) if m else None


@dataclass
class KeyframeConfig:
    """Keyframe capture and storage."""

    directory: str = param("~/.cache/langx_ros/keyframes", "Folder where keyframes are stored (reloaded at start).")
    auto_capture: bool = param(False, "Capture keyframes automatically (by the motion thresholds below).")
    min_translation: float = param(0.25, "Automatic capture: metres moved since the last keyframe.", min=0.0, max=100.0)
    min_rotation_deg: float = param(15.0, "Automatic capture: degrees turned since the last keyframe.", min=0.0, max=180.0)
    max_keyframes: int = param(32, "Most keyframes kept; capturing beyond drops the oldest.", min=2, max=10_000)


def rotation_angle_deg(R1: np.ndarray, R2: np.ndarray) -> float:
    """Angle of the relative rotation R1^T R2, degrees."""
    c = (np.trace(R1.T @ R2) - 1) / 2
    return math.degrees(math.acos(max(-1.0, min(1.0, c))))


def should_capture(last_pose: np.ndarray | None, pose: np.ndarray, cfg: KeyframeConfig) -> bool:
    """Automatic policy: the first pose, or enough translation or rotation since the last keyframe."""
    if last_pose is None:
        return True
    moved = float(np.linalg.norm(pose[:3, 3] - last_pose[:3, 3]))
    turned = rotation_angle_deg(last_pose[:3, :3], pose[:3, :3])
    return moved >= cfg.min_translation or turned >= cfg.min_rotation_deg


class KeyframeStore:
    """Keyframes on disk, mirrored in memory. Not thread-safe: the caller serialises access."""

    def __init__(self, root: str | Path, max_keyframes: int):
        self.root = Path(os.path.expanduser(str(root)))
        self.max_keyframes = max_keyframes
        self.root.mkdir(parents=True, exist_ok=True)
        self.frames: dict[str, Frame] = {}
        self._sources: dict[str, str] = {}  # keyframe id -> the camera frame id it came from
        self.skipped: list[str] = []  # folders that could not be read back (kept on disk, reported)
        self.recovered = recover_dirs(self.root)  # what interrupted writes and removals left (temporary folders)
        self._next = 0
        self._reload()

    def _reload(self) -> None:
        for d in sorted(self.root.iterdir()):
            m = _ID_RE.match(d.name)
            if not m or not d.is_dir():
                continue
            self._next = max(self._next, int(m.group(1)) + 1)
            try:
                self.frames[d.name], self._sources[d.name] = self._read(d)
            except (OSError, ValueError, KeyError, FrameError) as exc:
                self.skipped.append(f"{d.name}: {exc}")

    @staticmethod
    def _read(d: Path) -> tuple[Frame, str]:
        """(the keyframe, the camera frame id it came from)."""
        import cv2

        meta = json.loads((d / "meta.json").read_text())
        bgr = cv2.imread(str(d / "rgb.png"), cv2.IMREAD_COLOR)
        if bgr is None:
            raise ValueError("rgb.png unreadable")
        depth = None
        if (d / "depth.png").is_file():
            raw = cv2.imread(str(d / "depth.png"), cv2.IMREAD_UNCHANGED)
            if raw is None or raw.dtype != np.uint16:
                raise ValueError("depth.png is not 16-bit")
            depth = raw.astype(np.float32) / 1000.0
        instances = None
        if (d / "instances.png").is_file():
            raw = cv2.imread(str(d / "instances.png"), cv2.IMREAD_UNCHANGED)
            if raw is None or raw.dtype != np.uint16:
                raise ValueError("instances.png is not 16-bit")
            instances = raw.astype(np.int64)
            instances[raw == NO_INSTANCE] = -1
        pose = None if meta.get("pose") is None else np.asarray(meta["pose"], dtype=np.float64)
        frame = validate_frame(Frame(d.name, np.ascontiguousarray(bgr[:, :, ::-1]), np.asarray(meta["K"], dtype=np.float64),
                                     pose, depth, float(meta.get("stamp", 0.0)), instances))
        return frame, str(meta.get("source", ""))

    def ids(self) -> list[str]:
        return sorted(self.frames)

    def __len__(self) -> int:
        return len(self.frames)

    def holding(self, stamp: float, source: str) -> str | None:
        """The id of the keyframe stored from the image of ``stamp`` (> 0) and ``source``, if any."""
        if stamp <= 0:
            return None
        return next((k for k, old in self.frames.items() if old.stamp == stamp and self._sources.get(k) == source), None)

    def add(self, frame: Frame, source: str = "") -> str:
        """Store a validated copy of ``frame`` under a new id; returns the id.

        Raises FrameError when the frame is malformed, or when it is an image already stored
        (same stamp, stamp > 0, same source): a second copy would only duplicate the points."""
        import cv2

        f = validate_frame(frame)
        src = source or f.frame_id
        held = self.holding(f.stamp, src)
        if held is not None:
            raise FrameError(f"{_held_message(f.stamp, held)}; wait for a newer image")
        kid = f"kf-{self._next:06d}"
        self._next += 1
        tmp = Path(tempfile.mkdtemp(prefix=f".{kid}.", dir=self.root))
        try:
            ok, png = cv2.imencode(".png", f.rgb[:, :, ::-1])
            if not ok:
                raise OSError("PNG encoding failed")
            atomic_write_bytes(tmp / "rgb.png", png.tobytes())
            if f.depth is not None:
                mm = depth_to_mm(f.depth)
                ok, dpng = cv2.imencode(".png", mm)
                if not ok:
                    raise OSError("PNG encoding failed")
                atomic_write_bytes(tmp / "depth.png", dpng.tobytes())
            if f.instances is not None:
                ok, ipng = cv2.imencode(".png", np.where(f.instances < 0, NO_INSTANCE, np.clip(f.instances, 0, NO_INSTANCE - 1)).astype(np.uint16))
                if not ok:
                    raise OSError("PNG encoding failed")
                atomic_write_bytes(tmp / "instances.png", ipng.tobytes())
            atomic_write_json(tmp / "meta.json", {"K": f.K.tolist(), "pose": None if f.pose is None else f.pose.tolist(),
                                                  "stamp": f.stamp, "source": src})
            fsync_dir(tmp)
            os.rename(tmp, self.root / kid)  # a new name: it appears complete or not at all
            fsync_dir(self.root)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        self.frames[kid] = Frame(kid, f.rgb, f.K, f.pose, f.depth, f.stamp, f.instances)
        self._sources[kid] = src
        while len(self.frames) > self.max_keyframes:
            self.remove(self.ids()[0])
        return kid

    def remove(self, kid: str) -> None:
        self.frames.pop(kid, None)
        self._sources.pop(kid, None)
        remove_tree(self.root / kid)  # renamed away first: a crash never leaves half a keyframe under its id

    def clear(self) -> int:
        """Remove every keyframe; returns how many there were."""
        n = len(self.frames)
        for kid in list(self.frames):
            self.remove(kid)
        return n

    def last_pose(self) -> np.ndarray | None:
        ids = self.ids()
        return None if not ids else self.frames[ids[-1]].pose
