"""Fixed-shape 3D answers (core/instances.py): voxel components, the answer pipeline, and the
plan that replays it (as a CUDA graph where CUDA is present; its CPU stand-in otherwise)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from langx_ros.core.config import QueryConfig
from langx_ros.core.field.model import LanguageField
from langx_ros.core.instances import (AnswerPlan, AnswerShape, FieldTables, RankWeights, answer, component_roots,
                                      connected_instances, neighbour_table, voxel_keys, voxel_slots, NEIGHBOURS)


def test_connected_instances_separates_clusters():
    rng = np.random.default_rng(0)
    a = rng.normal(0, 0.02, (50, 3))
    b = rng.normal(0, 0.02, (30, 3)) + [1, 0, 0]
    labels = connected_instances(np.concatenate([a, b]), radius=0.2).tolist()
    assert len(set(labels[:50])) == 1 and len(set(labels[50:])) == 1 and labels[0] != labels[50]
    assert connected_instances(np.zeros((0, 3)), 0.1).shape == (0,)


def test_connected_instances_links_every_close_pair_and_follows_long_chains():
    from scipy.spatial import cKDTree

    rng = np.random.default_rng(1)
    # a long snake (step 0.05 < radius) must be one instance however far its ends are apart
    t = np.linspace(0, 6 * np.pi, 400)
    snake = np.c_[np.cos(t), np.sin(t), t / 10]
    assert np.all(np.linalg.norm(np.diff(snake, axis=0), axis=1) < 0.1)
    blobs = np.concatenate([rng.normal(0, 0.05, (200, 3)) + c for c in ([5, 0, 0], [5, 2, 0], [-4, -4, 1])])
    pts = np.concatenate([snake, blobs])
    labels = connected_instances(pts, radius=0.1).numpy()
    assert len(set(labels[:400])) == 1
    # every pair closer than the radius shares an instance; the far blobs stay apart
    pairs = cKDTree(pts).query_pairs(0.1, output_type="ndarray")
    assert np.all(labels[pairs[:, 0]] == labels[pairs[:, 1]])
    assert len({labels[0], labels[400], labels[600], labels[800]}) == 4
    assert labels.min() == 0 and labels.max() == len(set(labels.tolist())) - 1


def _scipy_voxel_components(pts: np.ndarray, radius: float) -> np.ndarray:
    """Reference: components of the touching-voxel graph by scipy, numbered by smallest voxel."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    vox, inv = np.unique(np.floor(pts / radius).astype(np.int64), axis=0, return_inverse=True)  # lexicographic
    index = {tuple(v): i for i, v in enumerate(vox.tolist())}
    src, dst = [], []
    for i, v in enumerate(vox.tolist()):
        for d in np.ndindex(3, 3, 3):
            j = index.get((v[0] + d[0] - 1, v[1] + d[1] - 1, v[2] + d[2] - 1))
            if j is not None:
                src.append(i)
                dst.append(j)
    g = coo_matrix((np.ones(len(src)), (src, dst)), shape=(len(vox), len(vox)))
    comp = connected_components(g, directed=False)[1]  # numbered in node (= smallest voxel) order
    return comp[inv.ravel()]


def test_voxel_components_match_scipy_and_number_by_smallest_voxel():
    """Label propagation gives scipy's components of the voxel graph, numbered by each
    component's smallest (x, y, z) voxel, also for negative coordinates and far from the origin."""
    rng = np.random.default_rng(2)
    clouds = [rng.uniform(-3, 3, (3000, 3)), rng.normal(0, 0.3, (2000, 3)) + [-7e3, 4e3, -2.0],
              np.concatenate([np.c_[np.linspace(-2, 2, 500), np.zeros(500), np.zeros(500)], rng.normal(5, 0.5, (500, 3))])]
    for pts in clouds:
        got = connected_instances(torch.as_tensor(pts), 0.12).numpy()
        assert len(set(got.tolist())) > 1
        assert np.array_equal(got, _scipy_voxel_components(pts, 0.12))


