"""Reliability under load (real rclpy on loopback, the node as its own process, CPU):

- bursts: N ~/query requests sent at once from several client nodes (without masks, and a
  smaller burst with masks), against a saved field (generated scene, ORACLE-FEATURE PROTOCOL);
  every request must be answered, served or refused with a reason. Reports served / refused /
  unanswered and round-trip latency percentiles (client side) and the node's own latency.
- floor: the same bursts against a trivial ~/query service (bench/_floor_server.py), with the
  node's executor and a single-threaded one: what rclpy and the middleware cost on this machine
  with no work at all, for comparison side by side.
- first answer: the first ~/query after loading a field, with node.load_models lazy and
  background (after the background load finished), and the second one.
- kill -9: the node is killed at a random moment while it saves a field over an existing one,
  and while it captures keyframes; after each restart every name that existed resolves to a
  complete version (the field loads, the keyframes reload) and nothing is left behind.

    python bench/reliability.py [--burst 300] [--clients 3] [--mask-burst 40]

Prints numbers and writes bench/results/reliability.json.
"""
from __future__ import annotations

import argparse
import os
import random
import tempfile
import time
from pathlib import Path

import numpy as np

from _util import REPO, machine, write_json

PARAMS = REPO / "config" / "langx.yaml"


def saved_field(folder: Path) -> list[str]:
    """Build a small field of the generated scene (oracle-feature protocol), save it as
    ``folder/bench``; returns the node parameters that answer from it."""
    import json

    from langx_ros.core.config import LangxConfig
    from langx_ros.core.engine import Engine
    from langx_ros.core.field.io import save_field
    from langx_ros.core.synthetic import make_scene

    scene = make_scene(5, 128, 96)
    cfg = LangxConfig()
    cfg.semantics.source, cfg.semantics.labels = "oracle", scene.labels
    cfg.field.iterations, cfg.lqc.steps, cfg.lqc.codebook_size, cfg.lqc.batch_size = 300, 400, 256, 512
    res = Engine(cfg, "cpu").build(scene.frames[:4])
    save_field(res.field, folder / "bench")
    return ["-p", "semantics.source:=oracle", "-p", "semantics.labels:=" + json.dumps(scene.labels), "-p", "query.threshold:=0.8"]


def percentiles(xs: list[float]) -> dict:
    if not xs:
        return {"n": 0}
    a = np.asarray(xs)
    return {"n": len(xs), "p50": float(np.percentile(a, 50)), "p95": float(np.percentile(a, 95)), "max": float(a.max())}


def burst(session, n: int, clients: int, masks: bool, node: str = "/langx_node") -> dict:
    from langx_interfaces.srv import QueryObjects

    from langx_ros.ros.client import query_burst

    texts = [["couch"], ["the printer"], ["zebra", "a ball"], ["coffee table"]]
    reqs = [QueryObjects.Request(queries=texts[i % len(texts)], view="kf-000000", return_masks=masks) for i in range(n)]
    t0 = time.monotonic()
    out = query_burst(session, reqs, clients=clients, node=node)
    wall = time.monotonic() - t0
    served = [(r, t) for r, t in out if r is not None and r.success]
    refused = [r.message for r, _ in out if r is not None and not r.success]
    reasons: dict[str, int] = {}
    for m in refused:
        k = m.split(":")[0]
        reasons[k] = reasons.get(k, 0) + 1
    return {"requests": n, "clients": clients, "masks": masks, "served": len(served), "refused": len(refused),
            "refusal_reasons": reasons, "unanswered": sum(r is None for r, _ in out), "wall_s": wall,
            "round_trip_ms": percentiles([1000 * t for _, t in served]),
            "node_latency_ms": percentiles([r.latency_ms for r, _ in served])}


def floor_bursts(tmp: Path, domain: int, a) -> list[dict]:
    """The same bursts (no masks) against a trivial ~/query service (bench/_floor_server.py): the
    cost of rclpy and the middleware alone on this machine, with the node's executor and with a
    single-threaded one."""
    import sys

    from langx_ros.ros.process import NodeProcess, RosSession, ros_env

    env = ros_env(domain, log_dir=tmp / "ros_logs")
    out = []
    for single in (False, True):
        name = "single-threaded executor" if single else "the node's executor"
        server = NodeProcess([], env, tmp / f"floor_{int(single)}.log",
                             command=[sys.executable, str(Path(__file__).parent / "_floor_server.py")] + (["--single"] if single else []))
        try:
            with RosSession("langx_floor_client", domain_id=domain) as s:
                for rep in range(a.repeats):
                    b = burst(s, a.burst, a.clients, False, node="/langx_floor")
                    b["server"] = f"trivial ~/query service, {name}"
                    out.append(b)
                    rt = b["round_trip_ms"]
                    print(f"floor, {name}: burst of {a.burst} ({a.clients} clients, run {rep + 1}): {b['served']} served, "
                          f"{b['unanswered']} unanswered in {b['wall_s']:.2f} s; round trip p50 {rt.get('p50', float('nan')):.0f} ms, "
                          f"p95 {rt.get('p95', float('nan')):.0f} ms", flush=True)
        finally:
            server.stop()
    return out


