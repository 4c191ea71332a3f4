"""Registration weights from gsplat match the CPU compositor's (CUDA only; skipped elsewhere)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from langx_ros.core.field.registration import blend_weights

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA (gsplat); CI has no GPU")


def test_gsplat_and_compositor_give_the_same_blending_weights():
    rng = np.random.default_rng(0)
    n, w, h = 3000, 96, 72
    means = torch.tensor(np.c_[rng.uniform(-0.6, 0.6, (n, 2)), rng.uniform(1.0, 3.0, n)], dtype=torch.float32)
    geom = {"means": means, "quats": torch.tensor(rng.normal(size=(n, 4)), dtype=torch.float32),
            "scales": torch.tensor(rng.uniform(0.005, 0.03, (n, 3)), dtype=torch.float32),
            "opacities": torch.tensor(rng.uniform(0.1, 0.95, n), dtype=torch.float32)}
    K = torch.tensor([[80.0, 0, w / 2], [0, 80.0, h / 2], [0, 0, 1]])
    seg = torch.tensor(rng.integers(0, 5, (h, w)))
    targets = torch.cat([torch.ones(h, w, 1), (seg[..., None] == torch.arange(5)).float()], -1)
    cpu = blend_weights(geom, targets, torch.eye(4), K, w, h, backend="torch")
    gpu = blend_weights({k: v.cuda() for k, v in geom.items()}, targets.cuda(), torch.eye(4).cuda(), K.cuda(), w, h, backend="gsplat").cpu()
    assert float(cpu[:, 0].sum()) > 100  # the view is well covered
    err = (gpu - cpu).abs().max()
    assert err < 1e-3 * float(cpu.abs().max()) + 1e-4, float(err)
