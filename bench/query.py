"""Query speed: the 3D answer (select_3d) for 100k and 1M Gaussians (CPU and GPU), text encoding
apart, and 2D relevancy + mask at 640x480.

The field is built with random LQC weights, codes and codebook features (speed does not depend
on them): 1% of the Gaussians, one spatial blob, carry the code the query text matches, so selection and instance
separation do real work; each Gaussian owns two surface samples, which the answer returns
(``query.points: surface``; ``centres`` is timed beside it), less the one in ten whose own label
is another (``query.sample_vote``). select_3d is timed as the product runs it (on CUDA: the replayed CUDA
graph), with ``query.cuda_graph`` off (the same kernels launched one by one), and, with
``--baseline FILE``, the select_3d of another query.py (an earlier commit's:
``git show REV:langx_ros/core/query.py > FILE``), interleaved in the same run on the same field,
its answer checked equal. Prints a table and writes bench/results/query.json.
"""
from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import sys
import time

import numpy as np
import torch

from _util import sync, time_ms, write_json

from langx_ros.core.config import QueryConfig
from langx_ros.core.field.model import LanguageField
from langx_ros.core.field.surface import SurfaceSamples
from langx_ros.core.lqc import LQC, LQCConfig
from langx_ros.core.instances import connected_instances
from langx_ros.core.query import answer_plan, langsplat_map, logit_table, relevancy_from_codes, relevancy_maps, select_3d


