"""LERF-OVS metrics on hand-computed cases."""
from __future__ import annotations

import json

import numpy as np
import pytest

from langx_ros.core.evaluation import (
    Prediction,
    evaluate,
    load_label_dir,
    localisation_hit,
    mask_iou,
)


def _write(folder, name, objects, w=10, h=8):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{name}.json").write_text(json.dumps({"info": {"name": name, "width": w, "height": h}, "objects": objects}))


def _rect(x1, y1, x2, y2):
    return [[x1, y1], [x2, y1], [x2, y2], [x1, y2]]


@pytest.fixture
def labels(tmp_path):
    d = tmp_path / "label" / "scene"
    _write(d, "frame_00001", [
        {"category": "cup", "bbox": [0, 0, 2, 2], "segmentation": _rect(0, 0, 2, 2)},
        {"category": "cup", "bbox": [6, 4, 8, 6], "segmentation": _rect(6, 4, 8, 6)},  # a second cup
        {"category": "plate", "bbox": [1, 1, 7, 5], "segmentation": _rect(1, 1, 7, 5)},  # overlaps the cups
    ])
    _write(d, "frame_00002", [{"category": "cup", "bbox": [4, 4, 5, 5], "segmentation": _rect(4, 4, 5, 5)}])
    return load_label_dir(d)


def test_category_masks_are_unions(labels):
    f1 = labels[0]
    assert f1.categories == ["cup", "plate"]
    cup = f1.mask("cup")
    assert cup[1, 1] and cup[5, 7] and not cup[3, 4]
    assert cup.sum() == 9 + 9  # two 3x3 filled squares (polygon edges inclusive)
    assert f1.mask("plate").sum() == 7 * 5


def test_hand_computed_metrics(labels):
    f1, f2 = labels
    cup_pred = f1.mask("cup").copy()
    cup_pred[4:7, 6:9] = False  # only the first cup found: IoU = 9 / 18
    plate_pred = np.zeros((8, 10), bool)  # an empty prediction: IoU 0
    preds = {
        "frame_00001": {"cup": Prediction(cup_pred, (5, 7)),  # peak on the second cup's box: a hit
                        "plate": Prediction(plate_pred, (0, 9))},  # outside the plate box: a miss
        # frame_00002 has no prediction: IoU 0 and a miss
    }
    r = evaluate(labels, preds)
    assert r["count"] == 3
    assert r["miou"] == pytest.approx((0.5 + 0.0 + 0.0) / 3)
    assert r["localisation_accuracy"] == pytest.approx(1 / 3)


def test_iou_edge_cases():
    e = np.zeros((3, 3), bool)
    full = np.ones((3, 3), bool)
    assert mask_iou(e, e) == 1.0 and mask_iou(e, full) == 0.0 and mask_iou(full, full) == 1.0
    # pixels the ground truth cannot tell count in neither mask
    pred, gt, known = full.copy(), e.copy(), np.ones((3, 3), bool)
    gt[0] = True
    known[1:] = False
    assert mask_iou(pred, gt) == pytest.approx(3 / 9) and mask_iou(pred, gt, known) == 1.0
    known[0, 0] = False
    pred[0, 1] = False
    assert mask_iou(pred, gt, known) == pytest.approx(1 / 2)


def test_localisation_box_edges_count():
    assert localisation_hit((2, 4), [(4, 2, 6, 3)])
    assert not localisation_hit((2, 3), [(4, 2, 6, 3)])


def test_size_mismatch_is_an_error(labels):
    with pytest.raises(ValueError, match="predicted mask"):
        evaluate(labels[:1], {"frame_00001": {"cup": Prediction(np.zeros((2, 2), bool), (0, 0))}})


def test_polygon_vertices_are_truncated_not_rounded(tmp_path):
    """The official polygon_to_mask casts the vertices with np.int32: 3.4 -> 3, 0.6 -> 0."""
    d = tmp_path / "label" / "s"
    _write(d, "frame_00001", [{"category": "box", "bbox": [[0.6, 0.6], [3.4, 3.4]], "segmentation": _rect(0.6, 0.6, 3.4, 3.4)}])
    (lf,) = load_label_dir(d)
    m = lf.mask("box")
    assert m.sum() == 16 and m[:4, :4].all()  # vertices 0..3; rounding would fill 1..3 (9 pixels)
    assert lf.boxes("box") == [(0.6, 0.6, 3.4, 3.4)]  # nested [[x1, y1], [x2, y2]] accepted


def test_degenerate_polygons_are_drawn_as_cv2_does(tmp_path):
    d = tmp_path / "label" / "s"
    _write(d, "frame_00001", [{"category": "line", "bbox": [1, 1, 5, 1], "segmentation": [[1, 1], [5, 1]]}])
    (lf,) = load_label_dir(d)
    assert lf.mask("line").sum() == 5  # fillPoly draws the 2-point outline


def test_localisation_counts_once_per_category_with_every_candidate(labels):
    """Official rule: a category is localised when any candidate is in any of its boxes, and
    counts once however many boxes are hit; accuracy is over (frame, category) pairs (3 here),
    not boxes (4)."""
    f1, f2 = labels
    empty = np.zeros((8, 10), bool)
    both_cups = np.array([[1, 1], [5, 7]])  # (row, col): one candidate in each cup box
    preds = {
        "frame_00001": {"cup": Prediction(empty, (1, 1), both_cups),
                        "plate": Prediction(empty, (0, 9), np.array([[0, 9], [0, 0]]))},  # both outside the plate box
        "frame_00002": {"cup": Prediction(empty, (0, 0), np.array([[0, 0], [4, 5]]))},  # the second tie hits
    }
    r = evaluate(labels, preds)
    assert r["localisation_accuracy"] == pytest.approx(2 / 3)
    assert [row["localised"] for row in r["per_query"]] == [True, False, True]
    # the peak alone (no candidates) of frame_00002 misses
    preds["frame_00002"]["cup"] = Prediction(empty, (0, 0))
    assert evaluate(labels, preds)["localisation_accuracy"] == pytest.approx(1 / 3)


def test_localisation_hit_accepts_candidates_and_swapped_corners():
    assert localisation_hit(np.array([[0, 0], [2, 4]]), [(6, 3, 4, 2)])
    assert not localisation_hit(np.array([[0, 0], [2, 7]]), [(6, 3, 4, 2)])
    assert localisation_hit((2, 5), [(6, 3, 4, 2)])


def test_miou_is_the_mean_over_frame_category_pairs(labels):
    f1, f2 = labels
    preds = {
        "frame_00001": {"cup": Prediction(f1.mask("cup"), (0, 0)), "plate": Prediction(f1.mask("plate"), (0, 0))},
        "frame_00002": {"cup": Prediction(np.zeros((8, 10), bool), (0, 0))},
    }
    r = evaluate(labels, preds)
    assert r["miou"] == pytest.approx(2 / 3)  # (1 + 1 + 0) / 3, not weighted by frame or pixels


def test_peaks_json_entries_old_and_new_format():
    from langx_ros.cli.evaluate import prediction_from_points

    m = np.zeros((2, 2), bool)
    old = prediction_from_points(m, [3, 4])
    assert old.peak == (3, 4) and old.points.tolist() == [[3, 4]]
    new = prediction_from_points(m, [[3, 4], [5, 6]])
    assert new.peak == (3, 4) and new.points.tolist() == [[3, 4], [5, 6]]
    none = prediction_from_points(m, None)
    assert not localisation_hit(none.points, [(0, 0, 10, 10)])
