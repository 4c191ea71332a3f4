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


def relevancy_logits(features: torch.Tensor, query: torch.Tensor, canonical: torch.Tensor, temperature: float = TEMPERATURE,
                     normalised: bool = False) -> torch.Tensor:
    """(Q, M) log(r / (1 - r)) of the relevancy r of each feature to each query: temperature x the
    margin f.q - max_c f.c (min_c sigmoid(x_c) = sigmoid(min_c x_c)). The relevancy saturates near
    1 for every feature merely related to a query; its logit does not.

    Args:
        features: (M, F) features; ``normalised``: they are unit length already (not normalised again).
        query: (Q, F) or (F,) text embeddings (normalised here).
        canonical: (C, F) canonical phrase embeddings (normalised here).
    """
    f = features.float() if normalised else F.normalize(features.float(), dim=-1)
    q = F.normalize(query.float().reshape(-1, f.shape[-1]), dim=-1)
    c = F.normalize(canonical.float(), dim=-1)
    return temperature * (q @ f.T - (c @ f.T).max(dim=0).values)


def relevancy(features: torch.Tensor, query: torch.Tensor, canonical: torch.Tensor, temperature: float = TEMPERATURE) -> torch.Tensor:
    """Relevancy in [0, 1] of each feature to each query.

    Args:
        features: (M, F) features (normalised here).
        query: (Q, F) or (F,) text embeddings (normalised here).
        canonical: (C, F) canonical phrase embeddings (normalised here).

    Returns:
        (Q, M), or (M,) for a single (F,) query.
    """
    rel = torch.sigmoid(relevancy_logits(features, query, canonical, temperature))
    return rel[0] if query.dim() == 1 else rel
