"""Dense language features with open_clip, LangSplat style: one CLIP embedding per segment.

Each segment's bounding box is cropped with the pixels outside the segment zeroed, padded to a
square, resized to the model's input size and encoded in batches; embeddings are L2-normalised.
The text encoder of the same model embeds queries (with a small cache).
"""
from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from langx_ros.core.config_fields import param


@dataclass
class FeatureConfig:
    """Language features."""

    batch_size: int = param(64, "Segment crops per CLIP forward pass.", min=1, max=4096)
    max_segments: int = param(300, "Most segments encoded per frame and level (largest first).", min=1, max=100_000)
    text_cache: int = param(1024, "Text embeddings kept in memory.", min=0, max=1_000_000)


class ClipModel:
    """open_clip image and text towers (real weights from a file, or random weights)."""

    def __init__(self, arch: str, weights: str | None, device: torch.device | str, provenance: str, text_cache: int = 1024):
        from langx_ros.core.torch_compat import ensure_torchvision

        ensure_torchvision()
        import open_clip

        self.model = open_clip.create_model(arch, pretrained=weights, device=device).eval()
        self.tokenizer = open_clip.get_tokenizer(arch)
        self.device = torch.device(device)
        size = self.model.visual.image_size
        self.input_size = int(size[0] if isinstance(size, (tuple, list)) else size)
        mean = getattr(self.model.visual, "image_mean", None) or (0.48145466, 0.4578275, 0.40821073)
        std = getattr(self.model.visual, "image_std", None) or (0.26862954, 0.26130258, 0.27577711)
        self.mean = torch.tensor(mean, device=self.device).view(1, 3, 1, 1)
        self.std = torch.tensor(std, device=self.device).view(1, 3, 1, 1)
        self.provenance = f"open_clip {arch}: {provenance}"
        self._text_cache: OrderedDict[str, np.ndarray] = OrderedDict()
        self.text_cache_size = text_cache

    @property
    def dim(self) -> int:
        return int(self.model.text_projection.shape[1]) if hasattr(self.model, "text_projection") else int(
            self.encode_text(["x"]).shape[1])

    @torch.no_grad()
    def encode_images(self, crops: torch.Tensor) -> torch.Tensor:
        """(B, 3, S, S) float in [0, 1] at input size -> (B, F) normalised embeddings."""
        x = (crops.to(self.device) - self.mean) / self.std
        return F.normalize(self.model.encode_image(x).float(), dim=-1)

    @torch.no_grad()
    def encode_text(self, texts: list[str]) -> np.ndarray:
        """(len(texts), F) normalised text embeddings (cached)."""
        missing = [t for t in dict.fromkeys(texts) if t not in self._text_cache]
        if missing:
            emb = F.normalize(self.model.encode_text(self.tokenizer(missing).to(self.device)).float(), dim=-1).cpu().numpy()
            for t, e in zip(missing, emb):
                self._text_cache[t] = e
                while len(self._text_cache) > max(self.text_cache_size, len(texts)):
                    self._text_cache.popitem(last=False)
        return np.stack([self._text_cache[t] for t in texts]).astype(np.float32)

    # TextEncoder protocol
    def encode(self, texts: list[str]) -> np.ndarray:
        return self.encode_text(texts)


def segment_crops(rgb: np.ndarray, seg: np.ndarray, size: int, max_segments: int) -> tuple[torch.Tensor, np.ndarray]:
    """Masked, square-padded crops (M, 3, size, size) in [0, 1] of the segments of ``seg``.

    Returns the crops and the segment ids they belong to (largest segments first, at most
    ``max_segments``).
    """
    ids, counts = np.unique(seg[seg >= 0], return_counts=True)
    ids = ids[np.argsort(-counts, kind="stable")][:max_segments]
    img = torch.as_tensor(rgb).permute(2, 0, 1).float() / 255.0
    crops = []
    for i in ids:
        m = seg == i
        rows, cols = np.nonzero(np.any(m, 1))[0], np.nonzero(np.any(m, 0))[0]
        y0, y1, x0, x1 = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
        c = img[:, y0:y1, x0:x1] * torch.as_tensor(m[y0:y1, x0:x1])[None]
        hh, ww = c.shape[1:]
        side = max(hh, ww)
        c = F.pad(c, ((side - ww) // 2, side - ww - (side - ww) // 2, (side - hh) // 2, side - hh - (side - hh) // 2))
        crops.append(F.interpolate(c[None], size=(size, size), mode="bilinear", align_corners=False)[0])
    if not crops:
        return torch.zeros(0, 3, size, size), ids
    return torch.stack(crops), ids


class ClipSegmentFeatures:
    """SemanticSource: a segmenter (SAM2 or the fallback) + open_clip, one feature per segment."""

    def __init__(self, segmenter, clip: ClipModel, cfg: FeatureConfig):
        self.segmenter = segmenter
        self.clip = clip
        self.cfg = cfg
        self.levels = list(segmenter.levels)
        self.provenance = f"segments: {segmenter.provenance}; features: {clip.provenance}"

    def segment_features(self, frame) -> list[tuple[np.ndarray, np.ndarray]]:
        out = []
        for seg in self.segmenter.segment(frame.rgb):
            crops, ids = segment_crops(frame.rgb, seg, self.clip.input_size, self.cfg.max_segments)
            feats = [self.clip.encode_images(crops[s : s + self.cfg.batch_size]).cpu() for s in range(0, len(crops), self.cfg.batch_size)]
            f = torch.cat(feats).numpy() if feats else np.zeros((0, 1), np.float32)
            # ids beyond max_segments are dropped; renumber the map to the encoded segments
            remap = np.full(int(seg.max()) + 2 if seg.size else 1, -1, np.int64)
            remap[ids] = np.arange(len(ids))
            out.append((np.where(seg >= 0, remap[np.clip(seg, 0, None)], -1), f.astype(np.float32)))
        return out
