"""Reference check of the LangSplat-protocol 2D evaluation (langx_ros.core.langsplat_eval).

Generates seeded random (frame, category) cases: 3 relevancy levels per category (Gaussian blobs on
noise, half of them quantised into plateaus as codebook relevancy is, some near the border, some
with equal levels), 1 or 2 labelled polygons per category with float vertices and boxes (corners
sometimes swapped). Each case is evaluated three ways:

- ``reference``: the official rules re-stated here in their most literal form (torch float32 for
  the arithmetic, cv2.filter2D per level for the mask and on the stacked levels for the
  localisation, a pixel-by-pixel bincount majority vote, np.int32 polygons with cv2.fillPoly,
  the box loop that stops at the first hit, accuracy over (frame, category) pairs);
- ``exact``: langsplat_map_exact + evaluation.evaluate (the project's implementation);
- ``before``: query.langsplat_map as imported from the working tree (box_filter with
  mask_box_px, one peak), with the old default mask_box_px = 29 and with 30.

Prints and writes bench/results/langsplat_eval_check.json: IoUs differing by > 0.05, the largest
IoU difference, chosen mask levels that differ, and the accuracies.

    .venv/bin/python bench/langsplat_eval_check.py [--cases 160] [--seed 7]
"""
from __future__ import annotations

import argparse
import time

import cv2
import numpy as np
import torch

from _util import write_json

from langx_ros.core.evaluation import LabelFrame, LabelObject, Prediction, evaluate
from langx_ros.core.langsplat_eval import langsplat_map_exact

LEVELS = 3
CATEGORIES_PER_FRAME = 2


# --------------------------------------------------------------------------------------------
# Random cases
# --------------------------------------------------------------------------------------------


