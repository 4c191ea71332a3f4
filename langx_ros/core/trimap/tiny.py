"""A tiny CogVideoX image-to-video model with RANDOM WEIGHTS: the real diffusers classes at toy
sizes (16 x 16 px, 9 frames), for tests and CPU dry runs of the TriMap plumbing. Its output is
noise; anything built from it must say RANDOM WEIGHTS.

The VAE's sample size (64) only sets its tile size (half of it): diffusers' tiled VAE gives
wrong shapes when a tile is smaller than a few latent pixels, so the toy tiles are kept larger
than the toy videos.
"""
from __future__ import annotations

import json
from pathlib import Path

import torch

from langx_ros.core.torch_compat import ensure_torchvision

TINY_TEXT_DIM = 16
TINY_TEXT_LEN = 4


def tiny_components(in_channels: int = 8, seed: int = 0):
    """(transformer, vae) at toy sizes; ``in_channels`` = 2 x 4 latent channels for key-frame
    conditioning."""
    ensure_torchvision()
    from diffusers import AutoencoderKLCogVideoX, CogVideoXTransformer3DModel

    torch.manual_seed(seed)
    vae = AutoencoderKLCogVideoX(block_out_channels=(8, 8, 8), down_block_types=("CogVideoXDownBlock3D",) * 3,
                                 up_block_types=("CogVideoXUpBlock3D",) * 3, latent_channels=4, layers_per_block=1,
                                 norm_num_groups=2, temporal_compression_ratio=4, sample_height=64, sample_width=64).eval()
    tr = CogVideoXTransformer3DModel(num_attention_heads=2, attention_head_dim=16, in_channels=in_channels, out_channels=4,
                                     time_embed_dim=8, text_embed_dim=TINY_TEXT_DIM, num_layers=1, sample_width=4, sample_height=4,
                                     sample_frames=9, patch_size=2, max_text_seq_length=TINY_TEXT_LEN,
                                     use_rotary_positional_embeddings=True).eval()
    return tr, vae


def save_tiny_model(folder: str | Path, prompts: tuple[str, ...] = (), seed: int = 0, index_extra: dict | None = None) -> Path:
    """Write the tiny model as a diffusers folder (model_index.json, transformer/, vae/,
    scheduler/) with cached RANDOM prompt embeddings for ``prompts`` (no T5 needed);
    ``index_extra``: more keys for model_index.json."""
    from diffusers import CogVideoXDDIMScheduler
    from safetensors.torch import save_file

    from langx_ros.core.trimap.interpolate import prompt_cache_path

    folder = Path(folder)
    tr, vae = tiny_components(seed=seed)
    tr.save_pretrained(str(folder / "transformer"))
    vae.save_pretrained(str(folder / "vae"))
    CogVideoXDDIMScheduler().save_pretrained(str(folder / "scheduler"))
    (folder / "model_index.json").write_text(json.dumps({"_class_name": "CogVideoXImageToVideoPipeline", **(index_extra or {}),
                                                         "_note": "tiny RANDOM-WEIGHT test model"}))
    g = torch.Generator().manual_seed(seed + 1)
    for p in prompts:
        path = prompt_cache_path(folder, p, folder / "prompt_cache")
        path.parent.mkdir(parents=True, exist_ok=True)
        save_file({"prompt_embeds": torch.randn(1, TINY_TEXT_LEN, TINY_TEXT_DIM, generator=g)}, str(path))
    return folder
