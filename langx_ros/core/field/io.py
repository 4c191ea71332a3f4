"""Saving and loading fields (safetensors + JSON, no pickle), and PLY export.

A saved field is a folder: ``field.safetensors`` (Gaussian parameters), ``field.json`` (levels,
provenance, meta), ``lqc.safetensors`` + ``lqc.json``. The folder is written under a temporary
name and renamed into place, so a reader never sees half a field and a failed save leaves the
previous one intact.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import torch

from langx_ros.core.atomic import atomic_write_bytes, atomic_write_json, new_temp_dir, publish_dir
from langx_ros.core.field.model import LanguageField
from langx_ros.core.field.surface import SurfaceSamples
from langx_ros.core.lqc import LQC

FORMAT = "langx_field/1"
PARAM_KEYS = ("means", "quats", "scales", "opacities", "colors", "sem")
OBSERVATION_KEYS = ("evidence", "normals", "labelled", "agree_views")  # registration results (absent in older fields)
SURFACE_KEYS = ("surface_points", "surface_colors", "surface_owner")  # surface samples (absent in older fields)
SURFACE_CODE = "surface_code"  # the samples' own labels (absent in older fields)


def save_field(field: LanguageField, folder: str | Path) -> Path:
    """Write ``field`` to ``folder``, atomically in the strict sense: ``folder`` is a link to a
    complete version folder, swapped in one rename (core/atomic.publish_dir), so at every instant
    it names the complete old field or the complete new one."""
    from safetensors.torch import save

    folder = Path(folder)
    tmp = new_temp_dir(folder)
    try:
        tensors = {k: field.params[k].detach().cpu().contiguous() for k in PARAM_KEYS}
        for k in OBSERVATION_KEYS:
            if getattr(field, k) is not None:
                tensors[k] = getattr(field, k).detach().cpu().contiguous()
        if field.surface is not None:
            sf = field.surface
            for k, a in zip(SURFACE_KEYS, (sf.points, sf.colors, sf.owner)):
                tensors[k] = torch.from_numpy(np.ascontiguousarray(a))
            if sf.code is not None:
                tensors[SURFACE_CODE] = torch.from_numpy(np.ascontiguousarray(sf.code))
        atomic_write_bytes(tmp / "field.safetensors", save(tensors))
        atomic_write_json(tmp / "field.json", {"format": FORMAT, "levels": field.levels, "provenance": field.provenance,
                                              "meta": field.meta, "num_gaussians": field.num_gaussians})
        field.lqc.save(tmp / "lqc.safetensors")
        publish_dir(tmp, folder)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return folder


def is_saved_field(folder: Path) -> bool:
    """Whether ``folder`` holds every file of a saved field (for recovering interrupted saves)."""
    return all((folder / n).is_file() for n in ("field.json", "field.safetensors", "lqc.safetensors"))


def load_field(folder: str | Path, device: torch.device | str = "cpu") -> LanguageField:
    """Load a field saved by :func:`save_field`; errors name the missing or bad file."""
    from safetensors.torch import load_file

    folder = Path(folder)
    meta_path = folder / "field.json"
    if not meta_path.is_file():
        raise FileNotFoundError(f"no saved field at {folder} (missing {meta_path.name})")
    meta = json.loads(meta_path.read_text())
    if meta.get("format") != FORMAT:
        raise ValueError(f"{meta_path}: not a langx field (format {meta.get('format')!r})")
    tensors = load_file(str(folder / "field.safetensors"), device=str(device))
    missing = [k for k in PARAM_KEYS if k not in tensors]
    if missing:
        raise ValueError(f"{folder / 'field.safetensors'} lacks {', '.join(missing)}")
    n = tensors["means"].shape[0]
    if any(t.shape[0] != n for k, t in tensors.items() if k not in SURFACE_KEYS + (SURFACE_CODE,)):
        raise ValueError(f"{folder / 'field.safetensors'}: parameter lengths differ")
    surface = None
    if all(k in tensors for k in SURFACE_KEYS):
        try:
            code = tensors[SURFACE_CODE].cpu().numpy() if SURFACE_CODE in tensors else None
            surface = SurfaceSamples(*(tensors[k].cpu().numpy() for k in SURFACE_KEYS), num_gaussians=n, code=code)
        except ValueError as exc:
            raise ValueError(f"{folder / 'field.safetensors'}: {exc}") from None
    lqc = LQC.load(folder / "lqc.safetensors", device)
    params = {k: tensors[k] for k in PARAM_KEYS}
    return LanguageField(params, lqc, list(meta["levels"]), dict(meta.get("provenance", {})), dict(meta.get("meta", {})),
                         *(tensors.get(k) for k in OBSERVATION_KEYS), surface=surface)


def write_ply(path: str | Path, points: np.ndarray, colors: np.ndarray | None = None,
              scalars: dict[str, np.ndarray] | None = None) -> Path:
    """Binary little-endian PLY of points with optional uint8 colours and float scalar properties."""
    pts = np.asarray(points, dtype=np.float32).reshape(-1, 3)
    fields = [("x", "<f4"), ("y", "<f4"), ("z", "<f4")]
    if colors is not None:
        fields += [("red", "u1"), ("green", "u1"), ("blue", "u1")]
    for name in scalars or {}:
        fields.append((name, "<f4"))
    arr = np.zeros(len(pts), dtype=fields)
    arr["x"], arr["y"], arr["z"] = pts[:, 0], pts[:, 1], pts[:, 2]
    if colors is not None:
        c = np.asarray(colors, dtype=np.uint8).reshape(-1, 3)
        arr["red"], arr["green"], arr["blue"] = c[:, 0], c[:, 1], c[:, 2]
    for name, v in (scalars or {}).items():
        arr[name] = np.asarray(v, dtype=np.float32).reshape(-1)
    ply_type = {"<f4": "float", "u1": "uchar"}
    header = ["ply", "format binary_little_endian 1.0", f"element vertex {len(pts)}"]
    header += [f"property {ply_type[t]} {n}" for n, t in fields]
    header.append("end_header")
    return atomic_write_bytes(path, ("\n".join(header) + "\n").encode("ascii") + arr.tobytes())


def read_ply(path: str | Path) -> np.ndarray:
    """Read a binary little-endian PLY written by :func:`write_ply` (a structured array)."""
    data = Path(path).read_bytes()
    end = data.index(b"end_header\n") + len(b"end_header\n")
    lines = data[:end].decode("ascii").splitlines()
    if lines[1] != "format binary_little_endian 1.0":
        raise ValueError(f"{path}: only binary little-endian PLY is read here")
    n = int(next(line.split()[2] for line in lines if line.startswith("element vertex")))
    types = {"float": "<f4", "uchar": "u1"}
    fields = [(line.split()[2], types[line.split()[1]]) for line in lines if line.startswith("property")]
    return np.frombuffer(data[end:], dtype=fields, count=n)


def export_field_ply(field: LanguageField, path: str | Path) -> Path:
    """The field's Gaussian centres with colour, opacity and scale as a PLY point cloud."""
    scales = torch.exp(field.params["scales"].detach()).cpu().numpy()
    return write_ply(path, field.params["means"].detach().cpu().numpy(), field.colors_uint8(),
                     {"opacity": field.opacities().cpu().numpy(), "scale_max": scales.max(1), "scale_min": scales.min(1)})


def export_match_ply(match, path: str | Path) -> Path:
    """A query answer's points (world frame) with colour and relevancy as a PLY point cloud."""
    return write_ply(path, match.points, match.colors, {"relevancy": match.relevancy})
