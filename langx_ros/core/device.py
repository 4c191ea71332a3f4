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


def to_host(*tensors: torch.Tensor) -> list:
    """The tensors as host numpy arrays, with one wait: on CUDA every copy is queued (non-blocking,
    into pinned memory) and the stream is synchronised once, instead of once per copy."""
    cuda = [t for t in tensors if t.device.type == "cuda"]
    if not cuda:
        return [t.numpy() for t in tensors]
    host = [t.to("cpu", non_blocking=True) if t.device.type == "cuda" else t for t in tensors]
    torch.cuda.current_stream(cuda[0].device).synchronize()
    return [h.numpy() for h in host]


def to_device(array, device: torch.device) -> torch.Tensor:
    """A host numpy array on ``device`` without waiting for the device: on CUDA from pinned memory,
    non-blocking (a copy from pageable memory would synchronise the stream first)."""
    t = torch.from_numpy(array)
    if device.type == "cuda":
        return t.pin_memory().to(device, non_blocking=True)
    return t.to(device)
