"""Reconstruction benchmark: keyframes -> queryable field; wall time, peak GPU memory, quality.

--scene synthetic (default): 8 keyframes at 640x480 of a generated scene + 2 held-out views,
    semantics under the ORACLE-FEATURE PROTOCOL (no model weights exist here): reports wall time
    per stage, peak GPU memory, held-out PSNR, 3D precision/recall and held-out 2D mIoU.
--scene rgbd --data DIR: the real 3DMatch frames; trains on 000000, 000002, 000116 (depth and
    poses given), renders 000001 and 000422: PSNR and depth error (geometry and colour only).
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from _util import write_json

from langx_ros.core.config import QueryConfig
from langx_ros.core.field.gaussians import init_from_points
from langx_ros.core.field.train import FieldConfig, TrainView, render_view, train_field
from langx_ros.core.frames import load_rgbd_frame, normals_from_depth, resize_frame
from langx_ros.core.lqc import LQCConfig
from langx_ros.core.query import query_2d, select_3d
from langx_ros.core.reconstruct import ReconstructConfig, depth_points, reconstruct
from langx_ros.core.synthetic import ORACLE_PROVENANCE, OracleSemantics, OracleTextEncoder, make_scene


def psnr_depth(field_or_params, frame, device):
    vm = torch.tensor(np.linalg.inv(frame.pose), dtype=torch.float32, device=device)
    K = torch.tensor(frame.K, dtype=torch.float32, device=device)
    with torch.no_grad():
        if isinstance(field_or_params, torch.nn.ParameterDict):
            r = render_view(field_or_params, vm, K, frame.width, frame.height)
        else:
            r = field_or_params.render(vm, K, frame.width, frame.height)
    gt = torch.tensor(frame.rgb / 255.0, dtype=torch.float32, device=device)
    psnr = float(-10 * torch.log10(((r.rgb - gt) ** 2).mean()))
    d = torch.tensor(frame.depth, device=device)
    ok = torch.isfinite(d) & (r.alpha[..., 0] > 0.5)
    return psnr, float((r.depth[..., 0][ok] - d[ok]).abs().mean()) if ok.any() else float("nan"), float(ok.float().mean())


def synthetic(a, device) -> dict:
    scene = make_scene(a.views + 2, a.width, a.height, start_deg=10.0)
    train, held = scene.frames[: a.views], scene.frames[a.views:]
    enc = OracleTextEncoder(scene.labels)
    qcfg = QueryConfig(threshold=0.8)
    semantics = OracleSemantics.from_scene(scene, enc)
    if a.semantics == "random-weights":
        # the real SAM2 + open_clip code path with RANDOM WEIGHTS: stage timings only
        from langx_ros.core.features import ClipModel, ClipSegmentFeatures, FeatureConfig
        from langx_ros.core.segment import SAM2Segmenter, SegmentConfig

        sam = SAM2Segmenter.build(None, SegmentConfig(pred_iou_threshold=0.0), str(device), "RANDOM WEIGHTS (benchmark)")
        clip = ClipModel("ViT-B-16", None, device, "RANDOM WEIGHTS (benchmark)")
        semantics = ClipSegmentFeatures(sam, clip, FeatureConfig())
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    res = reconstruct(train, semantics, enc if a.semantics == "oracle" else semantics.clip, ReconstructConfig(), FieldConfig(iterations=a.iters),
                      LQCConfig(steps=a.lqc_steps, batch_size=4096), qcfg.canonical_phrases, device=device)
    if device.type == "cuda":
        torch.cuda.synchronize()
    wall = time.perf_counter() - t0
    peak = torch.cuda.max_memory_allocated() / 2**30 if device.type == "cuda" else None
    f = res.field
    if a.semantics != "oracle":
        print(f"RANDOM WEIGHTS {a.views} keyframes {a.width}x{a.height} on {device}: {wall:.1f} s "
              f"({', '.join(f'{k} {v:.1f}s' for k, v in res.timings.items())}), peak GPU {peak}")
        return {"wall_s": wall, "timings": res.timings, "peak_gpu_gib": peak, "protocol": "random weights: timings only"}
    labels = scene.labels[1:]
    canon = torch.tensor(enc.encode(qcfg.canonical_phrases), device=device)
    text = torch.tensor(enc.encode(labels), device=device)
    from scipy.spatial import cKDTree

    means = f.params["means"].cpu().numpy()
    tau = 2 * f.point_spacing()
    pr = {}
    for k, m in enumerate(select_3d(f, labels, text, canon, qcfg.threshold, qcfg), start=1):
        gt = scene.surface_points(k, 0.005)
        on = cKDTree(gt).query(means)[0] < tau
        ret = np.zeros(len(means), bool)
        ret[m.gaussian_ids] = True
        pr[m.query] = {"found": m.found, "precision": float((cKDTree(gt).query(m.points)[0] < tau).mean()) if m.found else 0.0,
                       "recall": float((ret & on).sum() / max(on.sum(), 1))}
    ious = []
    for j, v in enumerate(held):
        vm = torch.tensor(np.linalg.inv(v.pose), dtype=torch.float32, device=device)
        K = torch.tensor(v.K, dtype=torch.float32, device=device)
        for k, m in enumerate(query_2d(f, labels, vm, K, v.width, v.height, text, canon, qcfg), start=1):
            gt = scene.instances[a.views + j] == k
            ious.append(float((m.mask & gt).sum() / max((m.mask | gt).sum(), 1)))
    held_m = [psnr_depth(f, v, device) for v in held]
    out = {"wall_s": wall, "timings": res.timings, "peak_gpu_gib": peak, "gaussians": f.num_gaussians,
           "heldout_psnr": [h[0] for h in held_m], "heldout_depth_l1_m": [h[1] for h in held_m],
           "precision_recall_3d": pr, "tau_m": tau, "heldout_miou_2d": float(np.mean(ious)), "protocol": ORACLE_PROVENANCE,
           "renderer": f.provenance["renderer"]}
    print(f"[{ORACLE_PROVENANCE}] {a.views} keyframes {a.width}x{a.height} on {device}: {wall:.1f} s "
          f"({', '.join(f'{k} {v:.1f}s' for k, v in res.timings.items())}), peak GPU "
          f"{'n/a' if peak is None else f'{peak:.2f} GiB'}, {f.num_gaussians} Gaussians")
    print(f"  held-out PSNR {np.round(out['heldout_psnr'], 2).tolist()} dB, depth L1 {np.round(out['heldout_depth_l1_m'], 3).tolist()} m; "
          f"2D mIoU {out['heldout_miou_2d']:.3f}")
    print("  3D (tau %.3f m): " % tau + "; ".join(f"{k}: P {v['precision']:.2f} R {v['recall']:.2f}" for k, v in pr.items()))
    return out


def rgbd(a, device) -> dict:
    ids = (0, 1, 2, 116, 422)
    fr = {i: load_rgbd_frame(a.data, f"frame-{i:06d}") for i in ids}
    if a.width != 640:
        fr = {i: resize_frame(f, a.width, a.height) for i, f in fr.items()}
    train = [fr[0], fr[2], fr[116]]
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    params = init_from_points(*depth_points(train), 3, 300_000, device=device)
    views = [TrainView.from_frame(f, normals_from_depth(f.depth, f.K, f.pose), device) for f in train]
    st = train_field(params, views, FieldConfig(iterations=a.iters), levels=1)
    wall = time.perf_counter() - t0
    res = {i: psnr_depth(params, fr[i], device) for i in ids}
    out = {"wall_s": wall, "gaussians": st["num_gaussians"], "renderer": st["backend"],
           "psnr_depth_coverage": {f"frame-{i:06d}": res[i] for i in ids},
           "peak_gpu_gib": torch.cuda.max_memory_allocated() / 2**30 if device.type == "cuda" else None}
    print(f"real RGB-D {a.width}x{a.height}, {a.iters} it on {device} ({st['backend']}): {wall:.1f} s, {st['num_gaussians']} Gaussians")
    for i in ids:
        tag = "train" if fr[i] in train else "held-out"
        print(f"  frame-{i:06d} ({tag}): PSNR {res[i][0]:.2f} dB, depth L1 {res[i][1]:.3f} m, coverage {res[i][2]:.2f}")
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--scene", choices=["synthetic", "rgbd"], default="synthetic")
    ap.add_argument("--data", default="../shared/data/rgbd-3dmatch-seq01")
    ap.add_argument("--views", type=int, default=8)
    ap.add_argument("--width", type=int, default=640)
    ap.add_argument("--height", type=int, default=480)
    ap.add_argument("--iters", type=int, default=3000)
    ap.add_argument("--lqc-steps", type=int, default=1000)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--semantics", choices=["oracle", "random-weights"], default="oracle",
                    help="oracle-feature protocol, or SAM2 + open_clip with random weights (timings only)")
    a = ap.parse_args()
    device = torch.device(a.device)
    out = synthetic(a, device) if a.scene == "synthetic" else rgbd(a, device)
    write_json(f"reconstruct_{a.scene}_{a.semantics}_{device.type}", {"args": vars(a), **out})


if __name__ == "__main__":
    main()
