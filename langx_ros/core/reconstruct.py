"""Orchestration: posed frames -> language field.

    frames --(semantics: segments per level + one language feature per segment)--> LQC codes
           --(depth points)--> Gaussians --(training)--> LanguageField

Semantics and text are pluggable (:class:`SemanticSource`, :class:`TextEncoder`): open_clip +
SAM2 on real weights, or the oracle-feature protocol on generated scenes. Progress and
cancellation go through one callback and one flag, used alike by the ROS action and the CLI.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Protocol, Sequence

import numpy as np
import torch

from langx_ros.core.config_fields import param
from langx_ros.core.field.gaussians import init_from_points
from langx_ros.core.field.model import LanguageField
from langx_ros.core.field.registration import (Registration, RegistrationConfig, RegistrationView, register, register_points,
                                               registered_codes)
from langx_ros.core.field.surface import SurfaceConfig, SurfaceView, surface_samples
from langx_ros.core.field.train import Cancelled, FieldConfig, TrainView, activated, train_field
from langx_ros.core.frames import Frame, FrameError, backproject, normals_from_depth, validate_frame
from langx_ros.core.pose_refine import PoseRefineConfig, refine_poses
from langx_ros.core.pose_refine import summary as pose_summary
from langx_ros.core.lqc import LQC, LQCConfig, train_lqc

ProgressFn = Callable[[str, float, str], None]  # (stage, stage fraction, detail)
CancelFn = Callable[[], bool]

# "poses" only with pose_refine.enabled, "trimap" only when asked for, "surface" only with surface.enabled
STAGES = ("validate", "poses", "semantics", "trimap", "lqc", "init", "field", "register", "surface")


class SemanticSource(Protocol):
    """Segments at several levels and one language feature per segment, for each frame."""

    levels: list[str]
    provenance: str

    def segment_features(self, frame: Frame) -> list[tuple[np.ndarray, np.ndarray]]:
        """Per level: (segment id map (H, W) int64, -1 = none; features (M, F) float32)."""
        ...


class TextEncoder(Protocol):
    """Text -> embeddings in the feature space of the SemanticSource."""

    provenance: str

    def encode(self, texts: list[str]) -> np.ndarray:
        """(len(texts), F) float32."""
        ...


@dataclass
class ReconstructConfig:
    """The reconstruction (the field and the LQC have their own sections)."""

    lqc_path: str = param("", "Trained LQC (.safetensors + .json); empty = fit one on the scene's own features ('per-scene LQC').")
    min_frames: int = param(2, "Fewest frames a reconstruction accepts.", min=1, max=10_000)
    no_depth_near: float = param(0.3, "Without any depth: nearest distance (m) of the random initial points.", min=0.01, max=1000.0)
    no_depth_far: float = param(5.0, "Without any depth: farthest distance (m) of the random initial points.", min=0.02, max=1000.0)
    no_depth_points: int = param(20000, "Without any depth: random initial points per frame.", min=1, max=10_000_000)


@dataclass
class ReconstructResult:
    field: LanguageField
    timings: dict[str, float] = field(default_factory=dict)
    stats: dict = field(default_factory=dict)


def depth_points(frames: Sequence[Frame], stride: int = 1) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """World points, colours and normals of every depth pixel (with a valid normal) of ``frames``."""
    pts, cols, nrm = [], [], []
    for f in frames:
        n = normals_from_depth(f.depth, f.K, f.pose)
        p, c, pix = backproject(f, stride)
        nn = n[pix[:, 0], pix[:, 1]]
        ok = np.isfinite(nn).all(axis=1)
        pts.append(p[ok])
        cols.append(c[ok])
        nrm.append(nn[ok])
    return np.concatenate(pts), np.concatenate(cols), np.concatenate(nrm)


def frustum_points(frames: Sequence[Frame], near: float, far: float, per_frame: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Random points in each frame's view frustum (uniform pixel, depth in [near, far]), coloured
    by the pixel they project to: the initial guess when no frame has depth."""
    from langx_ros.core.frames import pixel_rays

    rng = np.random.default_rng(seed)
    pts, cols = [], []
    for f in frames:
        rays = pixel_rays(f.K, f.width, f.height)
        r = rng.integers(0, f.height, per_frame)
        c = rng.integers(0, f.width, per_frame)
        d = rng.uniform(near, far, per_frame)
        p_cam = rays[r, c] * d[:, None]
        pts.append(p_cam @ f.pose[:3, :3].T + f.pose[:3, 3])
        cols.append(f.rgb[r, c])
    return np.concatenate(pts), np.concatenate(cols)


