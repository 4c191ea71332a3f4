"""Loading checkpoints in their upstream formats, with errors that name the file and what was
expected, and the mark of rehearsal checkpoints (random values in the real layout).

- open_clip: a state dict as ``open_clip_model.safetensors`` (the HF hub's open_clip files, e.g.
  timm/vit_base_patch16_clip_224.openai) or ``open_clip_pytorch_model.bin`` / any torch file,
  loaded by open_clip's own ``load_checkpoint`` (its key conversions included).
- SAM2: the release ``.pt`` files, ``{"model": state_dict}`` (sam2.1_hiera_small.pt ...).

A rehearsal checkpoint (scripts/rehearse_weights.py: the exact file layout a user copies, filled
with random values, to rehearse the first run without the real weights) carries the key
``langx_rehearsal`` (safetensors metadata, or a top-level key of a torch file); everything built
on it says RANDOM WEIGHTS.
"""
from __future__ import annotations

from pathlib import Path

import torch

REHEARSAL_KEY = "langx_rehearsal"


class CheckpointError(ValueError):
    """A weights file that is not in the format or layout expected (the message says which)."""


def rehearsal_note(path: str | Path) -> str | None:
    """The rehearsal mark of a checkpoint file, or None for a real one (cheap: reads the
    safetensors header, or maps the torch file)."""
    path = Path(path)
    try:
        if path.suffix == ".safetensors":
            from safetensors import safe_open

            with safe_open(str(path), "pt") as f:
                return (f.metadata() or {}).get(REHEARSAL_KEY)
        obj = torch.load(str(path), map_location="cpu", weights_only=True, mmap=True)
    except Exception:  # unreadable files are reported by the loader, with the reason
        return None
    return obj.get(REHEARSAL_KEY) if isinstance(obj, dict) and isinstance(obj.get(REHEARSAL_KEY), str) else None


def folder_random_note(folder: str | Path) -> str | None:
    """Why a diffusers model folder holds random weights (the rehearsal mark, or the "RANDOM"
    note of the tiny test model in its model_index.json), or None for a real one."""
    import json

    try:
        index = json.loads((Path(folder) / "model_index.json").read_text())
    except (OSError, ValueError):
        return None
    if REHEARSAL_KEY in index:
        return str(index[REHEARSAL_KEY])
    return str(index["_note"]) if "RANDOM" in str(index.get("_note", "")) else None


def weights_note(path: str | Path) -> str:
    """What to say about weights loaded from ``path``."""
    mark = rehearsal_note(path)
    return f"RANDOM WEIGHTS (rehearsal checkpoint {path}: {mark})" if mark else f"real weights ({path})"


def _mismatch(path: Path, what: str, missing: list[str], unexpected: list[str]) -> CheckpointError:
    return CheckpointError(
        f"{path}: not a {what} checkpoint in the expected layout: {len(missing)} of the model's keys missing "
        f"(e.g. {', '.join(missing[:3]) or '-'}), {len(unexpected)} unexpected (e.g. {', '.join(unexpected[:3]) or '-'})")


def load_open_clip(model: torch.nn.Module, path: str | Path, arch: str) -> None:
    """Load an open_clip state dict into ``model`` (open_clip's ``load_checkpoint``: its key
    conversions, strict); raises CheckpointError naming the file and what was expected."""
    import open_clip

    path = Path(path)
    what = f"open_clip {arch}"
    if path.suffix not in (".safetensors", ".bin", ".pt", ".pth"):
        raise CheckpointError(f"{path}: an open_clip checkpoint is a .safetensors or torch (.bin/.pt) file of {what}'s state dict")
    try:
        incompatible = open_clip.load_checkpoint(model, str(path), strict=False)
    except Exception as exc:
        raise CheckpointError(f"{path}: cannot be read as {what}'s state dict ({type(exc).__name__}: {str(exc)[:300]}); "
                              "expected open_clip_model.safetensors or open_clip_pytorch_model.bin as published for "
                              f"{what}") from exc
    missing = list(getattr(incompatible, "missing_keys", []))
    unexpected = [k for k in getattr(incompatible, "unexpected_keys", []) if k != REHEARSAL_KEY]
    if missing or unexpected:
        raise _mismatch(path, what, missing, unexpected)


def load_sam2(model: torch.nn.Module, path: str | Path, name: str) -> None:
    """Load a SAM2 release checkpoint (``{"model": state_dict}``) into ``model``, strictly."""
    path = Path(path)
    what = f"SAM2 {name}"
    try:
        ckpt = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:
        raise CheckpointError(f"{path}: cannot be read as a torch checkpoint ({type(exc).__name__}: {str(exc)[:300]}); "
                              f"expected the {what} release file") from exc
    if not isinstance(ckpt, dict) or not isinstance(ckpt.get("model"), dict):
        keys = list(ckpt)[:5] if isinstance(ckpt, dict) else type(ckpt).__name__
        raise CheckpointError(f"{path}: expected SAM2's release layout {{'model': state_dict}}, found {keys}")
    result = model.load_state_dict(ckpt["model"], strict=False)
    if result.missing_keys or result.unexpected_keys:
        raise _mismatch(path, what, list(result.missing_keys), list(result.unexpected_keys))
