"""Real-scene benchmark: labelled real RGB-D scenes (and the generated scene) -> field -> one
query per object -> per-object 3D precision/recall against the observed surface (5 cm),
centroid error, wrong-object answers, held-out 2D IoU (LangSplat mask and the 3D answer
rendered); side by side for the semantic modes (registration, LangScene-X training, both) and
for clean and noisy labels (SAM/CLIP-like noise, core/label_noise.py).

ORACLE-FEATURE PROTOCOL: the annotated objects are the segments and their names, embedded by a
real text model (all-MiniLM-L6-v2), are the features; this measures lifting, registration and
3D selection on real geometry, not CLIP. The generated scene uses its own oracle vectors.

    python bench/real_scene.py --scenes lounge kitchen shelf synthetic          # GPU, full size
    python bench/real_scene.py --write-text-table .device/text_table.json      # on a machine with the text model
    python bench/real_scene.py --text-table .device/text_table.json ...        # on one without (the GPU machine)

Prints a table per run and writes bench/results/real_scene.json (after every run).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import tempfile
from pathlib import Path

import numpy as np
import torch

from _util import write_json

from langx_ros.core.annotations import pixel_points, voxel_downsample
from langx_ros.core.config import QueryConfig
from langx_ros.core.field.registration import RegistrationConfig
from langx_ros.core.field.train import FieldConfig
from langx_ros.core.field.surface import SurfaceConfig
from langx_ros.core.label_noise import LabelNoise
from langx_ros.core.lqc import LQCConfig
from langx_ros.core.pose_refine import PoseRefineConfig, perturb_poses
from langx_ros.core.real_scene import DATA_ROOT, SURFACE_AGREEMENT, UNKNOWN_PIXELS, EmbeddingTable, LoadedScene, answer_3d, encode_queries, held_out_2d, load_scene, run_scene, scene_lqc, scene_spec
from langx_ros.core.scene_eval import format_table, summarise
from langx_ros.core.synthetic import OracleTextEncoder, make_scene

# free words a person would use for an object; the rest are queried by their label name
SYNONYMS = {"kleenex tissue box": "tissues", "chenille stems": "pipe cleaners", "potted plant": "plant"}


def synthetic_scene(width: int, height: int, views: int = 8) -> LoadedScene:
    """The generated scene as a LoadedScene: ``views`` training views, 2 held out."""
    from langx_ros.core.real_scene import SceneSpec

    sc = make_scene(views + 2, width, height, start_deg=10.0)
    frames = [dataclasses.replace(f, instances=ins) for f, ins in zip(sc.frames, sc.instances)]
    spec = SceneSpec("synthetic", "", "", tuple(f.frame_id for f in frames[:views]), tuple(f.frame_id for f in frames[views:]),
                     "generated scene")
    # the observed surface, as for the real scenes: each object's pixels of the training views' depth (1 cm
    # voxels); the whole object (SyntheticScene.surface_points) includes sides no view sees, which moved
    # the beach ball's ground-truth centroid 5.9 cm off its observed one
    surfaces = {lab: voxel_downsample(np.concatenate([pixel_points(f, f.instances == k) for f in frames[:views]]), 0.01)
                for k, lab in enumerate(sc.labels) if k >= 1}
    return LoadedScene(spec, frames[:views], frames[views:], list(sc.labels), surfaces)


def all_texts(scenes: list[LoadedScene], qcfg: QueryConfig) -> list[str]:
    texts = list(qcfg.canonical_phrases)
    for s in scenes:
        texts += s.names + [SYNONYMS[n] for n in s.names if n in SYNONYMS]
    return sorted(set(texts))


def parse_value(current, text: str):
    """A --variants value as the type of the setting it replaces (bool: true/false, 1/0)."""
    if isinstance(current, bool):
        if text.lower() not in ("true", "false", "1", "0"):
            raise SystemExit(f"--variants: '{text}' is not a boolean (true/false)")
        return text.lower() in ("true", "1")
    return type(current)(text)


def overridden(base, spec: str):
    """``base`` (a config dataclass) with the 'k=v[,k=v]' overrides of ``spec`` ('default': none)."""
    if spec == "default":
        return base
    sets = dict(kv.split("=", 1) for kv in spec.split(","))
    return dataclasses.replace(base, **{k: parse_value(getattr(base, k), x) for k, x in sets.items()})


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scenes", nargs="+", default=["lounge", "kitchen", "shelf", "synthetic"])
    ap.add_argument("--modes", nargs="+", default=["register", "train", "register+train"])
    ap.add_argument("--noise", nargs="+", default=["clean", "noisy"], choices=["clean", "noisy"])
    ap.add_argument("--noise-seeds", type=int, nargs="+", default=[0],
                    help="noisy labels: one run per seed (which segments are relabelled, how masks move)")
    ap.add_argument("--width", type=int, default=640)
    ap.add_argument("--height", type=int, default=480)
    ap.add_argument("--iters", type=int, default=3000)
    ap.add_argument("--lqc-steps", type=int, default=3000)
    ap.add_argument("--codebook", type=int, default=2048, help="LQC codebook entries (K)")
    ap.add_argument("--max-train", type=int, default=0, help="use at most this many training frames (0 = the scene's split)")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--data", type=Path, default=DATA_ROOT)
    ap.add_argument("--text-table", type=Path, help="precomputed text embeddings (JSON) instead of the MiniLM model")
    ap.add_argument("--write-text-table", type=Path, help="embed every text the benchmark uses with MiniLM, write JSON, exit")
    ap.add_argument("--synonyms", action="store_true", help="query some objects by a free word (tissues, plant, ...)")
    ap.add_argument("--registrations", nargs="+", default=["default"], metavar="K=V[,K=V]",
                    help="registration settings to compare, each 'default' or registration.* overrides, e.g. "
                         "vote_rounds=1 or segment_check=0 (mode 'train' runs the first only)")
    ap.add_argument("--surfaces", nargs="+", default=["default"], metavar="K=V[,K=V]",
                    help="surface-sampling settings to compare, each 'default' or surface.* overrides, e.g. rendered_window=10 "
                         "(every registration setting runs with each; the answer's points are re-sampled per setting)")
    ap.add_argument("--variants", nargs="*", default=["instance_match_weight=0"],
                    help="also answer on each run's field with these query settings (QueryConfig field=value, several "
                         "joined by ','), side by side; e.g. instance_match_weight=0 instance_density_weight=1")
    ap.add_argument("--perturb-poses", default="", metavar="M,DEG",
                    help="move every training pose but the first as drifting odometry would (translation m, rotation deg "
                         "per axis, fixed seed); scores stay against the true surfaces")
    ap.add_argument("--refine-poses", action="store_true", help="refine the keyframe poses before the field (pose_refine)")
    ap.add_argument("--train-each", action="store_true",
                    help="train a field for every run (default: mode 'register' trains once per scene and re-registers that "
                         "geometry for the other labels and registration settings, so they compare on one geometry; its training "
                         "uses no labels)")
    ap.add_argument("--save-fields", type=Path, help="save every run's field to this folder (<scene>-<mode>-<labels>-<registration>[-surface-<setting>])")
    ap.add_argument("--unknown-pixels", nargs="+", default=["unlabelled"], choices=UNKNOWN_PIXELS,
                    help="what the pixels the labels cannot tell (no depth in the lounge/kitchen) are: no segment and not "
                         "scored (unlabelled, the default), or background (the protocol before 2026-12-03); several: side by "
                         "side on one geometry")
    ap.add_argument("--surface-agreement", type=float, default=SURFACE_AGREEMENT,
                    help="an object's 3D ground truth: its labelled depth pixels that the other training views seeing them "
                         "label it at least this often (0 = every labelled pixel; the runs print both)")
    ap.add_argument("--out", default="real_scene")
    a = ap.parse_args()
    qcfg = QueryConfig()
    real = [n for n in a.scenes if n != "synthetic"]
    loaded = {n: load_scene(scene_spec(n, a.data), a.width, a.height, a.data, a.max_train, a.unknown_pixels[0],
                              a.surface_agreement) for n in real}
    # the same scenes with the other handlings of unknown pixels (run on the first one's geometry)
    others = {(n, u): load_scene(scene_spec(n, a.data), a.width, a.height, a.data, a.max_train, u, a.surface_agreement)
              for n in real for u in a.unknown_pixels[1:]}
    if a.write_text_table:
        from langx_ros.core.text_minilm import MiniLMTextEncoder

        enc = MiniLMTextEncoder("cpu")
        texts = all_texts(list(loaded.values()), qcfg)
        a.write_text_table.parent.mkdir(parents=True, exist_ok=True)
        a.write_text_table.write_text(json.dumps({"provenance": enc.provenance, "texts": dict(zip(texts, enc.encode(texts).tolist()))}))
        print(f"wrote {len(texts)} embeddings to {a.write_text_table}")
        return
    if a.text_table:
        t = json.loads(a.text_table.read_text())
        text = EmbeddingTable(t["texts"], f"{t['provenance']} (precomputed table)")
    else:
        from langx_ros.core.text_minilm import MiniLMTextEncoder

        text = MiniLMTextEncoder(a.device)
    if "synthetic" in a.scenes:
        loaded["synthetic"] = synthetic_scene(a.width, a.height)
    field_cfg = FieldConfig(iterations=a.iters)
    lqc_cfg = LQCConfig(steps=a.lqc_steps, batch_size=4096, codebook_size=a.codebook)
    runs = []
    tmp = Path(tempfile.mkdtemp(prefix="langx_lqc_"))

    def train_frames(scene):
        if not a.perturb_poses:
            return None
        t, r = (float(v) for v in a.perturb_poses.split(","))
        return perturb_poses(scene.train, t, r)

    for name in a.scenes:
        base = loaded[name]
        enc = OracleTextEncoder(base.names) if name == "synthetic" else text
        qcfg_s = QueryConfig(threshold=0.8) if name == "synthetic" else qcfg  # the generated scene's usual setting
        lqc_path = scene_lqc(base, enc, lqc_cfg, qcfg_s.canonical_phrases, tmp / f"{name}.safetensors", a.device)
        settings = [(n, None) for n in a.noise if n == "clean"]
        settings += [(f"noisy-s{seed}" if seed else "noisy", LabelNoise(seed=seed)) for n in a.noise if n == "noisy" for seed in a.noise_seeds]
        variants = [(u, others.get((name, u), base)) for u in a.unknown_pixels] if name != "synthetic" else [("all known", base)]
        kept = None  # mode "register": later runs of the scene re-register the first one's geometry (--train-each: not)
        for (unknown, scene), (noise_name, noise) in [(v, s) for s in settings for v in variants]:
            noise_name = noise_name if len(variants) == 1 else f"{noise_name} ({unknown})"
            for mode, reg_name, surf_name in [(m, v, u) for m in a.modes for v in (a.registrations if m != "train" else a.registrations[:1])
                                              for u in a.surfaces]:
                queries = {n: SYNONYMS[n] for n in scene.names if n in SYNONYMS} if a.synonyms and name != "synthetic" else None
                r = run_scene(scene, enc, mode, field_cfg, lqc_cfg, qcfg_s, a.device, noise, overridden(RegistrationConfig(), reg_name),
                              queries=queries, lqc_path=lqc_path, train=train_frames(scene),
                              pose_cfg=PoseRefineConfig(enabled=True) if a.refine_poses else None,
                              geometry=kept if mode == "register" else None, surface_cfg=overridden(SurfaceConfig(), surf_name))
                r["labels"] = noise_name
                r["poses"] = {"perturbed": a.perturb_poses or "no", "refined": a.refine_poses}
                r["registration"] = reg_name
                r["surface"] = surf_name
                scores = r.pop("_scores")
                fld = r.pop("_field")
                r["selection_variants"] = {}
                encoded = encode_queries(scene, enc, qcfg_s, fld.device, queries)
                for v in a.variants:
                    vcfg = overridden(qcfg_s, v)
                    vs, vm = answer_3d(scene, fld, *encoded, vcfg)
                    held_out_2d(scene, fld, vs, vm, *encoded, vcfg)
                    r["selection_variants"][v] = {"summary": summarise(vs), "objects": [x.as_dict() for x in vs]}
                if a.save_fields:
                    from langx_ros.core.field.io import save_field

                    def tag(spec: str) -> str:  # a settings spec as part of a folder name
                        return spec.replace('=', '').replace(',', '_')

                    save_field(fld, a.save_fields / (f"{name}-{mode.replace('+', '_')}-{noise_name}-{tag(reg_name)}"
                                                     + ("" if surf_name == "default" else f"-surface-{tag(surf_name)}")))
                kept = fld if mode == "register" and kept is None and not a.train_each else kept
                del fld
                print(f"\n== {name} | {mode} (registration {reg_name}, surface {surf_name}, geometry {r['geometry']}) | {r['noise']} | {r['size'][0]}x{r['size'][1]}, {len(r['train'])} training frames, "
                      f"{a.iters} it, {a.device} ({torch.cuda.get_device_name(0) if str(a.device).startswith('cuda') else 'CPU'}); poses perturbed: "
                      f"{r['poses']['perturbed']}, refined: {r['poses']['refined']} ==")
                print(format_table(scores))
                s = r["summary"]
                print(f"found {s['found']}/{s['objects']}, wrong-object {s['wrong_object']}, precision mean {s['mean_precision']:.2f} "
                      f"min {s['min_precision']:.2f}, recall mean {s['mean_recall']:.2f} min {s['min_recall']:.2f}, centroid error "
                      f"mean {s['mean_centroid_error'] * 100:.1f} cm max {s['max_centroid_error'] * 100:.1f} cm (surface centroids: mean "
                      f"{s['mean_surface_centroid_error'] * 100:.1f} cm max {s['max_surface_centroid_error'] * 100:.1f} cm), held-out 2D mIoU "
                      f"{s['miou_2d']:.2f} (3D answer rendered {s['miou_3d_rendered']:.2f}); {r['gaussians']} Gaussians, "
                      f"{r['observed']} observed; stages " + ", ".join(f"{k} {v:.2f}s" for k, v in r["timings"].items()))
                if r["surface_agreement"] > 0:
                    s = r["summary_every_labelled_pixel"]
                    print(f"  against every labelled pixel (no cross-view check of the labels): precision min {s['min_precision']:.2f}, "
                          f"recall min {s['min_recall']:.2f}, centroid error max {s['max_centroid_error'] * 100:.1f} cm")
                for k, v in r["selection_variants"].items():
                    s = v["summary"]
                    print(f"  same field, {k}: wrong-object {s['wrong_object']}, precision mean {s['mean_precision']:.2f} min "
                          f"{s['min_precision']:.2f}, recall mean {s['mean_recall']:.2f} min {s['min_recall']:.2f}, centroid error max "
                          f"{s['max_centroid_error'] * 100:.1f} cm, held-out 2D mIoU {s['miou_2d']:.2f} (3D answer rendered "
                          f"{s['miou_3d_rendered']:.2f}); wrong: {[o['name'] for o in v['objects'] if o['wrong_object']]}")
                runs.append(r)
                write_json(a.out, {"runs": runs, "protocol": "ORACLE-FEATURE PROTOCOL (labels as features)",
                                   "settings": {"iterations": a.iters, "lqc_steps": a.lqc_steps, "size": [a.width, a.height],
                                                "lqc": "one LQC per scene, fitted on its label features and reused by every run"}})
    print("\nsummary (scene | mode registration surface | labels: found, wrong, min precision, min recall, max centroid error, 2D mIoU, register s)")
    for r in runs:
        s = r["summary"]
        print(f"{r['scene']:>9} | {r['mode']:>14} {r['registration']:>16} {r['surface']:>18} | {r['labels']:>8}: {s['found']}/{s['objects']}, {s['wrong_object']}, "
              f"{s['min_precision']:.2f}, {s['min_recall']:.2f}, {s['max_centroid_error'] * 100:.1f} cm, {s['miou_2d']:.2f}, "
              f"{r['timings'].get('register', float('nan')):.2f}")


if __name__ == "__main__":
    main()
