"""Device selection is explicit and checked."""
from __future__ import annotations

import pytest
import torch

from langx_ros.core.device import resolve_device


def test_auto_and_cpu():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device(" AUTO ") == torch.device("cuda:0" if torch.cuda.is_available() else "cpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on a machine without CUDA")
def test_cuda_without_gpu_is_an_error():
    with pytest.raises(ValueError, match="no CUDA GPU"):
        resolve_device("cuda:0")


@pytest.mark.parametrize("name", ["tpu", "meta", "cuda:x"])
def test_unknown_devices(name):
    with pytest.raises(ValueError, match="device"):
        resolve_device(name)
