#!/usr/bin/env python3
"""Build and review the ground-truth id maps of a real posed RGB-D scene.

For a data folder and its labels (``bench/labels/<scene>/annotations.json``, or the data folder
itself where it holds ``*.ids.png`` + ``labels.json``) this builds every frame's id map, prints
per object its pixel count per frame (``*`` = drawn there, else propagated in 3D) and the 3D
cross-view consistency (the fraction of an object's labelled pixels in frame A that, reprojected
into frame B and visible there, land on B's label of that object), and writes overlays
(colour image, each object's mask tinted and named, drawn polygons outlined) to
``output/labels/<scene>/`` for review.

    .venv/bin/python scripts/annotate_real.py ../shared/data/rgbd-3dmatch-seq01 bench/labels/rgbd-3dmatch-seq01
    .venv/bin/python scripts/annotate_real.py ../shared/data/rgbd-apc-shelf   # ids.png layout
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from langx_ros.core.annotations import (  # noqa: E402
    PolygonLabels,
    SceneLabels,
    check_consistency,
    load_scene_labels,
    registered_pairs,
    summarise_consistency,
)
from langx_ros.core.frames import Frame, list_rgbd_folder, load_rgbd_frame  # noqa: E402

PALETTE = [(230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200), (245, 130, 48), (145, 30, 180),
           (70, 240, 240), (240, 50, 230), (210, 245, 60), (250, 190, 212), (0, 128, 128), (170, 110, 40)]


def depth_shading(frame: Frame) -> np.ndarray:
    """(H, W, 3) uint8 RGB picture of the depth: surface normals (of a lightly smoothed depth)
    as colours, dark purple where there is no depth. Labels follow the depth pixels, which in
    some data sets (7-Scenes) are not registered to the colour image."""
    from scipy.ndimage import uniform_filter

    from langx_ros.core.frames import normals_from_depth

    valid = np.isfinite(frame.depth)
    d = np.where(valid, frame.depth, 0).astype(np.float32)
    smooth = uniform_filter(d, 5) / np.maximum(uniform_filter(valid.astype(np.float32), 5), 1e-6)
    smooth[~valid] = np.nan
    n = normals_from_depth(smooth, frame.K)
    img = np.nan_to_num((n + 1) * 127.5, nan=0).astype(np.uint8)
    img[~valid] = (80, 0, 80)
    return img


def overlay(frame: Frame, ids: np.ndarray, labels: SceneLabels, background: str = "colour") -> np.ndarray:
    """BGR image: the colour frame (or ``background="depth"``: its depth shading) with each
    object's pixels tinted, outlined and named, and the polygons of drawn frames in white."""
    import cv2

    base = frame.rgb if background == "colour" else depth_shading(frame)
    img = base[:, :, ::-1].astype(np.float32)
    out = img.copy()
    for k, oid in enumerate(sorted(labels.names)):
        m = ids == oid
        if not m.any():
            continue
        col = np.array(PALETTE[k % len(PALETTE)][::-1], np.float32)
        out[m] = 0.45 * img[m] + 0.55 * col
    out = out.clip(0, 255).astype(np.uint8)
    for k, oid in enumerate(sorted(labels.names)):
        col = tuple(int(c) for c in PALETTE[k % len(PALETTE)][::-1])
        m = (ids == oid).astype(np.uint8)
        drawn = isinstance(labels, PolygonLabels) and frame.frame_id in labels.drawn_frames(oid)
        if drawn:
            obj = next(o for o in labels.objects if o.object_id == oid)
            for p in obj.frames[frame.frame_id].polygons:
                cv2.polylines(out, [np.round(p).astype(np.int32)], True, (255, 255, 255), 1)
        if not m.any():
            continue
        n, comp, stats, cent = cv2.connectedComponentsWithStats(m)
        big = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
        cx, cy = (int(v) for v in cent[big])
        text = f"{labels.names[oid]}{' (drawn)' if drawn else ''}"
        cv2.putText(out, text, (max(0, cx - 40), cy), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 3)
        cv2.putText(out, text, (max(0, cx - 40), cy), cv2.FONT_HERSHEY_SIMPLEX, 0.45, col, 1)
    cv2.putText(out, frame.frame_id, (5, 15), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (255, 255, 255), 1)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("data_dir", type=Path, help="posed RGB-D folder")
    ap.add_argument("label_dir", type=Path, nargs="?", help="folder with annotations.json (default: the data folder)")
    ap.add_argument("--out", type=Path, help="overlay folder (default output/labels/<scene>)")
    ap.add_argument("--min-visible", type=int, default=200, help="pairs with fewer visible pixels are not scored")
    ap.add_argument("--min-agreement", type=float, default=0.8,
                    help="depth agreement a frame pair needs (both ways) to count as registered")
    ap.add_argument("--pairs", action="store_true", help="print every scored pair")
    ap.add_argument("--no-overlays", action="store_true")
    ap.add_argument("--background", choices=["colour", "depth", "both"], default="both",
                    help="overlay on the colour image, the depth shading, or both side by side")
    args = ap.parse_args(argv)

    frame_ids = list_rgbd_folder(args.data_dir)
    frames = [load_rgbd_frame(args.data_dir, fid) for fid in frame_ids]
    labels = load_scene_labels(args.label_dir or args.data_dir, data_dir=args.data_dir,
                               frames={f.frame_id: f for f in frames})
    id_maps = {f.frame_id: labels.ids(f) for f in frames}
    drawn = {oid: set(labels.drawn_frames(oid)) if isinstance(labels, PolygonLabels) else set(frame_ids)
             for oid in labels.names}

    print(f"scene {args.data_dir.name}: {len(frames)} frames, {len(labels.names)} objects")
    print("pixels per frame (* = drawn there, else propagated in 3D):" if isinstance(labels, PolygonLabels)
          else "pixels per frame (* = given by the id images):")
    for oid, name in labels.names.items():
        cells = [f"{fid.replace('frame-', '')}:{int((id_maps[fid] == oid).sum())}{'*' if fid in drawn[oid] else ''}"
                 for fid in frame_ids if (id_maps[fid] == oid).any() or fid in drawn[oid]]
        print(f"  [{oid}] {name}: " + " ".join(cells))

    result = check_consistency(frames, labels, id_maps=id_maps)
    scored = {k for per in result.values() for k, p in per.items() if p.visible >= args.min_visible}
    registered = registered_pairs(frames, scored, args.min_agreement)
    print(f"3D cross-view consistency: fraction of an object's pixels in A that, reprojected into B and visible"
          f" there, land on B's label of it; pairs with >= {args.min_visible} visible pixels.")
    print(f"  visible: B's depth agrees with the reprojected point (same surface); drawn: both frames drawn;"
          f" registered: the pair's depths agree (>= {args.min_agreement:.0%} within tolerance both ways); all: every"
          f" scored pair; seen past: reprojected points B sees beyond (misregistration at the object, all pairs)")
    for oid, name in labels.names.items():
        per = result[oid]
        groups = {
            "drawn": {k for k in per if k[0] in drawn[oid] and k[1] in drawn[oid]},
            "registered": {k for k in per if k in registered},
            "all": set(per),
        }
        cells = []
        for tag, keys in groups.items():
            s = summarise_consistency({oid: per}, args.min_visible, keys)[oid]
            cells.append(f"{tag} {int(s['pairs'])} pairs pooled {s['pooled']:.3f} mean {s['mean']:.3f} min {s['min']:.3f}")
        past = summarise_consistency({oid: per}, args.min_visible)[oid]["seen_past"]
        print(f"  [{oid}] {name}: " + " | ".join(cells) + f" | seen past {past:.1%}")
        if args.pairs:
            for (fa, fb), p in sorted(per.items()):
                if p.visible >= args.min_visible:
                    tag = ("drawn " if (fa, fb) in groups["drawn"] else "prop  ") + ("reg" if (fa, fb) in registered else "   ")
                    print(f"      {tag} {fa} -> {fb}: {p.fraction:.3f} ({p.agree}/{p.visible}; seen past {p.seen_past})")

    if not args.no_overlays:
        import cv2

        out_dir = args.out or REPO / "output" / "labels" / args.data_dir.name
        out_dir.mkdir(parents=True, exist_ok=True)
        for f in frames:
            kinds = ["colour", "depth"] if args.background == "both" else [args.background]
            img = np.hstack([overlay(f, id_maps[f.frame_id], labels, k) for k in kinds])
            cv2.imwrite(str(out_dir / f"{f.frame_id}.overlay.png"), img)
        print(f"overlays: {out_dir}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
