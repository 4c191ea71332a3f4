"""Key-frame interpolation on tiny CogVideoX components with RANDOM WEIGHTS (shapes, batching,
key-frame pinning; says nothing about generation quality)."""
from __future__ import annotations

import pytest
import torch

from langx_ros.core.torch_compat import ensure_torchvision

ensure_torchvision()
from diffusers import CogVideoXDDIMScheduler, CogVideoXDPMScheduler  # noqa: E402

from langx_ros.core.trimap.interpolate import KeyframeInterpolator  # noqa: E402
from langx_ros.core.trimap.tiny import save_tiny_model, tiny_components  # noqa: E402


@pytest.fixture(scope="module")
def interp():
    tr, vae = tiny_components()
    return KeyframeInterpolator(tr, vae, CogVideoXDDIMScheduler(), torch.randn(1, 4, 16, generator=torch.Generator().manual_seed(1)))


def _keys(n=3):
    g = torch.Generator().manual_seed(2)
    return torch.rand(n, 3, 16, 16, generator=g), torch.rand(n, 3, 16, 16, generator=g)


def test_shapes_and_pinned_keyframes(interp):
    first, last = _keys()
    steps_seen = []
    video, lat = interp(first, last, num_frames=9, steps=3, guidance=6.0, seed=5, return_latents=True,
                        on_step=lambda done, n: steps_seen.append((done, n)))
    assert steps_seen == [(1, 3), (2, 3), (3, 3)]
    assert video.shape == (3, 9, 3, 16, 16) and 0 <= float(video.min()) and float(video.max()) <= 1
    assert lat.shape == (3, 3, 4, 4, 4)  # 9 frames -> 3 latent frames; 16 px -> 4
    assert torch.equal(lat[:, 0], interp.encode(first[:, None])[:, 0])
    assert torch.equal(lat[:, -1], interp.encode(last[:, None])[:, 0])
    _, free = interp(first, last, num_frames=9, steps=3, guidance=6.0, seed=5, pin_keyframes=False, return_latents=True)
    assert not torch.equal(free[:, 0], lat[:, 0])  # pinning is what holds them


def test_one_batch_equals_items_one_by_one(interp):
    first, last = _keys()  # e.g. the RGB, normal and semantic key frames of one pair
    batched = interp(first, last, 9, 3, 6.0, seed=11)
    for i in range(3):
        alone = interp(first[i : i + 1], last[i : i + 1], 9, 3, 6.0, seed=11 + i)
        assert torch.allclose(batched[i], alone[0], atol=1e-4)


def test_without_guidance_and_bad_settings(interp):
    first, last = _keys(1)
    assert interp(first, last, 9, 2, 1.0).shape == (1, 9, 3, 16, 16)
    with pytest.raises(ValueError, match="4k \\+ 1"):
        interp(first, last, 8, 2, 1.0)
    with pytest.raises(ValueError, match="multiples of 8"):
        interp(first[..., :12], last[..., :12], 9, 2, 1.0)
    tr, vae = tiny_components()
    with pytest.raises(ValueError, match="DDIM"):
        KeyframeInterpolator(tr, vae, CogVideoXDPMScheduler(), torch.zeros(1, 4, 16))(first, last, 9, 2, 1.0)
    tr16, vae16 = tiny_components(in_channels=4)
    with pytest.raises(ValueError, match="image-to-video"):
        KeyframeInterpolator(tr16, vae16, CogVideoXDDIMScheduler(), torch.zeros(1, 4, 16))


def test_guidance_fraction_runs_guidance_in_the_first_steps_only(interp):
    first, last = _keys(2)
    full = interp(first, last, 9, 4, 6.0, seed=3)
    assert torch.equal(interp(first, last, 9, 4, 6.0, seed=3, guidance_fraction=1.0), full)
    none = interp(first, last, 9, 4, 6.0, seed=3, guidance_fraction=0.0)
    assert torch.allclose(none, interp(first, last, 9, 4, 1.0, seed=3), atol=1e-6)  # = no guidance at all
    half = interp(first, last, 9, 4, 6.0, seed=3, guidance_fraction=0.5)
    assert not torch.allclose(half, full, atol=1e-4) and not torch.allclose(half, none, atol=1e-4)
    with pytest.raises(ValueError, match="guidance_fraction"):
        interp(first, last, 9, 4, 6.0, guidance_fraction=1.5)


def test_attention_backends_and_speed_options(interp):
    from langx_ros.core.trimap.acceleration import accelerate, attention_context, quantize_fp8

    first, last = _keys(2)
    ref = interp(first, last, 9, 2, 6.0, seed=1)
    tr, vae = tiny_components()
    tr.load_state_dict(interp.transformer.state_dict())
    math_interp = KeyframeInterpolator(tr, vae, CogVideoXDDIMScheduler(), interp.prompt_embeds, attention="math")
    math_interp.vae.load_state_dict(interp.vae.state_dict())
    assert torch.allclose(math_interp(first, last, 9, 2, 6.0, seed=1), ref, atol=1e-5)
    with pytest.raises(ValueError, match="attention backend"):
        attention_context("fastest")
    with pytest.raises(RuntimeError, match="compute capability"):
        quantize_fp8(tr)  # on the CPU
    notes = accelerate(tr, compile_blocks=True)
    assert notes == ["torch.compile of 1 transformer blocks"]
    assert all(b._compiled_call_impl is not None for b in tr.transformer_blocks)


