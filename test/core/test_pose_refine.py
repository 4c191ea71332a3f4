"""Keyframe pose refinement (core/pose_refine.py): recovering simulated odometry error."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from langx_ros.core.frames import Frame
from langx_ros.core.pose_refine import PoseRefineConfig, _correction, perturb_poses, refine_poses, summary
from langx_ros.core.synthetic import make_scene


def _errors(truth: list[Frame], est: list[Frame]) -> np.ndarray:
    return np.array([_correction(a.pose, b.pose) for a, b in zip(truth[1:], est[1:])])  # (n, 2): metres, degrees


@pytest.fixture(scope="module")
def scene():
    return make_scene(6, 160, 120, span_deg=100)  # overlapping views on an arc, exact depth and poses


def test_simulated_odometry_error_is_recovered_and_the_anchor_stays(scene):
    noisy = perturb_poses(scene.frames, 0.02, 1.0)
    before = _errors(scene.frames, noisy)
    out, report = refine_poses(noisy, PoseRefineConfig(enabled=True, stride=2))
    after = _errors(scene.frames, out)
    assert np.median(before[:, 0]) > 0.015 and np.median(after[:, 0]) < 0.005, (before, after)
    assert after[:, 1].max() < 0.3, after
    assert np.array_equal(out[0].pose, noisy[0].pose) and report[0].status == "anchor"
    assert all(c.status == "refined" for c in report[1:]), [c.status for c in report]
    assert all(c.residual_after < c.residual_before for c in report[1:])
    assert noisy[1].pose is not out[1].pose and not np.array_equal(noisy[1].pose, out[1].pose)  # inputs untouched
    assert "5 of 6 keyframe poses refined" in summary(report)


def test_a_world_origin_far_from_the_scene_changes_nothing(scene):
    """A robot's map origin may lie hundreds of metres away: the same scene moved there is refined as well."""
    far = [dataclasses.replace(f, pose=f.pose + np.pad(np.array([[500.0], [-300.0], [20.0]]), ((0, 1), (3, 0)))) for f in scene.frames]
    noisy = perturb_poses(far, 0.02, 1.0)
    out, _ = refine_poses(noisy, PoseRefineConfig(enabled=True, stride=2))
    after = _errors(far, out)
    assert np.median(after[:, 0]) < 0.005 and after[:, 1].max() < 0.3, after


def test_corrections_beyond_the_limits_or_without_depth_are_refused(scene):
    noisy = perturb_poses(scene.frames, 0.02, 1.0)
    noisy[2] = dataclasses.replace(noisy[2], depth=None)
    out, report = refine_poses(noisy, PoseRefineConfig(enabled=True, stride=2, max_translation=0.001))
    assert report[2].status == "kept: no depth or pose" and np.array_equal(out[2].pose, noisy[2].pose)
    kept = [c for c in report[1:] if c.status.startswith("kept: correction")]
    assert kept and all(np.array_equal(out[i].pose, noisy[i].pose) for i, c in enumerate(report) if c in kept)
    assert "beyond the limits" in summary(report)


def test_progress_and_cancel(scene):
    seen = []

    class Stop(Exception):
        pass

    def cancel():
        if len(seen) >= 2:
            raise Stop

    with pytest.raises(Stop):
        refine_poses(scene.frames[:4], PoseRefineConfig(enabled=True, stride=4), lambda fr, d: seen.append((fr, d)), cancel)
    assert [round(fr, 3) for fr, _ in seen] == [round(1 / 9, 3), round(2 / 9, 3)] and "sweep 1/3" in seen[0][1]


def test_real_kitchen_keyframes_agree_again_after_simulated_odometry_error(real_data_root):
    """7-Scenes kitchen, every 4th of the 40 frames: poses perturbed by 2 cm / 1 degree; the median
    depth disagreement of neighbouring keyframes returns to the data set's level."""
    from langx_ros.core.frames import list_rgbd_folder, load_rgbd_frame
    from langx_ros.core.pose_refine import _cloud, _disagreement
    from scipy.spatial import cKDTree

    folder = real_data_root("rgbd-7scenes-redkitchen")
    frames = [load_rgbd_frame(folder, i) for i in list_rgbd_folder(folder)[::4]]
    cfg = PoseRefineConfig(enabled=True)
    clouds = [_cloud(f, cfg) for f in frames]

    def disagreement(fs):  # median over neighbour pairs of the median |point-to-plane distance|
        vals = []
        for a in range(len(fs) - 1):
            tgt = clouds[a].points @ fs[a].pose[:3, :3].T + fs[a].pose[:3, 3]
            nrm = clouds[a].normals @ fs[a].pose[:3, :3].T
            vals.append(_disagreement(clouds[a + 1], fs[a + 1].pose, cKDTree(tgt), tgt, nrm, cfg.max_distance))
        return float(np.median(vals))

    noisy = perturb_poses(frames, 0.02, 1.0)
    base, bad = disagreement(frames), disagreement(noisy)
    out, report = refine_poses(noisy, cfg)
    good = disagreement(out)
    assert bad > base + 0.005 and good < base + 0.25 * (bad - base), (base, bad, good, summary(report))


def test_reconstruct_refines_the_poses_when_enabled_and_says_so():
    from langx_ros.core.config import QueryConfig
    from langx_ros.core.field.train import FieldConfig
    from langx_ros.core.lqc import LQCConfig
    from langx_ros.core.reconstruct import ReconstructConfig, reconstruct
    from langx_ros.core.synthetic import OracleSemantics, OracleTextEncoder

    sc = make_scene(4, 96, 72, span_deg=80)
    enc = OracleTextEncoder(sc.labels)
    noisy = perturb_poses(sc.frames, 0.02, 1.0, seed=3)
    stages = []
    res = reconstruct(noisy, OracleSemantics.from_scene(sc, enc), enc, ReconstructConfig(), FieldConfig(iterations=10),
                      LQCConfig(steps=20, batch_size=64, codebook_size=16), QueryConfig().canonical_phrases,
                      progress=lambda s, fr, d: stages.append((s, fr, d)), pose_cfg=PoseRefineConfig(enabled=True, stride=2))
    names = list(dict.fromkeys(s for s, _, _ in stages))
    assert names[:3] == ["validate", "poses", "semantics"] and "poses" in res.timings
    assert res.field.provenance["poses"].startswith("refined (pose_refine): 3 of 4 keyframe poses refined")
    plain = reconstruct(noisy[:2], OracleSemantics.from_scene(sc, enc), enc, ReconstructConfig(), FieldConfig(iterations=10),
                        LQCConfig(steps=20, batch_size=64, codebook_size=16), QueryConfig().canonical_phrases)
    assert plain.field.provenance["poses"].startswith("as given") and "poses" not in plain.timings
