"""langx-demo: the README's main command, the whole product flow over real ROS 2.

Starts langx_node as its own process on loopback, plays posed RGB-D frames to it with the
frame player, captures keyframes, runs the ~/reconstruct action (progress printed), asks
~/query in plain words, and writes to the output folder: overlays of mask and relevancy on the
view (PNG), the matched points (PLY), the saved field, the node log and summary.json.

Which scene and semantics (--scene auto picks the first that is possible):
- ``rgbd``: with open_clip weights in the model directory, the real lounge frames
  (../shared/data/rgbd-3dmatch-seq01) with SAM2 (or its superpixel fallback) and open_clip.
- ``lounge``: the same real frames under the ORACLE-FEATURE PROTOCOL: our annotations
  (bench/labels/) give the segments, their names embedded by a real text model
  (all-MiniLM-L6-v2) the features, so "couch" finds the object labelled "sofa". Every answer
  is scored against the annotated surface (3D precision, recall, centroid error).
- ``synthetic``: a generated scene under the same protocol, for machines without ../shared.
Every output says which one ran.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
DEFAULT_DATA = REPO.parent / "shared" / "data" / "rgbd-3dmatch-seq01"
SYNTHETIC_QUERIES = ["couch", "the printer", "a ball", "coffee table", "zebra"]
REAL_QUERIES = ["the printer", "a soft pillow", "green office chair", "sofa", "potted plant"]
# lounge (oracle protocol): free words -> the annotated object they mean ("" = none: a negative query)
LOUNGE_QUERIES = {"couch": "sofa", "the printer": "printer", "striped pillow": "striped pillow", "whiteboard": "whiteboard",
                  "plant": "potted plant", "office chair": "green office chair", "side table": "side table",
                  "bookshelf": "wooden shelf", "a bicycle": ""}
ORACLE_LABEL = "ORACLE-FEATURE PROTOCOL + MiniLM text"


def overlay(rgb: np.ndarray, mask: np.ndarray | None, rel_rgb: np.ndarray | None, title: str) -> np.ndarray:
    """View | view with the mask tinted | relevancy map, side by side, with a caption strip."""
    import cv2

    h, w = rgb.shape[:2]
    tinted = rgb.copy()
    if mask is not None and mask.shape == (h, w):
        m = mask > 0
        tinted[m] = (0.45 * tinted[m] + 0.55 * np.array([255, 40, 40])).astype(np.uint8)
        contours, _ = cv2.findContours(m.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        cv2.drawContours(tinted, contours, -1, (255, 255, 0), 1)
    rel = rel_rgb if rel_rgb is not None and rel_rgb.shape[:2] == (h, w) else np.zeros_like(rgb)
    row = np.concatenate([rgb, tinted, rel], axis=1)
    scale = max(1, 480 // h)
    row = cv2.resize(row, (row.shape[1] * scale, h * scale), interpolation=cv2.INTER_NEAREST)
    strip = np.full((28, row.shape[1], 3), 255, np.uint8)
    cv2.putText(strip, title[:150], (6, 19), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
    return np.concatenate([row, strip], axis=0)


def judge(query: str, found: bool, score: float, points: np.ndarray, truth: dict[str, np.ndarray]) -> dict:
    """Check one answer against the annotated surfaces: the object the query means
    (LOUNGE_QUERIES; "" = none) must be answered, on itself; a negative query must find nothing."""
    from langx_ros.core.scene_eval import score_points

    target = LOUNGE_QUERIES.get(query)
    if target is None:
        return {"right": False, "text": "(no annotation to check against)", "target": None}
    if not target:
        return {"right": not found, "target": "", "text": "right: nothing found" if not found else "WRONG: found something"}
    s = score_points(target, found, score, points, truth)
    if not s.found:
        return {"right": False, "target": target, "text": f"MISSED the {target}"}
    text = (f"{'WRONG object' if s.wrong_object else 'right'} ({target}): precision {s.precision:.2f}, recall {s.recall:.2f}, "
            f"centroid off {s.centroid_error * 100:.0f} cm" + (f", mostly on {s.nearest_other}" if s.wrong_object else ""))
    return {"right": not s.wrong_object, "target": target, "text": text, "precision": s.precision, "recall": s.recall,
            "centroid_error_m": s.centroid_error}


def semantics_label(mode: str, provenance: str) -> str:
    """What made the features, for the overlay's caption (random weights said first)."""
    if mode != "rgbd":
        return ORACLE_LABEL
    return "open_clip + SAM2" + (" with RANDOM WEIGHTS" if "RANDOM WEIGHTS" in provenance else "")


