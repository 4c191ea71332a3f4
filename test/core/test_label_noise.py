"""Label noise that imitates SAM/CLIP: deterministic, bounded, and it does change the labels."""
from __future__ import annotations

import numpy as np

from langx_ros.core.frames import Frame
from langx_ros.core.label_noise import LabelNoise, NoisyOracleSemantics, jittered_features, noisy_id_map


def _ids():
    ids = np.zeros((60, 80), np.int64)
    ids[10:40, 10:40] = 1
    ids[20:50, 50:75] = 2
    ids[:5] = -1
    return ids


def test_masks_move_by_at_most_the_bounds():
    ids = _ids()
    noise = LabelNoise(shift_px=3, morph_px=2, relabel=0.0)
    out = noisy_id_map(ids, 3, noise, np.random.default_rng(0))
    for k in (1, 2):
        ys, xs = np.nonzero(out == k)
        y0, x0 = np.nonzero(ids == k)[0].min(), np.nonzero(ids == k)[1].min()
        assert abs(ys.min() - y0) <= 5 and abs(xs.min() - x0) <= 5
    assert (out != ids).any()  # something moved
    assert 0.7 < (out == 1).sum() / (ids == 1).sum() < 1.4


def test_relabelling_changes_about_the_asked_fraction_of_segments():
    rng = np.random.default_rng(1)
    ids = np.repeat(np.arange(40), 25).reshape(40, 25)  # 40 segments of 25 pixels
    changed = 0
    for _ in range(10):
        out = noisy_id_map(ids, 40, LabelNoise(shift_px=0, morph_px=0, relabel=0.1), rng)
        changed += sum(int(np.bincount(out[ids == s] + 1).argmax()) - 1 != s for s in range(40))
    assert 20 <= changed <= 60  # 10 % of 400


def test_features_are_jittered_unit_vectors_and_the_source_is_deterministic():
    f = np.eye(4, 8, dtype=np.float32)
    j = jittered_features(f, 0.1, np.random.default_rng(0))
    assert np.allclose(np.linalg.norm(j, axis=1), 1) and (j * f).sum(1).min() > 0.95 and not np.allclose(j, f)
    src = NoisyOracleSemantics(f, LabelNoise(), "oracle")
    frame = Frame("kf-1", np.zeros((60, 80, 3), np.uint8), np.eye(3), instances=_ids())
    (a, fa), = src.segment_features(frame)
    (b, fb), = src.segment_features(frame)
    assert np.array_equal(a, b) and np.array_equal(fa, fb) and "NOISY" in src.provenance


def test_the_background_is_relabelled_piece_by_piece_not_as_one_segment():
    ids = _ids()  # background (0) covers most of the frame
    bg = ids == 0
    whole = noisy_id_map(ids, 5, LabelNoise(shift_px=0, morph_px=0, relabel=1.0, background_cells=1), np.random.default_rng(3))
    assert len(np.unique(whole[bg])) == 1 and whole[bg][0] != 0  # the old model: one label over the whole background
    pieces = noisy_id_map(ids, 5, LabelNoise(shift_px=0, morph_px=0, relabel=1.0, background_cells=4), np.random.default_rng(3))
    assert not (pieces[bg] == 0).any() and len(np.unique(pieces[bg])) >= 3
    for lab in np.unique(pieces[bg]):  # each label holds whole grid cells only: at most 16 cells, drawn one by one
        assert (pieces[bg] == lab).sum() < bg.sum()
    kept = noisy_id_map(ids, 5, LabelNoise(shift_px=0, morph_px=0, relabel=0.0), np.random.default_rng(3))
    assert np.array_equal(kept, ids)  # cutting into pieces alone changes nothing


def test_segments_of_one_label_stay_apart_and_carry_their_own_features():
    """As SAM's masks: a background piece misread as an object is its own segment, with its own
    jittered feature of the label it is misread as; the label map is the segments' labels."""
    from langx_ros.core.label_noise import noisy_segments

    ids = _ids()
    noise = LabelNoise(shift_px=0, morph_px=0, relabel=1.0, background_cells=4)
    seg, labels = noisy_segments(ids, 3, noise, np.random.default_rng(3))
    cells = 16  # the 4 x 4 background pieces, one with no pixels (wholly under the unlabelled rows and the objects)
    assert len(labels) == 2 + cells
    assert sum(not (seg == i).any() for i in range(len(labels))) == 1
    assert np.array_equal(np.where(seg >= 0, labels[seg.clip(min=0)], -1), noisy_id_map(ids, 3, noise, np.random.default_rng(3)))
    misread = [i for i in range(2, len(labels)) if labels[i] == 1]  # background pieces read as object 1
    assert misread and all(not (seg[ids == 1] == i).any() for i in misread)  # none shares the object's segment
    f = np.eye(3, 8, dtype=np.float32)
    frame = Frame("kf-2", np.zeros((60, 80, 3), np.uint8), np.eye(3), instances=_ids())
    (s, feats), = NoisyOracleSemantics(f, LabelNoise(), "oracle").segment_features(frame)
    assert feats.shape == (2 + cells, 8) and s.max() < 2 + cells
    assert len({tuple(np.round(r, 6)) for r in feats}) == 2 + cells  # every segment jittered on its own


def test_the_draws_do_not_depend_on_which_background_cells_have_pixels():
    """Pixels the labels cannot tell (-1) that empty a background cell leave every segment's draw
    as it was: the same labels, and the same map wherever the pixels are known."""
    from langx_ros.core.label_noise import noisy_segments

    ids = _ids()
    unknown = ids.copy()
    unknown[45:, :20] = -1  # the bottom-left cell of the 4 x 4 grid (15 x 20 px), wholly unknown
    noise = LabelNoise(relabel=0.5)
    seg_a, lab_a = noisy_segments(ids, 3, noise, np.random.default_rng(5))
    seg_b, lab_b = noisy_segments(unknown, 3, noise, np.random.default_rng(5))
    assert np.array_equal(lab_a, lab_b)
    far = np.ones_like(ids, bool)
    far[40:, :26] = False  # away from the unknown cell (masks move by a few pixels)
    assert np.array_equal(seg_a[far], seg_b[far])
    assert (seg_b[45:, :20] < 0).mean() > 0.7 and (seg_a[45:, :20] >= 0).mean() > 0.5
