"""Memory of the field's training views: bytes per view (tensors + L_s2d pixel tables) for a
generated 640x480 scene, keyframes (depth, three segmentation levels) and TriMap views (no
depth, the default one generated level), and what 8 keyframes with 47 generated views per
pair need. The layout before the compact views (float colour, a per-pixel float code map with
its valid mask, int64 ids and tables) is computed from the same shapes for comparison.
Prints a table and writes bench/results/views.json.
"""
from __future__ import annotations

import argparse

import numpy as np
import torch

from _util import write_json

from langx_ros.core.field import losses as L
from langx_ros.core.frames import normals_from_depth
from langx_ros.core.reconstruct import _views
from langx_ros.core.synthetic import make_scene


def measure(width: int, height: int, levels: int, with_depth: bool, generated_levels: int) -> dict:
    """Bytes of one view now and in the earlier layout (same shapes)."""
    f = make_scene(1, width, height).frames[0]
    ids = np.where(f.instances >= 0, f.instances, -1)
    n = int(ids.max()) + 1
    code_dim = 3
    sem = [[(ids if lvl < generated_levels else np.full_like(ids, -1), np.zeros((n if lvl < generated_levels else 0, 8), np.float32))
            for lvl in range(levels)]]
    codes = [[np.zeros((len(feats), code_dim), np.float32) for _, feats in sem[0]]]
    frame = f if with_depth else type(f)(f.frame_id, f.rgb, f.K, f.pose, None, f.stamp)
    view = _views([frame], [normals_from_depth(f.depth, f.K, f.pose)], sem, codes, torch.device("cpu"))[0]
    pairs = [L.SegmentPairs(view.seg[lvl]) for lvl in range(levels)]
    tables = sum(t.numel() * t.element_size() for p in pairs for t in (p.order, p.run_of, p.starts, p.lengths))
    px = width * height
    valid_px = sum(int((view.seg[lvl] >= 0).sum()) for lvl in range(levels))
    earlier = (px * 3 * 4 + 9 * 4 + 16 * 4 + (px * 4 if with_depth else 0) + px * 3 * 4  # float colour, K, viewmat, depth, normals
               + levels * px * (code_dim * 4 + 1 + 8)  # per-pixel float codes, valid mask, int64 ids
               + 2 * valid_px * 8 + sum(p.starts.numel() + p.lengths.numel() for p in pairs) * 8)  # int64 tables
    return {"now_mib": (view.nbytes() + tables) / 2**20, "earlier_mib": earlier / 2**20}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--width", type=int, default=640)
    ap.add_argument("--height", type=int, default=480)
    ap.add_argument("--levels", type=int, default=3)
    ap.add_argument("--keyframes", type=int, default=8)
    ap.add_argument("--per-pair", type=int, default=47, help="generated views per key-frame pair (49 frames minus the two key frames)")
    a = ap.parse_args()
    key = measure(a.width, a.height, a.levels, True, a.levels)
    gen = measure(a.width, a.height, a.levels, False, 1)
    n_gen = (a.keyframes - 1) * a.per_pair
    scene = {k: a.keyframes * key[k] + n_gen * gen[k] for k in ("now_mib", "earlier_mib")}
    print(f"training views at {a.width}x{a.height}, {a.levels} levels (tensors + L_s2d pixel tables):")
    print(f"{'':38s} {'now':>10s} {'earlier':>10s}")
    print(f"{'keyframe (depth, all levels)':38s} {key['now_mib']:8.1f} MiB {key['earlier_mib']:8.1f} MiB")
    print(f"{'TriMap view (no depth, one level)':38s} {gen['now_mib']:8.1f} MiB {gen['earlier_mib']:8.1f} MiB")
    print(f"{f'{a.keyframes} keyframes + {n_gen} TriMap views':38s} {scene['now_mib'] / 1024:8.2f} GiB {scene['earlier_mib'] / 1024:8.2f} GiB")
    write_json("views", {"args": vars(a), "keyframe": key, "trimap_view": gen, "scene": scene,
                         "note": "'earlier' is computed from the same shapes for the layout before the compact views"})


if __name__ == "__main__":
    main()
