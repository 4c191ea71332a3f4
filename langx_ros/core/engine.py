"""The engine behind the node (or a script): models loaded once, fields built and queried.

    engine = Engine(LangxConfig.from_yaml("config/langx.yaml"), device)
    result = engine.build(frames, progress=..., cancel=...)      # -> ReconstructResult
    answers = engine.answer(result.field, ["the printer"], threshold=0.0, camera=(viewmat, K, w, h))

Long-lived models (open_clip, SAM2, the text model) are loaded at first use and reused; the
text encoder used for a query is the one the field was built with (recorded in its meta).
"""
from __future__ import annotations

import dataclasses
import functools
import threading
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch

from langx_ros.core.config import LangxConfig
from langx_ros.core.config_fields import bounds
from langx_ros.core.field.train import FieldConfig
from langx_ros.core.field.model import LanguageField
from langx_ros.core.frames import Frame, FrameError
from langx_ros.core.instances import LOGIT_CLAMP, CaptureGate
from langx_ros.core.query import (Map2D, Match3D, QueryRequestError, answer_plan, instance_mask, prepare_queries, query_2d,
                                  select_3d)
from langx_ros.core.reconstruct import CancelFn, ProgressFn, ReconstructResult, reconstruct
from langx_ros.core.synthetic import ORACLE_PROVENANCE, OracleSemantics

TEXT_CLIP = "clip"
TEXT_MINILM = "minilm"


@dataclass
class Camera:
    """A pinhole camera to render masks for: world-to-camera, intrinsics, size, and its frame."""

    viewmat: torch.Tensor
    K: torch.Tensor
    width: int
    height: int
    frame_id: str = ""
    stamp: float = 0.0

    @classmethod
    def of(cls, frame: Frame, frame_id: str = "") -> "Camera":
        if frame.pose is None:
            raise FrameError(f"view {frame.frame_id} has no camera pose")
        return cls(torch.tensor(np.linalg.inv(frame.pose), dtype=torch.float32), torch.tensor(frame.K, dtype=torch.float32),
                   frame.width, frame.height, frame_id, frame.stamp)


@dataclass
class Answer:
    match: Match3D
    view: Map2D | None  # LangSplat 2D map at the camera; None when no camera or masks were not asked for
    mask: np.ndarray | None = None  # (H, W) bool: the 3D answer seen from the camera (found matches only)


def _on_gpu(method):
    """Runs an Engine method as a registered user of its CaptureGate (no CUDA graph is captured
    in another thread meanwhile)."""
    @functools.wraps(method)
    def wrapped(self, *args, **kwargs):
        with self.gpu.use():
            return method(self, *args, **kwargs)
    return wrapped


