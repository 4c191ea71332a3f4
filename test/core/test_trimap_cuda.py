"""TriMap on CUDA (skips without a GPU; run on the GPU machine): bf16 loading, the engine with
generated views on gsplat, CLIP pooled over generated masks on the device, fp8 vs plain."""
from __future__ import annotations

import pytest
import torch

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (CI has none; run on the GPU machine)")


def test_engine_with_trimap_on_cuda(tmp_path):
    from langx_ros.core.config import LangxConfig
    from langx_ros.core.engine import Engine
    from langx_ros.core.synthetic import make_scene
    from langx_ros.core.trimap.tiny import save_tiny_model

    cfg = LangxConfig()
    cfg.models.model_dir, cfg.models.hf_cache, cfg.models.allow_random_weights = str(tmp_path), str(tmp_path / "hf"), True
    cfg.trimap.model_subdir = "trimap-RANDOM-tiny"
    save_tiny_model(tmp_path / cfg.trimap.model_subdir, (cfg.trimap.prompt, ""))
    cfg.trimap.width, cfg.trimap.height, cfg.trimap.num_frames, cfg.trimap.steps = 16, 16, 9, 2
    cfg.field.iterations, cfg.lqc.steps, cfg.lqc.codebook_size, cfg.lqc.batch_size = 60, 50, 32, 64
    cfg.features.max_segments = 4
    engine = Engine(cfg, "cuda")
    scene = make_scene(3, 64, 48)
    res = engine.build(scene.frames, use_trimap=True)
    interp = engine.trimap()
    assert interp.transformer.dtype == torch.bfloat16 and interp.execution_device.type == "cuda"
    assert len(res.field.meta["generated_frames"]) == 14 and res.field.device.type == "cuda"
    prov = res.field.provenance
    assert "gsplat" in prov["renderer"] and "features pooled over them" in prov["trimap"] and "RANDOM" in prov["trimap"]


def test_fp8_tiny_model_close_to_plain():
    from langx_ros.core.trimap.acceleration import quantize_fp8
    from langx_ros.core.trimap.interpolate import KeyframeInterpolator
    from langx_ros.core.trimap.tiny import tiny_components

    if torch.cuda.get_device_capability() < (8, 9):
        pytest.skip("fp8 needs compute capability >= 8.9")
    pytest.importorskip("torchao", reason="fp8 needs torchao")
    from diffusers import CogVideoXDDIMScheduler

    tr, vae = tiny_components()
    tr, vae = tr.cuda().to(torch.bfloat16), vae.cuda().to(torch.bfloat16)
    emb = torch.randn(1, 4, 16, device="cuda", generator=torch.Generator("cuda").manual_seed(0))
    interp = KeyframeInterpolator(tr, vae, CogVideoXDDIMScheduler(), emb)
    g = torch.Generator("cuda").manual_seed(1)
    first, last = torch.rand(2, 3, 16, 16, device="cuda", generator=g), torch.rand(2, 3, 16, 16, device="cuda", generator=g)
    plain = interp(first, last, 9, 3, 6.0, seed=2)
    assert quantize_fp8(tr) > 0
    fast = interp(first, last, 9, 3, 6.0, seed=2)
    assert not torch.equal(fast, plain) and float((fast - plain).abs().mean()) < 0.05


def test_released_model_frees_gpu_memory(tmp_path):
    """trimap.keep_loaded: false gives the weights' GPU memory back before field training."""
    from langx_ros.core.trimap.interpolate import TriMapConfig, load_interpolator
    from langx_ros.core.trimap.tiny import save_tiny_model

    cfg = TriMapConfig()
    folder = save_tiny_model(tmp_path / "trimap-RANDOM-tiny", (cfg.prompt, ""))
    torch.cuda.empty_cache()
    before = torch.cuda.memory_allocated()
    interp = load_interpolator(folder, cfg, "cuda")
    loaded = torch.cuda.memory_allocated()
    assert loaded > before
    holder = [interp]  # someone else still holds the object: release must free the weights anyway
    interp.release()
    assert holder[0].released and torch.cuda.memory_allocated() - before < 0.1 * (loaded - before)