def test_padding_never_joins_a_component_and_too_few_rounds_say_so():
    """voxel_slots puts padding (the empty key) after every real voxel; it links to nothing. A
    chain of 60 voxels needs more than one propagation round: one round reports 'not final',
    the default rounds finish it."""
    from langx_ros.core.instances import EMPTY_KEY, GRAPH_ROUNDS

    chain = torch.tensor(np.c_[np.arange(60) * 0.1 + 0.05, np.zeros(60), np.zeros(60)])
    keys = torch.cat([voxel_keys(chain, 0.1), torch.full((4,), EMPTY_KEY)])
    uniq, slot = voxel_slots(keys)
    assert torch.equal(uniq[:60], torch.sort(keys[:60]).values) and bool((uniq[60:] == EMPTY_KEY).all())
    offsets = torch.as_tensor(NEIGHBOURS)
    nb = neighbour_table(uniq, offsets)
    assert bool((nb[60:] == torch.arange(60, 64)[:, None]).all())  # padding slots only see themselves
    roots, done = component_roots(uniq, offsets, 1)
    assert not bool(done) and len(set(roots[slot[:60]].tolist())) > 1
    for rounds in (GRAPH_ROUNDS, None):
        roots, done = component_roots(uniq, offsets, rounds)
        assert bool(done) and set(roots[slot[:60]].tolist()) == {0} and roots[60:].tolist() == [60, 61, 62, 63]


def _multi_object_field(seed: int, n: int = 3000, levels: int = 2, k: int = 32,
                        device: str = "cpu") -> tuple[LanguageField, torch.Tensor]:
    """Random Gaussians around 10 centres, each centre's code per level with 10 % noise, random
    evidence, labelled weights and agreeing views; and (4, k) random query logits."""
    g = np.random.default_rng(seed)
    centres = g.uniform(-3, 3, (10, 3))
    obj = g.integers(0, 10, n)
    means = centres[obj] + g.normal(0, g.uniform(0.03, 0.3), (n, 3))
    f32 = lambda a: torch.tensor(a, dtype=torch.float32, device=device)  # noqa: E731
    params = {"means": f32(means), "opacities": f32(g.normal(0, 2, n)), "colors": f32(g.normal(0, 1, (n, 3))),
              "quats": f32(g.normal(0, 1, (n, 4))), "scales": f32(np.full((n, 3), -4.0)), "sem": f32(np.zeros((n, 3 * levels)))}
    ev = f32(g.exponential(1.0, (n, levels)))
    f = LanguageField(params, None, ["s", "m", "l"][:levels], {}, {"min_weight": 0.1}, ev,
                      torch.nn.functional.normalize(f32(g.normal(0, 1, (n, 3))), dim=1),
                      ev * f32(g.uniform(1, 2, (n, levels))), f32(g.integers(0, 5, (n, levels))))
    code = (obj[:, None] * 3 + np.arange(levels)[None]) % k
    f._code_index = torch.tensor(np.where(g.random((n, levels)) < 0.1, g.integers(0, k, (n, levels)), code), device=device)
    return f, f32(g.normal(0, 3, (4, k)))


def _plan(f: LanguageField, k: int, mode: str, start_cap: int, **cfg) -> AnswerPlan:
    q = QueryConfig(**cfg)
    shape = AnswerShape(cap=0, radius=0.15, relative_cutoff=q.relative_cutoff,
                        min_points=q.min_instance_points, max_instances=q.max_instances,
                        weights=RankWeights(q.instance_match_weight, q.instance_density_weight,
                                            q.instance_consensus_weight, q.instance_views_weight), rounds=None)
    return AnswerPlan(FieldTables.of(f, q.min_opacity, k, q.instance_consensus_weight > 0, q.instance_views_weight > 0),
                      shape, k, mode=mode, start_cap=start_cap)


def _same(a, b) -> None:
    assert (a.peak, a.level, a.selected, a.passing) == (b.peak, b.level, b.selected, b.passing)
    assert np.array_equal(a.counts, b.counts) and np.array_equal(a.gid, b.gid) and np.array_equal(a.rows, b.rows)
    assert np.allclose(a.evidence, b.evidence, rtol=1e-12)


