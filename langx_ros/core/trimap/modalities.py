"""The three TriMap modalities as videos, and back.

- RGB: frames in [0, 1].
- Normals: unit vectors n in [-1, 1]^3 stored as colours (n + 1) / 2; decoded by (2c - 1) and
  renormalised (a generated colour need not be a unit vector).
- Semantics: segment ids painted with a fixed palette of well-separated colours; decoded to
  the id of the nearest palette colour (background/none gets its own colour), so ids stay
  consistent across the frames of one video.
"""
from __future__ import annotations

import numpy as np

NONE_COLOR = np.array([0.0, 0.0, 0.0])


def normals_to_rgb(n: np.ndarray) -> np.ndarray:
    """(..., 3) unit normals (NaN = none) -> colours in [0, 1] (none -> 0.5 grey)."""
    out = (np.nan_to_num(n, nan=0.0) + 1.0) / 2.0
    return np.clip(out, 0.0, 1.0).astype(np.float32)


def rgb_to_normals(c: np.ndarray) -> np.ndarray:
    """Colours in [0, 1] -> unit normals (zero-length vectors become NaN)."""
    v = 2.0 * np.asarray(c, dtype=np.float32) - 1.0
    norm = np.linalg.norm(v, axis=-1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        out = v / norm
    out[(norm[..., 0] < 1e-6)] = np.nan
    return out


def palette(n: int, seed: int = 7) -> np.ndarray:
    """(n, 3) distinct colours in [0, 1] (farthest-point picks from a dense colour grid); the
    none colour (black) is excluded from the palette."""
    g = np.linspace(0.0, 1.0, 8)
    grid = np.stack(np.meshgrid(g, g, g, indexing="ij"), -1).reshape(-1, 3)
    grid = grid[np.linalg.norm(grid - NONE_COLOR, axis=1) > 0.35]
    if n > len(grid):
        raise ValueError(f"at most {len(grid)} segment colours are available, asked for {n}")
    rng = np.random.default_rng(seed)
    chosen = [int(rng.integers(len(grid)))]
    d = np.linalg.norm(grid - grid[chosen[0]], axis=1)
    for _ in range(n - 1):
        i = int(np.argmax(d))
        chosen.append(i)
        d = np.minimum(d, np.linalg.norm(grid - grid[i], axis=1))
    return grid[chosen].astype(np.float32)


def ids_to_rgb(ids: np.ndarray, colors: np.ndarray) -> np.ndarray:
    """(H, W) ids (-1 = none) -> (H, W, 3) colours."""
    out = np.broadcast_to(NONE_COLOR, ids.shape + (3,)).astype(np.float32).copy()
    valid = ids >= 0
    if valid.any() and ids[valid].max() >= len(colors):
        raise ValueError(f"id {int(ids[valid].max())} has no palette colour ({len(colors)} colours)")
    out[valid] = colors[ids[valid]]
    return out


def rgb_to_ids(c, colors: np.ndarray, max_distance: float | None = None):
    """(..., 3) colours (numpy, or a torch tensor on any device) -> ids of the nearest palette
    colour, same kind as the input; nearest to the none colour -> -1, and so is a colour farther
    than ``max_distance`` from every palette colour (when given)."""
    import torch

    t = torch.as_tensor(c, dtype=torch.float32)
    table = torch.as_tensor(np.concatenate([NONE_COLOR[None], colors], 0), dtype=torch.float32, device=t.device)  # 0 = none
    d = ((t[..., None, :] - table) ** 2).sum(-1)
    best, idx = d.min(dim=-1)
    ids = idx - 1
    if max_distance is not None:
        ids = torch.where(best > max_distance**2, torch.full_like(ids, -1), ids)
    return ids.cpu().numpy().astype(np.int64) if isinstance(c, np.ndarray) else ids
