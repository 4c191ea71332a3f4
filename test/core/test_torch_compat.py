"""The torchvision-on-CPU-torch workaround: torchvision and its users import; NMS is right."""
from __future__ import annotations

import pytest
import torch

from langx_ros.core.torch_compat import ensure_torchvision, nms_reference


def _brute_force_nms(boxes, scores, thr):
    order = sorted(range(len(scores)), key=lambda i: -float(scores[i]))
    keep = []
    for i in order:
        ok = True
        for j in keep:
            x1 = max(boxes[i][0], boxes[j][0]); y1 = max(boxes[i][1], boxes[j][1])
            x2 = min(boxes[i][2], boxes[j][2]); y2 = min(boxes[i][3], boxes[j][3])
            inter = max(0.0, x2 - x1) * max(0.0, y2 - y1)
            a = (boxes[i][2] - boxes[i][0]) * (boxes[i][3] - boxes[i][1])
            b = (boxes[j][2] - boxes[j][0]) * (boxes[j][3] - boxes[j][1])
            if inter / (a + b - inter) > thr:
                ok = False
                break
        if ok:
            keep.append(i)
    return keep


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_nms_reference_matches_brute_force(seed):
    g = torch.Generator().manual_seed(seed)
    xy = torch.rand(60, 2, generator=g) * 50
    wh = torch.rand(60, 2, generator=g) * 20 + 1
    boxes = torch.cat([xy, xy + wh], dim=1)
    scores = torch.rand(60, generator=g)
    got = nms_reference(boxes, scores, 0.3).tolist()
    assert got == _brute_force_nms(boxes.tolist(), scores.tolist(), 0.3)
    assert 0 < len(got) < 60  # the case exercises suppression


def test_nms_reference_empty():
    assert nms_reference(torch.zeros(0, 4), torch.zeros(0), 0.5).numel() == 0


def test_torchvision_and_its_dependents_import():
    ensure_torchvision()
    import torchvision  # noqa: F401
    from torchvision.ops import nms

    boxes = torch.tensor([[0, 0, 10, 10], [1, 1, 11, 11], [20, 20, 30, 30]], dtype=torch.float32)
    scores = torch.tensor([0.9, 0.8, 0.7])
    assert nms(boxes, scores, 0.5).tolist() == [0, 2]
    import open_clip  # noqa: F401  (through timm/torchvision)
    import sam2  # noqa: F401
    from diffusers import AutoencoderKLCogVideoX  # noqa: F401  (through transformers)


def test_ensure_torchvision_is_idempotent():
    """A second call neither re-defines the operators (torch would raise) nor changes its answer."""
    first = ensure_torchvision()
    assert ensure_torchvision() == first
