"""LERF-OVS evaluation (LangSplat protocol): mIoU of query masks and localisation accuracy.

Labels: ``label/<scene>/frame_XXXXX.json`` =
``{"info": {"name", "width", "height"}, "objects": [{"category", "bbox": [x1, y1, x2, y2],
"segmentation": [[x, y], ...]}]}``. Several objects may share a category: their masks are OR-ed
and any of their boxes counts for localisation.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np


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
        """(H, W) bool: union of the polygons of every object of ``category``."""
        import cv2

        m = np.zeros((self.height, self.width), np.uint8)
        for o in self.objects:
            if o.category == category and len(o.polygon) >= 3:
                cv2.fillPoly(m, [np.round(o.polygon).astype(np.int32)], 1)
        return m.astype(bool)

    def boxes(self, category: str) -> list[tuple[float, float, float, float]]:
        return [o.bbox for o in self.objects if o.category == category]


def load_label_frame(path: str | Path) -> LabelFrame:
    d = json.loads(Path(path).read_text())
    info = d["info"]
    objs = [LabelObject(o["category"], tuple(float(v) for v in o["bbox"]), np.asarray(o.get("segmentation", []), np.float64).reshape(-1, 2))
            for o in d.get("objects", [])]
    return LabelFrame(str(info.get("name", Path(path).stem)), int(info["width"]), int(info["height"]), objs)


def load_label_dir(folder: str | Path) -> list[LabelFrame]:
    """All frame_*.json of a scene folder, sorted by name."""
    return [load_label_frame(p) for p in sorted(Path(folder).glob("frame_*.json"))]


def mask_iou(pred: np.ndarray, gt: np.ndarray) -> float:
    """IoU of two boolean masks; 1.0 when both are empty, 0.0 when only one is."""
    union = np.logical_or(pred, gt).sum()
    if union == 0:
        return 1.0
    return float(np.logical_and(pred, gt).sum() / union)


def localisation_hit(peak_rc: tuple[int, int], boxes: list[tuple[float, float, float, float]]) -> bool:
    """Whether the (row, col) peak falls inside any of the (x1, y1, x2, y2) boxes (edges included)."""
    r, c = peak_rc
    return any(x1 <= c <= x2 and y1 <= r <= y2 for x1, y1, x2, y2 in boxes)


@dataclass
class Prediction:
    mask: np.ndarray  # (H, W) bool
    peak: tuple[int, int]  # (row, col) of the box-filtered relevancy maximum


def evaluate(labels: list[LabelFrame], predictions: dict[str, dict[str, Prediction]]) -> dict:
    """mIoU and localisation accuracy over every (frame, category) of the labels.

    A category without a prediction counts as an empty mask and a miss.
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
                iou, hit = mask_iou(p.mask, gt), localisation_hit(p.peak, lf.boxes(cat))
            ious.append(iou)
            hits.append(hit)
            rows.append({"frame": lf.name, "category": cat, "iou": iou, "localised": hit})
    return {
        "miou": float(np.mean(ious)) if ious else float("nan"),
        "localisation_accuracy": float(np.mean(hits)) if hits else float("nan"),
        "count": len(rows),
        "per_query": rows,
    }
