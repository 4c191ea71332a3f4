"""The Language Quantized Compressor (LQC): CLIP features <-> a few-channel code (LangScene-X §3.3).

A vector-quantised autoencoder. The encoder E maps an L2-normalised feature x (e.g. 512-d CLIP)
to z_e (D = 3 channels); z_q is the nearest of K learned codebook entries (K = 2048); the decoder
maps z_q back to x_hat. Losses (weights 1, 0.2, 0.5 by default):

    L_r    = ||x - dec(z_e + sg(z_q - z_e))||^2       reconstruction through the straight-through estimator
    L_emb  = ||sg(z_e) - z_q||^2                       pulls codebook entries to the encoder outputs
    L_mask = ||x_hat T - x T||^2                       keeps activations against text embeddings T

plus the usual VQ-VAE commitment term ||z_e - sg(z_q)||^2 (weight 0.25): without it the encoder
outputs run away from the codebook (measured: L_emb grew to 1e8 within 1,000 steps).

Codebook entries unused for a while are re-seeded from current encoder outputs (dead-code
handling). Trained once on a large corpus and reused; a scene without a trained LQC gets one
fitted on its own features, and says so ("per-scene LQC").

Files: ``<name>.safetensors`` (weights, codebook) + ``<name>.json`` (config, provenance).
"""
from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F

from langx_ros.core.atomic import atomic_write_bytes, atomic_write_json
from langx_ros.core.config_fields import from_flat, param


@dataclass
class LQCConfig:
    """Architecture and training of the LQC."""

    feature_dim: int = param(512, "Dimension of the language features (CLIP ViT-B-16: 512).", min=1, max=8192)
    code_dim: int = param(3, "Channels of the code (D).", min=1, max=64)
    codebook_size: int = param(2048, "Codebook entries (K).", min=2, max=1_000_000)
    hidden: list[int] = param([256, 128, 64], "Hidden widths of the encoder (the decoder mirrors them).")
    weight_rec: float = param(1.0, "Weight of L_r.", min=0.0, max=100.0)
    weight_emb: float = param(0.2, "Weight of L_emb.", min=0.0, max=100.0)
    weight_mask: float = param(0.5, "Weight of L_mask.", min=0.0, max=100.0)
    weight_commit: float = param(
        0.25, "Weight of the VQ-VAE commitment loss ||z_e - sg(z_q)||^2 (not in the paper's list; "
        "without it the encoder outputs drift away from the codebook and training diverges).", min=0.0, max=100.0)
    steps: int = param(3000, "Training steps.", min=1, max=10_000_000)
    batch_size: int = param(1024, "Features per training step.", min=1, max=1_000_000)
    lr: float = param(1e-3, "Adam learning rate.", min=0.0, max=1.0)
    dead_code_every: int = param(100, "Check for unused codebook entries every this many steps (0 = never).", min=0, max=1_000_000)
    dead_code_threshold: float = param(1e-3, "Entries with a smaller running usage share are re-seeded.", min=0.0, max=1.0)
    seed: int = param(0, "Random seed.", min=0, max=2**31 - 1)