def _views(frames: Sequence[Frame], normals: Sequence[np.ndarray | None], sem: list[list[tuple[np.ndarray, np.ndarray]]] | None,
           codes_per_frame: list[list[np.ndarray]] | None, device: torch.device) -> list[TrainView]:
    """Training views (compact, see TrainView); per level, a segment without a feature (none
    pooled) supervises L_s2d only."""
    out = []
    for i, f in enumerate(frames):
        v = TrainView.from_frame(f, normals[i], device)
        if sem is not None and codes_per_frame is not None:
            v.seg = torch.as_tensor(np.stack([s for s, _ in sem[i]]), dtype=torch.int32, device=device)  # (L, H, W)
            v.codes = [torch.as_tensor(c, dtype=torch.float32, device=device) for c in codes_per_frame[i]]
        out.append(v)
    return out


def _sample_codes(surface, views: Sequence[RegistrationView], reg: Registration, num_levels: int, cfg: RegistrationConfig,
                  lqc: LQC, device: torch.device) -> np.ndarray:
    """(M, L) int32 the codebook entry of each surface sample's own label, the views' vote
    (registration.register_points, against the depth the registration used), -1 where no view labels it."""
    code = np.full((len(surface), num_levels), -1, np.int32)
    if not len(surface):
        return code
    pts = torch.as_tensor(surface.points, device=device)
    for lvl, vote in enumerate(register_points(pts, views, reg.view_depth, num_levels, cfg)):
        if vote is not None:
            feats, votes = vote
            ok = votes > 0
            if bool(ok.any()):
                code[ok.cpu().numpy(), lvl] = lqc.quantize(feats[ok].to(lqc.codebook.device))[0].cpu().numpy()
    return code


def _registration_views(views: Sequence[TrainView], sem: list[list[tuple[np.ndarray, np.ndarray]]]) -> list[RegistrationView]:
    """What registration reads of each training view: camera, sensor depth, segments and the
    features of every segment per level (views without segments only vote on observation)."""
    out = []
    for v, per in zip(views, sem + [[]] * (len(views) - len(sem))):
        feats = [torch.as_tensor(f, dtype=torch.float32) for _, f in per]
        out.append(RegistrationView(v.viewmat, v.K, v.width, v.height, v.seg, feats, v.depth))
    return out


def _kept_geometry(field: LanguageField, sem_channels: int, device: torch.device) -> torch.nn.ParameterDict:
    """``field``'s raw Gaussian parameters (copies, on ``device``) with zeroed codes of ``sem_channels``."""
    p = {k: v.detach().to(device).clone() for k, v in field.params.items() if k != "sem"}
    p["sem"] = torch.zeros(p["means"].shape[0], sem_channels, device=device)
    return torch.nn.ParameterDict({k: torch.nn.Parameter(v) for k, v in p.items()})


def _generated_semantics(generated, semantics: "SemanticSource", level_idx: list[int], n_levels: int,
                         check_cancel: Callable[[], None]) -> tuple[list[list[tuple[np.ndarray, np.ndarray]]], str]:
    """Per generated view and level of the source: (mask ids, features pooled over them), and a
    note. Levels not generated have no segments; a source that cannot pool over given masks
    (the oracle protocol) leaves the masks to L_s2d alone."""
    pool = getattr(semantics, "features_for_segments", None)
    out = []
    for g in generated:
        check_cancel()
        h, w = g.frame.rgb.shape[:2]
        segs: list[np.ndarray | None] = [None] * n_levels
        for j, li in enumerate(level_idx):
            segs[li] = g.segments[j]
        if pool is not None:
            out.append(pool(g.frame, segs))
        else:
            out.append([(s if s is not None else np.full((h, w), -1, np.int64), np.zeros((0, 1), np.float32)) for s in segs])
    note = ("masks drive L_s2d and features pooled over them" if pool is not None else
            f"masks drive L_s2d only ({type(semantics).__name__} cannot pool features over given masks)")
    return out, note


