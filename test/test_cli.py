"""Command-line tools on small inputs."""
from __future__ import annotations

import json

import numpy as np
import pytest

from langx_ros.cli import evaluate as eval_cli
from langx_ros.cli import train_lqc as lqc_cli
from langx_ros.core.lqc import LQC


def test_train_lqc_from_feature_files(tmp_path, capsys):
    g = np.random.default_rng(0)
    centers = g.normal(size=(4, 32)).astype(np.float32)
    feats = np.repeat(centers, 50, 0) + 0.01 * g.normal(size=(200, 32)).astype(np.float32)
    np.save(tmp_path / "f.npy", feats)
    params = tmp_path / "p.yaml"
    params.write_text("langx_node:\n  ros__parameters:\n    device: cpu\n    lqc: {codebook_size: 32, hidden: [32, 16], batch_size: 64}\n")
    assert lqc_cli.main(["--features", str(tmp_path / "f.npy"), "--out", str(tmp_path / "lqc"), "--params", str(params), "--steps", "100"]) == 0
    model = LQC.load(tmp_path / "lqc.safetensors")
    assert model.cfg.feature_dim == 32 and model.cfg.codebook_size == 32
    assert "langx-train-lqc on 200 features from f.npy" in model.provenance
    meta = json.loads((tmp_path / "lqc.json").read_text())
    assert meta["training"]["num_features"] == 200
    assert "codes used" in capsys.readouterr().out


def test_train_lqc_rejects_bad_features(tmp_path):
    np.save(tmp_path / "bad.npy", np.zeros((3, 4, 5), np.float32))
    with pytest.raises(SystemExit, match="expected \\(M, F\\)"):
        lqc_cli.main(["--features", str(tmp_path / "bad.npy"), "--out", str(tmp_path / "x")])


def test_eval_from_prediction_folder(tmp_path, capsys):
    import cv2

    lab = tmp_path / "label"
    lab.mkdir()
    (lab / "frame_00001.json").write_text(json.dumps({"info": {"name": "frame_00001", "width": 10, "height": 8}, "objects": [
        {"category": "cup", "bbox": [0, 0, 4, 3], "segmentation": [[0, 0], [4, 0], [4, 3], [0, 3]]}]}))
    pred = tmp_path / "pred" / "frame_00001"
    pred.mkdir(parents=True)
    m = np.zeros((8, 10), np.uint8)
    m[0:4, 0:5] = 255  # exactly the labelled rectangle
    cv2.imwrite(str(pred / "cup.png"), m)
    (pred / "peaks.json").write_text(json.dumps({"cup": [1, 1]}))
    out = tmp_path / "r.json"
    assert eval_cli.main(["--labels", str(lab), "--pred", str(tmp_path / "pred"), "--out", str(out)]) == 0
    r = json.loads(out.read_text())
    assert r["miou"] == 1.0 and r["localisation_accuracy"] == 1.0
    assert "mIoU 100.00" in capsys.readouterr().out
