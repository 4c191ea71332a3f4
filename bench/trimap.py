"""TriMap benchmark: the full-size CogVideoX-5B image-to-video architecture with RANDOM WEIGHTS
(bf16), key-frame interpolation of the three modalities, on a GPU.

Side by side in one run:
- speed variants of the three modalities as ONE batch (B = 3 x 2 with classifier-free guidance):
  ``--variants auto,cudnn,cudnn+compile,cudnn+compile+fp8`` (attention backend, regional
  torch.compile, torchao fp8); each is checked against the first variant (the plain path) on the
  same inputs and noise: max / mean absolute difference of the decoded videos;
- one modality at a time (B = 2) on the plain path;
- ``--authors``: the authors' configuration (one modality at a time, sequential CPU offload);
- ``--fast``: a fast setting (fewer frames and steps), timed only.
Seconds per denoising step, VAE decode time, peak GPU memory; totals for --total-steps steps
are computed from the measured per-step times (--steps measured steps after one warm-up step).
Speed only: random weights say nothing about quality.
"""
from __future__ import annotations

import argparse
import copy
import gc
import time

import torch

from _util import write_json

from langx_ros.core.torch_compat import ensure_torchvision

ensure_torchvision()


def build(device: str, dtype: torch.dtype, frames: int = 49, height: int = 480, width: int = 720):
    from diffusers import AutoencoderKLCogVideoX, CogVideoXDDIMScheduler, CogVideoXTransformer3DModel

    with torch.device(device):
        tr = CogVideoXTransformer3DModel(
            num_attention_heads=48, attention_head_dim=64, in_channels=32, out_channels=16, time_embed_dim=512,
            text_embed_dim=4096, num_layers=42, sample_width=width // 8, sample_height=height // 8, sample_frames=frames,
            patch_size=2, max_text_seq_length=226, use_rotary_positional_embeddings=True,
            use_learned_positional_embeddings=True,
        ).to(dtype).eval()
        vae = AutoencoderKLCogVideoX().to(dtype).eval()
    vae.enable_tiling()
    return tr, vae, CogVideoXDDIMScheduler(prediction_type="v_prediction", timestep_spacing="trailing", rescale_betas_zero_snr=True)


