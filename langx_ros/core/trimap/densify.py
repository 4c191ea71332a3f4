"""Densifying sparse key frames with TriMap: generated in-between views for the field.

For each consecutive pair of key frames ONE batch is generated: the RGB video, the normal video
and one semantic video per chosen segmentation level. Key-frame conditions:
- RGB: the key frames themselves;
- normals: from the key frame's depth; without depth from the pluggable ``normal_estimator``
  (none is wired in by default: such a frame gets a neutral grey condition, said in the notes);
- semantics: the key frames' masks at that level, colour-coded in one id space for the pair
  (segments matched across the two frames in 3D, see segment_match.py).
Key frames are resized to the model's size (cfg.width x cfg.height, aspect not kept: the 5B
image-to-video model has learned position embeddings for 720x480 only) and generated frames back
to the key frames' size, so they share the key frames' intrinsics.
Generated frames get poses interpolated between the pair's known poses (kept fixed: a robot's
poses are trusted; no pose refinement runs), no depth, normals decoded to unit vectors and masks
decoded to ids by nearest palette colour (pixels far from every colour get none).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from langx_ros.core.field.train import Cancelled
from langx_ros.core.frames import Frame, normals_from_depth
from langx_ros.core.trimap.interpolate import KeyframeInterpolator, TriMapConfig
from langx_ros.core.trimap.modalities import ids_to_rgb, normals_to_rgb, palette, rgb_to_ids, rgb_to_normals
from langx_ros.core.trimap.poses import interpolate_poses
from langx_ros.core.trimap.segment_match import shared_ids

NormalEstimator = Callable[[Frame], np.ndarray]  # frame -> (H, W, 3) world unit normals (NaN = none)


@dataclass
class GeneratedView:
    frame: Frame  # generated RGB at the key frame's resolution, interpolated pose, no depth
    normals: np.ndarray  # (H, W, 3) world normals decoded from the generated normal video
    segments: list[np.ndarray] = field(default_factory=list)  # per generated level: (H, W) ids, -1 = none


@dataclass
class Densified:
    views: list[GeneratedView]
    notes: list[str]


def _resize(t: torch.Tensor, width: int, height: int, mode: str) -> torch.Tensor:
    """(C, h, w) -> (C, height, width) float; "nearest" keeps ids and palette colours unblended."""
    extra = {"align_corners": False} if mode == "bilinear" else {}
    return F.interpolate(t[None].float(), size=(height, width), mode=mode, **extra)[0]


def _to_model(img: np.ndarray, width: int, height: int, mode: str = "bilinear") -> torch.Tensor:
    return _resize(torch.as_tensor(img, dtype=torch.float32).permute(2, 0, 1), width, height, mode)


def _from_model(t: torch.Tensor, width: int, height: int, mode: str) -> np.ndarray:
    return _resize(t, width, height, mode).permute(1, 2, 0).cpu().numpy()


def densify(frames: Sequence[Frame], interp: KeyframeInterpolator, cfg: TriMapConfig,
            key_segments: Sequence[Sequence[np.ndarray]] | None = None,
            progress: Callable[[float, str], None] | None = None,
            normal_estimator: NormalEstimator | None = None, cancel: Callable[[], bool] | None = None) -> Densified:
    """Generated views between consecutive key frames (which must carry poses).

    ``key_segments[i][j]``: the (H, W) mask ids (-1 = none) of frame i at the j-th generated
    level; None = no semantic videos. ``cancel`` is checked after every denoising step (raises
    Cancelled); ``progress`` hears of every step.
    """
    n_levels = 0 if key_segments is None else len(key_segments[0])
    colors = palette(cfg.semantic_colors) if n_levels else None
    out: list[GeneratedView] = []
    notes: list[str] = []
    pairs = list(zip(frames[:-1], frames[1:]))
    device = interp.execution_device
    grey = [f.frame_id for f in frames if f.depth is None and normal_estimator is None]
    if grey:
        notes.append(f"no depth and no normal estimator for {', '.join(grey)}: neutral grey normal condition")

    def normal_condition(f: Frame) -> np.ndarray:
        if f.depth is not None:
            return normals_to_rgb(normals_from_depth(f.depth, f.K, f.pose))
        if normal_estimator is not None:
            return normals_to_rgb(normal_estimator(f))
        return np.full(f.rgb.shape, 0.5, np.float32)

    matched = []
    for k, (a, b) in enumerate(pairs):
        firsts = [_to_model(a.rgb.astype(np.float32) / 255.0, cfg.width, cfg.height),
                  _to_model(normal_condition(a), cfg.width, cfg.height)]
        lasts = [_to_model(b.rgb.astype(np.float32) / 255.0, cfg.width, cfg.height),
                 _to_model(normal_condition(b), cfg.width, cfg.height)]
        for j in range(n_levels):
            ids = shared_ids(key_segments[k][j], key_segments[k + 1][j], a, b, cfg.semantic_colors)
            matched.append(f"{ids.matched}/{ids.count}")
            firsts.append(_to_model(ids_to_rgb(ids.first, colors), cfg.width, cfg.height, "nearest"))
            lasts.append(_to_model(ids_to_rgb(ids.second, colors), cfg.width, cfg.height, "nearest"))
        items = len(firsts)

        def on_step(done: int, steps: int, k: int = k, a: Frame = a, b: Frame = b) -> None:
            if cancel is not None and cancel():
                raise Cancelled(f"cancelled while generating pair {k + 1}/{len(pairs)} (step {done}/{steps})")
            if progress is not None:
                progress((k + done / steps) / len(pairs), f"pair {k + 1}/{len(pairs)} ({a.frame_id} -> {b.frame_id}): step {done}/{steps}")

        video = interp(torch.stack(firsts).to(device), torch.stack(lasts).to(device), cfg.num_frames, cfg.steps, cfg.guidance,
                       seed=cfg.seed + items * k, pin_keyframes=cfg.pin_keyframes, guidance_fraction=cfg.guidance_fraction,
                       on_step=on_step)
        poses = interpolate_poses(a.pose, b.pose, cfg.num_frames)
        for i in range(1, cfg.num_frames - 1):
            rgb = (np.clip(_from_model(video[0, i], a.width, a.height, "bilinear"), 0, 1) * 255 + 0.5).astype(np.uint8)
            nrm = rgb_to_normals(_from_model(video[1, i], a.width, a.height, "bilinear"))
            # ids at the model's resolution (on its device), then nearest-resized: ids never blend
            segs = [_from_model(rgb_to_ids(video[2 + j, i].permute(1, 2, 0), colors, cfg.semantic_color_tolerance)[None],
                                a.width, a.height, "nearest")[..., 0].astype(np.int64) for j in range(n_levels)]
            f = Frame(f"gen-{a.frame_id}-{b.frame_id}-{i:02d}", rgb, a.K.copy(), poses[i], None, a.stamp)
            out.append(GeneratedView(f, nrm.astype(np.float32), segs))
    if n_levels:
        notes.append(f"semantic videos at {n_levels} level(s); segments of the second key frame matched to the first "
                     f"(matched/ids per pair and level): {', '.join(matched)}")
    return Densified(out, notes)