def _trimap_levels(tcfg, levels: list[str]) -> list[int]:
    """Indices (into the semantic source's levels) of the semantic videos to generate."""
    if not tcfg.semantics:
        return []
    names = list(tcfg.semantic_levels) or [levels[-1]]
    unknown = [n for n in names if n not in levels]
    if unknown:
        raise ValueError(f"trimap.semantic_levels {unknown} are not levels of the semantic source ({levels})")
    return [levels.index(n) for n in dict.fromkeys(names)]


def reconstruct(
    frames: Sequence[Frame],
    semantics: SemanticSource,
    text_encoder: TextEncoder,
    cfg: ReconstructConfig,
    field_cfg: FieldConfig,
    lqc_cfg: LQCConfig,
    canonical_phrases: Sequence[str],
    device: torch.device | str = "cpu",
    progress: ProgressFn | None = None,
    cancel: CancelFn | None = None,
    trimap=None,
    normal_estimator=None,
    reg_cfg: RegistrationConfig | None = None,
    pose_cfg: PoseRefineConfig | None = None,
    surface_cfg: SurfaceConfig | None = None,
    geometry: LanguageField | None = None,
) -> ReconstructResult:
    """Build a LanguageField from posed RGB-D frames.

    ``trimap``: optional (KeyframeInterpolator, TriMapConfig): in-between views are generated
    for consecutive frames and supervise colour, normals and (with ``trimap.semantics``) the
    semantics: their masks drive L_s2d and, where the semantic source pools features over given
    masks (open_clip), the semantic loss (see core/trimap/densify.py). ``normal_estimator``:
    frame -> world normals, for key frames without depth (none is wired in; without it such a
    frame's normal condition is neutral grey, and the provenance says so). ``reg_cfg``: how
    Gaussians get their codes (registration, semantic training or both; see
    core/field/registration.py); every mode ends with a registration pass that marks the
    Gaussians no view observes. ``pose_cfg``: with ``enabled``, the key frames' poses are first
    refined against each other's depth (stage "poses", core/pose_refine.py; the first key frame
    with depth keeps its pose and anchors the world frame). ``surface_cfg``: with ``enabled``
    (the default), the key frames' depth is sampled onto the observed Gaussians (stage "surface",
    core/field/surface.py), so answers return measured surface points. ``geometry``: a field
    whose Gaussians are kept as they are (no field training, stage "field" takes no time): only
    its codes are registered anew from ``frames`` and ``semantics`` (mode "register" only), e.g.
    to compare registration settings on one geometry or to relabel a saved field with new
    semantics in a second instead of a minute of training.

    Raises:
        FrameError: fewer than ``cfg.min_frames`` frames, or a frame without pose or depth.
        Cancelled: the cancel flag was set (checked between and inside stages).
    """
    device = torch.device(device)
    reg_cfg = reg_cfg or RegistrationConfig()
    if geometry is not None and reg_cfg.mode != "register":
        raise ValueError(f"a kept geometry only takes registered codes (registration.mode 'register'), not '{reg_cfg.mode}'")
    timings: dict[str, float] = {}
    report = progress or (lambda stage, frac, detail: None)

    def check_cancel() -> None:
        if cancel is not None and cancel():
            raise Cancelled("reconstruction cancelled")

    t = time.perf_counter()
    report("validate", 0.0, f"{len(frames)} frames")
    if len(frames) < cfg.min_frames:
        raise FrameError(f"a reconstruction needs at least {cfg.min_frames} frames, got {len(frames)}")
    frames = [validate_frame(f) for f in frames]
    for f in frames:
        if f.pose is None:
            raise FrameError(f"frame {f.frame_id} has no camera pose")
    timings["validate"] = time.perf_counter() - t
    pose_note = ""
    if pose_cfg is not None and pose_cfg.enabled:
        t = time.perf_counter()
        report("poses", 0.0, f"refining {len(frames)} key frame poses against their depth")
        frames, corrections = refine_poses(list(frames), pose_cfg, lambda fr, d: report("poses", fr, d), check_cancel)
        pose_note = pose_summary(corrections)
        report("poses", 1.0, pose_note)
        timings["poses"] = time.perf_counter() - t
    t = time.perf_counter()
    normals = [None if f.depth is None else normals_from_depth(f.depth, f.K, f.pose) for f in frames]
    levels = list(semantics.levels)
    level_idx = _trimap_levels(trimap[1], levels) if trimap is not None else []
    timings["validate"] += time.perf_counter() - t
    # every stage is reported as it starts (its first progress may come much later: the field
    # reports every 1% of its iterations)

    t = time.perf_counter()
    report("semantics", 0.0, f"{len(frames)} frames")
    sem: list[list[tuple[np.ndarray, np.ndarray]]] = []
    for i, f in enumerate(frames):
        check_cancel()
        sem.append(semantics.segment_features(f))
        report("semantics", (i + 1) / len(frames), f"frame {f.frame_id}")
    timings["semantics"] = time.perf_counter() - t

    generated, gen_sem, trimap_notes = [], [], []
    if trimap is not None:
        from langx_ros.core.trimap.densify import densify

        t = time.perf_counter()
        check_cancel()
        report("trimap", 0.0, f"{len(frames) - 1} key-frame pairs")
        interp, tcfg = trimap
        key_segments = [[per[li][0] for li in level_idx] for per in sem] if level_idx else None
        try:
            dense = densify(frames, interp, tcfg, key_segments, progress=lambda fr, d: report("trimap", fr, d),
                            normal_estimator=normal_estimator, cancel=cancel)
        finally:
            if not tcfg.keep_loaded:  # free its memory for field training (also when densifying failed)
                interp.release()
        generated, trimap_notes = dense.views, list(dense.notes)
        if not tcfg.keep_loaded:
            trimap_notes.append("model released after densifying (trimap.keep_loaded: false)")
        if level_idx:
            gen_sem, note = _generated_semantics(generated, semantics, level_idx, len(levels), check_cancel)
            trimap_notes.append(note)
        timings["trimap"] = time.perf_counter() - t

    t = time.perf_counter()
    check_cancel()
    report("lqc", 0.0, "features -> codes")
    found = [feats for per in sem + gen_sem for _, feats in per if len(feats)]
    if not found:
        raise FrameError(f"no segments in any of the {len(frames)} frames ({getattr(semantics, 'provenance', 'semantics')}): "
                         "nothing to give language features (with SAM2, lower segment.pred_iou_threshold or "
                         "segment.min_area_fraction; with random weights SAM2's predicted IoUs are meaningless)")
    all_feats = np.concatenate(found, axis=0)
    canonical = torch.as_tensor(text_encoder.encode(list(canonical_phrases)))
    if cfg.lqc_path:
        lqc = LQC.load(Path(cfg.lqc_path).expanduser(), device)
        lqc_note = f"trained LQC {cfg.lqc_path} ({lqc.provenance})"
        lqc_stats: dict = {}
    else:
        lqc_cfg_eff = lqc_cfg
        lqc, lqc_stats = train_lqc(torch.as_tensor(all_feats), lqc_cfg_eff, text=canonical, device=device,
                                   progress=lambda fr, d: report("lqc", fr, d), cancel=cancel)
        check_cancel()
        lqc.provenance = f"per-scene LQC fitted on {len(all_feats)} features of this scene"
        lqc_note = lqc.provenance
    with torch.no_grad():
        codes_per_frame = [[lqc.quantize(torch.as_tensor(feats, device=device))[1].cpu().numpy() if len(feats) else
                            np.zeros((0, lqc.cfg.code_dim), np.float32) for _, feats in per] for per in sem + gen_sem]
    timings["lqc"] = time.perf_counter() - t

    t = time.perf_counter()
    check_cancel()
    report("init", 0.0, "initial Gaussians and training views")
    with_depth = [f for f in frames if f.depth is not None]
    if geometry is not None:
        params = _kept_geometry(geometry, len(levels) * lqc.cfg.code_dim, device)
        geometry_note = (f"{geometry.num_gaussians} Gaussians kept from a given field, not retrained (its geometry: "
                         f"{geometry.provenance.get('geometry', 'unknown')})")
    else:
        if with_depth:
            points, colors, point_normals = depth_points(with_depth, field_cfg.init_stride)
            geometry_note = f"depth of {len(with_depth)}/{len(frames)} frames"
        else:
            points, colors = frustum_points(frames, cfg.no_depth_near, cfg.no_depth_far, cfg.no_depth_points, field_cfg.seed)
            point_normals = None
            geometry_note = (f"NO DEPTH: random initial points in the view frusta ({cfg.no_depth_near:g}-{cfg.no_depth_far:g} m), "
                             "refined by colour alone (weak; no depth estimator is wired in)")
        params = init_from_points(points, colors, point_normals, len(levels) * lqc.cfg.code_dim,
                                  field_cfg.max_gaussians, field_cfg.flatness, device=device, seed=field_cfg.seed)
    views = _views(frames, normals, sem, codes_per_frame[:len(frames)], device)
    views += _views([g.frame for g in generated], [g.normals for g in generated], gen_sem or None,
                    codes_per_frame[len(frames):] or None, device)
    report("init", 1.0, f"{params['means'].shape[0]} Gaussians " + ("kept from the given field" if geometry is not None else "from depth"))
    timings["init"] = time.perf_counter() - t

    reg_views = _registration_views(views, sem + gen_sem)
    backend = field_cfg.backend

    surface_cfg = surface_cfg or SurfaceConfig()

    def registration() -> Registration:  # the depth spread only for the surface samples that use it
        return register(activated(params), reg_views, len(levels), reg_cfg, backend, check_cancel,
                        depth_spread=surface_cfg.enabled and surface_cfg.rendered_max_spread > 0)

    def init_codes(p: torch.nn.ParameterDict) -> None:  # register+train: registration starts the semantic phase
        t0 = time.perf_counter()
        reg = registration()
        p["sem"].data.copy_(registered_codes(reg, lqc, p["sem"], p["means"]))
        timings["register_init"] = time.perf_counter() - t0

    t = time.perf_counter()
    if geometry is None:
        report("field", 0.0, f"{field_cfg.iterations} iterations over {len(views)} views "
                             f"({sum(v.nbytes() for v in views) / 2**20:.0f} MiB of view tensors)")
        stats = train_field(params, views, field_cfg, len(levels), progress=lambda fr, d: report("field", fr, d), cancel=cancel,
                            semantic_losses=reg_cfg.mode != "register",
                            on_semantic_start=init_codes if reg_cfg.mode == "register+train" else None)
    else:
        report("field", 1.0, "geometry kept from the given field (not trained)")
        stats = {"iterations": 0, "seconds": 0.0, "backend": geometry.provenance.get("renderer", "unknown"),
                 "num_gaussians": int(params["means"].shape[0]), "history": [], "densified": False}
    timings["field"] = time.perf_counter() - t - timings.get("register_init", 0.0)

    t = time.perf_counter()
    check_cancel()
    report("register", 0.0, f"{reg_cfg.mode}: evidence of {len(reg_views)} views")
    reg = registration()
    if reg_cfg.mode == "register":
        with torch.no_grad():
            params["sem"].data.copy_(registered_codes(reg, lqc, params["sem"], params["means"]))
    observed = reg.observed(reg_cfg.min_weight)
    timings["register"] = time.perf_counter() - t + timings.pop("register_init", 0.0)
    n_obs = int(observed.any(1).sum())
    checked = (f"; cross-view segment check: {reg.dropped_segments} segments the other views contradict left out"
               if reg_cfg.segment_check > 0 else "; cross-view segment check off")
    report("register", 1.0, f"{n_obs}/{observed.shape[0]} Gaussians observed{checked}")

    surface = None
    if surface_cfg.enabled:
        t = time.perf_counter()
        check_cancel()
        report("surface", 0.0, f"sampling the depth of {len(frames)} key frames onto the observed Gaussians")
        spreads = reg.view_spread or [None] * len(frames)
        sviews = [SurfaceView(v.viewmat, v.K, d, f.rgb, torch.isfinite(v.depth) if v.depth is not None else None, sp)
                  for v, d, f, sp in zip(views, reg.view_depth, frames, spreads)]
        surface = surface_samples(activated(params), observed.any(1), sviews, surface_cfg)
        surface.code = _sample_codes(surface, reg.views or reg_views, reg, len(levels), reg_cfg, lqc, device)
        timings["surface"] = time.perf_counter() - t
        report("surface", 1.0, f"{len(surface)} surface samples on {int((surface.owned_counts() > 0).sum())} Gaussians")

    rendered_note = (f", kept only beyond {surface_cfg.rendered_gap * 100:g} cm of a sensor point"
                     + (f" and not behind a reading within {surface_cfg.rendered_window} px" if surface_cfg.rendered_window > 0 else "")
                     if surface_cfg.rendered_gap > 0 else "")
    provenance = {
        "semantics": semantics.provenance,
        "text": text_encoder.provenance,
        "lqc": lqc_note,
        "renderer": stats["backend"],
        "geometry": geometry_note,
        "poses": f"refined (pose_refine): {pose_note}" if pose_note else "as given (pose_refine.enabled: false)",
        "semantic codes": {"register": "registered (training-free, blending-weighted over the views that see each Gaussian)",
                           "train": "LangScene-X semantic training",
                           "register+train": "registration, then LangScene-X semantic training"}[reg_cfg.mode]
                          + f"; {n_obs}/{observed.shape[0]} Gaussians observed{checked}",
        "answer points": (f"surface samples: the depth of the {len(frames)} key frames (the sensor's, the field's rendered "
                          f"depth where the sensor has none{rendered_note}) in {surface_cfg.voxel * 100:g} cm voxels, each owned by the "
                          f"Gaussian that explains it ({len(surface)} samples), each labelled by the views that see it") if surface is not None else
                         "Gaussian centres (surface.enabled: false)",
    }
    if trimap is not None:
        provenance["trimap"] = (f"{getattr(trimap[0], 'provenance', 'TriMap')}: {len(generated)} generated views (colour, normals"
                                f"{', masks' if gen_sem else ''}; poses interpolated, not refined); " + "; ".join(trimap_notes))
    lf = LanguageField({k: v.detach() for k, v in params.items()}, lqc.eval(), levels, provenance,
                       {"frames": [f.frame_id for f in frames], "generated_frames": [g.frame.frame_id for g in generated],
                        "timings": timings, "canonical_phrases": list(canonical_phrases), "min_weight": reg_cfg.min_weight,
                        "semantic_mode": reg_cfg.mode},
                       reg.evidence, reg.normals, reg.labelled, reg.agree_views, surface)
    return ReconstructResult(lf, timings, {"field": stats, "lqc": lqc_stats})


# bad frames or settings, missing weights or files (models.ModelNotFound is an OSError), divergence
EXPECTED_FAILURES = (FrameError, ValueError, OSError, MemoryError, FloatingPointError, KeyError)


def failure_message(err: BaseException, stage: str) -> tuple[str, bool]:
    """(text for the caller, expected?) of a failed reconstruction; ``stage`` is where it stopped.

    Expected failures (bad frames, missing weights, bad settings, divergence) pass their own
    message on; running out of GPU memory frees the allocator's cache and names the settings that
    lower the need; anything else is an internal error (the caller should log its traceback).
    """
    if isinstance(err, torch.OutOfMemoryError):
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        hint = ("trimap.cpu_offload: model, trimap.vae_tiling: true, fewer trimap.num_frames" if stage == "trimap" else
                "trimap.keep_loaded: false (with use_trimap), fewer field.max_gaussians or keyframes")
        first = str(err).splitlines()[0] if str(err) else ""
        return f"out of GPU memory in stage '{stage}' ({first}); lower the need: {hint}", True
    if isinstance(err, EXPECTED_FAILURES):
        return str(err), True
    return f"internal error: {type(err).__name__}: {err}", False