def first_answers(tmp: Path, params: list[str], domain: int) -> dict:
    """Latency of the first and second ~/query after start + load_field, per node.load_models."""
    from langx_ros.ros.client import LangxClient
    from langx_ros.ros.process import NodeProcess, RosSession, node_args, ros_env

    out = {}
    for mode in ("lazy", "background"):
        env = ros_env(domain, log_dir=tmp / f"ros_logs_{mode}")
        args = node_args(tmp / "kf2", tmp / "fields", PARAMS) + ["-p", f"node.load_models:={mode}", *params]
        node = NodeProcess(args, env, tmp / f"node_{mode}.log")
        try:
            with RosSession("langx_first", domain_id=domain) as s:
                client = LangxClient(s)
                assert client.wait(lambda: bool(client.status), 60), node.log()
                if mode == "background":
                    assert client.wait(lambda: "models ready" in node.log(), 120), node.log()
                assert client.load("bench").success
                times = []
                for _ in range(2):
                    t = time.perf_counter()
                    r = client.query(["couch"], view="latest", masks=False)
                    times.append((time.perf_counter() - t) * 1000)
                    assert r.success, r.message
                out[mode] = {"first_ms": times[0], "second_ms": times[1]}
                print(f"node.load_models={mode}: first ~/query {times[0]:.0f} ms, second {times[1]:.0f} ms", flush=True)
        finally:
            node.stop()
    return out