class LQC(nn.Module):
    """Encoder, codebook and decoder. Shapes: x (..., F) -> z (..., D) -> idx (...) -> x_hat (..., F)."""

    def __init__(self, cfg: LQCConfig):
        super().__init__()
        self.cfg = cfg
        dims = [cfg.feature_dim, *cfg.hidden, cfg.code_dim]
        enc: list[nn.Module] = []
        for a, b in zip(dims[:-1], dims[1:]):
            enc += [nn.Linear(a, b), nn.ReLU()]
        self.encoder = nn.Sequential(*enc[:-1])
        rdims = dims[::-1]
        dec: list[nn.Module] = []
        for a, b in zip(rdims[:-1], rdims[1:]):
            dec += [nn.Linear(a, b), nn.ReLU()]
        self.decoder = nn.Sequential(*dec[:-1])
        self.codebook = nn.Parameter(torch.empty(cfg.codebook_size, cfg.code_dim).uniform_(-1.0 / cfg.codebook_size, 1.0 / cfg.codebook_size))
        self.register_buffer("usage", torch.full((cfg.codebook_size,), 1.0 / cfg.codebook_size))
        self.provenance = "untrained"

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Continuous codes z_e (..., D) of normalised features."""
        return self.encoder(F.normalize(x, dim=-1))

    def nearest(self, z: torch.Tensor, chunk: int = 65536) -> torch.Tensor:
        """Index (...) of the nearest codebook entry of each code.

        On the CPU a KD-tree over the codebook (low-dimensional codes: the tree's home ground);
        on a GPU chunked distance matrices.
        """
        flat = z.detach().reshape(-1, z.shape[-1])
        cb = self.codebook.detach()
        if flat.device.type == "cpu":
            from scipy.spatial import cKDTree

            _, idx = cKDTree(cb.numpy()).query(flat.float().numpy(), k=1, workers=-1)
            return torch.as_tensor(idx, dtype=torch.long).reshape(z.shape[:-1])
        cb_sq = (cb * cb).sum(-1)
        out = torch.empty(flat.shape[0], dtype=torch.long, device=z.device)
        for s in range(0, flat.shape[0], chunk):
            q = flat[s : s + chunk]
            d = (q * q).sum(-1, keepdim=True) - 2 * q @ cb.T + cb_sq[None]
            out[s : s + chunk] = d.argmin(-1)
        return out.reshape(z.shape[:-1])

    def quantize(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(codebook indices, quantised codes z_q) of features x."""
        idx = self.nearest(self.encode(x))
        return idx, self.codebook[idx]

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Features x_hat (..., F) from codes (unnormalised)."""
        return self.decoder(z)

    def codebook_features(self) -> torch.Tensor:
        """(K, F) L2-normalised decoded features of every codebook entry (what queries use)."""
        return F.normalize(self.decode(self.codebook), dim=-1)

    def losses(self, x: torch.Tensor, text: torch.Tensor | None) -> dict[str, torch.Tensor]:
        """The three training losses on a batch x (B, F); text (T, F) or None."""
        x = F.normalize(x, dim=-1)
        z_e = self.encoder(x)
        idx = self.nearest(z_e)
        z_q = self.codebook[idx]
        z_st = z_e + (z_q - z_e).detach()
        x_hat = self.decoder(z_st)
        out = {
            "rec": ((x_hat - x) ** 2).sum(-1).mean(),
            "emb": ((z_e.detach() - z_q) ** 2).sum(-1).mean(),
            "commit": ((z_e - z_q.detach()) ** 2).sum(-1).mean(),
            "idx": idx,
        }
        if text is not None and text.numel():
            out["mask"] = ((x_hat @ text.T - x @ text.T) ** 2).mean()
        return out

    # ---- files --------------------------------------------------------------------------------
    def save(self, path: str | Path, extra: dict | None = None) -> Path:
        """Write ``path`` (.safetensors) and its .json beside it, atomically."""
        from safetensors.torch import save

        path = Path(path).with_suffix(".safetensors")
        state = {k: v.detach().cpu().contiguous() for k, v in self.state_dict().items()}
        atomic_write_bytes(path, save(state))
        atomic_write_json(path.with_suffix(".json"), {"format": "langx_lqc/1", "config": asdict(self.cfg),
                                                     "provenance": self.provenance, **(extra or {})})
        return path

    @classmethod
    def load(cls, path: str | Path, device: torch.device | str = "cpu") -> "LQC":
        """Load a saved LQC; FileNotFoundError names the missing file."""
        from safetensors.torch import load_file

        path = Path(path).with_suffix(".safetensors")
        meta_path = path.with_suffix(".json")
        for p in (path, meta_path):
            if not p.is_file():
                raise FileNotFoundError(f"LQC file missing: {p}")
        meta = json.loads(meta_path.read_text())
        if meta.get("format") != "langx_lqc/1":
            raise ValueError(f"{meta_path}: not an LQC description (format {meta.get('format')!r})")
        cfg = from_flat(LQCConfig, meta["config"])
        model = cls(cfg)
        model.load_state_dict(load_file(str(path)))
        model.provenance = meta.get("provenance", f"loaded from {path}")
        return model.to(device).eval()


def train_lqc(
    features: torch.Tensor,
    cfg: LQCConfig,
    text: torch.Tensor | None = None,
    device: torch.device | str = "cpu",
    progress: Callable[[float, str], None] | None = None,
    cancel: Callable[[], bool] | None = None,
) -> tuple[LQC, dict]:
    """Train an LQC on features (M, F).

    Args:
        features: training features (any scale: they are L2-normalised).
        cfg: architecture and schedule.
        text: (T, F) text embeddings for L_mask (None: L_mask is skipped).
        progress: progress(fraction, detail) about every 1%.
        cancel: polled every step; returning True stops with the model as it is.

    Returns:
        (model in eval mode, statistics: losses, codebook usage, seconds).
    """
    g = torch.Generator(device="cpu").manual_seed(cfg.seed)
    torch.manual_seed(cfg.seed)
    model = LQC(cfg).to(device)
    feats = F.normalize(features.float(), dim=-1).to(device)
    txt = None if text is None else F.normalize(text.float(), dim=-1).to(device)
    with torch.no_grad():  # seed the codebook with encoder outputs of random features
        pick = torch.randint(0, feats.shape[0], (cfg.codebook_size,), generator=g).to(device)
        model.codebook.copy_(model.encoder(feats[pick]) + 1e-3 * torch.randn(cfg.codebook_size, cfg.code_dim, generator=g).to(device))
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    t0 = time.perf_counter()
    hist = []
    reseeded = 0
    every = max(1, cfg.steps // 100)
    for step in range(cfg.steps):
        if cancel is not None and cancel():
            break
        bi = torch.randint(0, feats.shape[0], (min(cfg.batch_size, feats.shape[0]),), generator=g).to(device)
        parts = model.losses(feats[bi], txt)
        loss = cfg.weight_rec * parts["rec"] + cfg.weight_emb * parts["emb"] + cfg.weight_commit * parts["commit"]
        if "mask" in parts:
            loss = loss + cfg.weight_mask * parts["mask"]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        with torch.no_grad():
            counts = torch.bincount(parts["idx"], minlength=cfg.codebook_size).float()
            model.usage.mul_(0.95).add_(0.05 * counts / counts.sum())
            if cfg.dead_code_every and (step + 1) % cfg.dead_code_every == 0 and step + 1 < cfg.steps:
                dead = torch.nonzero(model.usage < cfg.dead_code_threshold / cfg.codebook_size).squeeze(1)
                if dead.numel():
                    src = torch.randint(0, bi.numel(), (dead.numel(),), generator=g).to(device)
                    z = model.encoder(feats[bi[src]])
                    model.codebook[dead] = z + 1e-3 * torch.randn(z.shape, generator=g).to(device)
                    model.usage[dead] = 1.0 / cfg.codebook_size
                    reseeded += int(dead.numel())
        if (step + 1) % every == 0 or step + 1 == cfg.steps:
            rec = {k: float(v.detach()) for k, v in parts.items() if k != "idx"}
            rec["step"] = step + 1
            hist.append(rec)
            if progress is not None:
                progress((step + 1) / cfg.steps, f"LQC step {step + 1}/{cfg.steps}, L_r {rec['rec']:.4f}")
    model.eval()
    with torch.no_grad():
        used = torch.unique(model.nearest(model.encode(feats))).numel()
    stats = {"seconds": time.perf_counter() - t0, "history": hist, "codes_used": int(used),
             "reseeded": reseeded, "num_features": int(feats.shape[0])}
    return model, stats