def random_polygon(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """(K, 2) float x, y: a star-shaped polygon, sometimes reaching past the image."""
    cx, cy = rng.uniform(-0.05, 1.05) * w, rng.uniform(-0.05, 1.05) * h
    rx, ry = rng.uniform(3, 0.3 * w), rng.uniform(3, 0.3 * h)
    ang = np.sort(rng.uniform(0, 2 * np.pi, int(rng.integers(5, 10))))
    rad = rng.uniform(0.6, 1.0, len(ang))
    return np.stack([cx + rx * rad * np.cos(ang), cy + ry * rad * np.sin(ang)], 1)


def random_box(rng: np.random.Generator, poly: np.ndarray) -> tuple[float, float, float, float]:
    """The polygon's bounds, jittered by up to 2 px, corners swapped one time in five."""
    x1, y1 = poly.min(0) + rng.uniform(-2, 2, 2)
    x2, y2 = poly.max(0) + rng.uniform(-2, 2, 2)
    if rng.random() < 0.2:
        x1, x2 = x2, x1
    if rng.random() < 0.2:
        y1, y2 = y2, y1
    return float(x1), float(y1), float(x2), float(y2)


def blob(h: int, w: int, cx: float, cy: float, sx: float, sy: float) -> np.ndarray:
    yy, xx = np.mgrid[0:h, 0:w]
    return np.exp(-0.5 * (((xx - cx) / sx) ** 2 + ((yy - cy) / sy) ** 2))


def random_levels(rng: np.random.Generator, h: int, w: int, polys: list[np.ndarray]) -> np.ndarray:
    """(LEVELS, H, W) float32 relevancy in [0, 1] with blobs on the objects and elsewhere."""
    kind = rng.choice(["smooth", "plateaus", "border", "equal_levels"], p=[0.35, 0.35, 0.2, 0.1])
    out = np.empty((LEVELS, h, w), np.float32)
    for li in range(LEVELS):
        m = 0.45 + 0.03 * rng.standard_normal((h, w))
        for p in polys:
            cx, cy = p.mean(0)
            sx, sy = np.ptp(p[:, 0]) / 2.5 + 1, np.ptp(p[:, 1]) / 2.5 + 1
            m += rng.uniform(0.1, 0.5) * blob(h, w, cx, cy, sx, sy)
        for _ in range(int(rng.integers(1, 4))):  # distractors
            if kind == "border":
                cx, cy = rng.choice([rng.uniform(-2, 4), rng.uniform(w - 5, w + 1)]), rng.uniform(0, h)
            else:
                cx, cy = rng.uniform(0, w), rng.uniform(0, h)
            m += rng.uniform(0.0, 0.35) * blob(h, w, cx, cy, rng.uniform(2, 15), rng.uniform(2, 15))
        if kind == "plateaus":
            m = np.round(m * 12) / 12  # piecewise constant: plateaus make the filtered maxima tie
        out[li] = np.clip(m, 0, 1)
        if kind == "equal_levels" and li > 0:
            out[li] = out[0]
    return out


def make_cases(n: int, seed: int) -> list[dict]:
    """Frames of CATEGORIES_PER_FRAME categories each; n (frame, category) cases in all."""
    rng = np.random.default_rng(seed)
    cases: list[dict] = []
    frame = 0
    while len(cases) < n:
        h, w = int(rng.integers(40, 100)), int(rng.integers(48, 140))
        for ci in range(min(CATEGORIES_PER_FRAME, n - len(cases))):
            polys = [random_polygon(rng, h, w) for _ in range(2 if rng.random() < 0.3 else 1)]
            boxes = [random_box(rng, p) for p in polys]
            cases.append({"frame": f"frame_{frame + 1:05d}", "category": f"thing{ci}", "h": h, "w": w,
                          "polys": polys, "boxes": boxes, "rel": random_levels(rng, h, w, polys)})
        frame += 1
    return cases


# --------------------------------------------------------------------------------------------
# The official rules, literally
# --------------------------------------------------------------------------------------------


def ref_mean_filter(img: np.ndarray) -> np.ndarray:
    side = 30
    return cv2.filter2D(img, -1, np.ones((side, side)) / (side ** 2))


def ref_vote(mask: np.ndarray) -> np.ndarray:
    """Pixel by pixel: the most frequent value (first on ties) of the clipped 7 x 7 window."""
    h, w = mask.shape[:2]
    out = mask.copy()
    for y in range(h):
        for x in range(w):
            window = mask[max(0, y - 3): min(y + 3 + 1, h - 1), max(0, x - 3): min(x + 3 + 1, w - 1)]
            out[y, x] = np.argmax(np.bincount(window.reshape(-1)))
    return out


def ref_gt_mask(h: int, w: int, polys: list[np.ndarray]) -> np.ndarray:
    total = None
    for p in polys:
        one = np.zeros((h, w), np.uint8)
        cv2.fillPoly(one, [np.asarray(p.tolist(), dtype=np.int32)], 1)
        if total is None:
            total = one
        else:
            total = total.copy()
            total[one != 0] = 1
    return total


def ref_iou(rel: np.ndarray, gt: np.ndarray, thresh: float) -> tuple[int, float]:
    """(chosen level, IoU of its mask) of the mIoU stream."""
    maps = torch.from_numpy(rel.copy())
    ious = np.zeros(maps.shape[0])
    for i in range(maps.shape[0]):
        filtered = torch.from_numpy(ref_mean_filter(maps[i].numpy()))
        maps[i] = 0.5 * (filtered + maps[i])
        norm = maps[i] - torch.min(maps[i])
        norm = norm / (torch.max(norm) + 1e-9)
        norm = torch.clip(norm * (1.0 - (-1.0)) + (-1.0), 0, 1)
        pred = ref_vote((norm.numpy() > thresh).astype(np.uint8))
        inter = np.sum(np.logical_and(gt, pred))
        union = np.sum(np.logical_or(gt, pred))
        ious[i] = np.sum(inter) / np.sum(union)
    peaks = torch.zeros(maps.shape[0])
    for i in range(maps.shape[0]):
        peaks[i] = maps[i].max()
    level = int(torch.argmax(peaks))
    return level, float(ious[level])


def ref_localise(rel: np.ndarray, boxes: list[tuple[float, float, float, float]]) -> tuple[int, int, np.ndarray]:
    """(chosen level, 1 if localised else 0, (K, 2) x, y candidates) of the localisation stream."""
    filtered = ref_mean_filter(rel.transpose(1, 2, 0))
    if filtered.ndim == 2:
        filtered = filtered[..., None]
    scores = np.zeros(rel.shape[0])
    coords = []
    for i in range(rel.shape[0]):
        scores[i] = filtered[..., i].max()
        coords.append(np.asarray(np.nonzero(filtered[..., i] == scores[i])).T[:, ::-1])
    level = int(np.argmax(scores))
    found = 0
    for x1, y1, x2, y2 in np.asarray(boxes).reshape(-1, 4):
        inside = False
        for x, y in coords[level]:
            if min(x1, x2) <= x <= max(x1, x2) and min(y1, y2) <= y <= max(y1, y2):
                inside = True
                break
        if inside:
            found += 1
            break
    return level, found, coords[level]


# --------------------------------------------------------------------------------------------
# Comparison
# --------------------------------------------------------------------------------------------


def in_boxes(rc: tuple[int, int], boxes) -> bool:
    r, c = rc
    return any(min(x1, x2) <= c <= max(x1, x2) and min(y1, y2) <= r <= max(y1, y2) for x1, y1, x2, y2 in boxes)


def compare(name: str, ious: list[float], levels: list[int], hits: list[bool], ref: dict) -> dict:
    diff = np.abs(np.asarray(ious) - np.asarray(ref["ious"]))
    row = {
        "iou_differ_gt_0.05": int((diff > 0.05).sum()),
        "iou_differ_at_all": int((diff > 0).sum()),
        "max_iou_difference": float(diff.max()),
        "mask_levels_differ": int((np.asarray(levels) != np.asarray(ref["levels"])).sum()),
        "localisation_differs": int((np.asarray(hits) != np.asarray(ref["hits"])).sum()),
        "miou": sum(ious) / len(ious),
        "localisation_accuracy": sum(hits) / len(hits),
    }
    print(f"{name:<24} IoU>0.05 {row['iou_differ_gt_0.05']:>3}  IoU!= {row['iou_differ_at_all']:>3}  "
          f"max dIoU {row['max_iou_difference']:.4f}  levels!= {row['mask_levels_differ']:>3}  "
          f"loc!= {row['localisation_differs']:>3}  mIoU {row['miou']:.4f}  acc {row['localisation_accuracy']:.4f}")
    return row


def run_reference(cases: list[dict], thresh: float) -> dict:
    out: dict = {"ious": [], "levels": [], "hits": [], "loc_levels": [], "candidates": []}
    for c in cases:
        gt = ref_gt_mask(c["h"], c["w"], c["polys"])
        level, iou = ref_iou(c["rel"], gt, thresh)
        loc_level, hit, xy = ref_localise(c["rel"], c["boxes"])
        out["ious"].append(iou)
        out["levels"].append(level)
        out["hits"].append(bool(hit))
        out["loc_levels"].append(loc_level)
        out["candidates"].append(xy[:, ::-1])  # as (row, col)
    return out


def run_exact(cases: list[dict], thresh: float) -> tuple[dict, dict]:
    labels: dict[str, LabelFrame] = {}
    preds: dict[str, dict[str, Prediction]] = {}
    out: dict = {"levels": [], "loc_levels": [], "candidates": []}
    for c in cases:
        lf = labels.setdefault(c["frame"], LabelFrame(c["frame"], c["w"], c["h"]))
        lf.objects += [LabelObject(c["category"], b, p) for p, b in zip(c["polys"], c["boxes"])]
        r = langsplat_map_exact(c["rel"], threshold=thresh)
        preds.setdefault(c["frame"], {})[c["category"]] = Prediction(r.mask, r.peak, r.candidates)
        out["levels"].append(r.level_index)
        out["loc_levels"].append(r.localisation_level)
        out["candidates"].append(r.candidates)
    result = evaluate(list(labels.values()), preds)
    by_key = {(row["frame"], row["category"]): row for row in result["per_query"]}
    out["ious"] = [by_key[(c["frame"], c["category"])]["iou"] for c in cases]
    out["hits"] = [by_key[(c["frame"], c["category"])]["localised"] for c in cases]
    return out, result


def run_before(cases: list[dict], box_px: int, thresh: float) -> dict:
    from langx_ros.core.config import QueryConfig
    from langx_ros.core.query import langsplat_map

    cfg = QueryConfig(mask_box_px=box_px, mask_threshold=thresh, mask_clean_px=7)
    out: dict = {"ious": [], "levels": [], "hits": []}
    names = [str(i) for i in range(LEVELS)]
    for c in cases:
        m = langsplat_map(c["rel"], c["category"], names, cfg)
        gt = ref_gt_mask(c["h"], c["w"], c["polys"]).astype(bool)
        out["ious"].append(float(np.logical_and(m.mask, gt).sum() / np.logical_or(m.mask, gt).sum()))
        out["levels"].append(int(m.level))
        out["hits"].append(in_boxes(m.peak, c["boxes"]))
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--cases", type=int, default=160)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--thresh", type=float, default=0.4)
    a = ap.parse_args()
    cases = make_cases(a.cases, a.seed)
    t = time.perf_counter()
    ref = run_reference(cases, a.thresh)
    t_ref = time.perf_counter() - t
    t = time.perf_counter()
    exact, result = run_exact(cases, a.thresh)
    t_exact = time.perf_counter() - t
    ties = [len(x) for x in ref["candidates"]]
    print(f"{len(cases)} cases, {len({c['frame'] for c in cases})} frames; {sum(len(c['boxes']) == 2 for c in cases)} categories "
          f"with 2 objects; localisation candidates > 1 in {sum(k > 1 for k in ties)} cases (max {max(ties)}); "
          f"mask level != localisation level in {sum(x != y for x, y in zip(ref['levels'], ref['loc_levels']))} cases")
    print(f"reference (official rules)  mIoU {sum(ref['ious']) / len(ref['ious']):.4f}  acc {sum(ref['hits']) / len(ref['hits']):.4f}")
    rows = {"exact": compare("langsplat_map_exact", exact["ious"], exact["levels"], exact["hits"], ref)}
    rows["exact"]["candidate_sets_differ"] = int(sum(not np.array_equal(x, y) for x, y in zip(exact["candidates"], ref["candidates"])))
    rows["exact"]["localisation_levels_differ"] = int(sum(x != y for x, y in zip(exact["loc_levels"], ref["loc_levels"])))
    rows["exact"]["evaluate_miou"] = result["miou"]
    rows["exact"]["evaluate_localisation_accuracy"] = result["localisation_accuracy"]
    print(f"{'':<24} candidate sets != {rows['exact']['candidate_sets_differ']}  "
          f"localisation levels != {rows['exact']['localisation_levels_differ']}")
    for box_px in (29, 30):
        try:
            before = run_before(cases, box_px, a.thresh)
        except Exception as e:  # the working tree's query.py may be mid-edit
            print(f"query.langsplat_map (box {box_px}) unavailable: {e!r}")
            rows[f"before_box{box_px}"] = {"error": repr(e)}
            continue
        rows[f"before_box{box_px}"] = compare(f"query.langsplat_map box {box_px}", before["ious"], before["levels"], before["hits"], ref)
    write_json("langsplat_eval_check", {
        "args": vars(a),
        "cases": len(cases),
        "multi_candidate_cases": int(sum(k > 1 for k in ties)),
        "mask_level_ne_localisation_level": int(sum(x != y for x, y in zip(ref["levels"], ref["loc_levels"]))),
        "reference": {"miou": sum(ref["ious"]) / len(ref["ious"]), "localisation_accuracy": sum(ref["hits"]) / len(ref["hits"])},
        **rows,
        "seconds": {"reference": t_ref, "exact": t_exact},
        "note": "before_box29 = query.langsplat_map as imported from the working tree with the old mask_box_px default",
    })


if __name__ == "__main__":
    main()
