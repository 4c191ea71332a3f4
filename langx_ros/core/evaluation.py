"""LERF-OVS evaluation (LangSplat protocol): mIoU of query masks and localisation accuracy.

Labels: ``label/<scene>/frame_XXXXX.json`` =
``{"info": {"name", "width", "height"}, "objects": [{"category", "bbox": [x1, y1, x2, y2],
"segmentation": [[x, y], ...]}]}`` (``bbox`` may also be ``[[x1, y1], [x2, y2]]``). Several objects
may share a category: their masks are OR-ed and any of their boxes counts for localisation.

The rules are those of LangSplat's official ``eval/evaluate_iou_loc.py`` (see
:mod:`langx_ros.core.langsplat_eval`): polygon vertices are truncated to int32 and filled with
``cv2.fillPoly``; mIoU is the mean over every (frame, category) pair; a category is localised when
any of its localisation candidates lies in any of its boxes (edges included) and counts once
however many boxes it has, so the accuracy divides by the number of (frame, category) pairs.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from langx_ros.core.langsplat_eval import category_localised


@dataclass
class LabelObject:
    category: str
    bbox: tuple[float, float, float, float]  # x1, y1, x2, y2 (pixels)
    polygon: np.ndarray  # (K, 2) x, y


@dataclass
class LabelFrame:
    name: str
    width: int
    height: int
    objects: list[LabelObject] = field(default_factory=list)

    @property
    def categories(self) -> list[str]:
        return sorted({o.category for o in self.objects})

    def mask(self, category: str) -> np.ndarray:
        """(H, W) bool: union of the polygons of every object of ``category``.

        Each polygon is filled on its own (``cv2.fillPoly``, 8-connected edges, vertices truncated
        toward zero to int32, as the official ``polygon_to_mask``) and the fills are OR-ed.
        """
        import cv2

        m = np.zeros((self.height, self.width), np.uint8)
        for o in self.objects:
            if o.category == category and len(o.polygon) >= 1:
                cv2.fillPoly(m, [o.polygon.astype(np.int32)], 1)
        return m.astype(bool)

    def boxes(self, category: str) -> list[tuple[float, float, float, float]]:
        return [o.bbox for o in self.objects if o.category == category]


def load_label_frame(path: str | Path) -> LabelFrame:
    d = json.loads(Path(path).read_text())
    info = d["info"]
    objs = [LabelObject(o["category"], _bbox(o["bbox"]), np.asarray(o.get("segmentation", []), np.float64).reshape(-1, 2))
            for o in d.get("objects", [])]
    return LabelFrame(str(info.get("name", Path(path).stem)), int(info["width"]), int(info["height"]), objs)


def _bbox(value) -> tuple[float, float, float, float]:
    """(x1, y1, x2, y2) from ``[x1, y1, x2, y2]`` or ``[[x1, y1], [x2, y2]]``."""
    v = np.asarray(value, np.float64).reshape(-1)
    if v.size != 4:
        raise ValueError(f"bbox must hold 4 numbers (x1, y1, x2, y2); got {value!r}")
    return (float(v[0]), float(v[1]), float(v[2]), float(v[3]))


def load_label_dir(folder: str | Path) -> list[LabelFrame]:
    """All frame_*.json of a scene folder, sorted by name."""
    return [load_label_frame(p) for p in sorted(Path(folder).glob("frame_*.json"))]


def mask_iou(pred: np.ndarray, gt: np.ndarray, known: np.ndarray | None = None) -> float:
    """IoU of two boolean masks; 1.0 when both are empty, 0.0 when only one is. With ``known``
    (bool, same shape), only those pixels count: the ground truth cannot tell the others
    (a real scene's pixels without depth, core/real_scene.py).

    (The official code divides 0 by 0 there, a NaN; a labelled category always has a non-empty
    mask, so the case does not arise in its evaluation.)
    """
    if known is not None:
        pred, gt = np.logical_and(pred, known), np.logical_and(gt, known)
    union = np.logical_or(pred, gt).sum()
    if union == 0:
        return 1.0
    return float(np.logical_and(pred, gt).sum() / union)


def localisation_hit(points_rc, boxes: list[tuple[float, float, float, float]]) -> bool:
    """Whether some (row, col) point falls inside some (x1, y1, x2, y2) box (edges included).

    ``points_rc`` is one (row, col) or a (K, 2) array of them (every localisation candidate);
    box corners may come in any order.
    """
    return category_localised(np.asarray(points_rc, np.float64).reshape(-1, 2), boxes)


@dataclass
class Prediction:
    """What is evaluated for one (frame, category)."""

    mask: np.ndarray  # (H, W) bool
    peak: tuple[int, int]  # (row, col) of the box-filtered relevancy maximum
    candidates: np.ndarray | None = None  # (K, 2) (row, col): every pixel tying for that maximum

    @property
    def points(self) -> np.ndarray:
        """(K, 2) localisation points: the candidates when given, else the peak alone."""
        if self.candidates is not None:
            return np.asarray(self.candidates, np.float64).reshape(-1, 2)
        return np.asarray(self.peak, np.float64).reshape(1, 2)


def evaluate(labels: list[LabelFrame], predictions: dict[str, dict[str, Prediction]]) -> dict:
    """mIoU and localisation accuracy over every (frame, category) of the labels.

    Both are means over the (frame, category) pairs (summed in order, as the official code does);
    a category is localised when any of its prediction's points lies in any of its boxes. A
    category without a prediction counts as an empty mask and a miss.
    """
    ious, hits, rows = [], [], []
    for lf in labels:
        for cat in lf.categories:
            p = predictions.get(lf.name, {}).get(cat)
            gt = lf.mask(cat)
            if p is None:
                iou, hit = 0.0 if gt.any() else 1.0, False
            else:
                if p.mask.shape != gt.shape:
                    raise ValueError(f"{lf.name}/{cat}: predicted mask {p.mask.shape} != label size {gt.shape}")
                iou, hit = mask_iou(p.mask, gt), localisation_hit(p.points, lf.boxes(cat))
            ious.append(iou)
            hits.append(hit)
            rows.append({"frame": lf.name, "category": cat, "iou": iou, "localised": hit})
    return {
        "miou": sum(ious) / len(ious) if ious else float("nan"),
        "localisation_accuracy": sum(hits) / len(hits) if hits else float("nan"),
        "count": len(rows),
        "per_query": rows,
    }
