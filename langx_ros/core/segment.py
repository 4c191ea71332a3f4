"""Segmentation at three granularities (s / m / l) per frame.

SAM2 (the `sam2` package) prompted with a grid of points, three masks per point (its multimask
output: sub-part, part, whole), as LangSplat does with SAM. Per level, low-quality masks are
dropped, duplicates removed by non-maximum suppression on their boxes, and the rest painted into
an id map, largest first so that smaller masks stay visible. Pixels no mask covers get -1.

Without SAM2 weights, :class:`SuperpixelSegmenter` (scikit-image Felzenszwalb at three scales)
is the named, weight-free fallback; its provenance says so.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from langx_ros.core.config_fields import param

LEVELS = ["s", "m", "l"]


@dataclass
class SegmentConfig:
    """Segmentation."""

    sam2_checkpoint: str = param("sam2.1_hiera_small.pt", "SAM2 checkpoint file in <model_dir>/sam2 (its config is chosen from the name).")
    points_per_side: int = param(16, "SAM2 prompt grid: points per image side.", min=1, max=128)
    points_per_batch: int = param(64, "SAM2 prompts per forward pass.", min=1, max=4096)
    pred_iou_threshold: float = param(0.7, "SAM2 masks with a lower predicted IoU are dropped.", min=0.0, max=1.0)
    nms_iou: float = param(0.7, "Masks whose boxes overlap more than this with a better mask are dropped.", min=0.0, max=1.0)
    min_area_fraction: float = param(0.0005, "Masks smaller than this fraction of the image are dropped.", min=0.0, max=1.0)
    fallback_scales: list[float] = param([50.0, 200.0, 800.0], "Felzenszwalb scale per level (s, m, l) of the superpixel fallback.")
    fallback_min_size: int = param(20, "Smallest superpixel (pixels) of the fallback.", min=1, max=1_000_000)


def paint_torch(masks, shape: tuple[int, int]) -> np.ndarray:
    """Id map (H, W) from boolean masks (M, H, W) on any device: largest first, smaller on top,
    ids renumbered densely (fully hidden masks vanish); -1 = none."""
    import torch

    out = torch.full(shape, -1, dtype=torch.long, device=masks.device)
    order = torch.argsort(masks.flatten(1).sum(1), descending=True, stable=True)
    for new_id, i in enumerate(order.tolist()):
        out[masks[i]] = new_id
    return relabel(out.cpu().numpy())


def map_ids(seg: np.ndarray, old, new) -> np.ndarray:
    """``seg`` with id old[i] replaced by new[i]; every other id (and -1) becomes -1."""
    lut = np.full(int(seg.max()) + 2 if seg.size else 1, -1, np.int64)
    lut[np.asarray(old, np.int64)] = new
    return np.where(seg >= 0, lut[np.clip(seg, 0, None)], -1)


def relabel(ids: np.ndarray) -> np.ndarray:
    """Dense ids 0..M-1 (order of first appearance in sorted ids); negatives stay -1."""
    out = np.full(ids.shape, -1, np.int64)
    valid = ids >= 0
    _, inv = np.unique(ids[valid], return_inverse=True)
    out[valid] = inv
    return out


class SuperpixelSegmenter:
    """Weight-free fallback: Felzenszwalb superpixels at three scales (scikit-image)."""

    levels = LEVELS

    def __init__(self, cfg: SegmentConfig, reason: str = "SAM2 weights absent"):
        if len(cfg.fallback_scales) != 3:
            raise ValueError("segment.fallback_scales needs three values (s, m, l)")
        self.cfg = cfg
        self.provenance = f"superpixel fallback (scikit-image Felzenszwalb, scales {cfg.fallback_scales}; {reason})"

    def segment(self, rgb: np.ndarray) -> list[np.ndarray]:
        from skimage.segmentation import felzenszwalb

        return [relabel(felzenszwalb(rgb, scale=s, sigma=0.8, min_size=self.cfg.fallback_min_size).astype(np.int64))
                for s in self.cfg.fallback_scales]


class SAM2Segmenter:
    """SAM2 with a point grid, three granularities from its multimask output."""

    levels = LEVELS

    def __init__(self, model, cfg: SegmentConfig, provenance: str):
        from sam2.sam2_image_predictor import SAM2ImagePredictor

        self.predictor = SAM2ImagePredictor(model)
        # the predictor assumes the default 1024 px input; follow the model's actual size
        size = int(model.image_size)
        self.predictor._bb_feat_sizes = [(size // 4, size // 4), (size // 8, size // 8), (size // 16, size // 16)]
        self.cfg = cfg
        self.provenance = provenance

    @classmethod
    def build(cls, checkpoint: str | None, cfg: SegmentConfig, device: str, provenance: str,
              image_size: int | None = None) -> "SAM2Segmenter":
        """SAM2 from a checkpoint path (None = random weights of the checkpoint's architecture)."""
        from langx_ros.core.torch_compat import ensure_torchvision

        ensure_torchvision()
        from sam2.build_sam import build_sam2

        from langx_ros.core.models import SAM2_CONFIGS

        overrides = [f"++model.image_size={image_size}"] if image_size else []
        model = build_sam2(SAM2_CONFIGS[cfg.sam2_checkpoint], None, device="cpu", hydra_overrides_extra=overrides)
        if checkpoint is not None:  # loaded here, not by build_sam2: errors name the file and what was expected
            from langx_ros.core.checkpoints import load_sam2

            load_sam2(model, checkpoint, cfg.sam2_checkpoint)
        return cls(model.to(device).eval(), cfg, provenance)

    def segment(self, rgb: np.ndarray) -> list[np.ndarray]:
        import torch

        from langx_ros.core.torch_compat import ensure_torchvision

        ensure_torchvision()
        from torchvision.ops import nms

        h, w = rgb.shape[:2]
        n = self.cfg.points_per_side
        xs = (np.arange(n) + 0.5) / n * w
        ys = (np.arange(n) + 0.5) / n * h
        pts = np.stack(np.meshgrid(xs, ys), -1).reshape(-1, 1, 2).astype(np.float32)
        pred = self.predictor
        dev = pred.device
        on_cuda = dev.type == "cuda"
        keep_masks: list[list[torch.Tensor]] = [[], [], []]
        keep_q: list[list[torch.Tensor]] = [[], [], []]
        # Masks stay on the device: SAM2ImagePredictor.predict() would copy every full-size
        # float mask to the host. Its documented building blocks (_prep_prompts, _predict)
        # are used instead (sam2 is pinned).
        with torch.inference_mode(), torch.autocast("cuda", dtype=torch.bfloat16, enabled=on_cuda):  # as SAM2's own examples
            pred.set_image(rgb)
            for s in range(0, len(pts), self.cfg.points_per_batch):
                p = pts[s : s + self.cfg.points_per_batch]
                _, coords, labels, _ = pred._prep_prompts(p, np.ones(p.shape[:2], np.int64), None, None, True)
                masks, iou, _ = pred._predict(coords, labels, None, None, multimask_output=True)
                masks = masks > 0  # (B, 3, H, W) bool
                area = masks.flatten(2).sum(-1)  # (B, 3)
                ok = (iou.float() >= self.cfg.pred_iou_threshold) & (area >= self.cfg.min_area_fraction * h * w)
                for lvl in range(3):
                    keep_masks[lvl].append(masks[ok[:, lvl], lvl])
                    keep_q[lvl].append(iou[ok[:, lvl], lvl].float())
        out = []
        for lvl in range(3):
            m = torch.cat(keep_masks[lvl]) if keep_masks[lvl] else torch.zeros(0, h, w, dtype=torch.bool, device=dev)
            q = torch.cat(keep_q[lvl]) if keep_q[lvl] else torch.zeros(0, device=dev)
            if len(m):
                rows, cols = m.any(2), m.any(1)  # (M, H), (M, W)
                ar_h = torch.arange(h, device=dev)
                ar_w = torch.arange(w, device=dev)
                y0 = torch.where(rows, ar_h, h).min(1).values
                y1 = torch.where(rows, ar_h, -1).max(1).values + 1
                x0 = torch.where(cols, ar_w, w).min(1).values
                x1 = torch.where(cols, ar_w, -1).max(1).values + 1
                boxes = torch.stack([x0, y0, x1, y1], 1).float()
                kept = nms(boxes, q, self.cfg.nms_iou)
                m, q = m[kept], q[kept]
            out.append(paint_torch(m, (h, w)))
        return out
