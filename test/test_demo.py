"""langx-demo's choice of scene and its check of answers against the annotations (the full run
is the README's main command, run by CI)."""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pytest

from langx_ros.cli import demo

REPO = Path(__file__).resolve().parents[1]


def _args(tmp_path: Path, scene: str, data: Path) -> argparse.Namespace:
    params = tmp_path / "params.yaml"  # a model directory without weights: no open_clip
    params.write_text(f"langx_node:\n  ros__parameters:\n    models:\n      model_dir: {tmp_path / 'models'}\n      hf_cache: {tmp_path / 'hf'}\n")
    return argparse.Namespace(scene=scene, data=data, params=params)


def test_auto_runs_the_real_lounge_when_frames_and_labels_exist_else_the_generated_scene(tmp_path):
    lounge = tmp_path / "rgbd-3dmatch-seq01"  # the name our labels are filed under
    lounge.mkdir()
    mode, why = demo.choose_mode(_args(tmp_path, "auto", lounge))
    assert mode == "lounge" and "oracle-feature protocol" in why and "no open_clip weights" in why
    other = tmp_path / "some-unlabelled-scene"
    other.mkdir()
    assert demo.choose_mode(_args(tmp_path, "auto", other))[0] == "synthetic"
    mode, why = demo.choose_mode(_args(tmp_path, "auto", tmp_path / "missing"))
    assert mode == "synthetic" and "no real frames" in why
    with pytest.raises(SystemExit, match="--scene lounge needs"):
        demo.choose_mode(_args(tmp_path, "lounge", tmp_path / "missing"))
    with pytest.raises(SystemExit, match="--scene rgbd needs open_clip weights"):
        demo.choose_mode(_args(tmp_path, "rgbd", lounge))


def test_every_lounge_query_means_an_annotated_object_or_nothing():
    import json

    names = {o["name"] for o in json.loads((REPO / "bench/labels/rgbd-3dmatch-seq01/annotations.json").read_text())["objects"]}
    targets = set(demo.LOUNGE_QUERIES.values())
    assert targets - {""} == names  # every object asked for once, no query for an unknown name
    assert "" in targets  # and one query that must find nothing


def test_judge_tells_right_wrong_missed_and_false_positive():
    rng = np.random.default_rng(0)
    sofa = rng.uniform([0, 0, 0], [2, 1, 0.02], (2000, 3))
    printer = rng.uniform([4, 0, 0], [4.4, 0.4, 0.02], (500, 3))
    truth = {"sofa": sofa, "printer": printer}
    right = demo.judge("couch", True, 0.9, sofa[:800], truth)
    assert right["right"] and right["target"] == "sofa" and right["precision"] == 1.0 and "right (sofa)" in right["text"]
    wrong = demo.judge("the printer", True, 0.9, sofa[:300], truth)
    assert not wrong["right"] and "WRONG object" in wrong["text"] and "sofa" in wrong["text"]
    assert not demo.judge("the printer", False, 0.2, np.zeros((0, 3)), truth)["right"]
    assert demo.judge("a bicycle", False, 0.1, np.zeros((0, 3)), truth)["right"]
    assert not demo.judge("a bicycle", True, 0.7, sofa[:10], truth)["right"]
    assert demo.judge("something else", True, 0.7, sofa[:10], truth)["target"] is None