def test_fixed_shape_replays_answer_as_the_eager_pipeline_also_when_buffers_grow_or_rounds_run_out(monkeypatch):
    """The CUDA graph's logic (fixed capacity, fixed propagation rounds, results checked after
    one wait) on a CPU: a capacity far too small grows to the next power of two, a selection
    whose components need more rounds than the graph has is finished eagerly, and every answer
    equals the eager one (points, ids, counts, evidence), for several rank settings."""
    import langx_ros.core.instances as inst

    monkeypatch.setattr(inst, "GRAPH_ROUNDS", 1)
    for seed in range(3):
        f, logits = _multi_object_field(seed)
        for cfg in ({}, {"relative_cutoff": 0.3, "max_instances": 3, "max_points": 40},
                    {"instance_consensus_weight": 1.0, "instance_density_weight": 0.5, "min_instance_points": 20}):
            fixed = _plan(f, 32, "graph", 8, **cfg)
            eager = _plan(f, 32, "eager", 8, **cfg)
            for th in (0.5, 0.9):
                got, want = fixed.run(logits, th), eager.run(logits, th)
                for a, b in zip(got, want):
                    _same(a, b)
            assert fixed.mode == "fixed-shape" and fixed._cap > 8  # it grew
    assert any(r.passing > 1 for r in want) and any(len(r.counts) for r in want)


def test_answers_from_text_compute_the_logits_in_the_plan_and_equal_answers_from_those_logits():
    """run_text (the logits computed inside the replayed graph, as select_3d answers) gives the
    answers run gives for the same logits, in the fixed-shape and the eager plan, and returns the
    logits it answered with; a plan without codebook features refuses text."""
    from langx_ros.core.instances import text_logit

    f, _ = _multi_object_field(2)
    k, dim = 32, 16
    g = torch.Generator().manual_seed(5)
    feats = torch.nn.functional.normalize(torch.randn(k, dim, generator=g), dim=1)
    text, canon = torch.randn(4, dim, generator=g), torch.randn(3, dim, generator=g)
    logits = torch.stack([text_logit(feats, t, canon) for t in text])
    for mode in ("graph", "eager"):
        q = QueryConfig()
        shape = AnswerShape(cap=0, radius=0.15, relative_cutoff=q.relative_cutoff, min_points=q.min_instance_points,
                            max_instances=q.max_instances, weights=RankWeights(q.instance_match_weight, 0, 0, 0), rounds=None)
        plan = AnswerPlan(FieldTables.of(f, q.min_opacity, k, False, False, feats), shape, k, mode=mode, start_cap=8)
        for th in (0.5, 0.9):
            got, want = plan.run_text(text, canon, th), plan.run(logits, th)
            for a, b, row in zip(got, want, logits):
                _same(a, b)
                assert np.array_equal(a.logit, row.numpy()) and np.array_equal(b.logit, row.numpy())
    assert any(r.passing > 0 for r in want)
    with pytest.raises(ValueError, match="no codebook features"):
        _plan(f, k, "graph", 8).run_text(text, canon, 0.5)


def test_selections_beyond_the_largest_graph_run_eagerly_and_outgrown_graphs_are_freed(monkeypatch):
    import langx_ros.core.instances as inst

    monkeypatch.setattr(inst, "GRAPH_MAX_CAP", 64)
    f, logits = _multi_object_field(1)
    fixed, eager = _plan(f, 32, "graph", 8), _plan(f, 32, "eager", 8)
    got, want = fixed.run(logits, 0.5), eager.run(logits, 0.5)
    assert max(r.selected for r in want) > 64 and min(r.selected for r in want) <= 64
    for a, b in zip(got, want):
        _same(a, b)
    assert fixed._cap <= 64 and list(fixed._graphs) == [(fixed._cap, ("logit",))]


