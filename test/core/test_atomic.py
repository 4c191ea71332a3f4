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


# ---- named folders: publish_dir / recover_dirs -----------------------------------------------
from langx_ros.core.atomic import COMPLETE, new_temp_dir, publish_dir, recover_dirs  # noqa: E402


def _version(dest, text):
    tmp = new_temp_dir(dest)
    (tmp / "data.txt").write_text(text)
    return tmp


def _hidden(root):
    return sorted(p.name for p in root.iterdir() if p.name.startswith("."))


def test_publish_swaps_a_link_and_removes_the_old_version(tmp_path):
    dest = tmp_path / "f"
    publish_dir(_version(dest, "one"), dest)
    first = dest.resolve()
    publish_dir(_version(dest, "two"), dest)
    assert dest.is_symlink() and (dest / "data.txt").read_text() == "two" and (dest / COMPLETE).is_file()
    assert not first.exists() and _hidden(tmp_path) == [dest.resolve().name]
    legacy = tmp_path / "g"  # a folder saved before versions is replaced too
    legacy.mkdir()
    (legacy / "data.txt").write_text("old")
    publish_dir(_version(legacy, "new"), legacy)
    assert legacy.is_symlink() and (legacy / "data.txt").read_text() == "new"
    assert len(_hidden(tmp_path)) == 2  # the versions of f and g, nothing else
    assert recover_dirs(tmp_path) == []  # a clean folder needs nothing


def test_recovery_of_every_state_an_interrupted_save_can_leave(tmp_path):
    dest = tmp_path / "f"
    publish_dir(_version(dest, "old"), dest)
    # killed after the new version was complete and renamed, before the link swap
    new = tmp_path / ".f.v-99999999999999999999-1"
    new.mkdir()
    (new / "data.txt").write_text("new")
    (new / COMPLETE).write_text("")
    # and a temporary folder of a later save, a temporary file, a half-removed folder, a stray link
    _version(dest, "half")
    (tmp_path / ".f.abcd1234.tmp").write_bytes(b"x")
    (tmp_path / ".kf-000001.trash-1-2").mkdir()
    os.symlink(new.name, tmp_path / ".f.link-1-2")
    done = recover_dirs(tmp_path)
    assert (dest / "data.txt").read_text() == "old"  # the name still resolves to the version it named
    assert _hidden(tmp_path) == [dest.resolve().name] and len(done) == 5, done

    # the earlier two-rename save killed between its renames: only '.v.old-*' and a temporary folder
    old = tmp_path / ".v.old-123"
    old.mkdir()
    for n in ("field.json", "field.safetensors", "lqc.safetensors"):
        (old / n).write_text(n)
    (tmp_path / ".v.k2j4h5g6").mkdir()
    from langx_ros.core.field.io import is_saved_field

    done = recover_dirs(tmp_path, is_saved_field)
    assert (tmp_path / "v").is_symlink() and (tmp_path / "v" / "field.json").read_text() == "field.json"
    assert any("restored 'v'" in d for d in done) and sorted(_hidden(tmp_path)) == sorted([dest.resolve().name, ".v.old-123"])

    # a link whose version vanished, with a complete older version beside it: restored from that
    os.unlink(tmp_path / "v")
    os.symlink(".v.v-missing", tmp_path / "v")
    assert any("restored 'v' from .v.old-123" in d for d in recover_dirs(tmp_path, is_saved_field))
    (tmp_path / "w").symlink_to(".w.v-gone")  # no version at all: the dangling name goes
    assert recover_dirs(tmp_path) == ["removed 'w': its link pointed at no complete version"]
    assert not (tmp_path / "w").is_symlink() and (tmp_path / "f" / "data.txt").read_text() == "old"
