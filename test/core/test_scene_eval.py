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


def test_a_sparsely_sampled_far_surface_is_one_instance_and_two_objects_are_two():
    """A board 3.5 m away, its depth samples 4.5 cm apart in rows (holes of the sensor), is one
    object; two sofas 1 m apart are two. (At the old 5 cm gap the board fell into pieces and an
    answer covering all of it was scored against one piece.)"""
    import numpy as np

    from langx_ros.core.scene_eval import score_points, surface_instances

    xs, ys = np.meshgrid(np.arange(0, 2.0, 0.045), np.arange(0, 1.0, 0.01))
    board = np.c_[xs.ravel(), ys.ravel(), np.full(xs.size, 3.5)]
    assert len(set(surface_instances(board).tolist())) == 1
    assert len(set(surface_instances(board, 0.05).tolist())) > 1  # the old gap
    sofa = np.random.default_rng(0).uniform(0, 0.5, (2000, 3))
    assert len(set(surface_instances(np.concatenate([sofa, sofa + [1.5, 0, 0]])).tolist())) == 2
    s = score_points("board", True, 1.0, board, {"board": board})
    assert s.recall == 1.0 and s.centroid_error < 1e-9


def test_the_surface_centroid_does_not_depend_on_where_the_cameras_sampled_densely():
    """A 2 m cabinet run whose near end a camera saw at 1 mm spacing and far end at 2 cm: the
    mean of its depth points lies near the near end; an answer with evenly spread Gaussians over
    the same surface has a point-centroid error of decimetres but a surface-centroid error of
    millimetres."""
    from langx_ros.core.scene_eval import surface_centroid

    near = np.c_[np.arange(0, 0.5, 0.001), np.zeros(500), np.zeros(500)]
    far = np.c_[np.arange(0.5, 2.0, 0.02), np.zeros(75), np.zeros(75)]
    gt = np.concatenate([near, far])
    answer = np.c_[np.arange(0, 2.0, 0.01), np.zeros(200), np.zeros(200)]
    s = score_points("cabinets", True, 1.0, answer, {"cabinets": gt})
    assert s.precision == 1.0 and s.recall == 1.0
    assert s.centroid_error > 0.3 and s.surface_centroid_error < 0.02
    assert abs(surface_centroid(gt)[0] - 1.0) < 0.02
    assert summarise([s])["max_surface_centroid_error"] == s.surface_centroid_error


def test_off_object_points_are_counted_where_they_lie_and_background_is_named_unlabelled():
    """An answer for the mug with 20 stray points in empty space and 3 on the kettle: the
    off-object points mostly lie on nothing labelled, and the score says so (it used to name the
    kettle, the only labelled object any of them touched)."""
    from langx_ros.core.scene_eval import off_object_counts

    stray = np.c_[np.linspace(0.0, 0.5, 20), np.full(20, 0.6), np.full(20, 0.3)]
    ans = np.concatenate([SURF["mug"], stray, SURF["kettle"][:3] + [0, 0, 0.01]])
    s = score_points("mug", True, 0.9, ans, SURF)
    assert s.off_object == {"unlabelled": 20, "kettle": 3} and s.nearest_other == "unlabelled"
    assert not s.wrong_object and abs(s.precision - 100 / 123) < 1e-9
    # each point counts once, on the nearest object within the tolerance
    both = {"a": np.zeros((1, 3)), "b": np.array([[0.04, 0, 0]])}
    assert off_object_counts(np.array([[0.01, 0, 0], [0.03, 0, 0], [0.2, 0, 0]]), both) == {"a": 1, "b": 1, "unlabelled": 1}
    assert off_object_counts(np.zeros((0, 3)), both) == {}