def parse_variant(spec: str) -> tuple[str, bool, bool]:
    """'cudnn+compile+fp8' -> (attention backend, compile, fp8)."""
    from langx_ros.core.trimap.acceleration import ATTENTION_BACKENDS

    parts = spec.split("+")
    attention = parts[0]
    if attention not in ATTENTION_BACKENDS or any(p not in ("compile", "fp8") for p in parts[1:]):
        raise SystemExit(f"bad variant '{spec}': <{'|'.join(ATTENTION_BACKENDS)}>[+compile][+fp8]")
    return attention, "compile" in parts, "fp8" in parts


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--frames", type=int, default=49)
    ap.add_argument("--height", type=int, default=480)
    ap.add_argument("--width", type=int, default=720)
    ap.add_argument("--steps", type=int, default=3, help="measured denoising steps (after a warm-up step)")
    ap.add_argument("--total-steps", type=int, default=50)
    ap.add_argument("--guidance", type=float, default=6.0)
    ap.add_argument("--variants", default="auto", help="comma-separated speed variants of the batched run; the first is the reference")
    ap.add_argument("--no-single", action="store_true", help="skip the one-modality (B = 2) plain run")
    ap.add_argument("--authors", action="store_true", help="also time the authors' configuration (sequential CPU offload)")
    ap.add_argument("--offload-steps", type=int, default=2, help="measured steps with offload")
    ap.add_argument("--fast", default="", help="fast setting 'frames,steps,guidance,guidance_fraction' timed with the last variant, "
                    "e.g. 25,20,6,0.5 (all its steps are run and timed)")
    ap.add_argument("--decode", action="store_true", help="time the VAE decode of the three videos tiled and whole")
    ap.add_argument("--profile", action="store_true", help="print the top CUDA kernels of one transformer call of the batched run (first variant)")
    a = ap.parse_args()
    assert torch.cuda.is_available(), "needs a GPU"
    from langx_ros.core.trimap.acceleration import accelerate
    from langx_ros.core.trimap.interpolate import KeyframeInterpolator

    dev, dtype = "cuda", torch.bfloat16
    t0 = time.perf_counter()
    tr, vae, sch = build(dev, dtype, a.frames, a.height, a.width)
    n_params = sum(p.numel() for p in tr.parameters())
    print(f"built CogVideoX-5B-I2V architecture (RANDOM WEIGHTS, bf16): {n_params / 1e9:.2f} B parameters in {time.perf_counter() - t0:.0f} s")
    emb = torch.randn(1, 226, 4096, device=dev, dtype=dtype, generator=torch.Generator(dev).manual_seed(1))
    interp = KeyframeInterpolator(tr, vae, sch, emb)
    g = torch.Generator(dev).manual_seed(2)
    inputs = torch.rand(2, 3, 3, a.height, a.width, device=dev, generator=g)  # (first/last, modality, 3, H, W)
    results: dict = {"parameters": n_params, "variants": {}}

    def measure(batch: int, steps: int, frames: int = a.frames, guidance: float = a.guidance, keep: bool = False, fraction: float = 1.0):
        """(seconds per step, encode seconds, decode seconds, peak GiB, video or None) of one
        interpolation of ``batch`` pairs. Encoding the conditions and decoding are timed on their
        own (same calls as inside the run) and taken out of the per-step time."""
        first, last = inputs[0, :batch], inputs[1, :batch]
        torch.cuda.synchronize()
        t = time.perf_counter()
        interp.condition(first, last, frames)
        interp.encode(first[:, None]), interp.encode(last[:, None])
        torch.cuda.synchronize()
        encode = time.perf_counter() - t
        torch.cuda.reset_peak_memory_stats()
        t = time.perf_counter()
        video, lat = interp(first, last, frames, steps, guidance, return_latents=True, guidance_fraction=fraction)
        torch.cuda.synchronize()
        whole = time.perf_counter() - t
        peak = torch.cuda.max_memory_allocated() / 2**30
        t = time.perf_counter()
        interp.decode(lat)
        torch.cuda.synchronize()
        decode = time.perf_counter() - t
        return (whole - decode - encode) / steps, encode, decode, peak, video.cpu() if keep else None

    def total(per_step: float, encode: float, decode: float, steps: int = a.total_steps) -> float:
        return encode + per_step * steps + decode

    def save() -> None:  # after every section: a run cut short keeps what it measured
        write_json("trimap", {"args": vars(a), **results, "note": "RANDOM WEIGHTS; speed only; totals = encode + steps x "
                              "measured s/step + decode"})

    if a.profile:
        from torch.profiler import ProfilerActivity, profile

        interp.attention = parse_variant(a.variants.split(",")[0])[0]
        captured = {}
        forward = tr.forward

        def capture(*args, **kwargs):
            captured.update(kwargs)
            return forward(*args, **kwargs)

        tr.forward = capture
        measure(3, 1)
        tr.forward = forward
        with torch.no_grad():
            tr(**captured)
            torch.cuda.synchronize()
            with profile(activities=[ProfilerActivity.CUDA]) as prof:
                tr(**captured)
                torch.cuda.synchronize()
        print(f"one transformer call, B = {captured['hidden_states'].shape[0]} (CUDA kernels):")
        print(prof.key_averages().table(sort_by="cuda_time_total", row_limit=12, max_name_column_width=60))

    if not a.no_single:
        measure(1, 1)
        per_step, encode, decode, peak, _ = measure(1, a.steps)
        results["one_modality"] = {"batch": 1, "cfg_batch": 2, "s_per_step": per_step, "encode_s": encode, "decode_s": decode,
                                   "peak_gib": peak, f"total_{a.total_steps}_steps_s": total(per_step, encode, decode)}
        print(f"one modality, plain (B = 2 with CFG): {per_step:.2f} s/step, encode {encode:.1f} s, decode {decode:.1f} s, peak "
              f"{peak:.1f} GiB; three one after another: {3 * total(per_step, encode, decode):.0f} s", flush=True)
        save()
    # the authors' run needs the plain model; the variants below change it in place
    authors_tr = copy.deepcopy(tr).cpu() if a.authors else None

    compiled = False

    def run_variant(spec: str, attention: str, comp: bool, fp8: bool) -> dict:
        nonlocal compiled
        notes = []
        if fp8 and not getattr(tr, "_langx_fp8", False):
            notes += accelerate(tr, fp8=True)
            tr._langx_fp8 = True
            for b in tr.transformer_blocks:  # recompile over the quantised weights
                b._compiled_call_impl = None
            compiled = False
        if comp and not compiled:
            notes += accelerate(tr, compile_blocks=True)
            compiled = True
        elif not comp and compiled:
            raise ValueError("list variants without +compile before those with it")
        interp.attention = attention
        t = time.perf_counter()
        measure(3, 1)  # warm-up (compiles when asked for)
        warm = time.perf_counter() - t
        per_step, encode, decode, peak, video = measure(3, a.steps, keep=True)
        rec = {"attention": attention, "compile": comp, "fp8": fp8, "notes": notes, "s_per_step": per_step, "encode_s": encode,
               "decode_s": decode, "peak_gib": peak, "warmup_s": warm, f"total_{a.total_steps}_steps_s": total(per_step, encode, decode)}
        rec["video"] = video
        return rec

    reference = None
    for spec in a.variants.split(","):
        attention, comp, fp8 = parse_variant(spec)
        try:
            rec = run_variant(spec, attention, comp, fp8)
        except Exception as exc:  # report and go on with the other variants
            print(f"[{spec}] FAILED: {type(exc).__name__}: {exc}", flush=True)
            results["variants"][spec] = {"error": f"{type(exc).__name__}: {exc}"}
            continue
        if reference is None:
            reference = rec.pop("video")
        else:
            d = (rec.pop("video") - reference).abs()
            rec["vs_reference"] = {"reference": a.variants.split(",")[0], "max_abs_diff": float(d.max()), "mean_abs_diff": float(d.mean())}
        results["variants"][spec] = rec
        diff = f", vs plain max {rec['vs_reference']['max_abs_diff']:.3f} mean {rec['vs_reference']['mean_abs_diff']:.4f}" if "vs_reference" in rec else ""
        save()
        print(f"[{spec}] three modalities batched (B = 6 with CFG): {rec['s_per_step']:.2f} s/step, encode {rec['encode_s']:.1f} s, "
              f"decode {rec['decode_s']:.1f} s, "
              f"peak {rec['peak_gib']:.1f} GiB, warm-up {rec['warmup_s']:.0f} s; {a.total_steps} steps + decode = "
              f"{rec[f'total_{a.total_steps}_steps_s']:.0f} s{diff}", flush=True)

    del reference

    if a.decode:
        # the VAE decode of the three videos: tiled (default) vs whole frames, peak memory of each
        lat = torch.randn(3, (a.frames - 1) // 4 + 1, 16, a.height // 8, a.width // 8, device=dev, generator=g)
        results["decode"] = {}
        for tiled in (True, False):
            vae.enable_tiling() if tiled else vae.disable_tiling()
            try:
                interp.decode(lat[:1])
                torch.cuda.synchronize()
                torch.cuda.reset_peak_memory_stats()
                t = time.perf_counter()
                interp.decode(lat)
                torch.cuda.synchronize()
                rec = {"s": time.perf_counter() - t, "peak_gib": torch.cuda.max_memory_allocated() / 2**30}
            except torch.OutOfMemoryError as exc:
                rec = {"error": f"out of memory: {exc}"[:200]}
            results["decode"]["tiled" if tiled else "whole"] = rec
            print(f"decode of three videos, {'tiled' if tiled else 'whole frames'}: {rec}", flush=True)
        vae.enable_tiling()
        save()
    last_spec = a.variants.split(",")[-1]

    if a.fast:
        frames, steps, guidance, fraction = a.fast.split(",")
        frames, steps, guidance, fraction = int(frames), int(steps), float(guidance), float(fraction)
        try:
            # warm-up over both batch shapes (with and without guidance): a compiled model must not compile in the timed run
            measure(3, 2, frames, guidance, fraction=0.5 if 0 < fraction < 1 else fraction)
            per_step, encode, decode, peak, _ = measure(3, steps, frames, guidance, fraction=fraction)  # all its steps: exact total
            results["fast"] = {"variant": last_spec, "frames": frames, "steps": steps, "guidance": guidance, "guidance_fraction": fraction,
                               "s_per_step": per_step, "encode_s": encode, "decode_s": decode, "peak_gib": peak,
                               "total_s": total(per_step, encode, decode, steps)}
            save()
            print(f"fast setting [{last_spec}] {frames} frames, {steps} steps, guidance {guidance:g} in the first {fraction:.0%} of the steps: "
                  f"{per_step:.2f} s/step (average), encode {encode:.1f} s, decode {decode:.1f} s, peak {peak:.1f} GiB -> "
                  f"{total(per_step, encode, decode, steps):.0f} s "
                  "for the three modalities (quality cannot be judged with random weights)", flush=True)
        except Exception as exc:
            print(f"fast setting FAILED: {type(exc).__name__}: {exc}", flush=True)
            results["fast"] = {"error": f"{type(exc).__name__}: {exc}"}

    if a.authors:
        # the authors' configuration: one modality at a time with sequential CPU offload, plain model
        interp = tr = None
        gc.collect()
        torch.cuda.empty_cache()
        interp = KeyframeInterpolator(authors_tr, vae, sch, emb)
        interp._helper.enable_sequential_cpu_offload()
        per_step, encode, decode, peak, _ = measure(1, a.offload_steps)
        tot = 3 * total(per_step, encode, decode)
        results["authors_offload_sequential"] = {"batch": 1, "cfg_batch": 2, "s_per_step": per_step, "encode_s": encode, "decode_s": decode,
                                                 "peak_gib": peak, f"three_modalities_{a.total_steps}_steps_s": tot}
        print(f"authors' configuration (sequential CPU offload, one modality at a time): {per_step:.2f} s/step, encode {encode:.1f} s, "
              f"decode {decode:.1f} s, "
              f"peak {peak:.1f} GiB; three modalities x {a.total_steps} steps = {tot:.0f} s", flush=True)
        for spec, rec in results["variants"].items():
            rec["speedup_vs_authors"] = tot / rec[f"total_{a.total_steps}_steps_s"]
            print(f"  [{spec}] {rec['speedup_vs_authors']:.2f}x faster than the authors' configuration")
    save()


if __name__ == "__main__":
    main()
