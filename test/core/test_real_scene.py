"""Real-scene protocol at small size on the CPU: the 3DMatch lounge with our annotations, under the
ORACLE-FEATURE PROTOCOL (label names embedded by all-MiniLM-L6-v2). bench/real_scene.py runs the
same at full size with gsplat on a GPU, for every scene and semantic mode.

At 128x96 with 150 iterations the field is coarse: small objects (a printer of ~3,000 depth
points at full size) hold only a few dozen Gaussians, so the thresholds here are the CPU
protocol's, weaker than the GPU targets in the README.
"""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from langx_ros.core.config import QueryConfig
from langx_ros.core.field.train import FieldConfig
from langx_ros.core.lqc import LQCConfig
from langx_ros.core.real_scene import DATA_ROOT, answer_3d, encode_queries, load_scene, run_scene, scene_spec
from langx_ros.core.scene_eval import format_table, summarise

LOUNGE = DATA_ROOT / "rgbd-3dmatch-seq01"


@pytest.fixture(scope="module")
def lounge():
    if not LOUNGE.is_dir():
        pytest.skip(f"real RGB-D data not present at {LOUNGE} (only developers of langx_ros have it)")
    return load_scene(scene_spec("lounge"), 128, 96)


def test_pixels_the_labels_cannot_tell_are_no_segment_not_background(lounge):
    """The lounge's labels are made in 3D, so pixels without depth have none (13 % of a frame, most
    of the 40 columns at the right border): they are unknown (-1, no segment, not scored), and only
    the old protocol ("background") paints them background. Object pixels are the same either way."""
    from langx_ros.core.synthetic import OracleSemantics

    old = load_scene(scene_spec("lounge"), 128, 96, unknown="background")
    assert old.unknown == "background" and lounge.unknown == "unlabelled"
    for new_f, old_f in zip(lounge.train + lounge.held_out, old.train + old.held_out):
        unknown = new_f.instances < 0
        assert 0.05 < unknown.mean() < 0.3 and (old_f.instances >= 0).all()
        assert np.array_equal(new_f.instances[~unknown], old_f.instances[~unknown])
        assert (old_f.instances[unknown] == 0).all()  # the old protocol's background
        assert unknown[:, -8:].mean() > 0.8  # the border the depth does not cover (columns 600-639 at full size)
        # the oracle semantics give those pixels no segment
        seg, _ = OracleSemantics({}, np.eye(len(lounge.names), dtype=np.float32)).segment_features(new_f)[0]
        assert (seg[unknown] < 0).all() and (seg[~unknown] >= 0).all()
    with pytest.raises(ValueError):
        load_scene(scene_spec("lounge"), 128, 96, unknown="zero")


def test_every_annotated_lounge_object_is_answered_on_itself(lounge):
    from langx_ros.core.text_minilm import MiniLMTextEncoder

    torch.manual_seed(0)
    r = run_scene(lounge, MiniLMTextEncoder("cpu"), "register", FieldConfig(iterations=150),
                  LQCConfig(steps=1000, codebook_size=256, batch_size=512), QueryConfig(mask_box_px=6, mask_clean_px=3), "cpu")
    scores = r.pop("_scores")
    table = format_table(scores)
    print(f"\nlounge, 128x96, 150 it, CPU compositor, register mode, ORACLE-FEATURE PROTOCOL:\n{table}\n{r['summary']}")
    assert len(scores) >= 6
    assert all(s.found for s in scores), table
    assert not any(s.wrong_object for s in scores), table
    assert r["summary"]["mean_precision"] >= 0.8, table
    # a partial answer's centroid lies on the part it covers (the potted plant, 6-11 % of its surface
    # at this size, is 0.46-0.61 m off while 0.98-1.00 of its points lie on it): centroids are
    # checked where an answer covers a third of the object, and every answer lies on its object
    assert all(s.centroid_error <= 0.5 for s in scores if s.recall >= 0.3), table
    assert all(s.precision >= 0.7 for s in scores), table
    assert r["observed"] < r["gaussians"]  # something was left unobserved (hidden or off-surface)
    # scored against the agreed surface, and also against every labelled pixel (a superset)
    assert r["surface_agreement"] == 0.5 and r["summary_every_labelled_pixel"]["found"] == r["summary"]["found"]
    assert all(0 < kept <= every for kept, every in r["surface_voxels"].values())
    # the same answers as Gaussian centres (query.points: centres) cover less of each object: a coarse
    # field draws a surface with few, large Gaussians, whose centres leave most of it more than 5 cm away
    field = r["_field"]
    assert field.surface is not None and len(field.surface) > 1000
    qcfg = QueryConfig(mask_box_px=6, mask_clean_px=3)
    encoded = encode_queries(lounge, MiniLMTextEncoder("cpu"), qcfg, "cpu")
    centres, _ = answer_3d(lounge, field, *encoded, dataclasses.replace(qcfg, points="centres"))
    ctab = format_table(centres)
    c = summarise(centres)
    print(f"the same answers as Gaussian centres:\n{ctab}\n{c}")
    assert [x.wrong_object for x in centres] == [x.wrong_object for x in scores]
    assert r["summary"]["mean_recall"] >= c["mean_recall"] + 0.07, (table, ctab)  # measured: 0.49 -> 0.61
    assert r["summary"]["mean_precision"] >= c["mean_precision"] - 0.05, (table, ctab)