def kill_trials(tmp: Path, params: list[str], domain: int, trials: int) -> dict:
    """kill -9 during ~/save_field (over an existing field) and during ~/capture_keyframe."""
    import signal
    import threading

    from langx_interfaces.srv import FieldFile
    from std_srvs.srv import Trigger

    from langx_ros.core.keyframes import KeyframeStore
    from langx_ros.core.synthetic import make_scene
    from langx_ros.ros.client import LangxClient
    from langx_ros.ros.player import FramePublisher
    from langx_ros.ros.process import NodeProcess, RosSession, node_args, ros_env

    rng = random.Random(3)
    out = {"save": [], "capture": []}
    kf_dir = tmp / "kf_kill"
    frames = make_scene(6, 320, 240).frames
    for trial in range(trials):
        for what in ("save", "capture"):
            env = ros_env(domain, log_dir=tmp / "ros_logs_kill")
            args = node_args(kf_dir, tmp / "fields", PARAMS) + ["-p", "node.load_models:=lazy", *params]
            node = NodeProcess(args, env, tmp / f"node_kill_{what}_{trial}.log")
            before = KeyframeStore(kf_dir, 32).ids() if kf_dir.exists() else []
            with RosSession("langx_kill", domain_id=domain) as s:
                client = LangxClient(s)
                assert client.wait(lambda: bool(client.status), 60), node.log()
                assert client.load("bench").success
                if what == "save":
                    cl = s.node.create_client(FieldFile, "/langx_node/save_field")
                    req = FieldFile.Request(name="bench")
                else:
                    pub = FramePublisher(s.node, "/camera", instances=True)
                    client.wait(lambda: pub.connected(), 10)
                    for _ in range(3):
                        pub.publish(frames[trial % len(frames)])
                        client.wait(lambda: False, 0.05)
                    cl = s.node.create_client(Trigger, "/langx_node/capture_keyframe")
                    req = Trigger.Request()
                client.wait(cl.service_is_ready, 10)
                for _ in range(5):
                    cl.call_async(req)
                killer = threading.Timer(rng.uniform(0.0, 0.4), lambda: os.kill(node.proc.pid, signal.SIGKILL))
                killer.start()
                client.wait(lambda: node.proc.poll() is not None, 10)
                killer.join()
            node.stop()
            # restart: the node repairs, then every name resolves to a complete version
            node = NodeProcess(args, env, tmp / f"node_restart_{what}_{trial}.log")
            with RosSession("langx_kill2", domain_id=domain) as s:
                client = LangxClient(s)
                assert client.wait(lambda: bool(client.status), 60), node.log()
                loaded = client.load("bench")
                repaired = [ln for ln in node.log().splitlines() if "at start:" in ln]
            node.stop()
            store = KeyframeStore(kf_dir, 32)
            leftovers = [p.name for d in (tmp / "fields", kf_dir) for p in d.iterdir() if p.name.startswith(".")]
            leftovers = [n for n in leftovers if not (n.startswith(".bench.v-") and (tmp / "fields" / "bench").resolve().name == n)]
            ok = loaded.success and not store.skipped and set(before) <= set(store.ids()) and not leftovers
            out[what].append({"ok": ok, "field_loads": loaded.success, "keyframes_before": len(before),
                              "keyframes_after": len(store), "unreadable": store.skipped, "leftovers": leftovers,
                              "repaired": repaired})
            print(f"kill -9 during {what} #{trial + 1}: {'ok' if ok else 'FAILED'} (field loads: {loaded.success}, keyframes "
                  f"{len(before)} -> {len(store)}, leftovers {leftovers or 'none'}, repair log: {len(repaired)} lines)", flush=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--burst", type=int, default=300)
    ap.add_argument("--clients", type=int, default=3)
    ap.add_argument("--mask-burst", type=int, default=40)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--kill-trials", type=int, default=5)
    ap.add_argument("--parts", nargs="+", default=["bursts", "floor", "first", "kill"], choices=["bursts", "floor", "first", "kill"],
                    help="which measurements to run")
    a = ap.parse_args()

    from langx_ros.core.synthetic import make_scene
    from langx_ros.ros.client import LangxClient
    from langx_ros.ros.player import FramePublisher
    from langx_ros.ros.process import NodeProcess, RosSession, node_args, ros_env

    tmp = Path(tempfile.mkdtemp(prefix="langx_reliability_"))
    (tmp / "fields").mkdir()
    print("building a small field of the generated scene (CPU) ...", flush=True)
    params = saved_field(tmp / "fields")
    domain = random.randint(100, 199)
    env = ros_env(domain, log_dir=tmp / "ros_logs")
    os.environ.update({k: env[k] for k in ("ROS_DOMAIN_ID", "ROS_AUTOMATIC_DISCOVERY_RANGE")})
    args = node_args(tmp / "kf", tmp / "fields", PARAMS) + params
    node = NodeProcess(args, env, tmp / "node.log")
    results: dict = {"machine": machine(), "bursts": []}
    try:
        with RosSession("langx_reliability", domain_id=domain) as s:
            client = LangxClient(s)
            assert client.wait(lambda: bool(client.status), 60), node.log()
            r = client.load("bench")
            assert r.success, r.message
            pub = FramePublisher(s.node, "/camera", instances=True)  # a keyframe to render masks at
            f = make_scene(1, 128, 96).frames[0]
            res = client.publish_and_capture(lambda: pub.publish(f), attempts=20)
            assert res.success, res.message
            for masks, n in ((False, a.burst), (True, a.mask_burst)) if "bursts" in a.parts else ():
                for rep in range(a.repeats):
                    b = burst(s, n, a.clients, masks)
                    results["bursts"].append(b)
                    rt, nl = b["round_trip_ms"], b["node_latency_ms"]
                    print(f"burst of {n} ({'masks' if masks else 'no masks'}, {a.clients} clients, run {rep + 1}): "
                          f"{b['served']} served, {b['refused']} refused {b['refusal_reasons'] or ''}, {b['unanswered']} unanswered "
                          f"in {b['wall_s']:.2f} s; round trip p50 {rt.get('p50', float('nan')):.0f} ms, p95 "
                          f"{rt.get('p95', float('nan')):.0f} ms; in the node p50 {nl.get('p50', float('nan')):.1f} ms, "
                          f"p95 {nl.get('p95', float('nan')):.1f} ms", flush=True)
                    write_json("reliability", results)
    finally:
        results["node_exit_code"] = node.stop()
        write_json("reliability", results)
    if "floor" in a.parts:
        results["floor"] = floor_bursts(tmp, domain, a)
        write_json("reliability", results)
    if "first" in a.parts:
        results["first_answer"] = first_answers(tmp, params, domain)
        write_json("reliability", results)
    if "kill" in a.parts:
        results["kill"] = kill_trials(tmp, params, domain, a.kill_trials)
        write_json("reliability", results)


if __name__ == "__main__":
    main()
