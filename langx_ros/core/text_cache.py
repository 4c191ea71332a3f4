"""A text-embedding cache shared by the text encoders (open_clip's text tower, MiniLM)."""
from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Callable

import numpy as np


class TextCache:
    """The embeddings of the last ``size`` texts (least recently used dropped first); safe to
    use from several request threads (one at a time computes)."""

    def __init__(self, size: int):
        self.size = size
        self._cache: OrderedDict[str, np.ndarray] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._cache)

    def encode(self, texts: list[str], embed: Callable[[list[str]], np.ndarray]) -> np.ndarray:
        """(len(texts), F) float32: cached rows, and ``embed(missing)`` for the texts not cached."""
        with self._lock:
            missing = [t for t in dict.fromkeys(texts) if t not in self._cache]
            fresh = dict(zip(missing, np.asarray(embed(missing), np.float32))) if missing else {}
            out = np.stack([fresh[t] if t in fresh else self._cache[t] for t in texts]).astype(np.float32)
            for t in dict.fromkeys(texts):
                self._cache[t] = fresh[t] if t in fresh else self._cache[t]
                self._cache.move_to_end(t)
            while len(self._cache) > self.size:
                self._cache.popitem(last=False)
            return out