SHELF = DATA_ROOT / "rgbd-apc-shelf"


def test_the_shelf_ground_truth_leaves_out_the_tissue_box_label_spilled_behind_it():
    """The shelf's tissue-box labels spill a few pixels past the box's right and top edges onto
    the stems and the bin 30 cm behind; the observed surface (the 3D ground truth) keeps only the
    labelled points the other views agree on, so it loses those and moves towards the cameras."""
    if not SHELF.is_dir():
        pytest.skip(f"real RGB-D data not present at {SHELF} (only developers of langx_ros have it)")
    scene = load_scene(scene_spec("shelf"), 64, 48)
    assert scene.surface_agreement == 0.5
    box, every = scene.surfaces["kleenex tissue box"], scene.surfaces_labelled["kleenex tissue box"]
    assert 0.05 < 1 - len(box) / len(every) < 0.3
    cam = scene.train[0].pose
    depth = lambda p: ((p - cam[:3, 3]) @ cam[:3, 2]).mean()  # noqa: E731  mean depth along the first view's axis
    assert depth(box) < depth(every) - 0.01
    old = load_scene(scene_spec("shelf"), 64, 48, surface_agreement=0.0)
    assert all(np.array_equal(old.surfaces[n], scene.surfaces_labelled[n]) for n in scene.names[1:])


def test_the_noisy_shelf_is_answered_on_its_objects_and_the_segment_check_acts():
    """The shelf bin (8 training views, sparse short-range depth) at 160x120, 300 iterations: clean
    labels, then the same geometry re-registered from noisy labels (seed 1, the seed whose full-size
    answer fell to precision 0.58 without the segment check). Measured here: clean 0 wrong, min
    precision 1.00; noisy seeds 0-2 0 wrong, min precision 0.99-1.00 with or without the check (this
    coarse field does not show the full-size failure)."""
    from langx_ros.core.label_noise import LabelNoise
    from langx_ros.core.text_minilm import MiniLMTextEncoder

    if not SHELF.is_dir():
        pytest.skip(f"real RGB-D data not present at {SHELF} (only developers of langx_ros have it)")
    scene = load_scene(scene_spec("shelf"), 160, 120)
    enc = MiniLMTextEncoder("cpu")
    qcfg = QueryConfig(mask_box_px=8, mask_clean_px=3)
    lqc = LQCConfig(steps=1000, codebook_size=256, batch_size=512)
    torch.manual_seed(0)
    clean = run_scene(scene, enc, "register", FieldConfig(iterations=300), lqc, qcfg, "cpu")
    table = format_table(clean.pop("_scores"))
    print(f"\nshelf, 160x120, 300 it, clean ORACLE labels:\n{table}\n{clean['summary']}")
    assert clean["summary"]["found"] == 2 and clean["summary"]["wrong_object"] == 0, table
    assert clean["summary"]["min_precision"] >= 0.9, table
    torch.manual_seed(0)
    noisy = run_scene(scene, enc, "register", FieldConfig(iterations=300), lqc, qcfg, "cpu", LabelNoise(seed=1),
                      geometry=clean["_field"])
    table = format_table(noisy.pop("_scores"))
    print(f"the same geometry, NOISY oracle labels (seed 1):\n{table}\n{noisy['summary']}")
    assert noisy["geometry"] == "kept from an earlier run" and noisy["gaussians"] == clean["gaussians"]
    assert noisy["summary"]["found"] == 2 and noisy["summary"]["wrong_object"] == 0, table
    assert noisy["summary"]["min_precision"] >= 0.8, table
    dropped = int(noisy["provenance"]["semantic codes"].split("cross-view segment check: ")[1].split()[0])
    assert dropped > 0  # misread segments were found and left out
