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


def test_to_host_and_to_device_round_trip_on_every_device_present():
    import numpy as np

    from langx_ros.core.device import to_device, to_host

    devices = [torch.device("cpu")] + ([torch.device("cuda")] if torch.cuda.is_available() else [])
    for dev in devices:
        a = np.arange(12, dtype=np.int64).reshape(3, 4)
        t = to_device(a, dev)
        assert t.device.type == dev.type and t.dtype == torch.int64
        x, y = to_host(t * 2, (t + 0.5).float())
        assert np.array_equal(x, a * 2) and np.allclose(y, a + 0.5) and isinstance(y, np.ndarray)
