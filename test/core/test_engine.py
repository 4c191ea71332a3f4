"""The engine on a generated scene: ORACLE-FEATURE PROTOCOL with the real MiniLM text model, so
free text ("couch") must find the object labelled "sofa"."""
from __future__ import annotations

import re

import numpy as np
import pytest

from langx_ros.core.config import LangxConfig
from langx_ros.core.engine import Camera, Engine
from langx_ros.core.frames import Frame, FrameError
from langx_ros.core.query import QueryRequestError
from langx_ros.core.synthetic import make_scene


@pytest.fixture(scope="module")
def built():
    scene = make_scene(5, 80, 60)
    cfg = LangxConfig()
    cfg.semantics.source, cfg.semantics.labels = "oracle", scene.labels
    cfg.field.iterations, cfg.lqc.steps, cfg.lqc.codebook_size, cfg.lqc.batch_size = 300, 300, 256, 512
    cfg.query.threshold, cfg.query.mask_box_px, cfg.query.mask_clean_px = 0.8, 3, 1
    engine = Engine(cfg, "cpu")
    return scene, engine, engine.build(scene.frames[:4])


def test_free_text_finds_labelled_objects(built):
    scene, engine, res = built
    assert res.field.meta["text_encoder"] == "minilm" and res.field.lqc.cfg.feature_dim == 384
    answers = engine.answer(res.field, ["couch", "laser printer", "zebra"], 0.0, Camera.of(scene.frames[4]))
    sofa, printer, zebra = (a.match for a in answers)
    assert sofa.found and np.linalg.norm(sofa.centroid[:2] - np.array(scene.objects[0].center[:2])) < 0.3
    assert printer.found and np.linalg.norm(printer.centroid[:2] - np.array(scene.objects[2].center[:2])) < 0.3
    assert not zebra.found
    gt = scene.instances[4] == 1
    iou = (answers[0].mask & gt).sum() / (answers[0].mask | gt).sum()  # the 3D answer seen from the view
    assert iou > 0.5
    assert "oracle-feature protocol" in res.field.provenance_text() and "MiniLM" in res.field.provenance_text()


def test_prepare_field_builds_the_plan_the_queries_then_use(built):
    scene, engine, res = built
    res.field.plans().clear()
    engine.prepare_field(res.field)
    (plan,) = res.field.plans().values()
    assert plan.mode == "eager"  # on a CPU (on CUDA: "cuda-graph", test_instances.py)
    before = engine.answer(res.field, ["couch"], 0.0)[0].match
    assert list(res.field.plans().values()) == [plan] and before.found


def test_request_errors_and_missing_instances(built):
    scene, engine, res = built
    with pytest.raises(QueryRequestError, match="no queries"):
        engine.answer(res.field, [], 0.0)
    no_ids = [Frame(f.frame_id, f.rgb, f.K, f.pose, f.depth) for f in scene.frames[:2]]
    with pytest.raises(FrameError, match="without instance ids"):
        engine.build(no_ids)


def test_failure_messages_for_the_caller():
    import torch

    from langx_ros.core.models import ModelNotFound
    from langx_ros.core.reconstruct import failure_message

    assert failure_message(FrameError("frame kf-1 has no pose"), "validate") == ("frame kf-1 has no pose", True)
    text, expected = failure_message(ModelNotFound("TriMap", ["/m/trimap/model_index.json"]), "trimap")
    assert expected and "/m/trimap/model_index.json" in text
    text, expected = failure_message(torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB\nmore"), "trimap")
    assert expected and "out of GPU memory in stage 'trimap'" in text and "Tried to allocate 2.00 GiB" in text
    assert "trimap.cpu_offload: model" in text and "more" not in text
    assert "field.max_gaussians" in failure_message(torch.OutOfMemoryError("x"), "field")[0]
    text, expected = failure_message(ZeroDivisionError("division by zero"), "field")
    assert not expected and text == "internal error: ZeroDivisionError: division by zero"


def test_build_requests_are_checked_as_the_parameters_are():
    engine = Engine(LangxConfig(), "cpu")  # no model is loaded to check a request
    have = ["kf-000000", "kf-000001", "kf-000002"]
    assert engine.check_build([], have, 0) == have
    assert engine.check_build(["kf-000002", "kf-000000"], have, 1_000_000) == ["kf-000002", "kf-000000"]
    for ids, iters, expected in [
        (["kf-000000", "kf-000000"], 0, "named more than once: 'kf-000000'"),
        ([""], 0, "empty keyframe id(s): ''"),
        (["kf-000000", " "], 0, "empty keyframe id(s): ' '"),
        (["kf-000000", "kf-9"], 0, "unknown keyframe ids: 'kf-9'"),
        (["kf-000000"], 0, "at least 2 distinct keyframes, 1 given"),
        ([], 2147483647, "iterations 2147483647 is outside 1..1000000"),
    ]:
        with pytest.raises(ValueError, match=re.escape(expected)):
            engine.check_build(ids, have, iters)
    with pytest.raises(ValueError, match="1 captured"):
        engine.check_build([], have[:1], 0)