def test_load_interpolator_from_a_diffusers_folder(tmp_path):
    """A tiny RANDOM-WEIGHT model saved as a diffusers folder loads with the configured options;
    cached prompt embeddings mean no T5 is needed."""
    from langx_ros.core.trimap.interpolate import TriMapConfig, load_interpolator

    cfg = TriMapConfig(vae_tiling=False, vae_slicing=True, attention_backend="math")
    folder = save_tiny_model(tmp_path / "trimap", (cfg.prompt, ""))
    interp = load_interpolator(folder, cfg, "cpu")
    assert interp.attention == "math" and interp.vae.use_slicing and not interp.vae.use_tiling
    assert "float32" in interp.provenance and str(folder) in interp.provenance
    first, last = _keys(1)
    assert interp(first, last, 9, 2, 6.0).shape == (1, 9, 3, 16, 16)
    with pytest.raises(ValueError, match="cpu_offload"):
        load_interpolator(folder, TriMapConfig(cpu_offload="model", compile=True), "cpu")


def test_model_folder_and_prompt_cache_errors_name_what_is_missing(tmp_path):
    from safetensors.torch import save_file

    from langx_ros.core.models import ModelNotFound
    from langx_ros.core.trimap.interpolate import check_model_folder, prompt_embeddings

    (tmp_path / "m" / "vae").mkdir(parents=True)
    (tmp_path / "m" / "vae" / "config.json").write_text("{}")
    with pytest.raises(ModelNotFound) as info:
        check_model_folder(tmp_path / "m")
    msg = str(info.value)
    assert "transformer/config.json" in msg and "model_index.json" in msg and "vae/config.json" not in msg
    with pytest.raises(ModelNotFound, match="text_encoder"):
        prompt_embeddings(tmp_path / "m", "a 3D consistent video scene", tmp_path / "cache")
    # a cached prompt needs no T5 at all
    import hashlib

    key = hashlib.sha256(f"{(tmp_path / 'm').resolve()}|hello".encode()).hexdigest()[:16]
    (tmp_path / "cache").mkdir()
    save_file({"prompt_embeds": torch.ones(1, 3, 8)}, str(tmp_path / "cache" / f"prompt-{key}.safetensors"))
    assert torch.equal(prompt_embeddings(tmp_path / "m", "hello", tmp_path / "cache"), torch.ones(1, 3, 8))


def test_engine_densifies_with_trimap(interp):
    """Engine.build(use_trimap=True) with a tiny RANDOM-WEIGHT interpolator: generated views join
    the training (colour + normals), their ids and the TriMap provenance are recorded."""
    from langx_ros.core.config import LangxConfig
    from langx_ros.core.engine import Engine
    from langx_ros.core.synthetic import make_scene

    scene = make_scene(3, 32, 24)
    cfg = LangxConfig()
    cfg.semantics.source, cfg.semantics.labels = "oracle", scene.labels
    cfg.field.iterations, cfg.lqc.steps, cfg.lqc.codebook_size, cfg.lqc.batch_size = 30, 50, 32, 64
    cfg.trimap.width, cfg.trimap.height, cfg.trimap.num_frames, cfg.trimap.steps, cfg.trimap.guidance = 16, 16, 9, 2, 1.0
    engine = Engine(cfg, "cpu")
    interp.provenance = "TriMap, RANDOM WEIGHTS (test)"
    engine._trimap = interp
    stages = []
    res = engine.build(scene.frames, progress=lambda s, fr, d: stages.append(s), use_trimap=True)
    gen = res.field.meta["generated_frames"]
    assert len(gen) == 2 * (9 - 2) and gen[0].startswith("gen-view-000-view-001-")
    prov = res.field.provenance["trimap"]
    assert "RANDOM WEIGHTS" in prov and "14 generated views (colour, normals, masks" in prov
    assert "L_s2d only (OracleSemantics" in prov  # the oracle cannot pool features over generated masks
    assert "trimap" in stages and "trimap" in res.timings


def test_engine_releases_the_model_when_not_kept_and_loads_it_again(tmp_path):
    """trimap.keep_loaded: false drops the weights after densifying (before field training); the
    next reconstruction loads them from the folder again; a released interpolator refuses work."""
    from langx_ros.core.config import LangxConfig
    from langx_ros.core.engine import Engine
    from langx_ros.core.synthetic import make_scene

    scene = make_scene(2, 32, 24)
    cfg = LangxConfig()
    cfg.semantics.source, cfg.semantics.labels = "oracle", scene.labels
    cfg.models.model_dir, cfg.trimap.model_subdir = str(tmp_path), "trimap-RANDOM-tiny"
    save_tiny_model(tmp_path / cfg.trimap.model_subdir, (cfg.trimap.prompt, ""))
    cfg.field.iterations, cfg.lqc.steps, cfg.lqc.codebook_size, cfg.lqc.batch_size = 10, 20, 32, 64
    cfg.trimap.width, cfg.trimap.height, cfg.trimap.num_frames, cfg.trimap.steps, cfg.trimap.guidance = 16, 16, 5, 1, 1.0
    cfg.trimap.keep_loaded = False
    engine = Engine(cfg, "cpu")
    res = engine.build(scene.frames, use_trimap=True)
    first = engine._trimap
    assert first.released and first.transformer is None and "released after densifying" in res.field.provenance["trimap"]
    with pytest.raises(RuntimeError, match="released"):
        first(*_keys(1), num_frames=5, steps=1, guidance=1.0)
    res2 = engine.build(scene.frames, use_trimap=True)  # loads again
    assert engine._trimap is not first and engine._trimap.released and len(res2.field.meta["generated_frames"]) == 3

    cfg.trimap.keep_loaded = True
    engine.build(scene.frames, use_trimap=True)
    kept = engine._trimap
    assert not kept.released and engine.trimap() is kept  # kept between reconstructions
