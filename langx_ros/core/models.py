"""Finding model weights as a robot would: in the model directory or the Hugging Face cache.

Nothing is ever downloaded. A missing model raises :class:`ModelNotFound`, which lists every
path that was tried, unless random weights are explicitly allowed, in which case the caller
builds the same architecture with random weights and the provenance says "random weights".

Layout of the model directory (``models.model_dir``)::

    open_clip/<arch>.safetensors | open_clip/<arch>.bin | open_clip/<arch>/open_clip_pytorch_model.bin
    sam2/<sam2_checkpoint>            e.g. sam2/sam2.1_hiera_small.pt
    lqc/lqc.safetensors + lqc.json    a trained LQC (langx-train-lqc)

and in the HF cache the usual ``models--<org>--<name>/snapshots/<rev>/<file>`` folders.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

# open_clip architecture -> HF repositories that publish its weights in open_clip format
OPEN_CLIP_HF_REPOS: dict[str, tuple[str, ...]] = {
    "ViT-B-16": ("timm/vit_base_patch16_clip_224.openai", "laion/CLIP-ViT-B-16-laion2B-s34B-b88K"),
    "ViT-B-32": ("timm/vit_base_patch32_clip_224.openai", "laion/CLIP-ViT-B-32-laion2B-s34B-b79K"),
    "ViT-L-14": ("timm/vit_large_patch14_clip_224.openai", "laion/CLIP-ViT-L-14-laion2B-s32B-b82K"),
}
OPEN_CLIP_FILES = ("open_clip_model.safetensors", "open_clip_pytorch_model.bin")

# SAM2 checkpoint file -> its packaged config
SAM2_CONFIGS = {
    "sam2.1_hiera_tiny.pt": "configs/sam2.1/sam2.1_hiera_t.yaml",
    "sam2.1_hiera_small.pt": "configs/sam2.1/sam2.1_hiera_s.yaml",
    "sam2.1_hiera_base_plus.pt": "configs/sam2.1/sam2.1_hiera_b+.yaml",
    "sam2.1_hiera_large.pt": "configs/sam2.1/sam2.1_hiera_l.yaml",
}
SAM2_HF_REPOS = {
    "sam2.1_hiera_tiny.pt": "facebook/sam2.1-hiera-tiny",
    "sam2.1_hiera_small.pt": "facebook/sam2.1-hiera-small",
    "sam2.1_hiera_base_plus.pt": "facebook/sam2.1-hiera-base-plus",
    "sam2.1_hiera_large.pt": "facebook/sam2.1-hiera-large",
}


class ModelNotFound(FileNotFoundError):
    """No weights for a model; the message lists every place that was looked at."""

    def __init__(self, what: str, tried: Iterable[Path], hint: str = ""):
        self.tried = [Path(p) for p in tried]
        lines = "\n  ".join(str(p) for p in self.tried)
        super().__init__(f"{what}: no weights found. Looked for:\n  {lines}" + (f"\n{hint}" if hint else ""))


@dataclass(frozen=True)
class WeightsLocation:
    """Where the weights are: a real file, or None for random weights (then ``note`` says why)."""

    path: Path | None
    note: str

    @property
    def random(self) -> bool:
        return self.path is None


def hf_cache_dirs(hf_cache: str = "") -> list[Path]:
    """The Hugging Face hub cache folders to search, in order."""
    if hf_cache:
        return [Path(hf_cache).expanduser()]
    out = []
    for var in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE"):
        if os.environ.get(var):
            out.append(Path(os.environ[var]).expanduser())
    if os.environ.get("HF_HOME"):
        out.append(Path(os.environ["HF_HOME"]).expanduser() / "hub")
    out.append(Path("~/.cache/huggingface/hub").expanduser())
    return out


def _hf_candidates(repo: str, filename: str, caches: list[Path]) -> list[Path]:
    out = []
    for cache in caches:
        snaps = cache / f"models--{repo.replace('/', '--')}" / "snapshots"
        found = sorted(snaps.glob(f"*/{filename}")) if snaps.is_dir() else []
        out.extend(found or [snaps / "<revision>" / filename])
    return out


def find_weights(what: str, candidates: list[Path], allow_random: bool, hint: str = "") -> WeightsLocation:
    """The first existing candidate, else random weights when allowed, else ModelNotFound."""
    for p in candidates:
        if p.is_file():
            from langx_ros.core.checkpoints import weights_note

            return WeightsLocation(p, weights_note(p))  # a rehearsal file says RANDOM WEIGHTS
    if allow_random:
        return WeightsLocation(None, "RANDOM WEIGHTS (no weights found; models.allow_random_weights is true)")
    raise ModelNotFound(what, candidates, hint)


def open_clip_weights(arch: str, model_dir: str, hf_cache: str = "", allow_random: bool = False) -> WeightsLocation:
    root = Path(model_dir).expanduser() / "open_clip"
    cands = [root / f"{arch}.safetensors", root / f"{arch}.bin"] + [root / arch / f for f in OPEN_CLIP_FILES]
    caches = hf_cache_dirs(hf_cache)
    for repo in OPEN_CLIP_HF_REPOS.get(arch, ()):
        for f in OPEN_CLIP_FILES:
            cands += _hf_candidates(repo, f, caches)
    return find_weights(f"open_clip {arch}", cands, allow_random,
                        f"Copy an open_clip checkpoint of {arch} to {root}/{arch}.safetensors (or into the HF cache).")


def sam2_weights(checkpoint: str, model_dir: str, hf_cache: str = "", allow_random: bool = False) -> WeightsLocation:
    if checkpoint not in SAM2_CONFIGS:
        raise ValueError(f"unknown SAM2 checkpoint '{checkpoint}' (known: {', '.join(SAM2_CONFIGS)})")
    cands = [Path(model_dir).expanduser() / "sam2" / checkpoint]
    cands += _hf_candidates(SAM2_HF_REPOS[checkpoint], checkpoint, hf_cache_dirs(hf_cache))
    return find_weights(f"SAM2 {checkpoint}", cands, allow_random,
                        f"Copy {checkpoint} (from the SAM2 release) to {cands[0]}.")


def _resolved(find: Callable[[], WeightsLocation], missing_note: str) -> str:
    try:
        loc = find()
        return loc.note if loc.note.startswith("RANDOM") else str(loc.path)
    except ModelNotFound:
        return f"missing ({missing_note})"
    except ValueError as exc:
        return f"error: {exc}"


def inventory(cfg) -> dict[str, str]:
    """What the configured models resolve to, one line each (for start-up logs and
    /diagnostics): a path, or what is missing and what happens instead. ``cfg``: LangxConfig."""
    from langx_ros.core.checkpoints import folder_random_note
    from langx_ros.core.trimap.interpolate import REQUIRED, missing_model_files

    m, ckpt, lqc = cfg.models, cfg.segment.sam2_checkpoint, cfg.reconstruct.lqc_path
    folder = Path(m.model_dir).expanduser() / cfg.trimap.model_subdir
    missing = missing_model_files(folder)
    return {
        f"open_clip {m.clip_model}": _resolved(lambda: open_clip_weights(m.clip_model, m.model_dir, m.hf_cache),
                                               "RANDOM WEIGHTS will be used: models.allow_random_weights" if m.allow_random_weights
                                               else "needed by semantics.source 'clip'"),
        f"SAM2 {ckpt}": _resolved(lambda: sam2_weights(ckpt, m.model_dir, m.hf_cache), "superpixel fallback"),
        "LQC": (lqc if Path(lqc).expanduser().with_suffix(".safetensors").is_file() else f"missing: {lqc}") if lqc
        else "per-scene (reconstruct.lqc_path empty)",
        "TriMap": (f"{folder}" + (f" (RANDOM WEIGHTS: {note})" if (note := folder_random_note(folder)) else "")
                   if not missing else f"missing ({len(missing)} of {len(REQUIRED)} required files; use_trimap refused)"),
    }
