"""Key-frame interpolation on diffusers' CogVideoX image-to-video components (TriMap, §3.2).

The condition video holds the first and last key frames with zeros between; it is VAE-encoded
and concatenated channel-wise with the noise latent, as CogVideoX's image-to-video model takes
its (first-frame) condition. The three modalities (RGB, normals, semantics) of several key-frame
pairs go through the model as ONE batch; every item has its own generator, so a batch gives the
same result as the items run one by one. With ``pin_keyframes`` the first and last latent
frames are held at the key frames' own latents after every step (the method's key frames are
known, so they are not left to the model).

Components are passed in (diffusers style): a ``CogVideoXTransformer3DModel`` with
``in_channels = 2 x latent channels``, an ``AutoencoderKLCogVideoX`` and CogVideoX's DDIM scheduler;
text conditioning arrives as precomputed prompt embeddings. The loop reuses diffusers'
``CogVideoXImageToVideoPipeline`` for its rotary-embedding helper (not for its sampling).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch

from langx_ros.core.config_fields import param
from langx_ros.core.trimap.acceleration import ATTENTION_BACKENDS, attention_context


@dataclass
class TriMapConfig:
    """TriMap video diffusion (off unless weights are configured)."""

    model_subdir: str = param("trimap", "Folder under models.model_dir with the diffusers model (model_index.json, transformer/, vae/, scheduler/).")
    num_frames: int = param(49, "Frames per generated video, key frames included (4k + 1).", min=5, max=257)
    height: int = param(480, "Generation height (px, multiple of 16).", min=16, max=2048)
    width: int = param(720, "Generation width (px, multiple of 16).", min=16, max=2048)
    steps: int = param(50, "Denoising steps.", min=1, max=1000)
    guidance: float = param(6.0, "Classifier-free guidance scale (1 = off).", min=1.0, max=50.0)
    prompt: str = param("a 3D consistent video scene", "Text prompt (its embeddings are cached on disk).")
    pin_keyframes: bool = param(True, "Hold the first and last latent frames at the key frames' latents.")
    seed: int = param(0, "Random seed of the noise.", min=0, max=2**31 - 1)
    guidance_fraction: float = param(1.0, "Fraction of the steps (the first ones) with classifier-free guidance; later steps run the "
                                     "conditional half of the batch only (1 = all steps, as the authors do).", min=0.0, max=1.0)
    semantics: bool = param(True, "Generate semantic maps (colour-coded masks) too; they drive L_s2d and CLIP pooling on the "
                            "generated views.")
    semantic_levels: list[str] = param([], "Segmentation levels to generate, one video each (e.g. [s, m, l]); empty = the "
                                       "semantic source's coarsest level.")
    semantic_colors: int = param(64, "Most mask ids per key-frame pair (palette colours); smaller masks beyond it are left out.",
                                 min=1, max=400)
    semantic_color_tolerance: float = param(0.3, "Generated pixels farther than this (RGB distance, 0-1 units) from every palette "
                                            "colour get no mask id.", min=0.0, max=2.0)
    attention_backend: str = param("auto", "scaled_dot_product_attention kernel (auto = PyTorch's choice; cudnn was fastest on "
                                   "Hopper, see README).", choices=ATTENTION_BACKENDS)
    compile: bool = param(False, "torch.compile each transformer block (regional compilation; the first run compiles).")
    fp8: bool = param(False, "FP8 linear layers through torchao (GPUs with compute capability >= 8.9; outputs change slightly).")
    vae_tiling: bool = param(True, "Tiled VAE encode/decode (less memory).")
    vae_slicing: bool = param(True, "VAE encode/decode one video at a time (less memory).")
    cpu_offload: str = param("none", "Keep weights on the CPU and move them in as needed: none, model (whole components) or "
                             "sequential (layer by layer: least memory, slowest).", choices=("none", "model", "sequential"))
    keep_loaded: bool = param(True, "Keep the TriMap model in memory between reconstructions (the next one starts at once). "
                              "false: release it after densifying, before field training (frees ~12 GB of GPU memory for the "
                              "5B model; the next reconstruction loads it again from disk).")


def _generators(n: int, seed: int) -> list[torch.Generator]:
    return [torch.Generator(device="cpu").manual_seed(seed + i) for i in range(n)]


class KeyframeInterpolator:
    """Generates the frames between two key frames, for a batch of (first, last) pairs."""

    def __init__(self, transformer, vae, scheduler, prompt_embeds: torch.Tensor, negative_prompt_embeds: torch.Tensor | None = None,
                 attention: str = "auto"):
        from langx_ros.core.torch_compat import ensure_torchvision

        ensure_torchvision()
        from diffusers import CogVideoXImageToVideoPipeline

        self.transformer, self.vae, self.scheduler = transformer, vae, scheduler
        attention_context(attention)  # validates the name
        self.attention = attention
        # the stock pipeline object only provides helpers (rotary embeddings); sampling is ours
        self._helper = CogVideoXImageToVideoPipeline(tokenizer=None, text_encoder=None, vae=vae, transformer=transformer, scheduler=scheduler)
        self.prompt_embeds = prompt_embeds
        self.negative_prompt_embeds = negative_prompt_embeds if negative_prompt_embeds is not None else torch.zeros_like(prompt_embeds)
        self.latent_channels = int(vae.config.latent_channels)
        if int(transformer.config.in_channels) != 2 * self.latent_channels:
            raise ValueError(f"the transformer takes {transformer.config.in_channels} channels; key-frame conditioning needs "
                             f"2 x {self.latent_channels} (an image-to-video CogVideoX)")
        self.t_ratio = int(vae.config.temporal_compression_ratio)
        self.s_ratio = 2 ** (len(vae.config.block_out_channels) - 1)

    @property
    def execution_device(self) -> torch.device:
        """Where the inputs go (the GPU also when weights are offloaded to the CPU)."""
        self._check_loaded()
        return self._helper._execution_device

    @property
    def released(self) -> bool:
        return self.transformer is None

    def release(self) -> None:
        """Drop the model (transformer, VAE, prompt embeddings) so that its memory, GPU memory
        included, can be freed even while others still hold this object; it cannot generate
        afterwards (load a new one)."""
        self.transformer = self.vae = self._helper = None
        self.prompt_embeds = self.negative_prompt_embeds = None
        import gc

        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()

    def _check_loaded(self) -> None:
        if self.released:
            raise RuntimeError("this TriMap interpolator was released (trimap.keep_loaded: false); load it again")

    @torch.no_grad()
    def encode(self, video: torch.Tensor) -> torch.Tensor:
        """(B, F, 3, H, W) in [0, 1] -> scaled latents (B, F', C, h, w)."""
        self._check_loaded()
        x = (video * 2 - 1).permute(0, 2, 1, 3, 4).to(self.vae.dtype)
        lat = self.vae.encode(x).latent_dist.mode()
        return (lat * self.vae.config.scaling_factor).permute(0, 2, 1, 3, 4)

    @torch.no_grad()
    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Scaled latents (B, F', C, h, w) -> (B, F, 3, H, W) in [0, 1]."""
        self._check_loaded()
        z = (latents / self.vae.config.scaling_factor).permute(0, 2, 1, 3, 4).to(self.vae.dtype)
        video = self.vae.decode(z).sample
        return ((video.float() + 1) / 2).clamp(0, 1).permute(0, 2, 1, 3, 4)

    def condition(self, first: torch.Tensor, last: torch.Tensor, num_frames: int) -> torch.Tensor:
        """Latents of the condition video: first and last key frames, zeros between."""
        b, _, h, w = first.shape
        video = torch.zeros(b, num_frames, 3, h, w, dtype=first.dtype, device=first.device)
        video[:, 0] = first
        video[:, -1] = last
        return self.encode(video)

    @torch.no_grad()
    def __call__(self, first: torch.Tensor, last: torch.Tensor, num_frames: int, steps: int, guidance: float,
                 seed: int = 0, pin_keyframes: bool = True, return_latents: bool = False, guidance_fraction: float = 1.0,
                 on_step: Callable[[int, int], None] | None = None):
        """(B, 3, H, W) first and last key frames in [0, 1] -> (B, F, 3, H, W) video in [0, 1].

        Item i of the batch uses the noise of seed + i, whatever the batch size. Classifier-free
        guidance runs in the first ``guidance_fraction`` of the steps (1 = all, as the authors
        do); later steps use the conditional prediction alone (half the batch). ``on_step(done,
        steps)`` runs after every step (progress; it may raise to stop, e.g. on cancellation).
        """
        self._check_loaded()
        if type(self.scheduler).__name__ == "CogVideoXDPMScheduler":
            raise ValueError("use CogVideoXDDIMScheduler: the DPM scheduler draws noise at every step, so batched and "
                             "one-by-one runs would differ")
        if (num_frames - 1) % self.t_ratio:
            raise ValueError(f"num_frames must be {self.t_ratio}k + 1, got {num_frames}")
        device = first.device
        b, _, h, w = first.shape
        unit = self.s_ratio * int(self.transformer.config.patch_size)
        if h % unit or w % unit:
            raise ValueError(f"height and width must be multiples of {unit} (VAE x patch), got {h}x{w}")
        cond = self.condition(first, last, num_frames)  # (B, F', C, h', w')
        shape = cond.shape[1:]
        dtype = self.transformer.dtype
        noise = torch.stack([torch.randn(shape, generator=g, dtype=torch.float32) for g in _generators(b, seed)]).to(device)
        self.scheduler.set_timesteps(steps, device=device)
        latents = noise * self.scheduler.init_noise_sigma
        keys = (self.encode(first[:, None])[:, 0], self.encode(last[:, None])[:, 0]) if pin_keyframes else None
        if not 0.0 <= guidance_fraction <= 1.0:
            raise ValueError(f"guidance_fraction must lie in [0, 1], got {guidance_fraction}")
        cfg_steps = math.ceil(guidance_fraction * steps) if guidance > 1.0 else 0
        pos = self.prompt_embeds.to(device=device, dtype=dtype).expand(b, -1, -1)
        neg = self.negative_prompt_embeds.to(device=device, dtype=dtype).expand(b, -1, -1)
        both = torch.cat([neg, pos])
        rotary = None
        if self.transformer.config.use_rotary_positional_embeddings:
            rotary = self._helper._prepare_rotary_positional_embeddings(h, w, latents.shape[1], device)
        ofs = None if self.transformer.config.ofs_embed_dim is None else latents.new_full((1,), fill_value=2.0)
        for i, t in enumerate(self.scheduler.timesteps):
            use_cfg = i < cfg_steps
            enc = both if use_cfg else pos
            x = torch.cat([latents, latents]) if use_cfg else latents
            x = self.scheduler.scale_model_input(x, t)
            x = torch.cat([x, torch.cat([cond, cond]) if use_cfg else cond], dim=2).to(dtype)
            with attention_context(self.attention):
                pred = self.transformer(hidden_states=x, encoder_hidden_states=enc, timestep=t.expand(x.shape[0]),
                                        ofs=ofs, image_rotary_emb=rotary, return_dict=False)[0].float()
            if use_cfg:
                uncond, cond_pred = pred.chunk(2)
                pred = uncond + guidance * (cond_pred - uncond)
            latents = self.scheduler.step(pred, t, latents, return_dict=False)[0]  # DDIM, eta = 0: deterministic
            if keys is not None:
                latents[:, 0], latents[:, -1] = keys[0], keys[1]
            if on_step is not None:
                on_step(i + 1, len(self.scheduler.timesteps))
        video = self.decode(latents)
        return (video, latents) if return_latents else video


def load_interpolator(folder, cfg: TriMapConfig, device: torch.device | str, cache_dir=None) -> KeyframeInterpolator:
    """A KeyframeInterpolator from a diffusers CogVideoX image-to-video folder, with the memory and
    speed options of ``cfg`` applied (bf16 on CUDA, float32 on the CPU).

    Raises:
        ModelNotFound: a required part of the folder is missing (all missing parts are named).
    """
    from pathlib import Path

    from langx_ros.core.torch_compat import ensure_torchvision
    from langx_ros.core.trimap.acceleration import accelerate

    if cfg.cpu_offload != "none" and (cfg.compile or cfg.fp8):
        raise ValueError("trimap.compile and trimap.fp8 need the weights on the GPU (trimap.cpu_offload: none)")
    folder = Path(folder).expanduser()
    check_model_folder(folder)
    ensure_torchvision()
    from diffusers import AutoencoderKLCogVideoX, CogVideoXDDIMScheduler, CogVideoXTransformer3DModel

    device = torch.device(device)
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    tr = CogVideoXTransformer3DModel.from_pretrained(str(folder), subfolder="transformer", torch_dtype=dtype).eval()
    vae = AutoencoderKLCogVideoX.from_pretrained(str(folder), subfolder="vae", torch_dtype=dtype).eval()
    sched = CogVideoXDDIMScheduler.from_pretrained(str(folder), subfolder="scheduler")
    if cfg.vae_tiling:
        vae.enable_tiling()
    if cfg.vae_slicing:
        vae.enable_slicing()
    cache = Path(cache_dir).expanduser() if cache_dir else folder / "prompt_cache"
    emb = prompt_embeddings(folder, cfg.prompt, cache, device)
    neg = prompt_embeddings(folder, "", cache, device)
    notes = ["bf16" if dtype == torch.bfloat16 else "float32", f"attention {cfg.attention_backend}"]
    if cfg.cpu_offload == "none":
        tr.to(device)
        vae.to(device)
        notes += accelerate(tr, compile_blocks=cfg.compile, fp8=cfg.fp8)
    interp = KeyframeInterpolator(tr, vae, sched, emb, neg, attention=cfg.attention_backend)
    if cfg.cpu_offload != "none":
        offload = interp._helper.enable_model_cpu_offload if cfg.cpu_offload == "model" else interp._helper.enable_sequential_cpu_offload
        offload(device=device)
        notes.append(f"{cfg.cpu_offload} CPU offload")
    from langx_ros.core.checkpoints import folder_random_note

    random_note = folder_random_note(folder)  # a rehearsal or test model
    if random_note:
        notes.insert(0, f"RANDOM WEIGHTS: {random_note}")
    interp.provenance = f"TriMap, weights from {folder} ({', '.join(notes)})"
    return interp


REQUIRED = ("model_index.json", "transformer/config.json", "vae/config.json", "scheduler/scheduler_config.json")


def missing_model_files(folder) -> list:
    """The REQUIRED files of a diffusers CogVideoX folder that are not there (paths)."""
    from pathlib import Path

    folder = Path(folder).expanduser()
    return [folder / r for r in REQUIRED if not (folder / r).is_file()]


def check_model_folder(folder) -> None:
    """Raise ModelNotFound naming every missing part of a diffusers CogVideoX folder."""
    from langx_ros.core.models import ModelNotFound

    missing = missing_model_files(folder)
    if missing:
        raise ModelNotFound("TriMap (CogVideoX image-to-video)", missing,
                            "Put the LangScene-X TriMap model or a CogVideoX-5b-I2V diffusers folder there.")


def prompt_cache_path(folder, prompt: str, cache_dir):
    """Where the embeddings of ``prompt`` for the model in ``folder`` are cached."""
    import hashlib
    from pathlib import Path

    key = hashlib.sha256(f"{Path(folder).expanduser().resolve()}|{prompt}".encode()).hexdigest()[:16]
    return Path(cache_dir).expanduser() / f"prompt-{key}.safetensors"


def prompt_embeddings(folder, prompt: str, cache_dir, device: torch.device | str = "cpu") -> torch.Tensor:
    """(1, L, D) T5 embeddings of ``prompt``, cached as safetensors under ``cache_dir``.

    The T5 encoder (text_encoder/, tokenizer/ of the model folder) is loaded only when the cache
    misses, then freed.
    """
    from pathlib import Path

    from safetensors.torch import load_file, save

    from langx_ros.core.atomic import atomic_write_bytes
    from langx_ros.core.models import ModelNotFound

    folder = Path(folder).expanduser()
    path = prompt_cache_path(folder, prompt, cache_dir)
    if path.is_file():
        return load_file(str(path), device=str(device))["prompt_embeds"]
    missing = [folder / d for d in ("text_encoder", "tokenizer") if not (folder / d).is_dir()]
    if missing:
        raise ModelNotFound("TriMap prompt embeddings (T5 text encoder)", missing,
                            f"No cached embeddings for this prompt at {path} and no T5 encoder to compute them.")
    from transformers import T5EncoderModel, T5Tokenizer

    tok = T5Tokenizer.from_pretrained(str(folder / "tokenizer"))
    enc = T5EncoderModel.from_pretrained(str(folder / "text_encoder")).to(device).eval()
    ids = tok([prompt], padding="max_length", max_length=226, truncation=True, return_tensors="pt").input_ids.to(device)
    with torch.no_grad():
        emb = enc(ids)[0].float().cpu()
    del enc
    atomic_write_bytes(path, save({"prompt_embeds": emb.contiguous()}))
    return emb.to(device)
