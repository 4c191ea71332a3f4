"""The Language Quantized Compressor: training, quantisation, dead codes, files."""
from __future__ import annotations

import json

import pytest
import torch

from langx_ros.core.lqc import LQC, LQCConfig, train_lqc
from langx_ros.core.relevancy import relevancy


def _clusters(n_clusters=6, per=100, dim=64, noise=0.02, seed=0):
    g = torch.Generator().manual_seed(seed)
    centers = torch.nn.functional.normalize(torch.randn(n_clusters, dim, generator=g), dim=-1)
    x = centers.repeat_interleave(per, 0) + noise * torch.randn(n_clusters * per, dim, generator=g)
    return centers, x


CFG = LQCConfig(feature_dim=64, codebook_size=128, hidden=[64, 32], steps=400, batch_size=256)


@pytest.fixture(scope="module")
def trained():
    centers, x = _clusters()
    model, stats = train_lqc(x, CFG, text=centers)
    return centers, x, model, stats


def test_compresses_and_reconstructs_clustered_features(trained):
    centers, _, model, stats = trained
    with torch.no_grad():
        idx, zq = model.quantize(centers)
        dec = torch.nn.functional.normalize(model.decode(zq), dim=-1)
    assert zq.shape == (6, 3) and idx.shape == (6,)
    assert len(set(idx.tolist())) == 6  # distinct concepts get distinct codes
    cos = (dec * centers).sum(-1)
    assert cos.min() > 0.95, cos
    h = stats["history"]
    assert h[-1]["rec"] < 0.5 * h[0]["rec"]
    assert h[-1]["emb"] < 1.0  # the commitment term keeps encoder outputs near the codebook


def test_codebook_features_support_relevancy(trained):
    centers, _, model, _ = trained
    with torch.no_grad():
        feats = model.codebook_features()[model.quantize(centers)[0]]
    canon = torch.nn.functional.normalize(torch.randn(4, 64, generator=torch.Generator().manual_seed(9)), dim=-1)
    rel = relevancy(feats, centers, canon)  # (Q, M): query i against decoded concept j
    assert (rel.diag() > 0.9).all()
    off = rel[~torch.eye(6, dtype=torch.bool)]
    assert off.max() < rel.diag().min()


def test_dead_codes_are_reseeded(trained):
    assert trained[3]["reseeded"] > 0  # 128 entries for 6 concepts: most start unused


def test_save_load_round_trip(tmp_path, trained):
    centers, _, model, _ = trained
    model.provenance = "test LQC"
    path = model.save(tmp_path / "lqc", extra={"trained_on": "clusters"})
    meta = json.loads(path.with_suffix(".json").read_text())
    assert meta["config"]["codebook_size"] == 128 and meta["trained_on"] == "clusters"
    loaded = LQC.load(path)
    with torch.no_grad():
        assert torch.equal(loaded.quantize(centers)[0], model.quantize(centers)[0])
        assert torch.allclose(loaded.codebook_features(), model.codebook_features())
    assert loaded.provenance == "test LQC"


def test_load_names_the_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="lqc.safetensors"):
        LQC.load(tmp_path / "lqc.safetensors")


def test_default_architecture_matches_the_paper():
    m = LQC(LQCConfig())
    assert m.codebook.shape == (2048, 3)
    assert m.encode(torch.randn(2, 512)).shape == (2, 3) and m.decode(torch.randn(2, 3)).shape == (2, 512)
