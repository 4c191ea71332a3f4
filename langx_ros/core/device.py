"""Compute device selection: a parameter, never an assumption."""
from __future__ import annotations

import torch


def resolve_device(name: str) -> torch.device:
    """'auto' -> CUDA when available else CPU; otherwise the named device, checked.

    Raises:
        ValueError: for a malformed name or a CUDA device this machine does not have.
    """
    name = name.strip().lower()
    if name == "auto":
        return torch.device("cuda:0" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(name)
    except RuntimeError as exc:
        raise ValueError(f"unknown device '{name}' (use auto, cpu, cuda or cuda:N)") from exc
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device '{name}' requested but this machine has no CUDA GPU (use 'auto' or 'cpu')")
        index = dev.index or 0
        if index >= torch.cuda.device_count():
            raise ValueError(f"device '{name}' requested but only {torch.cuda.device_count()} GPU(s) exist")
        return torch.device("cuda", index)
    if dev.type != "cpu":
        raise ValueError(f"unsupported device '{name}' (use auto, cpu, cuda or cuda:N)")
    return dev