def test_compact_lists_the_selected_indices_in_fixed_or_exact_slots():
    from langx_ros.core.instances import compact

    mask = torch.tensor([0, 1, 1, 0, 0, 1, 0, 1, 1, 1], dtype=torch.bool)
    ids, real, n = compact(mask, 4)  # fewer slots than selected: the first four, the count says 6
    assert ids.tolist() == [1, 2, 5, 7] and real.tolist() == [True] * 4 and int(n) == 6
    ids, real, n = compact(mask, 8)
    assert ids[real].tolist() == [1, 2, 5, 7, 8, 9] and real.tolist() == [True] * 6 + [False] * 2 and int(n) == 6
    ids, real, n = compact(mask, 0)
    assert ids.tolist() == [1, 2, 5, 7, 8, 9] and bool(real.all()) and int(n) == 6
    ids, real, n = compact(torch.zeros(5, dtype=torch.bool), 0)
    assert ids.shape == (1,) and not bool(real.any()) and int(n) == 0


def test_answer_reports_a_selection_larger_than_its_buffers():
    f, logits = _multi_object_field(0)
    plan = _plan(f, 32, "eager", 8)
    want = plan.run(logits[:1], 0.5)[0]
    assert want.selected > 16
    rows, gid, meta = answer(plan.t, logits[0], torch.tensor(0.0), torch.tensor(0.5), AnswerShape(
        **{**plan.shape.__dict__, "cap": 16, "rounds": 8}))
    assert int(meta[3]) == want.selected and rows.shape == (16, 10) and gid.shape == (16,)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA: the captured CUDA graph (CPU path: the test above)")
def test_cuda_graph_answers_equal_the_eager_ones():
    for seed in range(2):
        f, logits = _multi_object_field(seed, device="cuda")
        graph, eager = _plan(f, 32, "graph", 64), _plan(f, 32, "eager", 64)
        for th in (0.5, 0.9):
            for a, b in zip(graph.run(logits, th), eager.run(logits, th)):
                assert (a.level, a.selected, a.passing) == (b.level, b.selected, b.passing)
                assert np.array_equal(a.gid, b.gid) and np.allclose(a.rows, b.rows)
        assert graph.mode == "cuda-graph" and len(graph._graphs) >= 1


def test_capture_gate_captures_only_while_no_other_thread_uses_the_gpu():
    """A capture is refused while another thread uses the GPU, allowed for a thread that is the
    only user (itself inside use()), and other threads entering use() wait until it ends."""
    import threading
    import time

    from langx_ros.core.instances import CaptureGate

    gate = CaptureGate()
    entered, release = threading.Event(), threading.Event()

    def other():
        with gate.use():
            entered.set()
            release.wait(5)

    t = threading.Thread(target=other)
    t.start()
    assert entered.wait(5)
    with gate.capture() as ok:
        assert not ok  # the other thread is using the GPU
    release.set()
    t.join(5)
    order = []

    def late():
        with gate.use():
            order.append("late user")

    with gate.use(), gate.capture() as ok:
        assert ok  # this thread is the only user
        waiting = threading.Thread(target=late)
        waiting.start()
        time.sleep(0.2)
        order.append("capture done")
    waiting.join(5)
    assert order == ["capture done", "late user"]
    with gate.capture() as ok:
        assert ok  # nobody uses it


def test_packed_answers_unpack_to_the_same_arrays():
    from langx_ros.core.instances import _META, pack_answer, unpack_answer

    g = torch.Generator().manual_seed(3)
    for cap, k, m in ((1, 7, 1), (5, 2048, 4), (64, 33, 16)):
        rows, gid = torch.randn(cap, 10, generator=g), torch.randint(0, 1 << 40, (cap,), generator=g)
        meta, logit = torch.randn(_META + 2 * m, generator=g, dtype=torch.float64), torch.randn(k, generator=g)
        got = unpack_answer(pack_answer(rows, gid, meta, logit).numpy(), k, m)
        for a, b in zip(got, (rows, gid, meta, logit)):
            assert a.dtype == b.numpy().dtype and np.array_equal(a, b.numpy())
