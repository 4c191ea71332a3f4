"""Soak: a camera at --rate Hz (640x480 rgb8 + 16UC1 depth + pose) into an idle langx_node for
--minutes, on loopback (CPU). Every 10 s: the node's resident memory (RSS) and what ~/status
says (images accepted, rate received, the camera's rate from the stamps, images estimated lost
before the node). At the end: RSS growth after the first minute, and how many of the frames
sent the node accounts for (accepted + rejected + estimated lost), so loss is never hidden.

    python bench/soak.py [--minutes 10] [--rate 30]

Prints numbers and writes bench/results/soak.json.
"""
from __future__ import annotations

import argparse
import os
import random
import tempfile
import time
from pathlib import Path

from _util import REPO, machine, write_json


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024.0
    return float("nan")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minutes", type=float, default=10.0)
    ap.add_argument("--rate", type=float, default=30.0)
    a = ap.parse_args()

    from langx_ros.core.synthetic import make_scene
    from langx_ros.ros.client import LangxClient
    from langx_ros.ros.player import FramePublisher
    from langx_ros.ros.process import NodeProcess, RosSession, node_args, ros_env

    tmp = Path(tempfile.mkdtemp(prefix="langx_soak_"))
    domain = random.randint(100, 199)
    env = ros_env(domain, log_dir=tmp / "ros_logs")
    os.environ.update({k: env[k] for k in ("ROS_DOMAIN_ID", "ROS_AUTOMATIC_DISCOVERY_RANGE")})
    args = node_args(tmp / "kf", tmp / "fields", REPO / "config" / "langx.yaml") + ["-p", "node.status_period:=0.5"]
    node = NodeProcess(args, env, tmp / "node.log")
    frame = make_scene(1, 640, 480).frames[0]
    samples = []
    out: dict = {"machine": machine(), "minutes": a.minutes, "rate_hz": a.rate, "frame": "640x480 rgb8 + 16UC1 depth + pose"}
    try:
        with RosSession("langx_soak", domain_id=domain) as s:
            client = LangxClient(s)
            pub = FramePublisher(s.node, "/camera")
            assert client.wait(lambda: pub.connected() and bool(client.status), 60), node.log()
            t0 = time.monotonic()
            stamp0 = time.time()
            sent, next_sample = 0, t0
            end = t0 + a.minutes * 60
            while time.monotonic() < end:
                pub.publish(frame, stamp0 + sent / a.rate)  # stamped on the camera's clock, as a driver does
                sent += 1
                now = time.monotonic()
                if now >= next_sample:
                    st = client.status[-1]
                    samples.append({"t_s": now - t0, "rss_mib": rss_mib(node.proc.pid), "sent": sent,
                                    "accepted": st.images_accepted, "rejected": st.images_rejected,
                                    "lost_estimate": st.images_lost_estimate, "rate_hz": st.image_rate_hz,
                                    "camera_hz": st.camera_rate_hz, "behind": st.input_behind})
                    print(f"t={now - t0:6.0f} s  RSS {samples[-1]['rss_mib']:7.1f} MiB  sent {sent}  accepted {st.images_accepted}  "
                          f"~lost {st.images_lost_estimate}  received {st.image_rate_hz:.1f} Hz of {st.camera_rate_hz:.1f} Hz"
                          f"{'  (behind)' if st.input_behind else ''}", flush=True)
                    next_sample += 10.0
                client.wait(lambda: False, max(0.0, t0 + sent / a.rate - time.monotonic()))
            client.wait(lambda: False, 2.0)
            st = client.status[-1]
            after_1min = [x for x in samples if x["t_s"] >= 60.0]
            base = after_1min[0]["rss_mib"] if after_1min else samples[0]["rss_mib"]
            final_rss = rss_mib(node.proc.pid)
            accounted = st.images_accepted + st.images_rejected + st.images_lost_estimate
            out.update({"samples": samples, "sent": sent, "accepted": st.images_accepted, "rejected": st.images_rejected,
                        "lost_estimate": st.images_lost_estimate, "accounted_fraction": accounted / max(1, sent),
                        "rss_first_mib": samples[0]["rss_mib"], "rss_after_1min_mib": base, "rss_end_mib": final_rss,
                        "rss_growth_after_1min": (final_rss - base) / base})
            print(f"\nsent {sent} frame sets in {a.minutes:g} min; node accepted {st.images_accepted}, rejected "
                  f"{st.images_rejected}, estimated lost before it {st.images_lost_estimate}: accounts for "
                  f"{100 * out['accounted_fraction']:.1f} % of the frames sent")
            print(f"RSS {samples[0]['rss_mib']:.0f} MiB at start, {base:.0f} MiB after 1 min, {final_rss:.0f} MiB at the end: "
                  f"{100 * out['rss_growth_after_1min']:+.1f} % after the first minute")
    finally:
        out["node_exit_code"] = node.stop()
        write_json("soak", out)


if __name__ == "__main__":
    main()
