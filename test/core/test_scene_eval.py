"""Scoring 3D answers against labelled surfaces: hand-made cases."""
from __future__ import annotations

import numpy as np

from langx_ros.core.scene_eval import score_points, summarise


def _grid(x0):
    g = np.stack(np.meshgrid(np.arange(10) * 0.02, np.arange(10) * 0.02), -1).reshape(-1, 2)
    return np.c_[g[:, 0] + x0, g[:, 1], np.zeros(len(g))]


SURF = {"mug": _grid(0.0), "kettle": _grid(1.0)}


def test_an_answer_on_the_object_scores_full_precision_and_its_share_of_recall():
    half = SURF["mug"][SURF["mug"][:, 0] < 0.09]
    s = score_points("mug", True, 0.9, half, SURF)
    assert s.precision == 1.0 and 0.5 <= s.recall < 0.8 and not s.wrong_object
    assert abs(s.centroid_error - np.linalg.norm(half.mean(0) - SURF["mug"].mean(0))) < 1e-9


def test_an_answer_on_another_object_is_a_wrong_object_answer_naming_it():
    s = score_points("mug", True, 0.9, SURF["kettle"] + [0, 0, 0.01], SURF)
    assert s.precision == 0.0 and s.recall == 0.0 and s.wrong_object and s.nearest_other == "kettle"
    assert s.centroid_error > 0.9
    nothing = score_points("kettle", False, 0.3, np.zeros((0, 3)), SURF)
    summ = summarise([s, nothing])
    assert summ["found"] == 1 and summ["wrong_object"] == 1 and summ["min_precision"] == 0.0


def test_a_label_naming_two_instances_is_scored_against_the_answered_one():
    two = {"sofa": np.concatenate([_grid(0.0), _grid(3.0)]), "kettle": _grid(1.5)}
    s = score_points("sofa", True, 0.9, _grid(3.0), two)
    assert s.precision == 1.0 and s.recall == 1.0 and abs(s.recall_all - 0.5) < 1e-9
    assert s.centroid_error < 1e-9  # against the answered sofa, not the midpoint of both
