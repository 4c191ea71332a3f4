"""Segmentation (SAM2 with RANDOM WEIGHTS, the superpixel fallback) and open_clip features
(RANDOM WEIGHTS): the real code paths on small inputs. Random weights say nothing about quality."""
from __future__ import annotations

import logging

import numpy as np
import pytest
import torch

from langx_ros.core.config import LangxConfig
from langx_ros.core.features import ClipModel, ClipSegmentFeatures, FeatureConfig, segment_crops
from langx_ros.core.segment import SAM2Segmenter, SegmentConfig, SuperpixelSegmenter, paint_torch
from langx_ros.core.semantics import load_semantics
from langx_ros.core.synthetic import make_scene


@pytest.fixture(scope="module")
def scene():
    return make_scene(2, 64, 48)


@pytest.fixture(scope="module")
def clip():
    return ClipModel("ViT-B-16", None, "cpu", "RANDOM WEIGHTS (test)")


def test_paint_puts_small_masks_on_top_and_renumbers():
    big = np.zeros((4, 4), bool)
    big[:, :] = True
    small = np.zeros((4, 4), bool)
    small[0, 0] = True
    hidden = np.zeros((4, 4), bool)
    hidden[1:3, 1:3] = True  # covered by nothing smaller, painted over big
    ids = paint_torch(torch.as_tensor(np.stack([small, big, hidden])), (4, 4))
    assert ids[0, 0] != ids[3, 3] and ids[1, 1] != ids[3, 3]
    assert sorted(np.unique(ids)) == [0, 1, 2]


def test_superpixel_fallback_gives_three_nested_granularities(scene):
    seg = SuperpixelSegmenter(SegmentConfig())
    levels = seg.segment(scene.frames[0].rgb)
    counts = [int(lv.max()) + 1 for lv in levels]
    assert len(levels) == 3 and counts[0] > counts[1] > counts[2] >= 1  # s finer than m finer than l
    assert all((lv >= 0).all() for lv in levels)
    assert "superpixel fallback" in seg.provenance


def test_sam2_random_weights_runs_three_levels(scene):
    cfg = SegmentConfig(points_per_side=4, points_per_batch=8, pred_iou_threshold=0.0, min_area_fraction=0.0)
    sam = SAM2Segmenter.build(None, cfg, "cpu", "RANDOM WEIGHTS (test)", image_size=256)
    levels = sam.segment(scene.frames[0].rgb)
    assert len(levels) == 3
    for lv in levels:
        assert lv.shape == (48, 64) and lv.min() >= -1
        ids = np.unique(lv[lv >= 0])
        assert np.array_equal(ids, np.arange(len(ids)))  # dense ids


def test_crops_mask_out_other_pixels():
    rgb = np.full((20, 30, 3), 200, np.uint8)
    seg = np.full((20, 30), -1)
    seg[5:10, 10:20] = 0
    seg[0:2, 0:2] = 1
    crops, ids = segment_crops(rgb, seg, 16, 10)
    assert list(ids) == [0, 1] and crops.shape == (2, 3, 16, 16)
    # segment 0 is 5x10: padded to a square, so the top and bottom rows are zero
    assert crops[0, :, 0].max() == 0 and crops[0, :, 8].max() > 0.7


def test_clip_random_weights_segment_features_and_text(scene, clip):
    src = ClipSegmentFeatures(SuperpixelSegmenter(SegmentConfig()), clip, FeatureConfig(max_segments=3))
    out = src.segment_features(scene.frames[0])
    assert len(out) == 3
    for seg, feats in out:
        assert feats.shape[1] == 512 and 1 <= feats.shape[0] <= 3
        assert np.allclose(np.linalg.norm(feats, axis=1), 1, atol=1e-4)
        assert seg.max() == feats.shape[0] - 1  # the map only names encoded segments
    t = clip.encode(["a sofa", "a chair", "a sofa"])
    assert t.shape == (3, 512) and np.allclose(t[0], t[2])
    assert "RANDOM WEIGHTS" in src.provenance and "superpixel" in src.provenance


def test_clip_features_pooled_over_given_masks(scene, clip):
    """Generated semantic maps come with their own masks: features are pooled over them, the
    same mask gives the same feature whatever its id, and a level given as None has none."""
    src = ClipSegmentFeatures(SuperpixelSegmenter(SegmentConfig()), clip, FeatureConfig())
    f = scene.frames[0]
    h, w = f.rgb.shape[:2]
    seg = np.full((h, w), -1)
    seg[: h // 2] = 7
    seg[h // 2 :, : w // 3] = 2
    (m1, f1), (m_none, f_none), (m2, f2) = src.features_for_segments(f, [seg, None, np.where(seg == 7, 0, -1)])
    assert f1.shape == (2, 512) and m1.max() == 1 and (m1[seg < 0] == -1).all()
    assert f_none.shape[0] == 0 and (m_none == -1).all()
    top = int(m1[0, 0])
    assert np.allclose(f2[0], f1[top], atol=1e-5) and not np.allclose(f1[0], f1[1], atol=1e-3)


def test_load_semantics_without_weights(tmp_path, caplog):
    cfg = LangxConfig()
    cfg.models.model_dir = str(tmp_path)
    cfg.models.hf_cache = str(tmp_path)
    from langx_ros.core.models import ModelNotFound

    with pytest.raises(ModelNotFound, match="open_clip ViT-B-16"):
        load_semantics(cfg, "cpu")
    cfg.models.allow_random_weights = True
    with caplog.at_level(logging.WARNING):
        src, text = load_semantics(cfg, "cpu")
    assert "RANDOM WEIGHTS" in text.provenance and "superpixel fallback" in src.provenance
    assert "SAM2 weights absent" in caplog.text


def test_random_weight_stack_end_to_end(scene, clip):
    """SAM2-fallback segments + random CLIP + per-scene LQC + field: runs, and says RANDOM WEIGHTS."""
    from langx_ros.core.field.train import FieldConfig
    from langx_ros.core.lqc import LQCConfig
    from langx_ros.core.query import select_3d
    from langx_ros.core.reconstruct import ReconstructConfig, reconstruct

    src = ClipSegmentFeatures(SuperpixelSegmenter(SegmentConfig()), clip, FeatureConfig(max_segments=3))
    res = reconstruct(scene.frames, src, clip, ReconstructConfig(), FieldConfig(iterations=20),
                      LQCConfig(steps=50, codebook_size=64, batch_size=64), LangxConfig().query.canonical_phrases)
    assert res.field.levels == ["s", "m", "l"] and res.field.params["sem"].shape[1] == 9
    assert "RANDOM WEIGHTS" in res.field.provenance_text()
    canon = torch.as_tensor(clip.encode(LangxConfig().query.canonical_phrases))
    (m,) = select_3d(res.field, ["sofa"], torch.as_tensor(clip.encode(["sofa"])), canon, 0.5, LangxConfig().query)
    assert m.level in ("s", "m", "l")  # runs end to end; random weights make the answer meaningless
