"""The LangSplat relevancy score."""
from __future__ import annotations

import torch

from langx_ros.core.relevancy import relevancy


def test_matches_the_pairwise_softmax_definition():
    g = torch.Generator().manual_seed(0)
    f = torch.nn.functional.normalize(torch.randn(7, 16, generator=g), dim=-1)
    q = torch.nn.functional.normalize(torch.randn(16, generator=g), dim=-1)
    c = torch.nn.functional.normalize(torch.randn(4, 16, generator=g), dim=-1)
    expected = []
    for i in range(7):
        per_c = [torch.softmax(10 * torch.stack([f[i] @ q, f[i] @ c[j]]), 0)[0] for j in range(4)]
        expected.append(torch.stack(per_c).min())
    assert torch.allclose(relevancy(f, q, c), torch.stack(expected), atol=1e-6)
    assert relevancy(f, torch.stack([q, -q]), c).shape == (2, 7)


def test_a_feature_equal_to_the_query_is_relevant():
    g = torch.Generator().manual_seed(1)
    q = torch.nn.functional.normalize(torch.randn(32, generator=g), dim=-1)
    c = torch.nn.functional.normalize(torch.randn(4, 32, generator=g), dim=-1)
    assert relevancy(q[None] * 3.0, q, c)[0] > 0.99  # scale does not matter
    assert relevancy(-q[None], q, c)[0] < 0.01
