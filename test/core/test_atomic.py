"""Atomic writes leave either the old or the new file, never a partial one."""
from __future__ import annotations

import json
import os

import pytest

from langx_ros.core.atomic import atomic_write_bytes, atomic_write_json


def test_write_and_replace(tmp_path):
    p = tmp_path / "sub" / "a.json"
    atomic_write_json(p, {"a": 1})
    atomic_write_json(p, {"a": 2})
    assert json.loads(p.read_text()) == {"a": 2}
    assert os.listdir(p.parent) == ["a.json"]  # no temporary files left behind


def test_failed_write_keeps_old_file(tmp_path):
    p = tmp_path / "a.bin"
    atomic_write_bytes(p, b"old")

    class Boom:
        def __len__(self):
            raise RuntimeError("boom")

    with pytest.raises(TypeError):
        atomic_write_bytes(p, Boom())  # type: ignore[arg-type]
    assert p.read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["a.bin"]
