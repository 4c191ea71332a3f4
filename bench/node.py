"""Node benchmarks (CPU, real rclpy on loopback):

1. image callback cost per 640x480 rgb8 frame (conversion + checks), in process;
2. executor responsiveness: 30 Hz image/depth/pose input while a reconstruction runs in the
   node process; images accepted vs sent, and ~/query round trips during the reconstruction;
3. ~/query round-trip latency with a field (oracle-feature protocol scene), one query per call.

Prints numbers and writes bench/results/node.json.
"""
from __future__ import annotations

import json
import os
import random
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from _util import write_json

from langx_ros.core.synthetic import make_scene


def callback_cost(n: int = 200) -> dict:
    import rclpy
    from sensor_msgs.msg import Image  # noqa: F401

    from langx_ros.ros.convert import camera_info_from_intrinsics, numpy_to_image
    from langx_ros.ros.node import LangxNode

    ctx = rclpy.Context()
    rclpy.init(context=ctx, domain_id=random.randint(100, 199))
    from rclpy.parameter import Parameter

    with tempfile.TemporaryDirectory() as tmp:
        node = LangxNode(context=ctx, parameter_overrides=[Parameter("keyframes.directory", value=tmp)])
        K = np.array([[525.0, 0, 320], [0, 525.0, 240], [0, 0, 1]])
        node._inputs._on_camera_info(camera_info_from_intrinsics(K, 640, 480))
        img = numpy_to_image(np.random.default_rng(0).integers(0, 256, (480, 640, 3), dtype=np.uint8), "rgb8")
        bgr = numpy_to_image(np.random.default_rng(1).integers(0, 256, (480, 640, 3), dtype=np.uint8), "bgr8")
        depth = numpy_to_image(np.full((480, 640), 1500, np.uint16), "16UC1")
        out = {}
        for name, fn, msg in (("rgb8_ms", node._inputs._on_image, img), ("bgr8_ms", node._inputs._on_image, bgr), ("depth16_ms", node._inputs._on_depth, depth)):
            for _ in range(10):
                fn(msg)
            t = []
            for _ in range(n):
                s = time.perf_counter()
                fn(msg)
                t.append((time.perf_counter() - s) * 1000)
            out[name] = statistics.median(t)
        node.destroy_node()
    rclpy.try_shutdown(context=ctx)
    return out


def live(seconds: float, rate: float) -> dict:
    from langx_interfaces.action import Reconstruct

    from langx_ros.ros.client import LangxClient
    from langx_ros.ros.player import FramePublisher
    from langx_ros.ros.process import NodeProcess, RosSession, node_args, ros_env

    scene = make_scene(4, 160, 120)
    big = make_scene(1, 640, 480).frames[0]
    tmp = Path(tempfile.mkdtemp())
    domain = random.randint(100, 199)
    env = ros_env(domain, log_dir=tmp / "logs")
    args = node_args(tmp / "kf", tmp / "fields") + [
        "-p", "semantics.source:=oracle", "-p", "semantics.labels:=" + json.dumps(scene.labels),
        "-p", "field.iterations:=100000", "-p", "lqc.steps:=200", "-p", "lqc.codebook_size:=128"]
    node = NodeProcess(args, env, tmp / "node.log")
    res: dict = {}
    try:
        with RosSession("langx_bench", domain_id=domain) as ros:
            c = LangxClient(ros)
            pub = FramePublisher(ros.node, "/camera", instances=True)
            assert c.wait(lambda: pub.connected() and bool(c.status), 60), node.log()
            for f in scene.frames:
                c.publish_and_capture(lambda: pub.publish(f), attempts=30)
            handle = c.send_reconstruct(Reconstruct.Goal(keep_previous_on_failure=True))
            c.wait(lambda: bool(c.status) and c.status[-1].state_name == "reconstructing", 30)
            c.wait(lambda: False, 5.0)  # into the training loop
            before = c.status[-1].images_accepted
            sent, rtts = 0, []
            t_end = time.perf_counter() + seconds
            next_t = time.perf_counter()
            while time.perf_counter() < t_end:
                pub.publish(big)
                sent += 1
                if sent % int(rate) == 0:
                    s = time.perf_counter()
                    q = c.query(["couch"], masks=False)
                    rtts.append((time.perf_counter() - s) * 1000)
                    assert not q.success and q.message.startswith("reconstructing")
                next_t += 1.0 / rate
                c.wait(lambda: False, max(0.0, next_t - time.perf_counter()))
            c.wait(lambda: False, 1.0)
            accepted = c.status[-1].images_accepted - before
            res["during_reconstruction"] = {"sent": sent, "accepted": int(accepted), "rate_hz": rate, "seconds": seconds,
                                            "query_rtt_ms_median": statistics.median(rtts), "query_rtt_ms_max": max(rtts)}
            handle.cancel_goal_async()
            c.result(handle, 60)
            # a short reconstruction, then query latency with a field
            r = c.reconstruct(Reconstruct.Goal(iterations=150, keep_previous_on_failure=True))
            assert r.success, r.message
            for _ in range(5):
                pub.publish(scene.frames[0])
                c.wait(lambda: False, 0.05)
            for masks in (False, True):
                t = []
                for _ in range(20):
                    s = time.perf_counter()
                    q = c.query(["couch"], view="kf-000000", masks=masks)
                    t.append((time.perf_counter() - s) * 1000)
                    assert q.success
                res[f"query_rtt_ms_{'with' if masks else 'without'}_mask"] = {
                    "median": statistics.median(t), "max": max(t), "node_ms_last": float(q.latency_ms), "gaussians": r.num_gaussians}
    finally:
        node.stop()
    return res


def main() -> None:
    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    cost = callback_cost()
    print(f"image callback, 640x480: rgb8 {cost['rgb8_ms']:.2f} ms, bgr8 {cost['bgr8_ms']:.2f} ms; depth 16UC1 {cost['depth16_ms']:.2f} ms")
    lv = live(10.0, 30.0)
    d = lv["during_reconstruction"]
    print(f"during a reconstruction: {d['accepted']}/{d['sent']} images accepted at {d['rate_hz']:.0f} Hz over {d['seconds']:.0f} s; "
          f"~/query answered in {d['query_rtt_ms_median']:.1f} ms median ({d['query_rtt_ms_max']:.1f} max)")
    for k in ("query_rtt_ms_without_mask", "query_rtt_ms_with_mask"):
        v = lv[k]
        print(f"{k}: median {v['median']:.1f} ms, max {v['max']:.1f} ms (inside the node {v['node_ms_last']:.1f} ms; {v['gaussians']} Gaussians)")
    write_json("node", {"callback": cost, **lv, "note": "CPU; oracle-feature protocol scene for the field"})


if __name__ == "__main__":
    main()
