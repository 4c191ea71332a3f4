"""End to end on a generated scene under the ORACLE-FEATURE PROTOCOL.

Each instance's pixels carry a fixed unit vector standing for its label's embedding and the text
side maps the label to the same vector: this measures lifting (Gaussian field), compression (a
per-scene LQC) and querying (relevancy, 3D selection, 2D masks), not CLIP.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.spatial import cKDTree

from langx_ros.core.config import QueryConfig
from langx_ros.core.field.io import export_field_ply, export_match_ply, load_field, read_ply, save_field
from langx_ros.core.field.registration import RegistrationConfig
from langx_ros.core.field.train import Cancelled, FieldConfig
from langx_ros.core.frames import FrameError
from langx_ros.core.lqc import LQCConfig
from langx_ros.core.query import query_2d, select_3d
from langx_ros.core.reconstruct import ReconstructConfig, reconstruct
from langx_ros.core.synthetic import ORACLE_PROVENANCE, OracleSemantics, OracleTextEncoder, make_scene

# LangSplat's 29 px / 7 px filters are for ~1000 px images; these views are 80 px wide.
QCFG = QueryConfig(threshold=0.8, mask_box_px=3, mask_clean_px=1)
LQC_CFG = LQCConfig(steps=400, batch_size=512, codebook_size=256)


@pytest.fixture(scope="module")
def built():
    scene = make_scene(6, 80, 60)  # views 0-3 train, 4-5 held out
    enc = OracleTextEncoder(scene.labels)
    stages = []
    res = reconstruct(scene.frames[:4], OracleSemantics.from_scene(scene, enc), enc, ReconstructConfig(), FieldConfig(iterations=400),
                      LQC_CFG, QCFG.canonical_phrases, progress=lambda s, fr, d: stages.append((s, fr, d)))
    return scene, enc, res, stages


def _camera(frame):
    return torch.tensor(np.linalg.inv(frame.pose), dtype=torch.float32), torch.tensor(frame.K, dtype=torch.float32)


def test_every_label_query_returns_its_object_in_3d(built, tmp_path):
    scene, enc, res, _ = built
    f = res.field
    labels = scene.labels[1:]
    canon = torch.tensor(enc.encode(QCFG.canonical_phrases))
    matches = select_3d(f, labels, torch.tensor(enc.encode(labels)), canon, QCFG.threshold, QCFG)
    means = f.params["means"].numpy()
    tau = 2 * f.point_spacing()
    report = []
    for k, m in enumerate(matches, start=1):
        assert m.found, m.message
        gt = scene.surface_points(k, 0.01)
        on_instance = cKDTree(gt).query(means)[0] < tau
        returned = np.zeros(len(means), bool)
        returned[m.gaussian_ids] = True
        precision = float((cKDTree(gt).query(m.points)[0] < tau).mean())
        recall = float((returned & on_instance).sum() / on_instance.sum())
        report.append(f"{m.query}: precision {precision:.2f} recall {recall:.2f} ({len(m.points)} pts)")
        assert precision >= 0.9 and recall >= 0.4, report[-1]
        c, size = m.box
        if k == 1:
            ply = read_ply(export_match_ply(m, tmp_path / "sofa.ply"))
            assert len(ply) == len(m.points) and np.allclose(ply["relevancy"], m.relevancy)
        assert np.all(np.abs(c - np.asarray(scene.objects[k - 1].center)) < np.asarray(scene.objects[k - 1].size) + tau)
    print(f"[{ORACLE_PROVENANCE}] 3D, tau {tau:.3f} m: " + "; ".join(report))


def test_unknown_text_finds_nothing(built):
    scene, enc, res, _ = built
    canon = torch.tensor(enc.encode(QCFG.canonical_phrases))
    (m,) = select_3d(res.field, ["zebra"], torch.tensor(enc.encode(["zebra"])), canon, QCFG.threshold, QCFG)
    assert not m.found and "no match above threshold" in m.message and len(m.points) == 0


def test_2d_masks_on_held_out_views(built):
    scene, enc, res, _ = built
    labels = scene.labels[1:]
    canon = torch.tensor(enc.encode(QCFG.canonical_phrases))
    ious = []
    for vi in (4, 5):
        v = scene.frames[vi]
        vm, K = _camera(v)
        for k, m in enumerate(query_2d(res.field, labels, vm, K, v.width, v.height, torch.tensor(enc.encode(labels)), canon, QCFG), start=1):
            gt = scene.instances[vi] == k
            ious.append((m.mask & gt).sum() / max((m.mask | gt).sum(), 1))
            rows, cols = np.nonzero(gt)  # LERF localisation: the peak falls inside the object's box
            inside = rows.min() <= m.peak[0] <= rows.max() and cols.min() <= m.peak[1] <= cols.max()
            assert inside, f"{m.query}: localisation peak {m.peak} is outside its box in view {vi}"
    miou = float(np.mean(ious))
    print(f"[{ORACLE_PROVENANCE}] 2D held-out mIoU {miou:.3f} over {len(ious)} masks")
    assert miou >= 0.6


def test_provenance_and_progress(built):
    _, _, res, stages = built
    p = res.field.provenance
    assert p["semantics"] == ORACLE_PROVENANCE and p["text"] == ORACLE_PROVENANCE
    assert p["lqc"].startswith("per-scene LQC")
    assert "CPU substitute" in p["renderer"]
    starts = [st for i, st in enumerate(stages) if i == 0 or stages[i - 1][0] != st[0]]
    assert [s for s, _, _ in starts] == ["validate", "semantics", "lqc", "init", "field", "register", "surface"]
    assert all(fr == 0.0 for _, fr, _ in starts)  # each stage is announced as it begins
    assert "400 iterations over 4 views" in starts[-3][2] and "MiB of view tensors" in starts[-3][2]
    assert "register: evidence of 4 views" in starts[-2][2]
    assert "depth of 4 key frames" in starts[-1][2] and "surface samples on" in stages[-1][2]
    assert p["answer points"].startswith("surface samples") and len(res.field.surface) > 1000
    # every sample is labelled by the views that see it (it came from one of them); on this clean scene
    # its own label is mostly its owner's, and where they differ the sample sits at an object's border
    s = res.field.surface
    own = res.field.code_index()[torch.as_tensor(s.owner), 0].numpy()
    print(f"samples labelled {(s.code >= 0).mean():.3f}, agreeing with their owner {(s.code[:, 0] == own).mean():.3f}")
    assert (s.code >= 0).mean() > 0.99 and (s.code[:, 0] == own).mean() > 0.8


def test_save_load_renders_the_same(built, tmp_path):
    scene, enc, res, _ = built
    folder = save_field(res.field, tmp_path / "field")
    loaded = load_field(folder)
    v = scene.frames[4]
    vm, K = _camera(v)
    a = res.field.render(vm, K, v.width, v.height)
    b = loaded.render(vm, K, v.width, v.height)
    assert torch.equal(a.rgb, b.rgb) and torch.equal(a.sem, b.sem)
    assert loaded.provenance == res.field.provenance and loaded.levels == ["instance"]
    for k in ("evidence", "normals", "labelled", "agree_views"):  # the registration's results travel with the field
        assert getattr(res.field, k) is not None and torch.equal(getattr(loaded, k), getattr(res.field, k)), k
    for k in ("points", "colors", "owner", "code"):  # so do its surface samples and their own labels
        assert np.array_equal(getattr(loaded.surface, k), getattr(res.field.surface, k)), k
    save_field(loaded, folder)  # replacing an existing folder works and leaves nothing behind
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names[-1] == "field" and len(names) == 2 and names[0].startswith(".field.v-")  # the link and its one version
    assert folder.is_symlink() and folder.resolve().name == names[0]
    ply = read_ply(export_field_ply(loaded, tmp_path / "f.ply"))
    assert len(ply) == loaded.num_gaussians and {"x", "red", "opacity"} <= set(ply.dtype.names)


def test_a_kept_geometry_is_relabelled_without_training(built):
    """reconstruct(geometry=field) keeps the Gaussians and registers new codes: with the labels of
    two objects swapped, each one's text now answers on the other's Gaussians; training modes refuse it."""
    scene, enc, res, _ = built
    f = res.field
    feats = enc.encode(scene.labels)
    swapped = feats.copy()
    swapped[[1, 2]] = feats[[2, 1]]
    sem = OracleSemantics({fr.frame_id: ins for fr, ins in zip(scene.frames, scene.instances)}, swapped)
    stages = []
    again = reconstruct(scene.frames[:4], sem, enc, ReconstructConfig(), FieldConfig(iterations=400), LQC_CFG,
                        QCFG.canonical_phrases, geometry=f, progress=lambda s, fr, d: stages.append((s, d)))
    g = again.field
    for k in ("means", "quats", "scales", "opacities", "colors"):
        assert torch.equal(g.params[k], f.params[k]), k
    assert again.stats["field"]["iterations"] == 0 and ("field", "geometry kept from the given field (not trained)") in stages
    assert g.provenance["geometry"].startswith(f"{f.num_gaussians} Gaussians kept from a given field, not retrained")
    assert torch.equal(g.observed(), f.observed())  # visibility is geometry's: the same Gaussians are observed
    labels = scene.labels[1:3]
    canon = torch.tensor(enc.encode(QCFG.canonical_phrases))
    before = select_3d(f, labels, torch.tensor(enc.encode(labels)), canon, QCFG.threshold, QCFG)
    after = select_3d(g, labels, torch.tensor(enc.encode(labels)), canon, QCFG.threshold, QCFG)
    for a, b in ((before[0], after[1]), (before[1], after[0])):
        assert a.found and b.found
        shared = np.intersect1d(a.gaussian_ids, b.gaussian_ids)
        assert len(shared) >= 0.8 * min(len(a.gaussian_ids), len(b.gaussian_ids)), (len(shared), len(a.gaussian_ids), len(b.gaussian_ids))
    with pytest.raises(ValueError, match="kept geometry only takes registered codes"):
        reconstruct(scene.frames[:4], sem, enc, ReconstructConfig(), FieldConfig(iterations=5), LQC_CFG, QCFG.canonical_phrases,
                    geometry=f, reg_cfg=RegistrationConfig(mode="train"))


def test_load_errors_name_the_problem(tmp_path):
    with pytest.raises(FileNotFoundError, match="field.json"):
        load_field(tmp_path)


def test_fewer_than_two_frames_and_cancel():
    scene = make_scene(2, 32, 24)
    enc = OracleTextEncoder(scene.labels)
    sem = OracleSemantics.from_scene(scene, enc)
    with pytest.raises(FrameError, match="at least 2 frames"):
        reconstruct(scene.frames[:1], sem, enc, ReconstructConfig(), FieldConfig(iterations=5), LQC_CFG, QCFG.canonical_phrases)
    calls = []

    def cancel():
        calls.append(1)
        return len(calls) > 3

    with pytest.raises(Cancelled):
        reconstruct(scene.frames, sem, enc, ReconstructConfig(), FieldConfig(iterations=50), LQC_CFG, QCFG.canonical_phrases, cancel=cancel)


def test_frames_without_depth_use_a_named_weak_initialisation():
    from langx_ros.core.frames import Frame

    scene = make_scene(3, 48, 36)
    enc = OracleTextEncoder(scene.labels)
    frames = [Frame(f.frame_id, f.rgb, f.K, f.pose, None) for f in scene.frames]
    res = reconstruct(frames, OracleSemantics.from_scene(scene, enc), enc, ReconstructConfig(no_depth_points=300), FieldConfig(iterations=40),
                      LQCConfig(steps=50, codebook_size=32, batch_size=128), QCFG.canonical_phrases)
    assert res.field.provenance["geometry"].startswith("NO DEPTH: random initial points")
    hist = res.stats["field"]["history"]
    assert hist[-1]["rgb"] < hist[0]["rgb"]  # colour alone still fits the views
    assert "depth" not in hist[-1]
