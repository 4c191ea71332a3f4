"""langx_node as a real process; a real rclpy client in this process; loopback only."""
from __future__ import annotations

import shutil
import sys
import time
from pathlib import Path

import numpy as np
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from langx_interfaces.msg import NodeStatus
from langx_interfaces.srv import QueryObjects
from rcl_interfaces.srv import GetParameters
from rclpy.qos import qos_profile_sensor_data
from sensor_msgs.msg import CameraInfo, Image

from langx_ros.ros.convert import camera_info_from_intrinsics, numpy_to_image
from langx_ros.ros.node import LATCHED
from langx_ros.ros.process import call, spin_until

K = np.array([[60.0, 0, 32], [0, 60.0, 24], [0, 0, 1]])
RGB = np.random.default_rng(0).integers(0, 256, (48, 64, 3), dtype=np.uint8)


def _query(session, queries, threshold=0.0):
    client = session.node.create_client(QueryObjects, "/langx_node/query")
    req = QueryObjects.Request(queries=queries, threshold=threshold, view="latest", return_masks=True)
    return call(session.executor, client, req, timeout=60.0)


def _status(session) -> list:
    out: list[NodeStatus] = []
    session.node.create_subscription(NodeStatus, "/langx_node/status", out.append, LATCHED)
    return out


def test_query_before_any_field_is_a_clear_error(start_node):
    proc, session = start_node()
    res = _query(session, ["the printer", "a soft pillow"])
    assert res.success is False
    assert res.message.startswith("no field yet")
    assert "~/reconstruct" in res.message
    assert list(res.matches) == []
    assert res.provenance  # says where models would come from
    assert proc.alive()


def test_bad_query_requests_answer_errors_and_node_survives(start_node):
    proc, session = start_node()
    cases = [
        ([], "no queries"),
        ([""], "query 0 is empty"),
        (["x" * 100_000], "query 0 is 100000 characters long"),
        (["chair"] * 1000, "too many queries: 1000 > max_queries = 64"),
    ]
    for queries, expected in cases:
        res = _query(session, queries)
        assert res.success is False and expected in res.message, (expected, res.message)
    res = _query(session, ["chair"], threshold=2.0)
    assert not res.success and "threshold" in res.message
    assert proc.alive()


def test_parameter_file_takes_effect_console_script(start_node, tmp_path):
    params = tmp_path / "p.yaml"
    params.write_text(
        "langx_node:\n  ros__parameters:\n    query: {max_queries: 2}\n"
        "    node: {world_frame: test_world, status_period: 0.2}\n    querry: {typo: 1}\n"
    )
    exe = shutil.which("langx_node", path=str(Path(sys.executable).parent))
    assert exe, "the langx_node console script is not installed"
    proc, session = start_node("--params-file", str(params), command=[exe])

    client = session.node.create_client(GetParameters, "/langx_node/get_parameters")
    res = call(session.executor, client, GetParameters.Request(names=["query.max_queries", "node.world_frame"]))
    assert [res.values[0].integer_value, res.values[1].string_value] == [2, "test_world"]

    res = _query(session, ["a", "b", "c"])  # the YAML limit, not the default 64, applies
    assert not res.success and "max_queries = 2" in res.message
    status = _status(session)
    assert spin_until(session.executor, lambda: len(status) >= 2, 20.0)
    assert status[-1].header.frame_id == "test_world"
    assert "parameter 'querry.typo' is set but not used" in proc.log()


def test_invalid_parameter_file_stops_the_node_with_a_message(start_node, tmp_path):
    params = tmp_path / "bad.yaml"
    params.write_text("langx_node:\n  ros__parameters:\n    query: {threshold: 5.0}\n")
    proc, _ = start_node("--params-file", str(params))
    proc.proc.wait(60)
    assert proc.proc.returncode == 2
    assert "query.threshold" in proc.log() and "cannot start" in proc.log()
    assert "Traceback" not in proc.log()
    params.write_text("langx_node:\n  ros__parameters:\n    device: tpu\n")
    proc, _ = start_node("--params-file", str(params))
    proc.proc.wait(60)
    assert proc.proc.returncode == 2 and "unknown device 'tpu'" in proc.log()


