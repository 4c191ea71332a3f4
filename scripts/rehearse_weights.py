#!/usr/bin/env python3
"""Rehearse the first run of a user who has real weights, without them.

Writes every model in the exact layout and format a user copies, filled with random values
(open_clip ViT-B-16 as the HF cache snapshot of timm/vit_base_patch16_clip_224.openai, SAM2.1
hiera-small as its release .pt, a trained LQC, a toy TriMap diffusers folder), and a parameter
file that points langx_node at them; then (with --run) runs the main job through that path:

    .venv/bin/python scripts/rehearse_weights.py --out /tmp/langx-rehearsal --run [--size 160 120]

Everything built on these files says RANDOM WEIGHTS. About 750 MB on disk.
"""
from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, required=True, help="folder for the models and the parameter file")
    ap.add_argument("--run", action="store_true", help="then run langx-demo --scene rgbd through them")
    ap.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data" / "rgbd-3dmatch-seq01")
    ap.add_argument("--size", type=int, nargs=2, default=[160, 120], metavar=("W", "H"))
    ap.add_argument("--iterations", type=int, default=200)
    ap.add_argument("--fast", action="store_true", help="fewer SAM2 prompts (8x8) and CLIP segments (40 per level): a quick CPU run")
    a = ap.parse_args()

    from langx_ros.core.rehearsal import write_rehearsal

    r = write_rehearsal(a.out)
    fast = {"segment.points_per_side": 8, "features.max_segments": 40} if a.fast else {}
    params = r.params_file(REPO / "config" / "langx.yaml", a.out / "langx.yaml", fast)
    for k, v in (("open_clip", r.open_clip), ("SAM2", r.sam2), ("LQC", r.lqc), ("TriMap", r.trimap), ("parameters", params)):
        print(f"{k:>10}: {v}")
    cmd = [str(Path(sys.executable).parent / "langx-demo"), "--scene", "rgbd", "--params", str(params), "--data", str(a.data),
           "--size", *map(str, a.size), "--iterations", str(a.iterations), "--out", str(a.out / "demo")]
    print("run:", " ".join(cmd))
    return subprocess.call(cmd) if a.run else 0


if __name__ == "__main__":
    sys.exit(main())
