"""Relevancy of language features to a text query (LangSplat / LERF protocol).

relevancy(f, q) = min over canonical phrases c of softmax(tau * [f.q, f.c])[0]
               = min_c sigmoid(tau * (f.q - f.c)),    tau = 10, phrases "object", "things", "stuff", "texture".

With an LQC every semantic code maps to one of K codebook entries, so a query needs the relevancy
of K decoded features only; per-Gaussian or per-pixel relevancies are gathers from that table.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

TEMPERATURE = 10.0


def relevancy(features: torch.Tensor, query: torch.Tensor, canonical: torch.Tensor, temperature: float = TEMPERATURE) -> torch.Tensor:
    """Relevancy in [0, 1] of each feature to each query.

    Args:
        features: (M, F) features (normalised here).
        query: (Q, F) or (F,) text embeddings (normalised here).
        canonical: (C, F) canonical phrase embeddings (normalised here).

    Returns:
        (Q, M), or (M,) for a single (F,) query.
    """
    single = query.dim() == 1
    f = F.normalize(features.float(), dim=-1)
    q = F.normalize(query.float().reshape(-1, f.shape[-1]), dim=-1)
    c = F.normalize(canonical.float(), dim=-1)
    fq = q @ f.T  # (Q, M)
    fc = (c @ f.T)[None]  # (1, C, M)
    rel = torch.sigmoid(temperature * (fq[:, None, :] - fc)).min(dim=1).values
    return rel[0] if single else rel
