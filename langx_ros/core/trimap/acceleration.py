"""Speed options of the TriMap transformer, each named where it is used.

- Attention backend: PyTorch's ``scaled_dot_product_attention`` kernels, chosen with
  ``torch.nn.attention.sdpa_kernel`` ("auto" lets PyTorch pick; "cudnn" is cuDNN's fused
  attention, the fastest measured on Hopper for CogVideoX's 64-wide heads, see README).
- Regional compilation: ``torch.compile`` of each transformer block (PyTorch's regional
  compilation recipe: the 42 identical blocks compile once).
- FP8: torchao's dynamic float8 quantisation (per-row scales) of the blocks' linear layers, for
  GPUs with FP8 tensor cores (compute capability >= 8.9). Outputs change slightly; the benchmark
  reports the difference against the plain path.
"""
from __future__ import annotations

import contextlib

import torch

ATTENTION_BACKENDS = ("auto", "flash", "cudnn", "efficient", "math")


def attention_context(backend: str):
    """Context manager restricting SDPA to ``backend`` ("auto" = PyTorch's choice)."""
    if backend not in ATTENTION_BACKENDS:
        raise ValueError(f"attention backend must be one of {ATTENTION_BACKENDS}, got '{backend}'")
    if backend == "auto":
        return contextlib.nullcontext()
    from torch.nn.attention import SDPBackend, sdpa_kernel

    kind = {"flash": SDPBackend.FLASH_ATTENTION, "cudnn": SDPBackend.CUDNN_ATTENTION,
            "efficient": SDPBackend.EFFICIENT_ATTENTION, "math": SDPBackend.MATH}[backend]
    return sdpa_kernel([kind])


def _blocks(transformer) -> list[torch.nn.Module]:
    blocks = getattr(transformer, "transformer_blocks", None)
    if blocks is None:
        raise ValueError(f"{type(transformer).__name__} has no transformer_blocks to accelerate")
    return list(blocks)


def quantize_fp8(transformer) -> int:
    """Float8 (e4m3, dynamic per-row activation and weight scales) linear layers in the blocks,
    through torchao. Returns how many layers were converted.

    Raises:
        RuntimeError: no CUDA device with FP8 tensor cores, or torchao missing.
    """
    dev = next(transformer.parameters()).device
    if dev.type != "cuda" or torch.cuda.get_device_capability(dev) < (8, 9):
        raise RuntimeError(f"fp8 needs a CUDA GPU with compute capability >= 8.9 (Ada/Hopper); the transformer is on {dev}")
    try:
        from torchao.quantization import Float8DynamicActivationFloat8WeightConfig, PerRow, quantize_
    except ImportError as exc:
        raise RuntimeError(f"fp8 needs torchao ({exc})") from exc
    names = []

    def pick(module: torch.nn.Module, fqn: str) -> bool:
        ok = (isinstance(module, torch.nn.Linear) and fqn.startswith("transformer_blocks.")
              and module.in_features % 16 == 0 and module.out_features % 16 == 0)
        if ok:
            names.append(fqn)
        return ok

    quantize_(transformer, Float8DynamicActivationFloat8WeightConfig(granularity=PerRow()), filter_fn=pick)
    return len(names)


def accelerate(transformer, compile_blocks: bool = False, fp8: bool = False) -> list[str]:
    """Apply the chosen options in place; returns one note per option applied (for logs and
    provenance)."""
    notes = []
    if fp8:
        notes.append(f"fp8 linear layers (torchao, {quantize_fp8(transformer)} layers)")
    if compile_blocks:
        blocks = _blocks(transformer)
        for b in blocks:
            b.compile(fullgraph=False, dynamic=False)
        notes.append(f"torch.compile of {len(blocks)} transformer blocks")
    return notes
