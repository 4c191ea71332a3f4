"""Ground-truth labels of real scenes: polygon refinement with depth, propagation in 3D with a
depth test, the cross-view consistency check, the id-image loader, and the real label files."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from langx_ros.core.annotations import (
    IdPngLabels,
    PolygonLabels,
    SceneLabels,
    check_consistency,
    depth_agreement,
    depth_tolerance,
    load_scene_labels,
    object_points,
    project,
    registered_pairs,
    summarise_consistency,
)
from langx_ros.core.frames import Frame, list_rgbd_folder, load_rgbd_frame
from langx_ros.core.synthetic import SceneObject, SyntheticScene, intrinsics, look_at, render_view

REPO = Path(__file__).resolve().parents[2]
DATA = REPO.parent / "shared" / "data"
LABELS = REPO / "bench" / "labels"


# --------------------------------------------------------------------------------------------
# Synthetic fixtures
# --------------------------------------------------------------------------------------------

K_SMALL = np.array([[60.0, 0, 32], [0, 60.0, 24], [0, 0, 1]])


def _box_frame(frame_id: str = "f0") -> Frame:
    """A 64x48 view of a wall at 3 m with a box face at 1.5 m on rows 12-31, columns 20-43."""
    depth = np.full((48, 64), 3.0, np.float32)
    depth[12:32, 20:44] = 1.5
    depth[20, 30] = np.nan  # a hole in the box: never labelled
    return Frame(frame_id, np.zeros((48, 64, 3), np.uint8), K_SMALL, np.eye(4), depth)


def _spec(objects: list[dict]) -> dict:
    return {"scene": "synthetic", "image_size": [64, 48], "objects": objects}


def _poly(x0: int, y0: int, x1: int, y1: int) -> list[list[int]]:
    return [[x0, y0], [x1, y0], [x1, y1], [x0, y1]]


# Target box on the floor, a short occluder between it and view 1, seen from two posed views.
TARGET = SceneObject("target", "box", (0.0, 0.0, 0.3), (0.3, 0.3, 0.3), (200, 60, 60))
OCCLUDER = SceneObject("occluder", "box", (0.95, -0.95, 0.3), (0.15, 0.15, 0.3), (60, 60, 200))
W, H = 160, 120


@pytest.fixture(scope="module")
def two_views():
    scene = SyntheticScene([TARGET, OCCLUDER])
    K = intrinsics(W, H, fov_deg=60.0)
    target = np.array([0.0, 0.0, 0.3])
    v0, _, ins0 = render_view(scene, look_at(np.array([0.0, -3.0, 2.5]), target), K, W, H, "v0")
    v1, _, ins1 = render_view(scene, look_at(np.array([2.6, -2.6, 1.2]), target), K, W, H, "v1")
    return (v0, ins0), (v1, ins1)


def _bbox(mask: np.ndarray, margin: int) -> list[list[int]]:
    r, c = np.nonzero(mask)
    return _poly(int(c.min()) - margin, int(r.min()) - margin, int(c.max()) + margin, int(r.max()) + margin)


class DictLabels(SceneLabels):
    """Given id maps by frame id (for checking the consistency measure itself)."""

    def __init__(self, names: dict[int, str], maps: dict[str, np.ndarray]):
        self.names = names
        self.maps = maps

    def ids(self, frame: Frame) -> np.ndarray:
        return self.maps[frame.frame_id]


# --------------------------------------------------------------------------------------------
# Drawn frames: rasterisation and refinement with depth
# --------------------------------------------------------------------------------------------


def test_loose_polygon_keeps_the_object_and_drops_the_background_behind_it():
    f = _box_frame()
    # 3 px of wall all round the box: a ring of background, behind the box, inside the polygon
    labels = PolygonLabels(_spec([{"name": "box", "frames": {"f0": {"polygons": [_poly(17, 9, 46, 34)]}}}]), frames={"f0": f})
    expected = np.zeros((48, 64), bool)
    expected[12:32, 20:44] = True
    expected[20, 30] = False
    ids = labels.ids(f)
    assert ids.dtype == np.uint8 and labels.names == {1: "box"}
    assert np.array_equal(ids == 1, expected)  # the wall ring inside the polygon is gone, the hole stays
    # the hole has no label because the labels cannot tell what it shows: unknown, not background
    known = labels.known(f)
    assert known.shape == (48, 64) and not known[20, 30] and known.sum() == 48 * 64 - 1
    # "keep": "all" takes every polygon pixel with depth; depth_range cuts by metres instead
    keep_all = PolygonLabels(_spec([{"name": "box", "frames": {"f0": {"polygons": [_poly(14, 6, 49, 37)], "keep": "all"}}}]),
                             frames={"f0": f})
    assert (keep_all.ids(f) == 1).sum() == 36 * 32 - 1
    ranged = PolygonLabels(_spec([{"name": "wall", "frames": {"f0": {"polygons": [_poly(14, 6, 49, 37)], "keep": "all",
                                                                        "depth_range": [2.5, 3.5]}}}]), frames={"f0": f})
    assert np.array_equal(ranged.ids(f) == 1, (keep_all.ids(f) == 1) & ~expected & (f.depth > 2))


def test_later_object_wins_and_excluded_pixels_are_left_out():
    f = _box_frame()
    spec = _spec([
        {"name": "wall", "frames": {"f0": {"polygons": [_poly(0, 0, 63, 47)], "keep": "all", "exclude": [_poly(0, 0, 9, 47)]}}},
        {"name": "box", "frames": {"f0": {"polygons": [_poly(14, 6, 49, 37)]}}},
    ])
    ids = PolygonLabels(spec, frames={"f0": f}).ids(f)
    assert (ids[12:32, 20:44][np.isfinite(f.depth[12:32, 20:44])] == 2).all()
    assert (ids[:, :10] == 0).all() and (ids[0, 10:] == 1).all()
    assert ids[20, 30] == 0  # no depth, no label


def test_support_plane_drops_the_floor_inside_a_loose_box(two_views):
    (v0, ins0), _ = two_views
    target = ins0 == 1
    spec = _spec([{"name": "target", "frames": {"v0": {"polygons": [_bbox(target, 4)], "support_plane": True}}}])
    spec["image_size"] = [W, H]
    mask = PolygonLabels(spec, frames={"v0": v0}).ids(v0) == 1
    without = PolygonLabels({**spec, "objects": [{"name": "target", "frames": {"v0": {"polygons": [_bbox(target, 4)]}}}]},
                            frames={"v0": v0}).ids(v0) == 1
    assert (mask & ~target).sum() == 0  # no floor pixel
    assert (mask & target).sum() >= 0.9 * target.sum()  # only the bottom 1.5 cm of the box go
    assert (without & ~target).sum() > 50  # the floor touching the box is depth-connected to it


# --------------------------------------------------------------------------------------------
# Propagation into an undrawn view
# --------------------------------------------------------------------------------------------


def _seen_from(view: Frame, other: Frame, mask: np.ndarray, tol: float = 0.03) -> np.ndarray:
    """Pixels of ``mask`` in ``view`` whose surface point ``other`` also sees (not hidden there)."""
    from langx_ros.core.annotations import pixel_points, project

    rows, cols = np.nonzero(mask & np.isfinite(view.depth))
    r, c, z, inside = project(pixel_points(view, mask), other)
    seen = np.zeros(mask.shape, bool)
    ok = inside.copy()
    ok[inside] = np.abs(other.depth[r[inside], c[inside]] - z[inside]) < tol
    seen[rows[ok], cols[ok]] = True
    return seen


def test_propagation_labels_the_object_in_another_view_but_not_where_it_is_hidden(two_views):
    (v0, ins0), (v1, ins1) = two_views
    target0, target1, occluder1 = ins0 == 1, ins1 == 1, ins1 == 2
    # the set-up: the occluder hides part of the target in view 1 that view 0 sees
    hidden = _seen_from(v0, v1, target0, tol=1e9) & ~_seen_from(v0, v1, target0)
    assert hidden.sum() > 30
    spec = _spec([{"name": "target", "frames": {"v0": {"polygons": [_bbox(target0, 3)], "support_plane": True}}}])
    spec["image_size"] = [W, H]
    labels = PolygonLabels(spec, frames={"v0": v0})
    assert labels.drawn_frames(1) == ["v0"]
    got = labels.ids(v1) == 1
    assert not (got & occluder1).any()  # hidden parts are not labelled on their occluder
    assert (got & ~target1).sum() <= 0.03 * got.sum()  # precise
    reachable = _seen_from(v1, v0, target1)  # target pixels of view 1 that view 0 saw
    assert (got & reachable).sum() >= 0.9 * reachable.sum()  # and complete where it can be
    # the object's observed surface in 3D: on the box, voxel-downsampled
    pts = object_points([v0, v1], labels, 1, voxel=0.01)
    c, h = np.array(TARGET.center), np.array(TARGET.size)
    outside = np.maximum(np.abs(pts - c) - h, 0).max(axis=1)
    assert len(pts) > 100 and outside.max() < 0.01
    assert len(pts) < (labels.ids(v0) == 1).sum() + got.sum()


def test_object_points_leave_out_a_label_that_spills_onto_what_other_views_see_as_background(two_views):
    """object_points(min_agreement): view 0's label of the box spills 4 px past its outline onto
    the floor; view 1 sees much of that floor and labels it background. With the cross-view check
    the spilled floor points view 1 sees are gone (those it cannot see stay; with the default 2 px
    of slack, those within 2 px of view 1's box stay) and the box's own points stay; without it
    they are all the object's 'surface'."""
    from scipy import ndimage

    (v0, ins0), (v1, ins1) = two_views
    spilled = np.where(ndimage.binary_dilation(ins0 == 1, iterations=4), 1, 0).astype(np.uint8)
    labels = DictLabels({1: "target"}, {"v0": spilled, "v1": np.where(ins1 == 1, 1, 0).astype(np.uint8)})
    c, h = np.array(TARGET.center), np.array(TARGET.size)

    def outside(pts):
        return np.maximum(np.abs(pts - c) - h, 0).max(axis=1)

    every = object_points([v0, v1], labels, 1, voxel=0.01)
    agreed = object_points([v0, v1], labels, 1, voxel=0.01, min_agreement=0.5, agreement_px=0)
    def seen_by_v1(pts):
        rows, cols, z, inside = project(pts, v1)
        d = np.where(inside, v1.depth[rows, cols], np.nan)
        with np.errstate(invalid="ignore"):
            return inside & (np.abs(z - d) < depth_tolerance(z))

    spill = outside(every) > 0.02
    assert (spill & seen_by_v1(every)).sum() > 30  # floor the label spilled onto, which view 1 sees
    assert not ((outside(agreed) > 0.02) & seen_by_v1(agreed)).any()  # gone
    # by default view 1's label counts within 2 px (outlines a pixel off): floor beside its box outline stays
    near = object_points([v0, v1], labels, 1, voxel=0.01, min_agreement=0.5)
    assert (seen_by_v1(near) & (outside(near) > 0.02)).sum() < 0.5 * (spill & seen_by_v1(every)).sum()
    assert (spill & ~seen_by_v1(every)).sum() > 0  # ... while what no other view sees is kept
    assert (outside(agreed) < 0.005).sum() >= 0.95 * (outside(every) < 0.005).sum()  # the box stays
    assert np.array_equal(object_points([v0, v1], labels, 1, voxel=0.01, min_agreement=0.0), every)


# --------------------------------------------------------------------------------------------
# Cross-view consistency
# --------------------------------------------------------------------------------------------


def test_consistency_is_high_for_true_labels_and_low_for_a_shifted_label(two_views):
    (v0, ins0), (v1, ins1) = two_views
    names = {1: "target", 2: "occluder"}
    true_maps = {"v0": np.where(ins0 > 0, ins0, 0), "v1": np.where(ins1 > 0, ins1, 0)}
    res = check_consistency([v0, v1], DictLabels(names, true_maps))
    for oid in names:
        for pair in (("v0", "v1"), ("v1", "v0")):
            assert res[oid][pair].visible > 100
            assert res[oid][pair].fraction > 0.95, (oid, pair, res[oid][pair])
    shifted = dict(true_maps)
    shifted["v1"] = np.roll(true_maps["v1"], 10, axis=1)  # the label drawn 10 px off in view 1
    bad = check_consistency([v0, v1], DictLabels(names, shifted))
    assert bad[1][("v0", "v1")].fraction < 0.6 and bad[1][("v1", "v0")].fraction < 0.6
    s = summarise_consistency(bad, min_visible=100)
    assert s[1]["pairs"] == 2 and s[1]["pooled"] < 0.6
    # the geometry of the pair itself agrees, whatever the labels
    frac, n = depth_agreement(v0, v1, stride=2)
    assert n > 500 and frac > 0.95
    assert registered_pairs([v0, v1]) == {("v0", "v1"), ("v1", "v0")}
    moved = Frame("v1", v1.rgb, v1.K, v1.pose @ _translation(0.0, 0.0, 0.3), v1.depth)  # a pose 30 cm off
    assert registered_pairs([v0, moved]) == set()


def _translation(x: float, y: float, z: float) -> np.ndarray:
    T = np.eye(4)
    T[:3, 3] = [x, y, z]
    return T


# --------------------------------------------------------------------------------------------
# Per-pixel id images (the apc shelf layout)
# --------------------------------------------------------------------------------------------


def test_id_png_folder_is_read_behind_the_same_interface(tmp_path):
    import cv2

    ids = np.zeros((48, 64), np.uint8)
    ids[5:15, 5:25] = 1
    ids[30:40, 40:60] = 2
    rgb = np.zeros((48, 64, 3), np.uint8)
    depth = np.full((48, 64), 1000, np.uint16)
    cv2.imwrite(str(tmp_path / "frame-000000.color.png"), rgb)
    cv2.imwrite(str(tmp_path / "frame-000000.depth.png"), depth)
    cv2.imwrite(str(tmp_path / "frame-000000.ids.png"), ids)
    np.savetxt(tmp_path / "frame-000000.pose.txt", np.eye(4))
    np.savetxt(tmp_path / "camera-intrinsics.txt", K_SMALL)
    (tmp_path / "labels.json").write_text(json.dumps({"0": "background", "1": "tissue box", "2": "stems"}))
    labels = load_scene_labels(tmp_path)
    assert isinstance(labels, IdPngLabels) and labels.names == {1: "tissue box", 2: "stems"}
    f = load_rgbd_frame(tmp_path, "frame-000000")
    assert np.array_equal(labels.ids(f), ids) and labels.id_of("stems") == 2
    assert labels.known(f).all()  # stored per pixel: every id is known, 0 is background
    with pytest.raises(FileNotFoundError):
        load_scene_labels(tmp_path / "missing")


# --------------------------------------------------------------------------------------------
# The real label files (need ../shared/data)
# --------------------------------------------------------------------------------------------

# Per object, the cross-view consistency pooled over the frame pairs with real overlap (at least
# 50 of its checked pixels, every 4th one, i.e. about 200 pixels, visible in the other frame).
MIN_CONSISTENCY = 0.7
MIN_VISIBLE = 50
SCENES = ["rgbd-3dmatch-seq01", "rgbd-7scenes-redkitchen", "rgbd-apc-shelf"]


@pytest.fixture(scope="module", params=SCENES)
def real_scene(request):
    data = DATA / request.param
    if not data.is_dir():
        pytest.skip(f"real RGB-D data not present at {data} (only developers of langx_ros have it)")
    label_dir = LABELS / request.param if (LABELS / request.param).is_dir() else data
    frames = [load_rgbd_frame(data, fid) for fid in list_rgbd_folder(data)]
    labels = load_scene_labels(label_dir, data_dir=data, frames={f.frame_id: f for f in frames})
    maps = {f.frame_id: labels.ids(f) for f in frames}
    result = check_consistency(frames, labels, id_maps=maps, pixel_stride=2)  # every 4th pixel: faster
    return request.param, frames, labels, maps, result


def test_real_label_files_exist_for_the_drawn_scenes():
    for scene in SCENES[:2]:
        spec = json.loads((LABELS / scene / "annotations.json").read_text())
        assert spec["scene"] == scene and len(spec["objects"]) >= 6
        names = [o["name"] for o in spec["objects"]]
        assert len(set(names)) == len(names)
        assert all(len(o["frames"]) >= 2 for o in spec["objects"])  # drawn at least twice: checkable


def test_real_objects_have_hundreds_of_pixels_in_several_frames(real_scene):
    scene, frames, labels, maps, _ = real_scene
    assert len(labels.names) >= (2 if scene == "rgbd-apc-shelf" else 6)
    for oid, name in labels.names.items():
        counts = sorted(((maps[f.frame_id] == oid).sum() for f in frames), reverse=True)
        assert counts[1] >= 300, f"{scene}: {name} has {counts[:3]} pixels in its best frames"
    if isinstance(labels, PolygonLabels):  # drawn labels: none without depth (id images are as given)
        for f in frames:
            assert not ((maps[f.frame_id] > 0) & ~np.isfinite(f.depth)).any()


def test_real_labels_agree_in_3d_across_views(real_scene):
    scene, frames, labels, maps, result = real_scene
    summary = {name: summarise_consistency({oid: result[oid]}, MIN_VISIBLE)[oid] for oid, name in labels.names.items()}
    for name, s in summary.items():
        assert s["pairs"] >= 2 and s["pooled"] >= MIN_CONSISTENCY, (
            f"{scene}: {name} consistency {s['pooled']:.3f} over {int(s['pairs'])} pairs; "
            + ", ".join(f"{n} {v['pooled']:.3f}" for n, v in summary.items()))


def test_real_drawn_frames_all_give_pixels(real_scene):
    scene, frames, labels, maps, _ = real_scene
    if not isinstance(labels, PolygonLabels):
        pytest.skip("id images: nothing drawn")
    by_id = {f.frame_id: f for f in frames}
    for o in labels.objects:
        for fid in o.frames:
            n = int(labels.drawn_mask(o.object_id, by_id[fid]).sum())
            assert n >= 100, f"{scene}: {o.name} drawn in {fid} keeps only {n} pixels (a polygon off the object?)"


def test_real_object_points_are_voxel_downsampled_surfaces(real_scene):
    scene, frames, labels, maps, _ = real_scene
    oid = min(labels.names)
    pts = object_points(frames, labels, oid, voxel=0.01, id_maps=maps)
    assert pts.shape[1] == 3 and len(pts) > 100 and np.isfinite(pts).all()
    keys = np.floor(pts / 0.01).astype(np.int64)
    assert len(np.unique(keys, axis=0)) == len(pts)  # one point per 1 cm voxel