def make_field(n: int, device: str, levels: int = 3, seed: int = 0,
               samples_per_gaussian: int = 2) -> tuple[LanguageField, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    lqc = LQC(LQCConfig()).eval()
    with torch.no_grad():
        lqc.codebook.copy_(torch.randn(lqc.codebook.shape, generator=g))
    means = torch.rand(n, 3, generator=g) * 4 - 2
    index = torch.randint(0, 2048, (n, levels), generator=g)
    blob = (means - torch.tensor([1.0, 1.0, 0.0])).norm(dim=1).argsort()[: n // 100]
    index[blob] = 7
    codes = lqc.codebook.detach()[index]
    params = {
        "means": means,
        "quats": torch.randn(n, 4, generator=g),
        "scales": torch.full((n, 3), -4.0),
        "opacities": torch.full((n,), 2.0),
        "colors": torch.zeros(n, 3),
        "sem": codes.reshape(n, levels * 3),
    }
    evidence = torch.rand(n, levels, generator=g) * 5  # every Gaussian observed (the selection still applies the mask)
    # surface samples (core/field/surface.py): samples_per_gaussian key-frame points beside each centre
    owner = np.repeat(np.arange(n), samples_per_gaussian)
    pts = means.numpy()[owner] + 0.002 * np.random.default_rng(seed).standard_normal((len(owner), 3)).astype(np.float32)
    # each sample's own label (query.sample_vote): its owner's, one in ten another (the views disagree)
    rng = np.random.default_rng(seed + 1)
    own = np.where(rng.random((len(owner), levels)) < 0.1, rng.integers(0, 2048, (len(owner), levels)), index.numpy()[owner])
    surface = SurfaceSamples(pts.astype(np.float32), np.full((len(owner), 3), 128, np.uint8), owner, n, code=own.astype(np.int32))
    field = LanguageField(params, lqc, ["s", "m", "l"][:levels], {"weights": "random (benchmark)"}, {"min_weight": 0.1},
                          evidence, torch.nn.functional.normalize(torch.randn(n, 3, generator=g), dim=1),
                          surface=surface).to(device)
    # A random decoder maps all codes to nearly one direction; give the codebook distinct
    # features instead so relevancy separates the blob from the rest as a trained LQC would.
    field._codebook_features = torch.nn.functional.normalize(torch.randn(2048, 512, generator=g), dim=-1).to(device)
    text = field.codebook_features()[7:8].clone()  # the text embedding that matches code 7
    canon = torch.nn.functional.normalize(torch.randn(4, 512, generator=g), dim=-1).to(device)
    return field, text, canon


def clip_text_ms(device: str) -> float | None:
    try:
        from langx_ros.core.torch_compat import ensure_torchvision

        ensure_torchvision()
        import open_clip
    except ImportError:
        return None
    model = open_clip.create_model("ViT-B-16", pretrained=None).to(device).eval()
    tok = open_clip.get_tokenizer("ViT-B-16")

    def run():
        with torch.no_grad():
            return model.encode_text(tok(["a soft pillow"]).to(device))

    return time_ms(run, device, warmup=3, repeat=20)


def profile_select_3d(field: LanguageField, text: torch.Tensor, canon: torch.Tensor, cfg: QueryConfig, dev: str) -> None:
    """Where select_3d's time goes: torch.profiler over 10 calls, ops by self CPU time (the
    launch and synchronisation cost shows there); on CUDA also the kernels of the same pipeline
    run one by one (query.cuda_graph off), by GPU time (inside a replayed graph the profiler
    sees one launch)."""
    from torch.profiler import ProfilerActivity, profile

    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if dev == "cuda" else [])
    runs = [(cfg, "self_cpu_time_total")] + ([(dataclasses.replace(cfg, cuda_graph=False), "self_cuda_time_total")]
                                             if dev == "cuda" else [])
    for c, key in runs:
        with profile(activities=acts) as prof:
            for _ in range(10):
                select_3d(field, ["q"], text, canon, c.threshold, c)
            sync(dev)
        print(f"--- select_3d x10, cuda_graph={c.cuda_graph}, by {key}")
        print(prof.key_averages().table(sort_by=key, row_limit=25))


def graph_gpu_ms(plan, canon: torch.Tensor, repeat: int = 50) -> float:
    """Median GPU time of one replay of the plan's captured graph from text (what select_3d replays; CUDA events)."""
    graph = plan._graph(plan._cap, ("text", tuple(canon.shape)))[0]
    times = []
    for _ in range(repeat):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        graph.replay()
        b.record()
        b.synchronize()
        times.append(a.elapsed_time(b))
    return float(np.median(times))


def load_baseline(path: str):
    """select_3d of another query.py (run against today's package otherwise)."""
    spec = importlib.util.spec_from_file_location("query_baseline", path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules["query_baseline"] = mod
    spec.loader.exec_module(mod)
    return mod.select_3d


def same_answer(a, b) -> bool:
    return (a.found, a.num_instances) == (b.found, b.num_instances) and np.array_equal(a.gaussian_ids, b.gaussian_ids) \
        and len(a.alternatives) == len(b.alternatives)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    ap.add_argument("--devices", nargs="+", default=["cpu"] + (["cuda"] if torch.cuda.is_available() else []))
    ap.add_argument("--profile", action="store_true", help="print torch.profiler's op table of select_3d at the largest size")
    ap.add_argument("--baseline", help="a query.py whose select_3d is timed beside today's (see the module doc)")
    ap.add_argument("--rounds", type=int, default=3, help="interleaved timing rounds (the median of each is reported)")
    a = ap.parse_args()
    cfg = QueryConfig()
    eager_cfg = dataclasses.replace(cfg, cuda_graph=False)
    centres_cfg = dataclasses.replace(cfg, points="centres")
    no_vote_cfg = dataclasses.replace(cfg, sample_vote=False)
    baseline = load_baseline(a.baseline) if a.baseline else None
    rows = []
    for dev in a.devices:
        for n in a.sizes:
            field, text, canon = make_field(n, dev)
            t_index = time_ms(lambda: (setattr(field, "_code_index", None), field.code_index()), dev, warmup=1, repeat=3)
            field.code_index()
            field.point_spacing()
            logits_ms = time_ms(lambda: logit_table(field, text, canon), dev)
            sync(dev)
            mem0 = torch.cuda.memory_allocated() if dev == "cuda" else 0
            t0 = time.perf_counter()
            m = select_3d(field, ["q"], text, canon, cfg.threshold, cfg)[0]  # builds the plan (on CUDA: captures)
            sync(dev)
            first_ms = (time.perf_counter() - t0) * 1000
            plan_mib = (torch.cuda.memory_allocated() - mem0) / 2**20 if dev == "cuda" else None
            logits = logit_table(field, text, canon)
            plan = answer_plan(field, cfg, logits.shape[1])
            res = plan.run(logits, cfg.threshold)[0]
            radius = plan.shape.radius
            sel = field.params["means"][torch.as_tensor(res.gid, device=dev)] if len(res.gid) else field.params["means"][:0]
            voxels = int(torch.unique(torch.floor(sel / radius), dim=0).shape[0])  # of the returned Gaussians
            clus_ms = time_ms(lambda: connected_instances(sel, radius), dev, warmup=1, repeat=5)
            eager = select_3d(field, ["q"], text, canon, cfg.threshold, eager_cfg)[0]
            assert same_answer(m, eager), "the eager pipeline answers differently"
            fns = {"select_3d_ms": lambda: select_3d(field, ["q"], text, canon, cfg.threshold, cfg),
                   "select_3d_eager_ms": lambda: select_3d(field, ["q"], text, canon, cfg.threshold, eager_cfg),
                   "select_3d_centres_ms": lambda: select_3d(field, ["q"], text, canon, cfg.threshold, centres_cfg),
                   "select_3d_no_vote_ms": lambda: select_3d(field, ["q"], text, canon, cfg.threshold, no_vote_cfg),
                   "select_3d_8_queries_ms": lambda: select_3d(field, ["q"] * 8, text.expand(8, -1), canon, cfg.threshold, cfg)}
            if baseline is not None:
                assert same_answer(m, baseline(field, ["q"], text, canon, cfg.threshold, cfg)[0]), "the baseline answers differently"
                fns["select_3d_baseline_ms"] = lambda: baseline(field, ["q"], text, canon, cfg.threshold, cfg)
            times = {k: [] for k in fns}
            for _ in range(a.rounds):  # interleaved, so the machine's drift hits every variant alike
                for k, fn in fns.items():
                    times[k].append(time_ms(fn, dev, warmup=2, repeat=20))
            gpu_ms = graph_gpu_ms(plan, canon) if plan.mode == "cuda-graph" else None
            row = {"device": dev, "gaussians": n, "mode": plan.mode, "code_index_once_ms": t_index, "logit_table_ms": logits_ms,
                   "first_call_ms": first_ms, "graph_gpu_ms": gpu_ms, "plan_memory_mib": plan_mib,
                   "selected": res.selected, "returned_voxels": voxels, "returned_points": int(len(m.points)),
                   "returned_gaussians": int(len(m.gaussian_ids)),
                   "instances_alone_ms": clus_ms, **{k: float(np.median(v)) for k, v in times.items()},
                   "per_round_ms": times}
            rows.append(row)
            if a.profile and n == max(a.sizes):
                profile_select_3d(field, text, canon, cfg, dev)
            print(f"{dev:5s} N={n:>9,d}: select_3d {row['select_3d_ms']:7.2f} ms ({plan.mode}; {res.selected} selected, "
                  f"{len(m.points)} surface points returned, of {len(m.gaussian_ids)} Gaussians in {voxels} voxels), "
                  f"answering with centres {row['select_3d_centres_ms']:7.2f} ms, all samples (no vote) {row['select_3d_no_vote_ms']:7.2f} ms, kernels one by one {row['select_3d_eager_ms']:7.2f} ms"
                  + (f", baseline {row['select_3d_baseline_ms']:7.2f} ms" if baseline is not None else "")
                  + f"; 8 queries in one call {row['select_3d_8_queries_ms']:7.2f} ms; of it the logit table {logits_ms:.2f} ms"
                  + (f", the graph's GPU time {gpu_ms:.3f} ms" if gpu_ms is not None else "")
                  + f"; first call (plan{' + capture' if gpu_ms is not None else ''}) {first_ms:.1f} ms"
                  + (f", {plan_mib:.0f} MiB kept (tables + graph)" if plan_mib is not None else "")
                  + f"; code index once {t_index:8.1f} ms")
    # 2D at 640x480: relevancy + LangSplat mask from rendered codes (rendering reported apart)
    maps = []
    for dev in a.devices:
        field, text, canon = make_field(100_000, dev)
        H, W = 480, 640
        g = torch.Generator().manual_seed(1)
        sem = field.lqc.codebook.detach()[torch.randint(0, 2048, (H * W * 3,), generator=g).to(dev)].reshape(H, W, 9)
        alpha = torch.ones(H, W, 1, device=dev)
        rel_ms = time_ms(lambda: relevancy_from_codes(field, sem, alpha, text, canon), dev)
        rel = relevancy_from_codes(field, sem, alpha, text, canon)[0].cpu().numpy()
        mask_ms = time_ms(lambda: langsplat_map(rel, "q", field.levels, QueryConfig()), "cpu", warmup=1, repeat=5)
        entry = {"device": dev, "relevancy_ms": rel_ms, "langsplat_mask_ms": mask_ms}
        if dev == "cuda" and importlib.util.find_spec("gsplat") is None:
            print("cuda  rendering not timed: gsplat is not installed here")
        elif dev == "cuda":
            K = torch.tensor([[500.0, 0, 320], [0, 500.0, 240], [0, 0, 1]], device=dev)
            V = torch.eye(4, device=dev)
            V[2, 3] = 3.0
            for n in a.sizes:
                f2, _, _ = make_field(n, dev)
                entry[f"render_{n}_ms"] = time_ms(lambda: f2.render(V, K, W, H), dev)
                for how in ("codes", "gaussians"):  # query.relevancy_2d, one query, render included
                    entry[f"maps_{how}_{n}_ms"] = time_ms(lambda: relevancy_maps(f2, V, K, W, H, text[:1], canon, how), dev)
        maps.append(entry)
        print(f"{dev:5s} 2D 640x480: relevancy (nearest code + table) {rel_ms:.2f} ms, LangSplat smoothing+mask {mask_ms:.2f} ms"
              + "".join(f", render {k.split('_')[1]} Gaussians {v:.2f} ms" for k, v in entry.items() if k.startswith("render_"))
              + "".join(f", relevancy maps rendered as {k.split('_')[1]} at {k.split('_')[2]} Gaussians (render + relevancy, 1 query) "
                        f"{v:.2f} ms" for k, v in entry.items() if k.startswith("maps_")))
    text_ms = {dev: clip_text_ms(dev) for dev in a.devices}
    for dev, v in text_ms.items():
        print(f"{dev:5s} text encoding (open_clip ViT-B-16, random weights, 1 query): " + ("n/a" if v is None else f"{v:.2f} ms"))
    write_json("query", {"select_3d": rows, "maps_2d": maps, "text_encoding_ms": text_ms, "note": "random weights; speed only"})


if __name__ == "__main__":
    main()
