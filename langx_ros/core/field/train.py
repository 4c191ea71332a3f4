"""Training the language surface field.

Schedule (LangScene-X): geometry first (RGB L1 + SSIM, depth when present, a progressive normal
loss with an angle mask, flat Gaussians), then the semantic losses join (L2 to the per-pixel LQC
codes of every level, L_s2d inside masks, L_s3d between 3D neighbours). On CUDA, gsplat renders
and its DefaultStrategy densifies/prunes during the geometry phase; on the CPU the dense
compositor renders and low-opacity Gaussians are pruned (no densification).
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch

from langx_ros.core.config_fields import param
from langx_ros.core.field import losses as L
from langx_ros.core.field.gaussians import gaussian_normals, normals_facing
from langx_ros.core.field.render import BACKEND_GSPLAT, BACKEND_TORCH, RenderOutput, rasterize
from langx_ros.core.frames import Frame


class Cancelled(Exception):
    """Raised inside training when the cancel flag was set."""


@dataclass
class FieldConfig:
    """The Gaussian field and its training."""

    iterations: int = param(3000, "Training iterations in total (geometry, then geometry + semantics).", min=1, max=1_000_000)
    semantic_start: float = param(0.5, "Fraction of the iterations after which the semantic losses join.", min=0.0, max=1.0)
    max_gaussians: int = param(300_000, "Most Gaussians created from the depth points.", min=16, max=50_000_000)
    init_stride: int = param(2, "Pixel stride when back-projecting depth into initial points.", min=1, max=64)
    flatness: float = param(0.1, "Initial scale along the surface normal, relative to the other two axes.", min=0.0, max=1.0)
    lambda_ssim: float = param(0.2, "Weight of (1 - SSIM) in the photometric loss.", min=0.0, max=1.0)
    lambda_depth: float = param(0.2, "Weight of the depth L1 loss (frames with depth).", min=0.0, max=100.0)
    lambda_normal: float = param(0.05, "Full weight of the normal loss.", min=0.0, max=100.0)
    normal_start: float = param(0.1, "Fraction of iterations when the normal loss starts ramping up.", min=0.0, max=1.0)
    normal_ramp: float = param(0.2, "Fraction of iterations over which it ramps to its full weight.", min=1e-6, max=1.0)
    normal_max_angle_deg: float = param(60.0, "Pixels whose target normal is further than this from the rendered one are ignored.", min=1.0, max=180.0)
    lambda_flat: float = param(10.0, "Weight of the mean smallest scale (keeps Gaussians flat on surfaces).", min=0.0, max=1e4)
    lambda_sem: float = param(1.0, "Weight of the semantic L2 loss.", min=0.0, max=100.0)
    lambda_s2d: float = param(0.1, "Weight of L_s2d (agreement of pixel pairs inside one mask).", min=0.0, max=100.0)
    lambda_s3d: float = param(0.1, "Weight of L_s3d (agreement with 3D nearest neighbours).", min=0.0, max=100.0)
    knn: int = param(8, "Neighbours per Gaussian for L_s3d.", min=1, max=64)
    knn_every: int = param(500, "Recompute the neighbours every this many iterations.", min=1, max=1_000_000)
    lr_means: float = param(1.6e-4, "Learning rate of centres, times the scene extent.", min=0.0, max=1.0)
    lr_scales: float = param(5e-3, "Learning rate of log scales.", min=0.0, max=1.0)
    lr_quats: float = param(1e-3, "Learning rate of rotations.", min=0.0, max=1.0)
    lr_opacities: float = param(5e-2, "Learning rate of opacity logits.", min=0.0, max=1.0)
    lr_colors: float = param(1e-2, "Learning rate of colour logits.", min=0.0, max=1.0)
    lr_sem: float = param(1e-2, "Learning rate of the semantic codes.", min=0.0, max=1.0)
    densify: bool = param(True, "Densify/prune with gsplat's DefaultStrategy during the geometry phase (CUDA only).")
    prune_opacity: float = param(0.005, "Gaussians below this opacity are removed (CPU path; gsplat's strategy on CUDA).", min=0.0, max=1.0)
    prune_every: int = param(500, "CPU path: prune every this many iterations.", min=1, max=1_000_000)
    backend: str = param("auto", "Rasterizer: auto (gsplat on CUDA, dense compositor on CPU), gsplat or torch.", choices=("auto", "gsplat", "torch"))
    seed: int = param(0, "Random seed of view sampling.", min=0, max=2**31 - 1)


@dataclass
class TrainView:
    """One training view, as tensors on the training device, stored compactly (colour as bytes,
    semantic targets as one code per segment, gathered per use): a few hundred TriMap views fit."""

    rgb: torch.Tensor  # (H, W, 3) uint8
    K: torch.Tensor  # (3, 3)
    viewmat: torch.Tensor  # (4, 4) world-to-camera
    depth: torch.Tensor | None = None  # (H, W) metres, NaN = none
    normals: torch.Tensor | None = None  # (H, W, 3) world, NaN = none
    seg: torch.Tensor | None = None  # (L, H, W) int32 segment ids, -1 = none
    codes: list[torch.Tensor] | None = None  # per level (S_l, D): target code of segment id s; (0, D) = no features (L_s2d only)

    @classmethod
    def from_frame(cls, frame: Frame, normals: np.ndarray | None, device: torch.device | str) -> "TrainView":
        """A view of a posed frame (colour, intrinsics, pose, depth when present) and its (H, W, 3)
        world normals (None = no normal loss); no semantic targets."""
        f = frame
        t = lambda a, dt=torch.float32: torch.as_tensor(np.ascontiguousarray(a), dtype=dt, device=device)  # noqa: E731
        return cls(t(f.rgb, torch.uint8), t(f.K), t(np.linalg.inv(f.pose)), None if f.depth is None else t(f.depth),
                   None if normals is None else t(normals))

    def rgb_target(self) -> torch.Tensor:
        """(H, W, 3) float colour in [0, 1]."""
        return self.rgb.float() / 255.0

    def semantic_target(self, level: int) -> tuple[torch.Tensor, torch.Tensor] | None:
        """((H, W, D) target codes, (H, W) valid) at ``level``; None when the level has no features."""
        c = self.codes[level]
        if c.shape[0] == 0:
            return None
        s = self.seg[level]
        return c[s.clamp(min=0).long()], s >= 0

    def nbytes(self) -> int:
        parts = [self.rgb, self.K, self.viewmat, self.depth, self.normals, self.seg, *(self.codes or [])]
        return sum(t.numel() * t.element_size() for t in parts if t is not None)

    @property
    def width(self) -> int:
        return int(self.rgb.shape[1])

    @property
    def height(self) -> int:
        return int(self.rgb.shape[0])

    @property
    def camera_center(self) -> torch.Tensor:
        R, t = self.viewmat[:3, :3], self.viewmat[:3, 3]
        return -R.T @ t


@dataclass
class Rendered:
    """A view rendered from the field, split into its parts."""

    rgb: torch.Tensor  # (H, W, 3)
    normals: torch.Tensor  # (H, W, 3) world, alpha-weighted (normalise before use)
    sem: torch.Tensor  # (H, W, L * D) alpha-normalised codes
    alpha: torch.Tensor  # (H, W, 1)
    depth: torch.Tensor  # (H, W, 1)
    raw: RenderOutput


def activated(params: torch.nn.ParameterDict) -> dict[str, torch.Tensor]:
    return {
        "means": params["means"],
        "quats": params["quats"],
        "scales": torch.exp(params["scales"]),
        "opacities": torch.sigmoid(params["opacities"]),
        "colors": torch.sigmoid(params["colors"]),
        "sem": params["sem"],
    }


def render_view(params: torch.nn.ParameterDict, viewmat: torch.Tensor, K: torch.Tensor, width: int, height: int,
                backend: str = "auto", absgrad: bool = False) -> Rendered:
    """Render RGB, normals, semantic codes, alpha and depth of the field at one camera."""
    a = activated(params)
    R, t = viewmat[:3, :3], viewmat[:3, 3]
    center = -R.T @ t
    n = normals_facing(gaussian_normals(a["quats"], a["scales"]), a["means"], center)
    feats = torch.cat([a["colors"], n, a["sem"]], dim=1)
    out = rasterize(a["means"], a["quats"], a["scales"], a["opacities"], feats, viewmat, K, width, height, backend=backend, absgrad=absgrad)
    sem = out.features[..., 6:] / out.alpha.clamp(min=1e-2)
    return Rendered(out.features[..., :3], out.features[..., 3:6], sem, out.alpha, out.depth, out)


def _scene_extent(params: torch.nn.ParameterDict) -> float:
    m = params["means"].detach()
    return float((m - m.mean(0)).norm(dim=1).max().clamp(min=1e-3))


def train_field(
    params: torch.nn.ParameterDict,
    views: list[TrainView],
    cfg: FieldConfig,
    levels: int,
    progress: Callable[[float, str], None] | None = None,
    cancel: Callable[[], bool] | None = None,
    semantic_losses: bool = True,
    on_semantic_start: Callable[[torch.nn.ParameterDict], None] | None = None,
) -> dict:
    """Optimise ``params`` in place on ``views``; returns statistics.

    Args:
        params: from :func:`~langx_ros.core.field.gaussians.init_from_points`.
        views: training views (semantic targets may be missing: the semantic phase then skips them).
        cfg: schedule and weights.
        levels: semantic levels carried in ``params['sem']`` (its channels = levels * code dim).
        progress: called as progress(fraction, detail) every ~1% of the iterations.
        cancel: polled every iteration; when it returns True, :class:`Cancelled` is raised.
        semantic_losses: False trains geometry only, all iterations (codes come from registration).
        on_semantic_start: called once with ``params`` when the semantic phase begins (after the
            geometry phase and its densification), e.g. to initialise the codes by registration.
    """
    extent = _scene_extent(params)
    lrs = {"means": cfg.lr_means * extent, "quats": cfg.lr_quats, "scales": cfg.lr_scales,
           "opacities": cfg.lr_opacities, "colors": cfg.lr_colors, "sem": cfg.lr_sem}
    fused = params["means"].is_cuda  # one fused kernel per optimizer step on CUDA
    optimizers = {k: torch.optim.Adam([params[k]], lr=lrs[k], eps=1e-15, fused=fused) for k in params.keys()}
    backend = cfg.backend if cfg.backend != "auto" else ("gsplat" if params["means"].is_cuda else "torch")
    sem_start = int(round(cfg.semantic_start * cfg.iterations))
    strategy, state = None, {}
    if backend == "gsplat" and cfg.densify:
        from gsplat.strategy import DefaultStrategy

        strategy = DefaultStrategy(
            prune_opa=cfg.prune_opacity,
            refine_start_iter=min(500, sem_start // 4),
            refine_stop_iter=max(1, sem_start - 100),
            reset_every=10**9,  # no opacity reset: schedules here are short
            refine_every=100,
        )
        strategy.check_sanity(params, optimizers)
        state = strategy.initialize_state(scene_scale=extent)
    rng = np.random.default_rng(cfg.seed)
    neighbours = None
    has_sem = semantic_losses and any(v.codes is not None for v in views)
    code_dim = params["sem"].shape[1] // max(levels, 1)
    t0 = time.perf_counter()
    history: list[dict] = []
    report_every = max(1, cfg.iterations // 100)
    pairs = {(i, lvl): L.SegmentPairs(v.seg[lvl]) for i, v in enumerate(views) if v.seg is not None for lvl in range(levels)}
    for it in range(cfg.iterations):
        if cancel is not None and cancel():
            raise Cancelled(f"cancelled at iteration {it}/{cfg.iterations}")
        if it == sem_start and has_sem and on_semantic_start is not None:
            on_semantic_start(params)
        vi = int(rng.integers(len(views)))
        v = views[vi]
        semantic_phase = has_sem and it >= sem_start and v.codes is not None
        r = render_view(params, v.viewmat, v.K, v.width, v.height, backend)
        loss = L.photometric_loss(r.rgb, v.rgb_target(), cfg.lambda_ssim)
        parts = {"rgb": loss.detach()}  # tensors: read back only when reported (no per-step sync)
        if v.depth is not None and cfg.lambda_depth > 0:
            ld = L.depth_loss(r.depth[..., 0], v.depth)
            loss = loss + cfg.lambda_depth * ld
            parts["depth"] = ld.detach()
        w_n = cfg.lambda_normal * min(1.0, max(0.0, (it / cfg.iterations - cfg.normal_start) / cfg.normal_ramp))
        if v.normals is not None and w_n > 0:
            ln = L.normal_loss(r.normals, v.normals, cfg.normal_max_angle_deg)
            loss = loss + w_n * ln
            parts["normal"] = ln.detach()
        if cfg.lambda_flat > 0:
            loss = loss + cfg.lambda_flat * torch.exp(params["scales"]).min(dim=1).values.mean()
        if semantic_phase:
            for lvl in range(levels):
                sl = slice(lvl * code_dim, (lvl + 1) * code_dim)
                target = v.semantic_target(lvl)
                if target is not None:
                    ls = L.semantic_loss(r.sem[..., sl], *target)
                    loss = loss + cfg.lambda_sem * ls / levels
                    parts[f"sem{lvl}"] = ls.detach()
                if cfg.lambda_s2d > 0 and v.seg is not None:
                    loss = loss + cfg.lambda_s2d * L.s2d_loss(r.sem[..., sl], pairs[(vi, lvl)]) / levels
            if cfg.lambda_s3d > 0:
                if neighbours is None or neighbours.shape[0] != params["means"].shape[0] or (it - sem_start) % cfg.knn_every == 0:
                    neighbours = L.knn(params["means"], cfg.knn)
                loss = loss + cfg.lambda_s3d * L.s3d_loss(params["sem"], neighbours)
        if strategy is not None:
            strategy.step_pre_backward(params, optimizers, state, it, r.raw.info)
        loss.backward()
        for opt in optimizers.values():
            opt.step()
            opt.zero_grad(set_to_none=True)
        if strategy is not None:
            strategy.step_post_backward(params, optimizers, state, it, r.raw.info, packed=False)
        elif cfg.prune_opacity > 0 and (it + 1) % cfg.prune_every == 0 and it + 1 < cfg.iterations:
            from gsplat.strategy.ops import remove

            with torch.no_grad():
                low = torch.sigmoid(params["opacities"]) < cfg.prune_opacity
            if low.any() and not low.all():
                remove(params, optimizers, state, low)
        if (it + 1) % report_every == 0 or it + 1 == cfg.iterations:
            rec = {k: float(v) for k, v in parts.items()}
            rec["loss"] = float(loss.detach())
            rec["iteration"] = it + 1
            if not math.isfinite(rec["loss"]):
                raise FloatingPointError(f"field training diverged by iteration {it + 1} (loss {rec['loss']})")
            history.append(rec)
            if progress is not None:
                progress((it + 1) / cfg.iterations, f"iteration {it + 1}/{cfg.iterations}, loss {rec['loss']:.4f}, {params['means'].shape[0]} Gaussians")
    return {
        "iterations": cfg.iterations,
        "seconds": time.perf_counter() - t0,
        "backend": BACKEND_GSPLAT if backend == "gsplat" else BACKEND_TORCH,
        "num_gaussians": int(params["means"].shape[0]),
        "history": history,
        "densified": strategy is not None,
    }
