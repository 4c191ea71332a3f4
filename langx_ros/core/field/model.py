"""LanguageField: a trained Gaussian field with its LQC, renderable and queryable.

Every Gaussian carries one LQC code per segmentation level; each code maps to its nearest
codebook entry (computed once, cached), so a text query needs relevancies for the K codebook
features only, then a gather per Gaussian (3D) or per rendered pixel (2D).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from langx_ros.core.field.surface import SurfaceSamples
from langx_ros.core.field.train import Rendered, activated, render_view
from langx_ros.core.lqc import LQC


@dataclass
class LanguageField:
    """A field ready for queries.

    ``params`` holds the raw Gaussian parameters (see gaussians.py); ``levels`` names the
    semantic levels (e.g. ["s", "m", "l"]); ``provenance`` says where every part came from
    (weights real/random, oracle features, fallbacks) and travels with every answer.
    ``evidence`` says how much each Gaussian was seen on the observed surface per level (the
    registration's blending weights); Gaussians below ``meta["min_weight"]`` are unobserved and
    never answer a query. A field without it (saved before registration existed) treats every
    Gaussian as observed.
    """

    params: dict[str, torch.Tensor]
    lqc: LQC
    levels: list[str]
    provenance: dict[str, str] = field(default_factory=dict)
    meta: dict = field(default_factory=dict)
    evidence: torch.Tensor | None = None  # (N, L) registration evidence per level (see registration.py); None = unknown
    normals: torch.Tensor | None = None  # (N, 3) unit surface normals facing the views that saw them
    labelled: torch.Tensor | None = None  # (N, L) registration: labelled blending weight, agreeing or not (None = unknown)
    agree_views: torch.Tensor | None = None  # (N, L) registration: views whose labels mostly agree (None = unknown)
    surface: SurfaceSamples | None = None  # the key frames' depth points, each owned by a Gaussian (surface.py); None = none
    _code_index: torch.Tensor | None = field(default=None, repr=False)
    _codebook_features: torch.Tensor | None = field(default=None, repr=False)
    _spacing: float | None = field(default=None, repr=False)
    _selectable: dict = field(default_factory=dict, repr=False)
    _answer_table: torch.Tensor | None = field(default=None, repr=False)
    _plans: dict = field(default_factory=dict, repr=False)
    _sample_records: tuple | None = field(default=None, repr=False)  # (the surface they were built from, records)

    @property
    def device(self) -> torch.device:
        return self.params["means"].device

    @property
    def num_gaussians(self) -> int:
        return int(self.params["means"].shape[0])

    @property
    def code_dim(self) -> int:
        return self.lqc.cfg.code_dim

    def provenance_text(self) -> str:
        return "; ".join(f"{k}: {v}" for k, v in self.provenance.items())

    def to(self, device: torch.device | str) -> "LanguageField":
        p = {k: v.detach().to(device) for k, v in self.params.items()}
        mv = lambda t: None if t is None else t.to(device)  # noqa: E731
        return LanguageField(p, self.lqc.to(device), list(self.levels), dict(self.provenance), dict(self.meta),
                             mv(self.evidence), mv(self.normals), mv(self.labelled), mv(self.agree_views), self.surface)

    @torch.no_grad()
    def observed(self) -> torch.Tensor:
        """(N, L) bool: the Gaussian has enough surface-supported evidence at each level."""
        if self.evidence is None:
            return torch.ones(self.num_gaussians, len(self.levels), dtype=torch.bool, device=self.device)
        return self.evidence >= float(self.meta.get("min_weight", 0.0))

    @torch.no_grad()
    def selectable_gaussians(self, min_opacity: float) -> torch.Tensor:
        """(N, L) bool: the Gaussian is opaque enough and observed at each level (what a query may select)."""
        return (self.opacities() >= min_opacity)[:, None] & self.observed()

    @torch.no_grad()
    def selectable_cloud(self, min_opacity: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(points (M, 3) float32, colours (M, 3) uint8, unit normals (M, 3) float32) of what a
        query can select: the surface samples of the selectable Gaussians (the key frames' colours),
        or, for a field without samples, the selectable Gaussians' centres."""
        keep = self.selectable_gaussians(min_opacity).any(1).cpu().numpy()
        normals = self.surface_normals().cpu().numpy().astype(np.float32)
        if self.surface is not None:
            s = self.surface
            mine = keep[s.owner]
            return s.points[mine], s.colors[mine], normals[s.owner[mine]]
        return self.params["means"].detach().cpu().numpy().astype(np.float32)[keep], self.colors_uint8()[keep], normals[keep]

    @torch.no_grad()
    def selectable(self, min_opacity: float, codebook_size: int) -> tuple[torch.Tensor, torch.Tensor]:
        """What a query may select (cached per ``min_opacity``): (N, L) bool, the Gaussian is opaque
        enough and observed at that level; and (L, K) bool, codebook entry k is the code of some
        selectable Gaussian at level l (so per-query statistics over the selectable Gaussians are
        taken over K entries, not N Gaussians)."""
        key = (float(min_opacity), int(codebook_size), self.num_gaussians)
        if key not in self._selectable:
            ok = self.selectable_gaussians(min_opacity)
            idx = self.code_index()
            present = torch.zeros(ok.shape[1], codebook_size, dtype=torch.bool, device=self.device)
            for lvl in range(ok.shape[1]):
                present[lvl, idx[ok[:, lvl], lvl]] = True
            self._selectable[key] = (ok, present)
        return self._selectable[key]

    def plans(self) -> dict:
        """The field's cache of query plans (core/query.py ``answer_plan``); they read the field's
        tensors in place, so a field is not changed once it answers queries."""
        return self._plans

    @torch.no_grad()
    def surface_normals(self) -> torch.Tensor:
        """(N, 3) unit normals: the registered ones (facing the observing views), else the
        Gaussians' shortest axes (sign arbitrary)."""
        if self.normals is not None:
            return self.normals
        from langx_ros.core.field.gaussians import gaussian_normals

        return gaussian_normals(self.params["quats"].detach(), torch.exp(self.params["scales"].detach()))

    @torch.no_grad()
    def sample_records(self) -> np.ndarray:
        """(M, 7) float32 contiguous, per surface sample what an answer's point carries (cached):
        its point and colour (:meth:`SurfaceSamples.records`, split by ``unpack_records``), then
        its owner's unit surface normal (columns 4-6); one row gather per answer."""
        s = self.surface
        if self._sample_records is None or self._sample_records[0] is not s:
            rec = np.zeros((len(s), 7), np.float32)
            rec[:, :4] = s.records()
            rec[:, 4:7] = self.surface_normals().detach().float().cpu().numpy()[s.owner]
            self._sample_records = (s, rec)
        return self._sample_records[1]

    @torch.no_grad()
    def answer_table(self) -> torch.Tensor:
        """(N, 9) float32 what an answer's points carry, per Gaussian (cached): centre, colour
        (0..255, the sigmoid of the colour parameters rounded), unit surface normal; one gather
        per answer instead of three."""
        if self._answer_table is None or self._answer_table.shape[0] != self.num_gaussians:
            col = (torch.sigmoid(self.params["colors"].detach()).clamp(0, 1) * 255 + 0.5).floor()
            self._answer_table = torch.cat([self.params["means"].detach().float(), col.float(),
                                            self.surface_normals().float()], 1)
        return self._answer_table

    @torch.no_grad()
    def codes(self) -> torch.Tensor:
        """(N, L, D) semantic codes."""
        return self.params["sem"].detach().reshape(self.num_gaussians, len(self.levels), self.code_dim)

    @torch.no_grad()
    def code_index(self) -> torch.Tensor:
        """(N, L) nearest codebook entry of every Gaussian's code per level (cached)."""
        if self._code_index is None or self._code_index.shape[0] != self.num_gaussians:
            self._code_index = self.lqc.nearest(self.codes())
        return self._code_index

    @torch.no_grad()
    def codebook_features(self) -> torch.Tensor:
        """(K, F) decoded, normalised features of the codebook (cached)."""
        if self._codebook_features is None:
            self._codebook_features = self.lqc.codebook_features()
        return self._codebook_features

    @torch.no_grad()
    def opacities(self) -> torch.Tensor:
        return torch.sigmoid(self.params["opacities"].detach())

    @torch.no_grad()
    def colors_uint8(self) -> np.ndarray:
        return self.answer_table()[:, 3:6].to(torch.uint8).cpu().numpy()

    @torch.no_grad()
    def point_spacing(self) -> float:
        """Median distance between neighbouring distinct Gaussian centres (cached); coincident
        centres (a frame seen twice) would otherwise pull it towards zero."""
        if self._spacing is None:
            from scipy.spatial import cKDTree

            m = np.unique(self.params["means"].detach().cpu().numpy(), axis=0)
            if len(m) < 2:
                self._spacing = 0.01
            else:
                sample = m[np.random.default_rng(0).choice(len(m), min(len(m), 20000), replace=False)]
                d, _ = cKDTree(m).query(sample, k=2)
                self._spacing = float(np.median(d[:, 1]))
        return self._spacing

    @torch.no_grad()
    def render(self, viewmat: torch.Tensor, K: torch.Tensor, width: int, height: int, backend: str = "auto") -> Rendered:
        """Render RGB, depth, normals and semantic codes at a camera (no gradients)."""
        p = torch.nn.ParameterDict({k: torch.nn.Parameter(v, requires_grad=False) for k, v in self.params.items()})
        return render_view(p, viewmat.to(self.device), K.to(self.device), width, height, backend)

    @torch.no_grad()
    def render_channels(self, channels: torch.Tensor, viewmat: torch.Tensor, K: torch.Tensor, width: int, height: int,
                        backend: str = "auto"):
        """Render arbitrary per-Gaussian channels (N, C) with the field's geometry (a RenderOutput)."""
        from langx_ros.core.field.render import rasterize

        a = self.activated()
        return rasterize(a["means"], a["quats"], a["scales"], a["opacities"], channels.to(self.device),
                         viewmat.to(self.device), K.to(self.device), width, height, backend=backend)

    def activated(self) -> dict[str, torch.Tensor]:
        return activated(self.params)  # type: ignore[arg-type]