class Engine:
    def __init__(self, cfg: LangxConfig, device: torch.device | str):
        self.cfg = cfg
        self.device = torch.device(device)
        self._lock = threading.Lock()
        self.gpu = CaptureGate()  # every GPU use of the engine (and of the node through it) registers here
        self._clip = None  # (SemanticSource, ClipModel)
        self._minilm = None
        self._trimap = None  # KeyframeInterpolator (large: loaded only when a reconstruction asks for it)

    # ---- models (loaded once) -----------------------------------------------------------------
    def clip_stack(self):
        with self._lock:
            if self._clip is None:
                from langx_ros.core.semantics import load_semantics

                self._clip = load_semantics(self.cfg, self.device)
            return self._clip

    def minilm(self):
        with self._lock:
            if self._minilm is None:
                from langx_ros.core.text_minilm import MiniLMTextEncoder

                self._minilm = MiniLMTextEncoder(self.device, max(1, self.cfg.features.text_cache))
            return self._minilm

    def trimap(self):
        """The TriMap interpolator from <model_dir>/<trimap.model_subdir> (ModelNotFound names what is missing)."""
        with self._lock:
            if self._trimap is None or self._trimap.released:  # released after use with trimap.keep_loaded: false
                from pathlib import Path

                from langx_ros.core.trimap.interpolate import load_interpolator

                folder = Path(self.cfg.models.model_dir).expanduser() / self.cfg.trimap.model_subdir
                self._trimap = load_interpolator(folder, self.cfg.trimap, self.device)
            return self._trimap

    @_on_gpu
    def preload(self) -> str:
        """Load the models the configured semantics source answers with (the text encoder, and for
        'clip' SAM2 + open_clip) and warm them with the canonical phrases, so the first query is as
        fast as the others. Returns what was loaded; raises what loading raises (ModelNotFound)."""
        kind = TEXT_MINILM if self.cfg.semantics.source == "oracle" else TEXT_CLIP
        enc = self.text_encoder(kind)
        enc.encode(list(self.cfg.query.canonical_phrases))
        return f"{kind} text encoder ({enc.provenance})"

    def text_encoder(self, kind: str):
        if kind == TEXT_MINILM:
            return self.minilm()
        if kind == TEXT_CLIP:
            return self.clip_stack()[1]
        raise ValueError(f"unknown text encoder '{kind}'")

    # ---- building -----------------------------------------------------------------------------
    def check_build(self, keyframe_ids: Sequence[str], available: Sequence[str], iterations: int) -> list[str]:
        """The keyframe ids a build request names (all of ``available`` when empty), checked as
        the parameters are: ids known, none empty or repeated, at least ``reconstruct.min_frames``
        distinct ones; ``iterations`` <= 0 (the configured default) or within the bounds of
        ``field.iterations``. Raises ValueError quoting the offending values."""
        lo, hi = bounds(FieldConfig, "iterations")
        if iterations > 0 and ((lo is not None and iterations < lo) or (hi is not None and iterations > hi)):
            raise ValueError(f"iterations {iterations} is outside {int(lo or 0)}..{int(hi)} (the bounds of field.iterations; "
                             "<= 0 selects the configured default)")
        ids = list(keyframe_ids) or list(available)
        empty = [repr(i) for i in ids if not i.strip()]
        if empty:
            raise ValueError(f"empty keyframe id(s): {', '.join(empty[:10])}")
        repeated = sorted({i for i in ids if ids.count(i) > 1})
        if repeated:
            raise ValueError(f"keyframe ids named more than once: {', '.join(repr(i) for i in repeated[:10])}")
        known = set(available)
        unknown = [repr(i) for i in ids if i not in known]
        if unknown:
            raise ValueError(f"unknown keyframe ids: {', '.join(unknown[:10])}" + (f" (+{len(unknown) - 10} more)" if len(unknown) > 10 else ""))
        if len(ids) < self.cfg.reconstruct.min_frames:
            raise ValueError(f"a reconstruction needs at least {self.cfg.reconstruct.min_frames} distinct keyframes, "
                             f"{len(ids)} {'given' if keyframe_ids else 'captured (call ~/capture_keyframe)'}")
        return ids

    @_on_gpu
    def build(self, frames: Sequence[Frame], iterations: int = 0, progress: ProgressFn | None = None,
              cancel: CancelFn | None = None, use_trimap: bool = False) -> ReconstructResult:
        """A LanguageField from posed frames, with the configured semantics source (and TriMap
        densification when asked for)."""
        cfg = self.cfg
        if cfg.semantics.source == "oracle":
            if not cfg.semantics.labels:
                raise FrameError("semantics.source is 'oracle' but semantics.labels is empty")
            missing = [f.frame_id for f in frames if f.instances is None]
            if missing:
                raise FrameError(f"oracle protocol: frames without instance ids: {', '.join(missing[:5])}")
            text = self.minilm()
            labels = list(cfg.semantics.labels)
            semantics = OracleSemantics({}, text.encode(labels), f"{ORACLE_PROVENANCE}; labels {labels}")
            kind = TEXT_MINILM
        else:
            semantics, text = self.clip_stack()
            kind = TEXT_CLIP
        lqc_cfg = cfg.lqc
        dim = int(text.encode(["x"]).shape[1])
        if lqc_cfg.feature_dim != dim and not cfg.reconstruct.lqc_path:
            lqc_cfg = dataclasses.replace(lqc_cfg, feature_dim=dim)
        field_cfg = cfg.field if iterations <= 0 else dataclasses.replace(cfg.field, iterations=iterations)
        trimap = (self.trimap(), cfg.trimap) if use_trimap else None
        res = reconstruct(frames, semantics, text, cfg.reconstruct, field_cfg, lqc_cfg, cfg.query.canonical_phrases,
                          device=self.device, progress=progress, cancel=cancel, trimap=trimap, reg_cfg=cfg.registration,
                          pose_cfg=cfg.pose_refine, surface_cfg=cfg.surface)
        res.field.meta["text_encoder"] = kind
        return res

    # ---- querying -----------------------------------------------------------------------------
    @_on_gpu
    def prepare_field(self, field: LanguageField) -> None:
        """Build the field's 3D answer plan for the configured query settings now (on CUDA its
        CUDA graph is captured by one query that selects nothing), so that the first real query
        does not pay for it: 15 ms on an H100 at 1M Gaussians, 0.3 s in a process that has not
        run those kernels yet (bench/query.py, "first call")."""
        k = int(field.codebook_features().shape[0])
        answer_plan(field, self.cfg.query, k, self.gpu).run(torch.full((1, k), -LOGIT_CLAMP, device=field.device), self.cfg.query.threshold)

    @_on_gpu
    def answer(self, field: LanguageField, queries: Sequence[str], threshold: float, camera: Camera | None = None,
               return_masks: bool = True, all_instances: bool = False) -> list[Answer]:
        """3D matches (and 2D maps at ``camera``) for each query; request errors raise QueryRequestError.

        One Answer per query (its best instance), or with ``all_instances`` one per instance that
        passed, best first (a query without a match still gives one Answer).
        """
        req = prepare_queries(list(queries), threshold, self.cfg.query)
        enc = self.text_encoder(field.meta.get("text_encoder", TEXT_CLIP))
        text = torch.as_tensor(enc.encode(list(req.queries)), device=field.device)
        canon = torch.as_tensor(enc.encode(list(self.cfg.query.canonical_phrases)), device=field.device)
        if text.shape[1] != field.codebook_features().shape[1]:
            raise QueryRequestError(f"the field's features are {field.codebook_features().shape[1]}-d but the text encoder gives {text.shape[1]}-d")
        best = select_3d(field, req.queries, text, canon, req.threshold, self.cfg.query, self.gpu)
        views: list[Map2D | None] = [None] * len(best)
        if camera is not None and return_masks:
            views = query_2d(field, req.queries, camera.viewmat, camera.K, camera.width, camera.height, text, canon, self.cfg.query)
        out = []
        for m, v in zip(best, views):
            for inst in [m, *m.alternatives] if all_instances else [m]:
                mask = None
                if camera is not None and return_masks and inst.found:
                    mask = instance_mask(field, inst, camera.viewmat, camera.K, camera.width, camera.height, self.cfg.query.min_opacity)
                out.append(Answer(inst, v, mask))
        return out