def test_malformed_input_is_rejected_rate_limited_and_node_keeps_running(start_node):
    proc, session = start_node()
    node = session.node
    pub_img = node.create_publisher(Image, "/image", qos_profile_sensor_data)
    pub_info = node.create_publisher(CameraInfo, "/camera_info", qos_profile_sensor_data)
    status = _status(session)
    diagnostics: list[DiagnosticArray] = []
    node.create_subscription(DiagnosticArray, "/diagnostics", diagnostics.append, 10)
    assert spin_until(session.executor, lambda: pub_img.get_subscription_count() > 0, 30.0)

    def pump(msgs, times=10):
        for _ in range(times):
            for pub, m in msgs:
                pub.publish(m)
            spin_until(session.executor, lambda: False, 0.02)

    zero_info = CameraInfo(width=64, height=48)  # an uncalibrated camera: all zeros
    good_info = camera_info_from_intrinsics(K, 64, 48)
    good = numpy_to_image(RGB, "rgb8")
    wrong_encoding = numpy_to_image(RGB, "rgb8")
    wrong_encoding.encoding = "yuv422"
    bad_step = numpy_to_image(RGB, "rgb8")
    bad_step.step += 4  # data no longer matches step * height
    wrong_size = numpy_to_image(RGB[:24, :32], "rgb8")  # camera_info says 64x48

    pump([(pub_info, zero_info)])
    pump([(pub_info, good_info)], times=5)
    pump([(pub_img, wrong_encoding), (pub_img, bad_step), (pub_img, wrong_size)])
    assert spin_until(session.executor, lambda: status and status[-1].images_rejected >= 15, 20.0), (
        f"rejections not counted: {status[-1] if status else None}\n{proc.log()}"
    )
    pump([(pub_info, good_info), (pub_img, good)], times=5)
    assert spin_until(session.executor, lambda: status and status[-1].images_accepted >= 1, 20.0)

    # Still answering, and rejections are visible on ~/status and /diagnostics.
    assert proc.alive()
    res = _query(session, ["chair"])
    assert res.message.startswith("no field yet")
    assert status[-1].state_name == "capturing"

    def diag_values() -> dict:
        return {kv.key: kv.value for kv in diagnostics[-1].status[0].values} if diagnostics else {}

    assert spin_until(session.executor, lambda: diag_values().get("images_accepted", "0") != "0", 10.0)
    assert int(diag_values()["images_rejected"]) >= 15
    assert diagnostics[-1].status[0].level == DiagnosticStatus.WARN  # rejections are a warning
    assert "rejected inputs" in diagnostics[-1].status[0].message
    weights = {k: v for k, v in diag_values().items() if k.startswith("weights: ")}
    assert {"weights: LQC", "weights: TriMap"} <= set(weights) and any(k.startswith("weights: SAM2") for k in weights)
    assert all(weights.values()) and "TriMap: " in proc.log()  # also listed in the start-up log

    # Each kind of problem was warned about, but only once or twice (not once per message).
    time.sleep(0.5)
    log = proc.log()
    for needle in (
        "camera_info: rejected: camera_info: focal lengths must be positive",
        "has encoding 'yuv422'",
        "step * height",
        "image is 32x24 but camera_info says 64x48",
    ):
        n = log.count(needle)
        assert 1 <= n <= 2, f"{needle!r} logged {n} times:\n{log}"


def test_start_up_recovers_a_field_an_interrupted_save_left_and_cleans_up(start_node, tmp_path):
    """A save of the earlier two-rename kind killed between its renames left only '.victim.old-*'
    and a temporary folder: the node restores 'victim' at start, removes the rest, says so."""
    import os

    import torch

    from langx_ros.core.field.io import save_field
    from langx_ros.core.field.model import LanguageField
    from langx_ros.core.lqc import LQC, LQCConfig
    from langx_ros.ros.client import LangxClient

    fields = tmp_path / "fields"
    n = 50
    params = {k: torch.rand(n, d) if d else torch.rand(n) for k, d in
              (("means", 3), ("quats", 4), ("scales", 3), ("opacities", 0), ("colors", 3), ("sem", 3))}
    save_field(LanguageField(params, LQC(LQCConfig(feature_dim=8, codebook_size=4, hidden=[8])), ["instance"], {}, {}),
               fields / "victim")
    version = (fields / "victim").resolve()
    os.unlink(fields / "victim")
    os.rename(version, fields / ".victim.old-4242")
    (fields / ".victim.old-4242" / ".complete").unlink()
    (fields / ".victim.x1y2z3w4").mkdir()  # the new version's temporary folder, half written
    proc, s = start_node()
    r = LangxClient(s).load("victim")
    assert r.success, r.message + proc.log()
    log = proc.log()
    assert "saved fields at start: restored 'victim' from .victim.old-4242" in log, log
    assert "removed leftover .victim.x1y2z3w4" in log
    assert sorted(p.name for p in fields.iterdir()) == [".victim.old-4242", "victim"]