def oracle_params(labels: list[str]) -> list[str]:
    """Node parameters of the oracle-feature protocol with these labels (index = instance id)."""
    return ["-p", "semantics.source:=oracle", "-p", "semantics.labels:=" + json.dumps(labels),
            "-p", "lqc.codebook_size:=256", "-p", "lqc.batch_size:=512", "-p", "query.mask_box_px:=5", "-p", "query.mask_clean_px:=3"]


def choose_mode(args) -> tuple[str, str]:
    """(mode, why): --scene as asked, or for auto the first possible of rgbd, lounge, synthetic."""
    from langx_ros.core.config import LangxConfig
    from langx_ros.core.models import ModelNotFound, open_clip_weights

    cfg = LangxConfig.from_yaml(args.params)
    if args.scene == "synthetic":
        return "synthetic", "requested --scene synthetic"
    labels = REPO / "bench" / "labels" / args.data.name / "annotations.json"
    lounge_ok = args.data.is_dir() and labels.is_file()
    lounge_why = (f"real frames from {args.data} under the oracle-feature protocol: segments from our annotations "
                  f"({labels.relative_to(REPO)}), label names embedded by all-MiniLM-L6-v2")
    if args.scene == "lounge":
        if not lounge_ok:
            raise SystemExit(f"--scene lounge needs the frames at {args.data} and the labels at {labels}")
        return "lounge", lounge_why + " (requested --scene lounge)"
    try:
        open_clip_weights(cfg.models.clip_model, cfg.models.model_dir, cfg.models.hf_cache)
    except ModelNotFound:
        if args.scene == "rgbd":
            raise SystemExit(f"--scene rgbd needs open_clip weights in {cfg.models.model_dir} (see README 'Model weights')")
        if lounge_ok:
            return "lounge", f"no open_clip weights in {cfg.models.model_dir} or the HF cache: " + lounge_why
        return "synthetic", (f"no open_clip weights in {cfg.models.model_dir} or the HF cache, and no real frames at "
                             f"{args.data}: generated scene under the oracle-feature protocol (label names embedded by "
                             "all-MiniLM-L6-v2)")
    if not args.data.is_dir():
        return "synthetic", f"open_clip weights found but no frames at {args.data}"
    return "rgbd", f"real frames from {args.data} with open_clip + SAM2 (or its superpixel fallback)"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="langx-demo", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scene", choices=["auto", "rgbd", "lounge", "synthetic"], default="auto")
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA, help="folder of posed RGB-D frames (rgbd and lounge)")
    ap.add_argument("--params", type=Path, default=REPO / "config" / "langx.yaml", help="node parameter file")
    ap.add_argument("--out", type=Path, default=REPO / "output" / "demo", help="output folder (replaced)")
    ap.add_argument("--queries", nargs="+", default=None, help="text queries")
    ap.add_argument("--iterations", type=int, default=0, help="field iterations (0: the mode's default)")
    ap.add_argument("--size", type=int, nargs=2, default=None, metavar=("W", "H"),
                    help="view size (default: synthetic 128x96; lounge 640x480 with CUDA, else 160x120)")
    ap.add_argument("--domain-id", type=int, default=None, help="ROS_DOMAIN_ID (default: a random one in 100..199)")
    args = ap.parse_args(argv)

    import cv2
    from langx_interfaces.action import Reconstruct
    from sensor_msgs.msg import Image

    from langx_ros.core.atomic import atomic_write_json
    from langx_ros.core.field.io import write_ply
    from langx_ros.ros.client import LangxClient
    from langx_ros.ros.convert import cloud_from_msg, image_to_numpy
    from langx_ros.ros.player import FramePublisher
    from langx_ros.ros.process import NodeProcess, RosSession, ros_env
    from langx_ros.ros.process import node_args as camera_node_args

    mode, why = choose_mode(args)
    out = args.out
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    node_args = camera_node_args(out / "keyframes", out / "fields", args.params)
    truth: dict[str, np.ndarray] = {}  # lounge: annotated object name -> its observed surface points
    if mode == "synthetic":
        from langx_ros.core.synthetic import make_scene

        w, h = args.size or (128, 96)
        scene = make_scene(6, w, h, start_deg=15.0)
        frames, view = scene.frames[:5], scene.frames[5]
        queries = args.queries or SYNTHETIC_QUERIES
        iters = args.iterations or 400
        node_args += oracle_params(scene.labels) + ["-p", "lqc.steps:=400", "-p", "query.threshold:=0.8"]
    elif mode == "lounge":
        import torch

        from langx_ros.core.real_scene import load_scene, scene_spec

        gpu = torch.cuda.is_available()
        w, h = args.size or ((640, 480) if gpu else (160, 120))
        scene = load_scene(scene_spec("lounge", args.data.parent), w, h, args.data.parent)
        frames, view = scene.train, scene.held_out[0]
        truth = scene.surfaces
        queries = args.queries or list(LOUNGE_QUERIES)
        iters = args.iterations or (3000 if gpu else 300)
        # a per-scene LQC needs >= 1000 steps (shorter runs merge labels' codes)
        node_args += oracle_params(scene.names) + ["-p", "lqc.steps:=1000"]
        why += f"; {w}x{h}, {iters} iterations ({'CUDA' if gpu else 'CPU: small size'})"
    else:
        from langx_ros.core.frames import list_rgbd_folder, load_rgbd_frame, resize_frame

        ids = list_rgbd_folder(args.data)
        if len(ids) < 3:
            raise SystemExit(f"--scene rgbd needs at least 3 posed RGB-D frames in {args.data}, found {len(ids)}")
        # the lounge's split (view 000001 near the training views); another folder: every frame but the second
        train = [i for i in ("frame-000000", "frame-000002", "frame-000116") if i in ids]
        view_id = "frame-000001" if "frame-000001" in ids and len(train) >= 2 else ids[1]
        train = train if len(train) >= 2 else [i for i in ids if i != view_id]
        sized = (lambda f: resize_frame(f, *args.size)) if args.size else (lambda f: f)
        frames = [sized(load_rgbd_frame(args.data, i)) for i in train]
        view = sized(load_rgbd_frame(args.data, view_id))
        queries = args.queries or REAL_QUERIES
        iters = args.iterations or 3000
        why += f"; {view.width}x{view.height}, {iters} iterations"
    print(f"[demo] mode: {mode}: {why}", flush=True)

    domain = args.domain_id if args.domain_id is not None else random.randint(100, 199)
    env = ros_env(domain, log_dir=out / "ros_logs")
    os.environ.update({k: env[k] for k in ("ROS_DOMAIN_ID", "ROS_AUTOMATIC_DISCOVERY_RANGE")})
    print(f"[demo] ROS_DOMAIN_ID={domain} on loopback; node log: {out / 'node.log'}", flush=True)
    node = NodeProcess(node_args, env, out / "node.log")
    summary: dict = {"mode": mode, "why": why, "domain_id": domain, "queries": []}
    ok = False
    try:
        with RosSession("langx_demo", domain_id=domain) as ros:
            client = LangxClient(ros)
            player = FramePublisher(ros.node, "/camera", instances=mode != "rgbd")
            rel_imgs: list[Image] = []
            ros.node.create_subscription(Image, "/langx_node/query/relevancy", rel_imgs.append, 10)
            if not client.wait(lambda: player.connected() and bool(client.status), 60):
                print(f"[demo] langx_node did not come up; its log:\n{node.log()}", file=sys.stderr)
                return 1
            # play and capture every training frame
            for f in frames:
                res = client.publish_and_capture(lambda: player.publish(f), attempts=30)
                print(f"[demo] {f.frame_id}: {res.message}", flush=True)
                if not res.success:
                    return 1
            last = [""]

            def show(fb):  # a line per stage and per 10% of progress
                key = f"{fb.stage}/{int(fb.progress * 10)}"
                if key != last[0]:
                    last[0] = key
                    print(f"[demo] reconstructing: {fb.stage} ({fb.stage_index + 1}/{fb.num_stages}) "
                          f"{fb.progress * 100:5.1f}%  {fb.detail}", flush=True)

            result = client.reconstruct(Reconstruct.Goal(iterations=iters, keep_previous_on_failure=True), show)
            print(f"[demo] reconstruction: {result.message}", flush=True)
            print(f"[demo] provenance: {result.provenance}", flush=True)
            summary["reconstruction"] = {"success": result.success, "message": result.message, "seconds": result.total_seconds,
                                         "stages": dict(zip(result.stage_names, result.stage_seconds)),
                                         "gaussians": result.num_gaussians, "provenance": result.provenance}
            if not result.success:
                return 1
            # the query view: a frame not used for training, played as the latest image
            for _ in range(10):
                player.publish(view)
                client.wait(lambda: False, 0.1)
            print("", flush=True)
            checked = " against our annotations" if truth else ""
            print(f"{'query':<20} {'found':<6} {'score':>6} {'points':>7}  {'centroid (m, world)':<24} {'latency':>9}"
                  + (f"  {'answer' + checked}" if truth else ""), flush=True)
            for q in queries:
                rel_imgs.clear()
                t = time.perf_counter()
                res = client.query([q], view="latest")
                rtt = (time.perf_counter() - t) * 1000
                if not res.success:
                    print(f"{q:<20} error: {res.message}", flush=True)
                    summary["queries"].append({"query": q, "success": False, "message": res.message})
                    continue
                m = res.matches[0]
                c = (m.centroid.x, m.centroid.y, m.centroid.z)
                cen = f"({c[0]:5.2f}, {c[1]:5.2f}, {c[2]:5.2f})" if m.found else "-"
                pts = cloud_from_msg(m.cloud) if m.found else None
                xyz = np.stack([pts["x"], pts["y"], pts["z"]], 1) if pts is not None else np.zeros((0, 3))
                verdict = judge(q, bool(m.found), float(m.score), xyz, truth) if truth else None
                print(f"{q:<20} {str(m.found):<6} {m.score:6.3f} {m.cloud.width:7d}  {cen:<24} {rtt:7.1f} ms"
                      + (f"  {verdict['text']}" if verdict else ""), flush=True)
                slug = "".join(ch if ch.isalnum() else "_" for ch in q)[:40]
                entry = {"query": q, "found": bool(m.found), "score": float(m.score), "points": int(m.cloud.width),
                         "centroid": list(c), "box_size": [m.box_size.x, m.box_size.y, m.box_size.z],
                         "oriented_box": {"center": [m.obb_pose.position.x, m.obb_pose.position.y, m.obb_pose.position.z],
                                          "quaternion_xyzw": [m.obb_pose.orientation.x, m.obb_pose.orientation.y,
                                                              m.obb_pose.orientation.z, m.obb_pose.orientation.w],
                                          "size": [m.obb_size.x, m.obb_size.y, m.obb_size.z]},
                         "round_trip_ms": rtt, "node_ms": float(res.latency_ms), "message": m.message}
                if verdict:
                    entry["check"] = verdict
                if m.found:
                    write_ply(out / f"{slug}.ply", xyz, pts["rgb"], {"relevancy": pts["relevancy"]})
                    client.wait(lambda: bool(rel_imgs), 5)
                    rel = image_to_numpy(rel_imgs[-1]) if rel_imgs else None
                    mask = image_to_numpy(m.mask) if m.mask.width else None
                    title = (f"'{q}': score {m.score:.2f}, {m.cloud.width} pts | "
                             f"{semantics_label(mode, result.provenance)}"
                             + (f" | {verdict['text']}" if verdict else ""))
                    png = overlay(view.rgb, mask, rel, title)
                    cv2.imwrite(str(out / f"{slug}.png"), png[:, :, ::-1])
                    entry["overlay"] = f"{slug}.png"
                summary["queries"].append(entry)
            if truth:
                checks = [e["check"] for e in summary["queries"] if "check" in e]
                right = sum(ch["right"] for ch in checks)
                summary["checked"] = {"right": right, "of": len(checks)}
                print(f"\n[demo] {right} of {len(checks)} answers right against our annotations "
                      f"({ORACLE_LABEL}; precision/recall within 5 cm of the object's observed surface)", flush=True)
            if "RANDOM WEIGHTS" in result.provenance:
                summary["random_weights"] = True
                print("\n[demo] NOTE: this field was built on RANDOM WEIGHTS (see the provenance above): its answers are "
                      "meaningless; the run rehearses the path real weights take", flush=True)
            saved = client.save("demo")
            summary["saved_field"] = saved.path if saved.success else saved.message
            summary["provenance"] = res.provenance if res.success else result.provenance
            ok = True
    finally:
        code = node.stop()
        summary["node_exit_code"] = code
        atomic_write_json(out / "summary.json", summary)
        print(f"\n[demo] node stopped (exit code {code}); outputs in {out} (summary.json, *.png, *.ply, fields/demo)", flush=True)
    return 0 if ok and code == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
