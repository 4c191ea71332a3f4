"""The one place that makes torchvision importable next to a CPU-only torch.

Why: PyPI serves torchvision only as a CUDA build. Next to the CPU build of torch its C
extension cannot load, and ``import torchvision`` then fails with
``RuntimeError: operator torchvision::nms does not exist`` -- which in turn breaks open_clip,
timm, SAM2's mask generator and diffusers' CogVideoX VAE (through transformers).

What: before torchvision is first imported, and only when torch has no CUDA *and* the extension
fails to load, define the ``torchvision::nms`` and ``torchvision::qnms`` operator schemas with
``torch.library``, register a pure-torch NMS kernel for them, and let ``torchvision.ops``' box
functions use it. On a consistent install (the
extension loads, or torch has CUDA) this is a no-op. Everything in langx_ros that imports a
library depending on torchvision calls :func:`ensure_torchvision` first.
"""
from __future__ import annotations

import glob
import importlib.util
import logging
import os
import sys

import torch

_LOG = logging.getLogger(__name__)

# torch.library registrations live as long as their Library object; this module keeps it.
_FALLBACK_LIB: torch.library.Library | None = None


def nms_reference(boxes: torch.Tensor, scores: torch.Tensor, iou_threshold: float) -> torch.Tensor:
    """Greedy non-maximum suppression in plain torch (torchvision.ops.nms semantics).

    Args:
        boxes: (N, 4) boxes as (x1, y1, x2, y2).
        scores: (N,) scores.
        iou_threshold: boxes whose IoU with a kept, higher-scoring box is > this are dropped.

    Returns:
        int64 indices of the kept boxes, by decreasing score.
    """
    if boxes.numel() == 0:
        return torch.empty(0, dtype=torch.long, device=boxes.device)
    b = boxes.float()
    order = torch.argsort(scores.float(), descending=True, stable=True)
    b = b[order]
    area = (b[:, 2] - b[:, 0]).clamp(min=0) * (b[:, 3] - b[:, 1]).clamp(min=0)
    lt = torch.maximum(b[:, None, :2], b[None, :, :2])
    rb = torch.minimum(b[:, None, 2:], b[None, :, 2:])
    inter = (rb - lt).clamp(min=0).prod(dim=2)
    iou = inter / (area[:, None] + area[None, :] - inter).clamp(min=1e-12)
    suppressed = torch.zeros(len(order), dtype=torch.bool, device=boxes.device)
    keep = []
    for i in range(len(order)):
        if suppressed[i]:
            continue
        keep.append(i)
        suppressed |= iou[i] > iou_threshold
    return order[torch.tensor(keep, dtype=torch.long, device=boxes.device)]


def _extension_loads() -> bool:
    spec = importlib.util.find_spec("torchvision")
    if spec is None or spec.origin is None:
        return True  # nothing to fix: torchvision is absent and its import will say so
    libs = glob.glob(os.path.join(os.path.dirname(spec.origin), "_C*.so")) + glob.glob(
        os.path.join(os.path.dirname(spec.origin), "_C*.pyd")
    )
    if not libs:
        return False
    try:
        torch.ops.load_library(libs[0])
    except (OSError, RuntimeError):
        return False
    return True


def ensure_torchvision() -> bool:
    """Make ``import torchvision`` work on this machine; call before the first import.

    Returns:
        True when the pure-torch NMS fallback is (now) registered, False when nothing was needed.
    """
    global _FALLBACK_LIB
    if _FALLBACK_LIB is not None:
        return True
    if "torchvision" in sys.modules or torch.cuda.is_available() or _extension_loads():
        return False
    lib = torch.library.Library("torchvision", "DEF")
    lib.define("nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
    lib.define("qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
    lib.impl("nms", nms_reference, "CompositeExplicitAutograd")
    lib.impl(
        "qnms",
        lambda dets, scores, iou: nms_reference(dets.dequantize(), scores.dequantize(), iou),
        "CompositeExplicitAutograd",
    )
    _FALLBACK_LIB = lib
    # torchvision.ops.nms refuses to run when the extension failed to load, even though the
    # operator exists now: let its box ops through (an op we did not register still fails,
    # with "operator torchvision::<op> does not exist").
    import torchvision.ops.boxes as tv_boxes

    tv_boxes._assert_has_ops = lambda: None
    _LOG.warning(
        "torchvision's C extension cannot load next to this CPU-only torch; registered a "
        "pure-torch NMS for torchvision::nms (other torchvision C++ ops stay unavailable)"
    )
    return True
