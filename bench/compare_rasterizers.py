"""The CPU substitute rasterizer (torch compositor) against gsplat's CUDA rasterizer.

Renders the same random Gaussians with both (the torch one runs on CUDA tensors too) and reports
the max abs difference of features, alpha and depth, and of the gradients, plus timings.
Needs CUDA.
"""
from __future__ import annotations

import argparse

import torch

from _util import time_ms, write_json

from langx_ros.core.field.render import rasterize


def scene(n: int, c: int, device: str, seed: int = 0):
    g = torch.Generator(device="cpu").manual_seed(seed)
    means = torch.stack([torch.rand(n, generator=g) * 2 - 1, torch.rand(n, generator=g) * 1.5 - 0.75, 2 + 2 * torch.rand(n, generator=g)], -1)
    quats = torch.randn(n, 4, generator=g)
    scales = 0.01 + 0.05 * torch.rand(n, 3, generator=g)
    opac = 0.1 + 0.85 * torch.rand(n, generator=g)
    feats = torch.rand(n, c, generator=g)
    return [t.to(device).requires_grad_() for t in (means, quats, scales, opac, feats)]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=3000)
    ap.add_argument("--width", type=int, default=128)
    ap.add_argument("--height", type=int, default=96)
    ap.add_argument("--channels", type=int, default=12)
    a = ap.parse_args()
    assert torch.cuda.is_available(), "needs CUDA (gsplat)"
    dev = "cuda"
    K = torch.tensor([[a.width * 0.9, 0, a.width / 2], [0, a.width * 0.9, a.height / 2], [0, 0, 1.0]], device=dev)
    V = torch.eye(4, device=dev)
    results = {}
    outs = {}
    for backend in ("gsplat", "torch"):
        params = scene(a.n, a.channels, dev)
        out = rasterize(*params, V, K, a.width, a.height, backend=backend)
        w = torch.linspace(0.1, 1.0, a.channels, device=dev)
        loss = (out.features * w).sum() + out.alpha.sum() + (out.depth * out.alpha).sum()
        loss.backward()
        outs[backend] = (out, [p.grad.detach().clone() for p in params])
        results[f"{backend}_forward_ms"] = time_ms(lambda: rasterize(*params, V, K, a.width, a.height, backend=backend), dev)
    (og, gg), (ot, gt) = outs["gsplat"], outs["torch"]
    cover = float((og.alpha > 0.01).float().mean())
    diff = {
        "features": float((og.features - ot.features).detach().abs().max()),
        "alpha": float((og.alpha - ot.alpha).detach().abs().max()),
        "depth_where_alpha>0.5": float(((og.depth - ot.depth).detach().abs() * (og.alpha > 0.5)).max()),
    }
    names = ["means", "quats", "scales", "opacities", "features"]
    grad = {n: float((x - y).abs().max() / (x.abs().max() + 1e-12)) for n, x, y in zip(names, gg, gt)}
    print(f"{a.n} Gaussians, {a.width}x{a.height}, {a.channels} channels, coverage {cover:.2f}")
    print("max abs difference, torch compositor vs gsplat:", {k: f"{v:.2e}" for k, v in diff.items()})
    print("max gradient difference / max |gradient|:", {k: f"{v:.2e}" for k, v in grad.items()})
    print(f"forward: gsplat {results['gsplat_forward_ms']:.2f} ms, torch compositor {results['torch_forward_ms']:.2f} ms")
    write_json("compare_rasterizers", {"args": vars(a), "coverage": cover, "max_abs_diff": diff, "grad_rel_diff": grad, **results})


if __name__ == "__main__":
    main()
