"""Query speed: 3D selection for 100k and 1M Gaussians (CPU and GPU), text encoding apart, and
2D relevancy + mask at 640x480.

The field is built with random LQC weights, codes and codebook features (speed does not depend
on them): 1% of the Gaussians, one spatial blob, carry the code the query text matches, so selection and instance
separation do real work. Prints a table and writes bench/results/query.json.
"""
from __future__ import annotations

import argparse

import torch

from _util import time_ms, write_json

from langx_ros.core.config import QueryConfig
from langx_ros.core.field.model import LanguageField
from langx_ros.core.lqc import LQC, LQCConfig
from langx_ros.core.query import connected_instances, langsplat_map, relevancy_from_codes, select_3d, select_candidates


def make_field(n: int, device: str, levels: int = 3, seed: int = 0) -> tuple[LanguageField, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    lqc = LQC(LQCConfig()).eval()
    with torch.no_grad():
        lqc.codebook.copy_(torch.randn(lqc.codebook.shape, generator=g))
    means = torch.rand(n, 3, generator=g) * 4 - 2
    codes = lqc.codebook.detach()[torch.randint(0, 2048, (n, levels), generator=g)]
    blob = (means - torch.tensor([1.0, 1.0, 0.0])).norm(dim=1).argsort()[: n // 100]
    codes[blob] = lqc.codebook.detach()[7]
    params = {
        "means": means,
        "quats": torch.randn(n, 4, generator=g),
        "scales": torch.full((n, 3), -4.0),
        "opacities": torch.full((n,), 2.0),
        "colors": torch.zeros(n, 3),
        "sem": codes.reshape(n, levels * 3),
    }
    evidence = torch.rand(n, levels, generator=g) * 5  # every Gaussian observed (the selection still applies the mask)
    field = LanguageField(params, lqc, ["s", "m", "l"][:levels], {"weights": "random (benchmark)"}, {"min_weight": 0.1},
                          evidence, torch.nn.functional.normalize(torch.randn(n, 3, generator=g), dim=1)).to(device)
    # A random decoder maps all codes to nearly one direction; give the codebook distinct
    # features instead so relevancy separates the blob from the rest as a trained LQC would.
    field._codebook_features = torch.nn.functional.normalize(torch.randn(2048, 512, generator=g), dim=-1).to(device)
    text = field.codebook_features()[7:8].clone()  # the text embedding that matches code 7
    canon = torch.nn.functional.normalize(torch.randn(4, 512, generator=g), dim=-1).to(device)
    return field, text, canon


def host_components(points, radius: float):
    """The earlier host path, for comparison: copy to the host, scipy KD-tree pairs within the
    radius, connected components of that graph."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components
    from scipy.spatial import cKDTree

    pairs = cKDTree(points).query_pairs(radius, output_type="ndarray")
    g = coo_matrix((torch.ones(len(pairs)).numpy(), (pairs[:, 0], pairs[:, 1])), shape=(len(points), len(points)))
    return connected_components(g, directed=False)[1]


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
    launch and synchronisation cost that dominates on a GPU shows there)."""
    from torch.profiler import ProfilerActivity, profile

    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if dev == "cuda" else [])
    with profile(activities=acts) as prof:
        for _ in range(10):
            select_3d(field, ["q"], text, canon, cfg.threshold, cfg)
        if dev == "cuda":
            torch.cuda.synchronize()
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=25))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    ap.add_argument("--devices", nargs="+", default=["cpu"] + (["cuda"] if torch.cuda.is_available() else []))
    ap.add_argument("--profile", action="store_true", help="print torch.profiler's op table of select_3d at the largest size")
    a = ap.parse_args()
    cfg = QueryConfig()
    rows = []
    for dev in a.devices:
        for n in a.sizes:
            field, text, canon = make_field(n, dev)
            t_index = time_ms(lambda: (setattr(field, "_code_index", None), field.code_index()), dev, warmup=1, repeat=3)
            field.code_index()
            field.point_spacing()
            sel_ms = time_ms(lambda: select_candidates(field, text, canon, cfg.threshold, cfg), dev)
            cands = select_candidates(field, text, canon, cfg.threshold, cfg)[0]
            sel = field.params["means"][cands.ids]
            radius = max(3.0 * field.point_spacing(), cfg.min_cluster_radius)
            clus_ms = time_ms(lambda: connected_instances(sel, radius), dev, warmup=1, repeat=5)
            clus_dev_ms = time_ms(lambda: connected_instances(sel, radius, host_max=0), dev, warmup=1, repeat=5)
            clus_host_ms = time_ms(lambda: connected_instances(sel, radius, host_max=10**9), dev, warmup=1, repeat=5)
            voxels = int(torch.unique(torch.floor(sel / radius), dim=0).shape[0])
            pts = sel.cpu().numpy()
            host_ms = time_ms(lambda: host_components(pts, radius), "cpu", warmup=1, repeat=5)
            full_ms = time_ms(lambda: select_3d(field, ["q"], text, canon, cfg.threshold, cfg), dev, warmup=1, repeat=5)
            m = select_3d(field, ["q"], text, canon, cfg.threshold, cfg)[0]
            row = {"device": dev, "gaussians": n, "code_index_once_ms": t_index, "select_ms": sel_ms,
                   "selected": int(cands.ids.numel()), "voxels": voxels, "instances_ms": clus_ms,
                   "instances_voxel_graph_on_device_ms": clus_dev_ms, "instances_voxel_graph_on_host_ms": clus_host_ms,
                   "instances_host_scipy_ms_before": host_ms,
                   "select_3d_total_ms": full_ms,
                   "returned_points": int(len(m.points))}
            rows.append(row)
            if a.profile and n == max(a.sizes):
                profile_select_3d(field, text, canon, cfg, dev)
            print(f"{dev:5s} N={n:>9,d}: selection {sel_ms:8.3f} ms ({row['selected']} selected), instances {clus_ms:8.2f} ms "
                  f"({voxels} voxels; voxel graph on the device {clus_dev_ms:.2f} ms, on the host {clus_host_ms:.2f} ms) "
                  f"(host scipy, before: {host_ms:8.2f} ms), select_3d total {full_ms:8.2f} ms; code index once {t_index:8.1f} ms")
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
        if dev == "cuda":
            K = torch.tensor([[500.0, 0, 320], [0, 500.0, 240], [0, 0, 1]], device=dev)
            V = torch.eye(4, device=dev)
            V[2, 3] = 3.0
            for n in a.sizes:
                f2, _, _ = make_field(n, dev)
                entry[f"render_{n}_ms"] = time_ms(lambda: f2.render(V, K, W, H), dev)
        maps.append(entry)
        print(f"{dev:5s} 2D 640x480: relevancy (nearest code + table) {rel_ms:.2f} ms, LangSplat smoothing+mask {mask_ms:.2f} ms"
              + "".join(f", render {k.split('_')[1]} Gaussians {v:.2f} ms" for k, v in entry.items() if k.startswith("render_")))
    text_ms = {dev: clip_text_ms(dev) for dev in a.devices}
    for dev, v in text_ms.items():
        print(f"{dev:5s} text encoding (open_clip ViT-B-16, random weights, 1 query): " + ("n/a" if v is None else f"{v:.2f} ms"))
    write_json("query", {"select_3d": rows, "maps_2d": maps, "text_encoding_ms": text_ms, "note": "random weights; speed only"})


if __name__ == "__main__":
    main()
