"""Noisy labels that imitate SAM/CLIP, for the oracle-feature protocol on real frames.

Real features are never clean: SAM's masks miss or spill over object borders by a few pixels and
sometimes merge or split objects, and CLIP's feature for a segment is only near the text
embedding of its name. :class:`NoisyOracleSemantics` wraps the oracle protocol (true instance
ids as segments, label embeddings as features) with that kind of noise, deterministic per
frame and seed:

- every segment's mask is eroded or dilated by up to ``morph_px`` pixels and shifted by up to
  ``shift_px`` pixels (segments painted in a random order, so spills overwrite neighbours);
- a fraction ``relabel`` of the segments takes another label;
- the background (id 0: every surface no object label covers) is not one segment: it is cut into
  a ``background_cells`` x ``background_cells`` grid of pieces, each its own segment. SAM splits
  walls, floor and unlabelled furniture into many segments, so a misread is one piece of them; as
  one segment, a relabelled background turned two thirds of a kitchen frame into "red cabinets";
- each segment's feature is its label's embedding plus Gaussian noise of relative size
  ``feature_sigma``, renormalised; segments of one label stay separate segments (SAM's masks
  are; merged, a misread background piece and the object it is misread as would be one segment).

Everything built on it must say so ("NOISY oracle labels" in the provenance).
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np

from langx_ros.core.frames import Frame


@dataclass(frozen=True)
class LabelNoise:
    """How much noise; the defaults are the benchmark's 'noisy labels' setting."""

    shift_px: int = 3
    morph_px: int = 3
    relabel: float = 0.1
    feature_sigma: float = 0.1
    seed: int = 0
    background_cells: int = 4

    def describe(self) -> str:
        return (f"NOISY oracle labels (masks eroded/dilated by <= {self.morph_px} px and shifted by <= {self.shift_px} px, "
                f"{self.relabel:.0%} of segments relabelled, the background as {self.background_cells}x{self.background_cells} "
                f"segments, features jittered by {self.feature_sigma:g}, seed {self.seed})")


BACKGROUND_ID = 0  # the oracle protocol's label 0: surfaces no object label covers


def _rng(frame_id: str, seed: int) -> np.random.Generator:
    return np.random.default_rng(int.from_bytes(hashlib.sha256(f"{seed}:{frame_id}".encode()).digest()[:8], "little"))


def noisy_segments(ids: np.ndarray, num_labels: int, noise: LabelNoise, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """The segments SAM might give for the true id map ``ids``, with the mask noise of ``noise``:
    ((H, W) int64 segment index, -1 = no segment; (S,) int64 the label of each segment).

    Each true instance is one segment and the background (id 0) ``noise.background_cells``^2 grid
    pieces; each is eroded/dilated, shifted and painted in a random order (spills overwrite
    neighbours; a segment painted over entirely keeps its index and has no pixels), and a
    fraction ``noise.relabel`` takes another label. Segments stay apart even where they share a
    label, as SAM's masks do: a misread background piece is its own segment, not part of the object's.
    """
    import cv2

    h, w = ids.shape
    out = np.full((h, w), -1, np.int64)
    segs = [(int(s), ids == s) for s in np.unique(ids) if s > 0]
    bg = ids == BACKGROUND_ID
    if bg.any():
        n = max(1, noise.background_cells)
        cell = (np.arange(h)[:, None] * n // h) * n + np.arange(w)[None, :] * n // w
        # every cell is a segment, an empty one too (no pixels, as one painted over): the draws of
        # the others do not depend on which cells the background reaches (with the pixels the
        # labels cannot tell left out, a lounge frame's top-right cell is empty)
        segs += [(BACKGROUND_ID, bg & (cell == c)) for c in range(n * n)]
    labels = np.array([s for s, _ in segs], np.int64)
    for i in rng.permutation(len(segs)) if segs else []:
        s, m = segs[i]
        m = m.astype(np.uint8)
        k = int(rng.integers(-noise.morph_px, noise.morph_px + 1)) if noise.morph_px > 0 else 0
        if k:
            kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * abs(k) + 1, 2 * abs(k) + 1))
            m = cv2.dilate(m, kernel) if k > 0 else cv2.erode(m, kernel)
        if noise.shift_px > 0:
            dx, dy = (int(v) for v in rng.integers(-noise.shift_px, noise.shift_px + 1, 2))
            m = cv2.warpAffine(m, np.float32([[1, 0, dx], [0, 1, dy]]), (w, h), flags=cv2.INTER_NEAREST)
        if num_labels > 1 and rng.random() < noise.relabel:
            labels[i] = int(rng.choice([j for j in range(num_labels) if j != s]))
        out[m > 0] = i
    return out, labels


def noisy_id_map(ids: np.ndarray, num_labels: int, noise: LabelNoise, rng: np.random.Generator) -> np.ndarray:
    """(H, W) int64 label map of :func:`noisy_segments` (-1 = no segment)."""
    seg, labels = noisy_segments(ids, num_labels, noise, rng)
    return np.where(seg >= 0, labels[seg.clip(min=0)], -1) if len(labels) else seg


def jittered_features(features: np.ndarray, sigma: float, rng: np.random.Generator) -> np.ndarray:
    """(M, F) unit features: each row plus Gaussian noise of norm ~ ``sigma``, renormalised."""
    f = np.asarray(features, np.float32)
    f = f / np.linalg.norm(f, axis=1, keepdims=True).clip(min=1e-12)
    noisy = f + rng.normal(0, sigma / np.sqrt(f.shape[1]), f.shape).astype(np.float32)
    return noisy / np.linalg.norm(noisy, axis=1, keepdims=True).clip(min=1e-12)


class NoisyOracleSemantics:
    """SemanticSource: the oracle protocol's instance ids and label features, with noise.

    ``frame.instances`` holds the true ids (index into ``label_features``; < 0 = none)."""

    levels = ["instance"]

    def __init__(self, label_features: np.ndarray, noise: LabelNoise, provenance: str):
        self._features = np.asarray(label_features, np.float32)
        self.noise = noise
        self.provenance = f"{provenance}; {noise.describe()}"

    def segment_features(self, frame: Frame) -> list[tuple[np.ndarray, np.ndarray]]:
        if frame.instances is None:
            raise KeyError(f"oracle-feature protocol: frame {frame.frame_id} has no instance ids")
        rng = _rng(frame.frame_id, self.noise.seed)
        ids = np.where(frame.instances < len(self._features), frame.instances, -1)
        seg, labels = noisy_segments(ids, len(self._features), self.noise, rng)
        return [(seg, jittered_features(self._features[labels].reshape(len(labels), -1), self.noise.feature_sigma, rng))]
