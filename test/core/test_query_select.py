"""3D instance separation and the LangSplat 2D mask protocol on hand-made inputs."""
from __future__ import annotations

import numpy as np

from langx_ros.core.config import QueryConfig
from langx_ros.core.query import box_filter, connected_instances, langsplat_map


def test_connected_instances_separates_clusters():
    rng = np.random.default_rng(0)
    a = rng.normal(0, 0.02, (50, 3))
    b = rng.normal(0, 0.02, (30, 3)) + [1, 0, 0]
    labels = connected_instances(np.concatenate([a, b]), radius=0.2)
    assert len(set(labels[:50])) == 1 and len(set(labels[50:])) == 1 and labels[0] != labels[50]
    assert connected_instances(np.zeros((0, 3)), 0.1).shape == (0,)


def test_langsplat_map_picks_the_level_and_masks_the_blob():
    h, w = 60, 80
    yy, xx = np.mgrid[0:h, 0:w]
    blob = ((yy - 30) ** 2 + (xx - 50) ** 2 < 10**2).astype(np.float32)
    weak = 0.5 + 0.1 * blob
    strong = 0.5 + 0.45 * blob
    m = langsplat_map(np.stack([weak, strong]), "thing", ["s", "m"], QueryConfig())
    assert m.level == "m"
    assert m.mask[30, 50] and not m.mask[5, 5]
    iou = (m.mask & (blob > 0)).sum() / (m.mask | (blob > 0)).sum()
    assert iou > 0.6
    assert blob[m.peak] == 1  # localisation: the box-filtered maximum lies on the object


def test_box_filter_is_a_mean():
    img = np.zeros((9, 9), np.float32)
    img[4, 4] = 9.0
    assert box_filter(img, 3)[4, 4] == np.float32(1.0)


def test_point_spacing_ignores_coincident_centres():
    """A frame captured twice yields coincident Gaussians; the instance radius (3 x spacing)
    must not collapse to zero because of them."""
    import torch

    from langx_ros.core.field.model import LanguageField

    grid = np.stack(np.meshgrid(*[np.arange(6) * 0.05] * 3, indexing="ij"), -1).reshape(-1, 3).astype(np.float32)
    for means in (grid, np.concatenate([grid, grid])):
        f = LanguageField({"means": torch.from_numpy(means)}, lqc=None, levels=["s"])
        assert abs(f.point_spacing() - 0.05) < 1e-6
