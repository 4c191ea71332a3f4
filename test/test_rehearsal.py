"""The first run of a user who has real weights, rehearsed: every model written in the exact file
layout and format a user copies (random values), loaded by the product's own loaders, then the
main job end to end through that path (langx-demo --scene rgbd, small size). Wrong keys, names
or formats fail with a message naming the file and what was expected."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from langx_ros.core.checkpoints import CheckpointError, load_open_clip, load_sam2
from langx_ros.core.config import LangxConfig
from langx_ros.core.models import inventory
from langx_ros.core.rehearsal import write_rehearsal

REPO = Path(__file__).resolve().parents[1]
LOUNGE = REPO.parent / "shared" / "data" / "rgbd-3dmatch-seq01"


@pytest.fixture(scope="module")
def rehearsal(tmp_path_factory):
    return write_rehearsal(tmp_path_factory.mktemp("rehearsal"))


def _cfg(r) -> LangxConfig:
    cfg = LangxConfig()
    cfg.models.model_dir, cfg.models.hf_cache, cfg.reconstruct.lqc_path = str(r.model_dir), str(r.hf_cache), str(r.lqc)
    return cfg


def test_the_files_sit_where_a_user_puts_them_and_say_random_weights(rehearsal):
    r = rehearsal
    assert r.open_clip.relative_to(r.hf_cache).parts[:3] == ("models--timm--vit_base_patch16_clip_224.openai", "snapshots",
                                                             (r.hf_cache / "models--timm--vit_base_patch16_clip_224.openai/refs/main").read_text())
    assert r.open_clip.name == "open_clip_model.safetensors" and r.sam2 == r.model_dir / "sam2" / "sam2.1_hiera_small.pt"
    assert set(torch.load(r.sam2, map_location="cpu", weights_only=True)) == {"model", "langx_rehearsal"}
    inv = inventory(_cfg(r))
    assert all("RANDOM WEIGHTS" in inv[k] for k in ("open_clip ViT-B-16", "SAM2 sam2.1_hiera_small.pt", "TriMap")), inv
    assert json.loads(r.lqc.with_suffix(".json").read_text())["provenance"].startswith("RANDOM WEIGHTS")


def test_the_product_loads_them_and_its_provenance_says_random_weights(rehearsal):
    from langx_ros.core.semantics import load_semantics
    from langx_ros.core.trimap.interpolate import TriMapConfig, load_interpolator

    sem, clip = load_semantics(_cfg(rehearsal), "cpu")
    assert sem.provenance.count("RANDOM WEIGHTS (rehearsal checkpoint") == 2, sem.provenance  # SAM2 and open_clip
    assert clip.encode(["a chair"]).shape == (1, 512)
    assert "RANDOM WEIGHTS" in load_interpolator(rehearsal.trimap, TriMapConfig(), "cpu").provenance


def test_wrong_layouts_keys_and_formats_name_the_file_and_what_was_expected(rehearsal, tmp_path):
    from sam2.build_sam import build_sam2

    from langx_ros.core.models import SAM2_CONFIGS

    sam = build_sam2(SAM2_CONFIGS["sam2.1_hiera_small.pt"], None, device="cpu")
    sd = torch.load(rehearsal.sam2, map_location="cpu", weights_only=True)["model"]
    bare = tmp_path / "bare.pt"
    torch.save(sd, bare)  # the state dict without the release's {"model": ...}
    with pytest.raises(CheckpointError, match=r"bare\.pt: expected SAM2's release layout \{'model': state_dict\}"):
        load_sam2(sam, bare, "sam2.1_hiera_small.pt")
    renamed = tmp_path / "renamed.pt"
    key = next(iter(sd))
    torch.save({"model": {("x." + k if k == key else k): v for k, v in sd.items()}}, renamed)
    with pytest.raises(CheckpointError, match=rf"renamed\.pt: not a SAM2 sam2.1_hiera_small.pt checkpoint .*1 of the model's keys missing \(e\.g\. {key}\).*x\.{key}"):
        load_sam2(sam, renamed, "sam2.1_hiera_small.pt")
    garbage = tmp_path / "open_clip_model.safetensors"
    garbage.write_bytes(b"not a checkpoint")
    import open_clip

    model = open_clip.create_model("ViT-B-16", pretrained=None)
    with pytest.raises(CheckpointError, match=r"open_clip_model\.safetensors: cannot be read as open_clip ViT-B-16's state dict"):
        load_open_clip(model, garbage, "ViT-B-16")
    with pytest.raises(CheckpointError, match=r"\.txt: an open_clip checkpoint is a \.safetensors or torch"):
        load_open_clip(model, tmp_path / "weights.txt", "ViT-B-16")


def test_the_main_job_runs_end_to_end_through_them(rehearsal, tmp_path):
    """langx-demo --scene rgbd on the real lounge where present, else on a generated scene
    written as a posed RGB-D folder; small sizes for the CPU."""
    data = LOUNGE
    if not data.is_dir():
        from langx_ros.core.frames import save_rgbd_folder
        from langx_ros.core.synthetic import make_scene

        data = save_rgbd_folder(make_scene(4, 128, 96).frames, tmp_path / "frames")
    params = rehearsal.params_file(REPO / "config" / "langx.yaml", tmp_path / "langx.yaml",
                                   {"segment.points_per_side": 6, "features.max_segments": 24})
    exe = Path(sys.executable).parent / "langx-demo"
    env = {**os.environ, "ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST"}
    p = subprocess.run([str(exe), "--scene", "rgbd", "--params", str(params), "--data", str(data), "--size", "128", "96",
                        "--iterations", "40", "--queries", "a chair", "--out", str(tmp_path / "demo")],
                       capture_output=True, text=True, timeout=900, env=env)
    out = p.stdout + p.stderr
    assert p.returncode == 0, out[-4000:]
    assert "[demo] mode: rgbd" in out and "NOTE: this field was built on RANDOM WEIGHTS" in out, out[-3000:]
    summary = json.loads((tmp_path / "demo" / "summary.json").read_text())
    prov = summary["reconstruction"]["provenance"]
    assert summary["random_weights"] and "SAM2 sam2.1_hiera_small.pt: RANDOM WEIGHTS (rehearsal" in prov
    assert "open_clip ViT-B-16: RANDOM WEIGHTS (rehearsal" in prov and "trained LQC" in prov