def test_models_load_at_start_or_in_the_background_and_diagnostics_say_which(start_node):
    """semantics.source = oracle answers with MiniLM: 'start' loads it before the node is up,
    'background' while it already answers; /diagnostics says where loading stands."""
    oracle = ["-p", "semantics.source:=oracle", "-p", 'semantics.labels:=["a", "b"]']
    proc, s = start_node("-p", "node.load_models:=start", *oracle)
    diags: list[DiagnosticArray] = []
    s.node.create_subscription(DiagnosticArray, "/diagnostics", diags.append, 10)

    def loading() -> str:
        for d in reversed(diags):
            for kv in d.status[0].values:
                if kv.key == "model loading":
                    return kv.value
        return ""

    assert spin_until(s.executor, lambda: loading().startswith("start: ready in"), 30), loading()
    log = proc.log()
    assert log.index("models ready in") < log.index("langx_node up"), log
    assert "minilm text encoder" in loading()

    proc, s = start_node("-p", "node.load_models:=background", *oracle)
    diags.clear()
    s.node.create_subscription(DiagnosticArray, "/diagnostics", diags.append, 10)
    assert spin_until(s.executor, lambda: loading().startswith("background: ready in"), 60), loading()
    log = proc.log()
    assert log.index("langx_node up") < log.index("models ready in"), log

    proc, s = start_node("-p", "node.load_models:=lazy")  # the default source, clip, has no weights here
    diags.clear()
    s.node.create_subscription(DiagnosticArray, "/diagnostics", diags.append, 10)
    assert spin_until(s.executor, lambda: loading() == "lazy: loaded at first use", 30), loading()


def test_status_reports_input_rates_and_frames_lost_before_the_node(start_node):
    """A 30 Hz camera of which every other frame is lost on the way (stamps tell): ~/status shows
    the camera's rate from the stamps, the rate received, the frames lost and that input is behind."""
    proc, session = start_node("--params-file", str(Path(__file__).resolve().parents[2] / "config" / "langx.yaml"),
                               "-p", "node.status_period:=0.2")
    node = session.node
    pub_img = node.create_publisher(Image, "/image", qos_profile_sensor_data)
    pub_info = node.create_publisher(CameraInfo, "/camera_info", qos_profile_sensor_data)
    status = _status(session)
    assert spin_until(session.executor, lambda: pub_img.get_subscription_count() > 0, 30.0)
    info = camera_info_from_intrinsics(K, 64, 48)
    for _ in range(5):
        pub_info.publish(info)
        spin_until(session.executor, lambda: False, 0.02)
    t0 = time.time()
    sent = skipped = 0
    for i in range(89):  # 3 s of a 30 Hz camera
        if i >= 20 and i % 2:  # after the first 20 frames every other one is lost on the way
            skipped += 1
        else:
            img = numpy_to_image(RGB, "rgb8")
            st = t0 + i / 30.0
            img.header.stamp.sec, img.header.stamp.nanosec = int(st), int((st % 1) * 1e9)
            pub_img.publish(img)
            sent += 1
        spin_until(session.executor, lambda: False, max(0.0, t0 + (i + 1) / 30.0 - time.time()))
    assert spin_until(session.executor, lambda: status and status[-1].images_accepted >= 0.8 * sent, 10.0)
    spin_until(session.executor, lambda: status[-1].images_accepted == sent, 3.0)  # the last ones may still be on the way
    spin_until(session.executor, lambda: False, 0.5)
    s = status[-1]
    assert 27.0 < s.camera_rate_hz < 33.0, s
    assert skipped <= s.images_lost_estimate <= skipped + (sent - s.images_accepted) + 2, (s.images_lost_estimate, skipped)
    assert s.input_behind and 0 < s.image_rate_hz < 24.0, s
