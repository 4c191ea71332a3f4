"""langx-demo: the README's main command.

Starts langx_node as a real ROS 2 process on loopback, plays real posed RGB-D frames to it
(../shared/data/rgbd-3dmatch-seq01 when present), watches ~/status, asks ~/query in plain words
and prints what comes back; writes a JSON summary to the output folder.

Current stage of the project: the reconstruction is not wired into the node yet, so the query
round trip answers with the node's "no field yet" error. The demo shows that round trip, the
input checks and the node's state honestly; later stages grow it into the full demo.
"""
from __future__ import annotations

import argparse
import os
import random
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
DEFAULT_DATA = REPO.parent / "shared" / "data" / "rgbd-3dmatch-seq01"
DEFAULT_QUERIES = ["the printer", "a soft pillow", "green office chair"]


def _frames(data: Path, limit: int):
    from langx_ros.core.frames import list_rgbd_folder, load_rgbd_frame

    if data.is_dir():
        ids = list_rgbd_folder(data)[:limit]
        return [load_rgbd_frame(data, i) for i in ids], f"real frames from {data}"
    return [], f"data folder {data} is absent"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="langx-demo", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA, help="folder of posed RGB-D frames")
    ap.add_argument("--params", type=Path, default=REPO / "config" / "langx.yaml", help="node parameter file")
    ap.add_argument("--out", type=Path, default=REPO / "output" / "demo", help="output folder")
    ap.add_argument("--frames", type=int, default=5, help="how many frames to play")
    ap.add_argument("--queries", nargs="+", default=DEFAULT_QUERIES, help="text queries")
    ap.add_argument("--domain-id", type=int, default=None, help="ROS_DOMAIN_ID (default: a random one in 100..199)")
    args = ap.parse_args(argv)

    from langx_interfaces.msg import NodeStatus
    from langx_interfaces.srv import QueryObjects
    from rclpy.qos import qos_profile_sensor_data
    from sensor_msgs.msg import CameraInfo, Image

    from langx_ros.core.atomic import atomic_write_json
    from langx_ros.ros.convert import camera_info_from_intrinsics, numpy_to_image
    from langx_ros.ros.node import LATCHED
    from langx_ros.ros.process import NodeProcess, RosSession, call, ros_env, spin_until

    domain = args.domain_id if args.domain_id is not None else random.randint(100, 199)
    args.out.mkdir(parents=True, exist_ok=True)
    frames, source = _frames(args.data, args.frames)
    if not frames:
        print(f"[demo] {source}: no frames to play (pass --data DIR); the node will only answer queries", flush=True)
    print(f"[demo] ROS_DOMAIN_ID={domain} on loopback; node log: {args.out / 'node.log'}", flush=True)

    env = ros_env(domain, log_dir=args.out / "ros_logs")
    os.environ.update({k: env[k] for k in ("ROS_DOMAIN_ID", "ROS_AUTOMATIC_DISCOVERY_RANGE")})
    t_start = time.perf_counter()
    node = NodeProcess(
        ["--params-file", str(args.params), "-r", "image:=/camera/image", "-r", "camera_info:=/camera/camera_info",
         "-p", f"keyframes.directory:={args.out / 'keyframes'}"],
        env,
        args.out / "node.log",
    )
    summary: dict = {"data": source, "domain_id": domain, "queries": []}
    try:
        with RosSession("langx_demo", domain_id=domain) as ros:
            status: list[NodeStatus] = []
            ros.node.create_subscription(NodeStatus, "/langx_node/status", status.append, LATCHED)
            pub_img = ros.node.create_publisher(Image, "/camera/image", qos_profile_sensor_data)
            pub_info = ros.node.create_publisher(CameraInfo, "/camera/camera_info", qos_profile_sensor_data)
            client = ros.node.create_client(QueryObjects, "/langx_node/query")
            if not spin_until(ros.executor, client.service_is_ready, 60.0):
                print(f"[demo] langx_node did not come up; its log:\n{node.log()}", file=sys.stderr)
                return 1
            t_up = time.perf_counter() - t_start
            print(f"[demo] langx_node is up after {t_up:.1f} s", flush=True)

            # Play the frames until the node has accepted each of them at least once.
            for rnd in range(20):
                for f in frames:
                    header_stamp = ros.node.get_clock().now().to_msg()
                    info = camera_info_from_intrinsics(f.K, f.width, f.height)
                    img = numpy_to_image(f.rgb, "rgb8")
                    for m in (info, img):
                        m.header.stamp, m.header.frame_id = header_stamp, "camera_color_optical_frame"
                    pub_info.publish(info)
                    pub_img.publish(img)
                    spin_until(ros.executor, lambda: False, 0.1)
                if not frames or (status and status[-1].images_accepted >= len(frames)):
                    break
            spin_until(ros.executor, lambda: bool(status), 5.0)
            st = status[-1] if status else None
            if st is not None:
                print(
                    f"[demo] node state: {st.state_name}; images accepted {st.images_accepted}, "
                    f"rejected {st.images_rejected}; device {st.device}",
                    flush=True,
                )
                summary["status"] = {
                    "state": st.state_name,
                    "images_accepted": st.images_accepted,
                    "images_rejected": st.images_rejected,
                    "device": st.device,
                    "provenance": st.provenance,
                }

            req = QueryObjects.Request(queries=list(args.queries), threshold=0.0, view="latest", return_masks=True)
            t0 = time.perf_counter()
            res = call(ros.executor, client, req)
            rtt = (time.perf_counter() - t0) * 1000.0
            print(f"[demo] ~/query {args.queries} -> success={res.success}: {res.message}", flush=True)
            print(f"[demo] provenance: {res.provenance}", flush=True)
            print(f"[demo] round trip {rtt:.1f} ms (inside the node {res.latency_ms:.2f} ms)", flush=True)
            print("", flush=True)
            print(f"{'query':<24} {'found':<6} {'score':>6} {'points':>7}  centroid", flush=True)
            rows = [(q, None) for q in args.queries] if not res.success else [(m.query, m) for m in res.matches]
            for q, m in rows:
                if m is None:
                    print(f"{q:<24} {'-':<6} {'-':>6} {'-':>7}  - ({res.message.split(':')[0]})", flush=True)
                else:
                    c = m.centroid
                    print(f"{q:<24} {str(m.found):<6} {m.score:6.3f} {m.cloud.width:7d}  ({c.x:.2f}, {c.y:.2f}, {c.z:.2f})", flush=True)
            summary["queries"] = [{
                "queries": list(args.queries), "success": bool(res.success), "message": res.message,
                "provenance": res.provenance, "round_trip_ms": rtt, "node_latency_ms": float(res.latency_ms),
            }]
    finally:
        code = node.stop()
        summary["node_exit_code"] = code
        atomic_write_json(args.out / "summary.json", summary)
        print(f"\n[demo] node stopped (exit code {code}); summary: {args.out / 'summary.json'}", flush=True)
    # The demo succeeds when the node came up, took the frames and answered the query over ROS.
    ok = summary.get("status", {}).get("images_accepted", 0) >= len(frames) and code == 0
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
