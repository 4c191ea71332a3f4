"""Atomic writes: a reader (or a crash) never sees a half-written file or folder.

Files: written under a temporary name, fsynced, renamed into place. Named folders (saved
fields): written into a hidden version folder and published by swapping a symbolic link in one
rename (:func:`publish_dir`); :func:`recover_dirs` repairs what a crash left behind.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any, Callable


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` via a temporary file in the same folder, fsync and rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    return path


def atomic_write_json(path: str | Path, obj: Any) -> Path:
    """Write ``obj`` as indented UTF-8 JSON, atomically."""
    return atomic_write_bytes(path, (json.dumps(obj, indent=2, sort_keys=False) + "\n").encode("utf-8"))


# --------------------------------------------------------------------------------------------
# Named folders replaced atomically (saved fields), and what an interrupted write leaves
# --------------------------------------------------------------------------------------------
COMPLETE = ".complete"  # written last into a version folder: the folder is whole
_HIDDEN = re.compile(r"^\.(?P<name>.+)\.(?P<kind>v|link|old|trash)-(?P<tag>[^/]*)$")
_TEMP = re.compile(r"^\.(?P<name>.+)\.(?P<tag>[A-Za-z0-9_]{8})(?:\.tmp)?$")  # tempfile.mkdtemp/mkstemp names


def fsync_dir(path: str | Path) -> None:
    """Make the entries of folder ``path`` (renames, new names) durable."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def new_temp_dir(dest: str | Path) -> Path:
    """An empty hidden folder beside ``dest`` to write its next version into."""
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=f".{dest.name}.", dir=dest.parent))


def publish_dir(tmp: str | Path, dest: str | Path) -> Path:
    """Make the fully written folder ``tmp`` (beside ``dest``) the content of ``dest``, atomically.

    ``tmp`` becomes the hidden version folder ``.<name>.v-<time>`` (marked complete) and ``dest``
    a symbolic link to it, swapped in by one rename: at every instant ``dest`` resolves to the
    complete old version or the complete new one, whatever happens (kill -9, power loss).
    The old version is removed afterwards; :func:`recover_dirs` removes what a crash left.
    """
    tmp, dest = Path(tmp), Path(dest)
    parent = dest.parent
    atomic_write_bytes(tmp / COMPLETE, b"")
    fsync_dir(tmp)
    tag = f"{time.time_ns():020d}-{os.getpid()}"
    version = parent / f".{dest.name}.v-{tag}"
    os.rename(tmp, version)
    link = parent / f".{dest.name}.link-{tag}"
    os.symlink(version.name, link)
    old: Path | None = None
    if dest.is_symlink():
        old = parent / os.readlink(dest)
    elif dest.is_dir():  # a folder saved before versions: keep it as a version until the link is in
        old = parent / f".{dest.name}.old-{tag}"
        os.rename(dest, old)
    os.replace(link, dest)
    fsync_dir(parent)
    if old is not None and old.resolve() != version.resolve():
        remove_tree(old)
    return dest


def remove_tree(path: str | Path) -> None:
    """Remove a folder so that a crash half-way leaves no half folder under its name: it is
    renamed to a hidden ``.<name>.trash-*`` first (cleaned by :func:`recover_dirs`)."""
    path = Path(path)
    if not path.exists() and not path.is_symlink():
        return
    if path.is_symlink():
        target = path.parent / os.readlink(path)
        os.unlink(path)
        remove_tree(target)
        return
    name = path.name[1:] if path.name.startswith(".") else path.name
    trash = path.with_name(f".{name}.trash-{time.time_ns()}-{os.getpid()}")
    os.rename(path, trash)
    shutil.rmtree(trash, ignore_errors=True)


def recover_dirs(root: str | Path, complete: Callable[[Path], bool] | None = None) -> list[str]:
    """Repair ``root`` after interrupted writes; returns what was done, one line each.

    - a name whose link is missing or dangling (a crash inside a save, or a save of the
      earlier two-rename kind) is pointed at its newest complete version (a ``.v-`` folder
      marked complete, or an ``.old-`` folder that ``complete`` accepts);
    - every other hidden leftover (unreferenced versions, temporary folders and files, trash)
      is removed.
    Visible folders are never touched (an unreadable one is the caller's to report).
    """
    root = Path(root)
    if not root.is_dir():
        return []
    done: list[str] = []
    entries = {p.name: p for p in root.iterdir()}
    hidden: dict[str, list[tuple[str, str, Path]]] = {}
    for nm, p in entries.items():
        m = _HIDDEN.match(nm)
        if m:
            hidden.setdefault(m["name"], []).append((m["kind"], m["tag"], p))
            continue
        m = _TEMP.match(nm)
        if m:
            hidden.setdefault(m["name"], []).append(("tmp", m["tag"], p))
        elif p.is_symlink() and not nm.startswith("."):
            hidden.setdefault(nm, [])  # a saved name: check where its link points
    for name, items in sorted(hidden.items()):
        dest = root / name
        keep: Path | None = None
        if dest.is_symlink() and (dest.resolve() / COMPLETE).is_file():
            keep = dest.resolve()
        elif not dest.exists() or dest.is_symlink():  # missing or dangling: restore the newest complete version
            versions = sorted(((tag, kind, p) for kind, tag, p in items
                               if p.is_dir() and not p.is_symlink() and (
                                   (kind == "v" and (p / COMPLETE).is_file()) or (kind == "old" and complete is not None and complete(p)))),
                              reverse=True)
            if versions:
                tag, kind, p = versions[0]
                if kind == "old":
                    atomic_write_bytes(p / COMPLETE, b"")
                link = root / f".{name}.link-recover-{os.getpid()}"
                if link.is_symlink():
                    os.unlink(link)
                os.symlink(p.name, link)
                os.replace(link, dest)
                fsync_dir(root)
                keep = p
                done.append(f"restored '{name}' from {p.name} (an interrupted save had left it without its link)")
            elif dest.is_symlink():
                os.unlink(dest)
                done.append(f"removed '{name}': its link pointed at no complete version")
        for kind, tag, p in items:
            if keep is not None and p.resolve() == keep.resolve():
                continue
            if p.is_dir() and not p.is_symlink():
                shutil.rmtree(p, ignore_errors=True)
            else:
                p.unlink(missing_ok=True)
            done.append(f"removed leftover {p.name}")
    return done
