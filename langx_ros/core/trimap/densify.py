"""Densifying sparse key frames with TriMap: generated in-between views for the field.

For each consecutive pair of key frames, RGB and normal maps are generated in one batch; the
generated frames get poses interpolated between the pair's known poses (kept fixed: the robot's
poses are trusted and no pose refinement runs), no depth, and normals decoded to unit vectors.
They supervise colour and normals; semantic maps of generated frames are not used yet (the
field's semantics come from the key frames).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from langx_ros.core.frames import Frame, normals_from_depth
from langx_ros.core.trimap.interpolate import KeyframeInterpolator, TriMapConfig
from langx_ros.core.trimap.modalities import normals_to_rgb, rgb_to_normals
from langx_ros.core.trimap.poses import interpolate_poses


@dataclass
class GeneratedView:
    frame: Frame  # generated RGB at the key frame's resolution, interpolated pose, no depth
    normals: np.ndarray  # (H, W, 3) world normals decoded from the generated normal video


def _to_model(img: np.ndarray, width: int, height: int) -> torch.Tensor:
    t = torch.as_tensor(img, dtype=torch.float32).permute(2, 0, 1)[None]
    return F.interpolate(t, size=(height, width), mode="bilinear", align_corners=False)[0]


def _from_model(t: torch.Tensor, width: int, height: int, mode: str) -> np.ndarray:
    out = F.interpolate(t[None].float(), size=(height, width), mode=mode, **({"align_corners": False} if mode == "bilinear" else {}))
    return out[0].permute(1, 2, 0).cpu().numpy()


def densify(frames: Sequence[Frame], interp: KeyframeInterpolator, cfg: TriMapConfig,
            progress: Callable[[float, str], None] | None = None) -> list[GeneratedView]:
    """Generated views between consecutive key frames (which must carry poses)."""
    out: list[GeneratedView] = []
    pairs = list(zip(frames[:-1], frames[1:]))
    device = next(interp.transformer.parameters()).device
    for k, (a, b) in enumerate(pairs):
        rgbs = [f.rgb.astype(np.float32) / 255.0 for f in (a, b)]
        nrms = [normals_to_rgb(normals_from_depth(f.depth, f.K, f.pose)) if f.depth is not None
                else np.full(f.rgb.shape, 0.5, np.float32) for f in (a, b)]
        first = torch.stack([_to_model(rgbs[0], cfg.width, cfg.height), _to_model(nrms[0], cfg.width, cfg.height)]).to(device)
        last = torch.stack([_to_model(rgbs[1], cfg.width, cfg.height), _to_model(nrms[1], cfg.width, cfg.height)]).to(device)
        video = interp(first, last, cfg.num_frames, cfg.steps, cfg.guidance, seed=cfg.seed + 2 * k, pin_keyframes=cfg.pin_keyframes)
        poses = interpolate_poses(a.pose, b.pose, cfg.num_frames)
        for i in range(1, cfg.num_frames - 1):
            rgb = (np.clip(_from_model(video[0, i], a.width, a.height, "bilinear"), 0, 1) * 255 + 0.5).astype(np.uint8)
            nrm = rgb_to_normals(_from_model(video[1, i], a.width, a.height, "bilinear"))
            f = Frame(f"gen-{a.frame_id}-{b.frame_id}-{i:02d}", rgb, a.K.copy(), poses[i], None, a.stamp)
            out.append(GeneratedView(f, nrm.astype(np.float32)))
        if progress is not None:
            progress((k + 1) / len(pairs), f"pair {k + 1}/{len(pairs)}: {a.frame_id} -> {b.frame_id}")
    return out
