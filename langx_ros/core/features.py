"""Dense language features with open_clip, LangSplat style: one CLIP embedding per segment.

Each segment's bounding box is cropped with the pixels outside the segment zeroed, padded to a
square, resized to the model's input size and encoded in batches; embeddings are L2-normalised.
The text encoder of the same model embeds queries (with a small cache).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from langx_ros.core.config_fields import param
from langx_ros.core.text_cache import TextCache
from langx_ros.core.segment import map_ids


@dataclass
class FeatureConfig:
    """Language features."""

    batch_size: int = param(64, "Segment crops per CLIP forward pass.", min=1, max=4096)
    max_segments: int = param(300, "Most segments encoded per frame and level (largest first).", min=1, max=100_000)
    text_cache: int = param(1024, "Text embeddings kept in memory.", min=0, max=1_000_000)


class _NotThisWarning(logging.Filter):
    def __init__(self, text: str):
        super().__init__()
        self.text = text

    def filter(self, record: logging.LogRecord) -> bool:
        return self.text not in record.getMessage()


class ClipModel:
    """open_clip image and text towers (real weights from a file, or random weights)."""

    def __init__(self, arch: str, weights: str | None, device: torch.device | str, provenance: str, text_cache: int = 1024):
        from langx_ros.core.torch_compat import ensure_torchvision

        ensure_torchvision()
        import open_clip

        quiet = _NotThisWarning("No pretrained weights loaded")  # open_clip's, about the state before ours loads
        logging.getLogger().addFilter(quiet)
        try:
            model = open_clip.create_model(arch, pretrained=None)
        finally:
            logging.getLogger().removeFilter(quiet)
        if weights is not None:  # loaded here, not by open_clip: errors name the file and what was expected
            from langx_ros.core.checkpoints import load_open_clip

            load_open_clip(model, weights, arch)
        self.model = model.to(device).eval()
        self.tokenizer = open_clip.get_tokenizer(arch)
        self.device = torch.device(device)
        size = self.model.visual.image_size
        self.input_size = int(size[0] if isinstance(size, (tuple, list)) else size)
        mean = getattr(self.model.visual, "image_mean", None) or (0.48145466, 0.4578275, 0.40821073)
        std = getattr(self.model.visual, "image_std", None) or (0.26862954, 0.26130258, 0.27577711)
        self.mean = torch.tensor(mean, device=self.device).view(1, 3, 1, 1)
        self.std = torch.tensor(std, device=self.device).view(1, 3, 1, 1)
        self.provenance = f"open_clip {arch}: {provenance}"
        self._text_cache = TextCache(text_cache)

    @property
    def dim(self) -> int:
        return int(self.model.text_projection.shape[1]) if hasattr(self.model, "text_projection") else int(
            self.encode_text(["x"]).shape[1])

    @torch.no_grad()
    def encode_images(self, crops: torch.Tensor) -> torch.Tensor:
        """(B, 3, S, S) float in [0, 1] at input size -> (B, F) normalised embeddings."""
        x = (crops.to(self.device) - self.mean) / self.std
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=self.device.type == "cuda"):
            return F.normalize(self.model.encode_image(x).float(), dim=-1)

    @torch.no_grad()
    def encode_text(self, texts: list[str]) -> np.ndarray:
        """(len(texts), F) normalised text embeddings (cached; safe to call from several threads)."""
        return self._text_cache.encode(texts, lambda missing: F.normalize(
            self.model.encode_text(self.tokenizer(missing).to(self.device)).float(), dim=-1).cpu().numpy())

    # TextEncoder protocol
    def encode(self, texts: list[str]) -> np.ndarray:
        return self.encode_text(texts)


def segment_crops(rgb: np.ndarray, seg: np.ndarray, size: int, max_segments: int,
                  device: torch.device | str = "cpu") -> tuple[torch.Tensor, np.ndarray]:
    """Masked, square-padded crops (M, 3, size, size) in [0, 1] of the segments of ``seg``.

    One batched bilinear resampling on ``device`` (the bounding box of each segment, padded to
    a square around its centre; pixels of other segments and outside the image are zero).
    Returns the crops and the segment ids they belong to (largest first, at most ``max_segments``).
    """
    ids, counts = np.unique(seg[seg >= 0], return_counts=True)
    ids = ids[np.argsort(-counts, kind="stable")][:max_segments]
    if len(ids) == 0:
        return torch.zeros(0, 3, size, size, device=device), ids
    h, w = seg.shape
    seg_t = torch.as_tensor(seg, device=device)
    ids_t = torch.as_tensor(ids, device=device)
    # bounding boxes of the chosen segments (pixel index ranges, inclusive)
    yy, xx = torch.meshgrid(torch.arange(h, device=device), torch.arange(w, device=device), indexing="ij")
    lut = torch.full((int(seg.max()) + 1,), -1, dtype=torch.long, device=device)
    lut[ids_t] = torch.arange(len(ids), device=device)
    slot = torch.where(seg_t >= 0, lut[seg_t.clamp(min=0)], torch.full_like(seg_t, -1)).reshape(-1)
    sel = slot >= 0
    n = len(ids)
    x0 = torch.full((n,), 10**9, device=device).scatter_reduce(0, slot[sel], xx.reshape(-1)[sel], "amin")
    x1 = torch.full((n,), -1, device=device).scatter_reduce(0, slot[sel], xx.reshape(-1)[sel], "amax")
    y0 = torch.full((n,), 10**9, device=device).scatter_reduce(0, slot[sel], yy.reshape(-1)[sel], "amin")
    y1 = torch.full((n,), -1, device=device).scatter_reduce(0, slot[sel], yy.reshape(-1)[sel], "amax")
    cx, cy = (x0 + x1 + 1).float() / 2, (y0 + y1 + 1).float() / 2
    side = torch.maximum(x1 - x0 + 1, y1 - y0 + 1).float()
    # sampling grid in pixel units -> normalised [-1, 1] (align_corners=False convention)
    t = (torch.arange(size, device=device, dtype=torch.float32) + 0.5) / size - 0.5  # (S,)
    gx = cx[:, None] + side[:, None] * t[None]  # (M, S) pixel x of each output column
    gy = cy[:, None] + side[:, None] * t[None]
    grid = torch.stack([(gx / w * 2 - 1)[:, None, :].expand(n, size, size), (gy / h * 2 - 1)[:, :, None].expand(n, size, size)], -1)
    img = torch.as_tensor(rgb, device=device).permute(2, 0, 1).float()[None] / 255.0
    crops = F.grid_sample(img.expand(n, -1, -1, -1), grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    # slot + 1 so that 0 means "no chosen segment" (also what padding outside the image reads)
    which = F.grid_sample((slot + 1).reshape(1, 1, h, w).float().expand(n, -1, -1, -1), grid, mode="nearest",
                          padding_mode="zeros", align_corners=False)
    inside = which[:, 0] == torch.arange(1, n + 1, device=device, dtype=torch.float32)[:, None, None]
    return crops * inside[:, None], ids


class ClipSegmentFeatures:
    """SemanticSource: a segmenter (SAM2 or the fallback) + open_clip, one feature per segment."""

    def __init__(self, segmenter, clip: ClipModel, cfg: FeatureConfig):
        self.segmenter = segmenter
        self.clip = clip
        self.cfg = cfg
        self.levels = list(segmenter.levels)
        self.provenance = f"segments: {segmenter.provenance}; features: {clip.provenance}"

    def segment_features(self, frame) -> list[tuple[np.ndarray, np.ndarray]]:
        return [self._pool(frame.rgb, seg) for seg in self.segmenter.segment(frame.rgb)]

    def features_for_segments(self, frame, segments: list[np.ndarray | None]) -> list[tuple[np.ndarray, np.ndarray]]:
        """Per level, CLIP features pooled over GIVEN masks (e.g. generated semantic maps); a level
        given as None has no segments."""
        return [self._pool(frame.rgb, seg if seg is not None else np.full(frame.rgb.shape[:2], -1, np.int64)) for seg in segments]

    def _pool(self, rgb: np.ndarray, seg: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(id map renumbered to the encoded segments, (M, F) features) for one level."""
        crops, ids = segment_crops(rgb, seg, self.clip.input_size, self.cfg.max_segments, self.clip.device)
        feats = [self.clip.encode_images(crops[s : s + self.cfg.batch_size]).cpu() for s in range(0, len(crops), self.cfg.batch_size)]
        f = torch.cat(feats).numpy() if feats else np.zeros((0, 1), np.float32)
        # ids beyond max_segments are dropped; renumber the map to the encoded segments
        return map_ids(seg, ids, np.arange(len(ids))), f.astype(np.float32)
