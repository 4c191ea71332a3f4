"""Building the semantic stack from the configuration: open_clip + SAM2, or named fallbacks.

- open_clip weights missing: ModelNotFound (listing the paths tried), unless
  ``models.allow_random_weights``; then random weights, said in the provenance.
- SAM2 weights missing: the superpixel fallback, with a warning and a provenance that says so.
"""
from __future__ import annotations

import logging

import torch

from langx_ros.core.config import LangxConfig
from langx_ros.core.features import ClipModel, ClipSegmentFeatures
from langx_ros.core.models import ModelNotFound, open_clip_weights, sam2_weights
from langx_ros.core.segment import SAM2Segmenter, SuperpixelSegmenter

LOG = logging.getLogger(__name__)


def load_clip(cfg: LangxConfig, device: torch.device | str) -> ClipModel:
    m = cfg.models
    loc = open_clip_weights(m.clip_model, m.model_dir, m.hf_cache, m.allow_random_weights)
    if loc.random:
        LOG.warning("open_clip %s: %s", m.clip_model, loc.note)
    return ClipModel(m.clip_model, None if loc.path is None else str(loc.path), device, loc.note, cfg.features.text_cache)


def load_segmenter(cfg: LangxConfig, device: torch.device | str):
    m = cfg.models
    try:
        loc = sam2_weights(cfg.segment.sam2_checkpoint, m.model_dir, m.hf_cache, allow_random=False)
    except ModelNotFound as exc:
        LOG.warning("SAM2 weights absent, using the superpixel fallback: %s", exc)
        return SuperpixelSegmenter(cfg.segment, reason=f"SAM2 weights absent ({cfg.segment.sam2_checkpoint})")
    return SAM2Segmenter.build(str(loc.path), cfg.segment, str(device), f"SAM2 {cfg.segment.sam2_checkpoint}: {loc.note}")


def load_semantics(cfg: LangxConfig, device: torch.device | str) -> tuple[ClipSegmentFeatures, ClipModel]:
    """(SemanticSource, TextEncoder) for real use; see the module doc for missing weights."""
    clip = load_clip(cfg, device)
    return ClipSegmentFeatures(load_segmenter(cfg, device), clip, cfg.features), clip
