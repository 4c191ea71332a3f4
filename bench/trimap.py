"""TriMap benchmark: the full-size CogVideoX-5B image-to-video architecture with RANDOM WEIGHTS
(bf16), key-frame interpolation of the three modalities, on a GPU.

Side by side in one run: the three modalities as one batch (B = 3 x 2 with classifier-free
guidance) and one modality at a time (B = 2), seconds per denoising step, VAE decode time per
video, peak GPU memory. Totals for 50 steps are computed from the measured per-step times
(--steps measured steps after one warm-up step). Speed only: random weights say nothing about
quality.
"""
from __future__ import annotations

import argparse
import time

import torch

from _util import write_json

from langx_ros.core.torch_compat import ensure_torchvision

ensure_torchvision()


def build(device: str, dtype: torch.dtype):
    from diffusers import AutoencoderKLCogVideoX, CogVideoXDDIMScheduler, CogVideoXTransformer3DModel

    with torch.device(device):
        tr = CogVideoXTransformer3DModel(
            num_attention_heads=48, attention_head_dim=64, in_channels=32, out_channels=16, time_embed_dim=512,
            text_embed_dim=4096, num_layers=42, sample_width=90, sample_height=60, sample_frames=49, patch_size=2,
            max_text_seq_length=226, use_rotary_positional_embeddings=True, use_learned_positional_embeddings=True,
        ).to(dtype).eval()
        vae = AutoencoderKLCogVideoX().to(dtype).eval()
    vae.enable_tiling()
    return tr, vae, CogVideoXDDIMScheduler(prediction_type="v_prediction", timestep_spacing="trailing", rescale_betas_zero_snr=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--frames", type=int, default=49)
    ap.add_argument("--height", type=int, default=480)
    ap.add_argument("--width", type=int, default=720)
    ap.add_argument("--steps", type=int, default=3, help="measured denoising steps (after a warm-up step)")
    ap.add_argument("--total-steps", type=int, default=50)
    ap.add_argument("--authors", action="store_true", help="also time the authors' configuration (sequential CPU offload)")
    ap.add_argument("--offload-steps", type=int, default=2, help="measured steps with offload")
    a = ap.parse_args()
    assert torch.cuda.is_available(), "needs a GPU"
    from langx_ros.core.trimap.interpolate import KeyframeInterpolator

    dev, dtype = "cuda", torch.bfloat16
    t0 = time.perf_counter()
    tr, vae, sch = build(dev, dtype)
    n_params = sum(p.numel() for p in tr.parameters())
    print(f"built CogVideoX-5B-I2V architecture (RANDOM WEIGHTS, bf16): {n_params / 1e9:.2f} B parameters in {time.perf_counter() - t0:.0f} s")
    emb = torch.randn(1, 226, 4096, device=dev, dtype=dtype)
    interp = KeyframeInterpolator(tr, vae, sch, emb)
    results = {"parameters": n_params}

    def measure(batch: int, steps: int) -> tuple[float, float, float]:
        """(seconds per step, decode seconds, peak GiB) of one interpolation of ``batch`` pairs."""
        first = torch.rand(batch, 3, a.height, a.width, device=dev)
        last = torch.rand(batch, 3, a.height, a.width, device=dev)
        torch.cuda.reset_peak_memory_stats()
        t = time.perf_counter()
        _, lat = interp(first, last, a.frames, steps, 6.0, return_latents=True)
        torch.cuda.synchronize()
        with_decode = time.perf_counter() - t
        t = time.perf_counter()
        interp.decode(lat)
        torch.cuda.synchronize()
        decode = time.perf_counter() - t
        # the run decodes once itself; encoding the conditions is included in the steps (small)
        return (with_decode - decode) / steps, decode, torch.cuda.max_memory_allocated() / 2**30

    for name, batch in (("three_modalities_batched", 3), ("one_modality", 1)):
        measure(batch, 1)  # warm-up
        per_step, decode, peak = measure(batch, a.steps)
        total = per_step * a.total_steps + decode
        results[name] = {"batch": batch, "cfg_batch": 2 * batch, "s_per_step": per_step, "decode_s": decode,
                         "peak_gib": peak, f"total_{a.total_steps}_steps_s": total}
        print(f"{name}: {per_step:.2f} s/step (B = {2 * batch} with CFG), decode {decode:.1f} s, peak {peak:.1f} GiB; "
              f"{a.total_steps} steps + decode = {total:.0f} s")
    if a.authors:
        # the authors' configuration: one modality at a time with sequential CPU offload
        interp._helper.enable_sequential_cpu_offload()
        torch.cuda.empty_cache()
        per_step, decode, peak = measure(1, a.offload_steps)
        tot = 3 * (per_step * a.total_steps + decode)
        results["authors_offload_sequential"] = {"batch": 1, "cfg_batch": 2, "s_per_step": per_step, "decode_s": decode,
                                                 "peak_gib": peak, f"three_modalities_{a.total_steps}_steps_s": tot}
        print(f"authors' configuration (sequential CPU offload, one modality at a time): {per_step:.2f} s/step, decode {decode:.1f} s, "
              f"peak {peak:.1f} GiB; three modalities x {a.total_steps} steps = {tot:.0f} s")
    one = results["one_modality"][f"total_{a.total_steps}_steps_s"]
    print(f"three modalities one after another (no offload): {3 * one:.0f} s vs batched "
          f"{results['three_modalities_batched'][f'total_{a.total_steps}_steps_s']:.0f} s")
    write_json("trimap", {"args": vars(a), **results, "note": "RANDOM WEIGHTS; speed only; totals from measured per-step times"})


if __name__ == "__main__":
    main()
