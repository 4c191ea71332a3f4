"""Finding weights in the model directory / HF cache; clear errors; random weights only on request."""
from __future__ import annotations

import pytest

from langx_ros.core.models import ModelNotFound, open_clip_weights, sam2_weights


def test_missing_open_clip_lists_every_path(tmp_path):
    with pytest.raises(ModelNotFound) as info:
        open_clip_weights("ViT-B-16", str(tmp_path / "models"), str(tmp_path / "hf"))
    msg = str(info.value)
    assert str(tmp_path / "models" / "open_clip" / "ViT-B-16.safetensors") in msg
    assert "models--timm--vit_base_patch16_clip_224.openai" in msg
    assert "Copy an open_clip checkpoint" in msg


def test_random_weights_only_when_allowed(tmp_path):
    loc = open_clip_weights("ViT-B-16", str(tmp_path), str(tmp_path), allow_random=True)
    assert loc.random and "RANDOM WEIGHTS" in loc.note


def test_found_in_model_dir_and_in_hf_cache(tmp_path):
    f = tmp_path / "models" / "open_clip" / "ViT-B-16.safetensors"
    f.parent.mkdir(parents=True)
    f.write_bytes(b"x")
    assert open_clip_weights("ViT-B-16", str(tmp_path / "models"), str(tmp_path / "hf")).path == f
    snap = tmp_path / "hf" / "models--facebook--sam2.1-hiera-small" / "snapshots" / "abc123"
    snap.mkdir(parents=True)
    (snap / "sam2.1_hiera_small.pt").write_bytes(b"x")
    loc = sam2_weights("sam2.1_hiera_small.pt", str(tmp_path / "models"), str(tmp_path / "hf"))
    assert loc.path == snap / "sam2.1_hiera_small.pt" and not loc.random


def test_unknown_sam2_checkpoint(tmp_path):
    with pytest.raises(ValueError, match="unknown SAM2 checkpoint"):
        sam2_weights("sam3.pt", str(tmp_path))


def test_inventory_says_where_each_model_is_or_what_happens_instead(tmp_path):
    from langx_ros.core.config import LangxConfig
    from langx_ros.core.models import inventory
    from langx_ros.core.trimap.interpolate import REQUIRED

    cfg = LangxConfig()
    cfg.models.model_dir, cfg.models.hf_cache = str(tmp_path), str(tmp_path / "hf")
    inv = inventory(cfg)
    assert inv["open_clip ViT-B-16"] == "missing (needed by semantics.source 'clip')"
    assert inv["SAM2 sam2.1_hiera_small.pt"] == "missing (superpixel fallback)"
    assert inv["LQC"].startswith("per-scene") and inv["TriMap"].startswith("missing (4 of 4")
    (tmp_path / "sam2").mkdir()
    (tmp_path / "sam2" / "sam2.1_hiera_small.pt").write_bytes(b"x")
    for r in REQUIRED:
        (tmp_path / "trimap" / r).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "trimap" / r).write_text("{}")
    cfg.models.allow_random_weights = True
    cfg.reconstruct.lqc_path = str(tmp_path / "lqc" / "lqc")
    inv = inventory(cfg)
    assert inv["SAM2 sam2.1_hiera_small.pt"] == str(tmp_path / "sam2" / "sam2.1_hiera_small.pt")
    assert inv["TriMap"] == str(tmp_path / "trimap") and inv["open_clip ViT-B-16"] == "missing (RANDOM WEIGHTS will be used: models.allow_random_weights)"
    assert inv["LQC"].startswith("missing: ")
