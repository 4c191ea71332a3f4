"""langx-train-lqc: train the Language Quantized Compressor once, for reuse on every scene.

    langx-train-lqc --features feats.npy [more.safetensors ...] --out models/lqc/lqc.safetensors
    langx-train-lqc --images DIR --out ... [--vocab phrases.txt]   (segments + CLIP from the model directory)

Features files: .npy arrays (M, F) or .safetensors with a tensor named "features". With
--images, every image is segmented (SAM2, or the superpixel fallback) and each segment encoded
with open_clip, as in a reconstruction. --vocab (one phrase per line) adds text embeddings for
the L_mask loss (needs the CLIP text tower). Writes <out>.safetensors + <out>.json.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

from langx_ros.core.config import LangxConfig
from langx_ros.core.device import resolve_device
from langx_ros.core.lqc import train_lqc

REPO = Path(__file__).resolve().parents[2]


def load_features(paths: list[Path]) -> np.ndarray:
    out = []
    for p in paths:
        if p.suffix == ".npy":
            a = np.load(p, allow_pickle=False)
        elif p.suffix == ".safetensors":
            from safetensors.numpy import load_file

            d = load_file(str(p))
            if "features" not in d:
                raise SystemExit(f"{p}: no tensor named 'features' (has {', '.join(d)})")
            a = d["features"]
        else:
            raise SystemExit(f"{p}: expected .npy or .safetensors")
        if a.ndim != 2:
            raise SystemExit(f"{p}: expected (M, F) features, got shape {a.shape}")
        out.append(a.astype(np.float32))
    dims = {a.shape[1] for a in out}
    if len(dims) != 1:
        raise SystemExit(f"feature files disagree on the dimension: {sorted(dims)}")
    return np.concatenate(out)


def image_features(folder: Path, cfg: LangxConfig, device, limit: int) -> tuple[np.ndarray, object, str]:
    import cv2

    from langx_ros.core.frames import Frame
    from langx_ros.core.semantics import load_semantics

    src, clip = load_semantics(cfg, device)
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in (".png", ".jpg", ".jpeg"))[:limit]
    if not files:
        raise SystemExit(f"{folder}: no .png/.jpg images")
    feats = []
    for i, p in enumerate(files):
        bgr = cv2.imread(str(p), cv2.IMREAD_COLOR)
        if bgr is None:
            print(f"skipping unreadable {p}", file=sys.stderr)
            continue
        rgb = np.ascontiguousarray(bgr[:, :, ::-1])
        h, w = rgb.shape[:2]
        f = Frame(p.stem, rgb, np.array([[w, 0, w / 2], [0, w, h / 2], [0, 0, 1.0]]))
        feats += [fe for _, fe in src.segment_features(f) if len(fe)]
        print(f"[{i + 1}/{len(files)}] {p.name}", flush=True)
    return np.concatenate(feats), clip, src.provenance


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="langx-train-lqc", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--features", type=Path, nargs="+", help=".npy / .safetensors feature files")
    src.add_argument("--images", type=Path, help="folder of images (segments + CLIP features)")
    ap.add_argument("--out", type=Path, required=True, help="output path (.safetensors; a .json is written beside it)")
    ap.add_argument("--params", type=Path, default=REPO / "config" / "langx.yaml", help="parameter file (lqc.*, models.*, segment.*)")
    ap.add_argument("--steps", type=int, default=None, help="override lqc.steps")
    ap.add_argument("--vocab", type=Path, default=None, help="phrases (one per line) for L_mask")
    ap.add_argument("--max-images", type=int, default=100000)
    ap.add_argument("--device", default=None, help="override device")
    ap.add_argument("--allow-random-weights", action="store_true", help="plumbing tests only: random CLIP weights")
    a = ap.parse_args(argv)

    cfg = LangxConfig.from_yaml(a.params)
    if a.steps is not None:
        cfg.lqc.steps = a.steps
    cfg.models.allow_random_weights = cfg.models.allow_random_weights or a.allow_random_weights
    device = resolve_device(a.device or cfg.device)
    clip = None
    if a.features:
        feats = load_features(a.features)
        source = f"{len(feats)} features from {', '.join(p.name for p in a.features)}"
    else:
        feats, clip, prov = image_features(a.images, cfg, device, a.max_images)
        source = f"{len(feats)} segment features of images in {a.images} ({prov})"
    if feats.shape[1] != cfg.lqc.feature_dim:
        print(f"note: features are {feats.shape[1]}-d; setting lqc.feature_dim accordingly", file=sys.stderr)
        cfg.lqc.feature_dim = int(feats.shape[1])
    text = None
    if a.vocab:
        if clip is None:
            from langx_ros.core.semantics import load_clip

            clip = load_clip(cfg, device)
        phrases = [line.strip() for line in a.vocab.read_text().splitlines() if line.strip()]
        text = torch.as_tensor(clip.encode(phrases + list(cfg.query.canonical_phrases)))
    print(f"training LQC (K={cfg.lqc.codebook_size}, D={cfg.lqc.code_dim}) on {source}, {cfg.lqc.steps} steps, {device}", flush=True)
    model, stats = train_lqc(torch.as_tensor(feats), cfg.lqc, text=text, device=device,
                             progress=lambda fr, d: print(d, flush=True) if int(fr * 100) % 10 == 0 else None)
    model.provenance = f"langx-train-lqc on {source}" + (f"; text: {clip.provenance}" if text is not None and clip else "")
    out = model.save(a.out, extra={"training": {k: v for k, v in stats.items() if k != "history"}, "final_losses": stats["history"][-1]})
    print(f"wrote {out} and {out.with_suffix('.json')}: {stats['codes_used']} codes used, L_r {stats['history'][-1]['rec']:.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
