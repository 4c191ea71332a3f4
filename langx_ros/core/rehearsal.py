"""Rehearse a user's first run with real weights, without them: every model written in the exact
file layout and format a user copies, filled with random values.

- open_clip ViT-B-16 as the HF cache's ``models--timm--vit_base_patch16_clip_224.openai``
  snapshot (``open_clip_model.safetensors``, refs/main naming the snapshot);
- SAM2.1 hiera-small as ``<model_dir>/sam2/sam2.1_hiera_small.pt`` with the release's key
  layout (``{"model": state_dict}``);
- a trained LQC (``<model_dir>/lqc/lqc.safetensors`` + ``lqc.json``, fitted on random
  features as langx-train-lqc would on real ones);
- a TriMap diffusers folder (``<model_dir>/<trimap.model_subdir>``: model_index.json,
  transformer/, vae/, scheduler/, prompt cache) at toy size.

Each file carries the rehearsal mark (core/checkpoints.REHEARSAL_KEY), so everything built on
it says RANDOM WEIGHTS; the loaders are the product's own, so a wrong key, name or format
fails as it would for a user, naming the file and what was expected.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import torch

from langx_ros.core.checkpoints import REHEARSAL_KEY

MARK = "random values in the real file layout, written by langx_ros.core.rehearsal"


@dataclass(frozen=True)
class Rehearsal:
    model_dir: Path
    hf_cache: Path
    open_clip: Path
    sam2: Path
    lqc: Path
    trimap: Path

    def params_file(self, base: str | Path, path: str | Path, overrides: dict[str, object] | None = None) -> Path:
        """A copy of the parameter file ``base`` whose models are these files (model directory, HF
        cache, trained LQC), written to ``path``: what a user's own file would say. SAM2's
        predicted-IoU cut is off (a random SAM2's IoU predictions are noise: no mask would pass).
        ``overrides``: more dotted parameters (e.g. smaller sizes for a CPU run)."""
        import yaml

        tree = yaml.safe_load(Path(base).read_text())
        p = tree["langx_node"]["ros__parameters"]
        p.setdefault("models", {}).update({"model_dir": str(self.model_dir), "hf_cache": str(self.hf_cache)})
        p.setdefault("reconstruct", {})["lqc_path"] = str(self.lqc)
        p.setdefault("segment", {})["pred_iou_threshold"] = 0.0
        for name, value in (overrides or {}).items():
            *sections, leaf = name.split(".")
            node = p
            for sec in sections:
                node = node.setdefault(sec, {})
            node[leaf] = value
        path = Path(path)
        path.write_text(yaml.safe_dump(tree, sort_keys=False))
        return path


def write_open_clip(hf_cache: Path, arch: str = "ViT-B-16", repo: str = "timm/vit_base_patch16_clip_224.openai") -> Path:
    """The HF cache snapshot of ``repo`` with a random ``arch`` state dict."""
    from safetensors.torch import save_file

    from langx_ros.core.torch_compat import ensure_torchvision

    ensure_torchvision()
    import open_clip

    torch.manual_seed(0)
    model = open_clip.create_model(arch, pretrained=None)
    state = {k: v.detach().contiguous().clone() for k, v in model.state_dict().items()}
    rev = hashlib.sha1(f"{repo}:{MARK}".encode()).hexdigest()
    repo_dir = hf_cache / f"models--{repo.replace('/', '--')}"
    snap = repo_dir / "snapshots" / rev
    snap.mkdir(parents=True, exist_ok=True)
    (repo_dir / "refs").mkdir(exist_ok=True)
    (repo_dir / "refs" / "main").write_text(rev)
    path = snap / "open_clip_model.safetensors"
    save_file(state, str(path), metadata={REHEARSAL_KEY: MARK})
    return path


def write_sam2(model_dir: Path, checkpoint: str = "sam2.1_hiera_small.pt") -> Path:
    """SAM2 of ``checkpoint``'s architecture, random, saved as the release file is."""
    from langx_ros.core.models import SAM2_CONFIGS
    from langx_ros.core.torch_compat import ensure_torchvision

    ensure_torchvision()
    from sam2.build_sam import build_sam2

    torch.manual_seed(0)
    model = build_sam2(SAM2_CONFIGS[checkpoint], None, device="cpu")
    path = model_dir / "sam2" / checkpoint
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"model": model.state_dict(), REHEARSAL_KEY: MARK}, str(path))
    return path


def write_lqc(model_dir: Path, feature_dim: int = 512, steps: int = 200) -> Path:
    """An LQC of the default architecture fitted on random unit features (as langx-train-lqc
    fits one on real CLIP features)."""
    from langx_ros.core.lqc import LQCConfig, train_lqc

    g = torch.Generator().manual_seed(0)
    feats = torch.nn.functional.normalize(torch.randn(4096, feature_dim, generator=g), dim=-1)
    lqc, _ = train_lqc(feats, LQCConfig(feature_dim=feature_dim, steps=steps, batch_size=512))
    lqc.provenance = f"RANDOM WEIGHTS (rehearsal LQC fitted on random features: {MARK})"
    return lqc.save(model_dir / "lqc" / "lqc.safetensors", {REHEARSAL_KEY: MARK})


def write_rehearsal(out: str | Path, trimap_subdir: str = "trimap", prompts: tuple[str, ...] | None = None) -> Rehearsal:
    """Write every model under ``out`` (``out/models`` is the model directory, ``out/hf`` the HF
    cache). TriMap's prompt embeddings are cached for ``prompts`` (default: the configured
    prompt and the empty negative one), as the real model's cache would hold them."""
    from langx_ros.core.trimap.interpolate import TriMapConfig
    from langx_ros.core.trimap.tiny import save_tiny_model

    if prompts is None:
        prompts = (TriMapConfig().prompt, "")
    out = Path(out)
    model_dir, hf = out / "models", out / "hf"
    trimap = save_tiny_model(model_dir / trimap_subdir, prompts, index_extra={REHEARSAL_KEY: MARK})
    return Rehearsal(model_dir, hf, write_open_clip(hf), write_sam2(model_dir), write_lqc(model_dir), trimap)
