"""langx-eval: LERF-OVS metrics (mIoU, localisation accuracy) of query masks against labels.

    langx-eval --labels label/<scene> --pred DIR [--out results.json]
        DIR/<frame>/<category>.png   predicted mask (non-zero = object), one per labelled category
        DIR/<frame>/peaks.json       {"<category>": [row, col] or [[row, col], ...], ...} localisation points:
                                     the peak, or every pixel tying for the filtered maximum (a category
                                     is localised when any of them lies in any of its boxes)
    langx-eval --labels label/<scene> --field FIELD --cameras DIR [--params YAML] [--out ...]
        renders a saved field at each labelled frame's camera (DIR/<frame>.pose.txt + DIR/camera-intrinsics.txt,
        intrinsics at label resolution) and queries every category with the configured text encoder.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from langx_ros.core.evaluation import Prediction, evaluate, load_label_dir

REPO = Path(__file__).resolve().parents[2]


def predictions_from_dir(pred: Path, labels) -> dict:
    import cv2

    out: dict = {}
    for lf in labels:
        d = pred / lf.name
        peaks = json.loads((d / "peaks.json").read_text()) if (d / "peaks.json").is_file() else {}
        for cat in lf.categories:
            p = d / f"{cat}.png"
            if p.is_file():
                m = cv2.imread(str(p), cv2.IMREAD_GRAYSCALE)
                out.setdefault(lf.name, {})[cat] = prediction_from_points(m > 0, peaks.get(cat))
    return out


def prediction_from_points(mask: np.ndarray, points) -> Prediction:
    """A Prediction from a peaks.json entry: ``[row, col]``, ``[[row, col], ...]`` or None (a miss)."""
    if points is None or len(points) == 0:
        return Prediction(mask, (-1, -1))
    pts = np.asarray(points, np.float64)
    if pts.ndim == 1:
        return Prediction(mask, (int(pts[0]), int(pts[1])))
    pts = pts.reshape(-1, 2)
    return Prediction(mask, (int(pts[0, 0]), int(pts[0, 1])), pts.astype(np.int64))


def predictions_from_field(field_dir: Path, cameras: Path, params: Path, labels, allow_random: bool) -> tuple[dict, str]:
    import torch

    from langx_ros.core.config import LangxConfig
    from langx_ros.core.device import resolve_device
    from langx_ros.core.field.io import load_field
    from langx_ros.core.query import query_2d
    from langx_ros.core.semantics import load_clip

    cfg = LangxConfig.from_yaml(params)
    cfg.models.allow_random_weights = cfg.models.allow_random_weights or allow_random
    device = resolve_device(cfg.device)
    field = load_field(field_dir, device)
    clip = load_clip(cfg, device)
    K = torch.tensor(np.loadtxt(cameras / "camera-intrinsics.txt").reshape(3, 3), dtype=torch.float32)
    canon = torch.as_tensor(clip.encode(list(cfg.query.canonical_phrases)))
    out: dict = {}
    for lf in labels:
        pose = np.loadtxt(cameras / f"{lf.name}.pose.txt").reshape(4, 4)
        cats = lf.categories
        maps = query_2d(field, cats, torch.tensor(np.linalg.inv(pose), dtype=torch.float32), K, lf.width, lf.height,
                        torch.as_tensor(clip.encode(cats)), canon, cfg.query)
        # every candidate once Map2D carries them (the official rule), the single peak before
        out[lf.name] = {m.query: Prediction(m.mask, m.peak, getattr(m, "candidates", None)) for m in maps}
    return out, f"field: {field.provenance_text()}; text: {clip.provenance}"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="langx-eval", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--labels", type=Path, required=True)
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--pred", type=Path)
    src.add_argument("--field", type=Path)
    ap.add_argument("--cameras", type=Path)
    ap.add_argument("--params", type=Path, default=REPO / "config" / "langx.yaml")
    ap.add_argument("--allow-random-weights", action="store_true")
    ap.add_argument("--out", type=Path)
    a = ap.parse_args(argv)
    labels = load_label_dir(a.labels)
    if not labels:
        print(f"{a.labels}: no frame_*.json labels", file=sys.stderr)
        return 2
    if a.pred:
        preds, provenance = predictions_from_dir(a.pred, labels), f"predictions from {a.pred}"
    else:
        if a.cameras is None:
            ap.error("--field needs --cameras")
        preds, provenance = predictions_from_field(a.field, a.cameras, a.params, labels, a.allow_random_weights)
    r = evaluate(labels, preds)
    for row in r["per_query"]:
        print(f"{row['frame']:<16} {row['category']:<24} IoU {row['iou']:.3f}  {'hit' if row['localised'] else 'miss'}")
    print(f"mIoU {r['miou'] * 100:.2f}  localisation {r['localisation_accuracy'] * 100:.2f}  ({r['count']} queries; {provenance})")
    if a.out:
        from langx_ros.core.atomic import atomic_write_json

        atomic_write_json(a.out, {**r, "provenance": provenance})
    return 0


if __name__ == "__main__":
    sys.exit(main())
