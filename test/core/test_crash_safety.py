"""kill -9 at random points of saving a field and of capturing/rotating keyframes: after the
restart's recovery every name that existed resolves to a complete version and nothing is left
behind (the saves run in a child process that is killed while it works)."""
from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

from langx_ros.core.atomic import recover_dirs
from langx_ros.core.field.io import is_saved_field, load_field
from langx_ros.core.keyframes import KeyframeStore

REPO = Path(__file__).resolve().parents[2]

FIELD_WRITER = """
import sys, torch
from langx_ros.core.field.io import save_field
from langx_ros.core.field.model import LanguageField
from langx_ros.core.lqc import LQC, LQCConfig
root, n = sys.argv[1], 150_000
lqc = LQC(LQCConfig(feature_dim=8, codebook_size=4, hidden=[8]))
for i in range(1, 10**6):
    v = float(i)
    params = {"means": torch.full((n, 3), v), "quats": torch.full((n, 4), v), "scales": torch.full((n, 3), v),
              "opacities": torch.full((n,), v), "colors": torch.full((n, 3), v), "sem": torch.full((n, 3), v)}
    save_field(LanguageField(params, lqc, ["instance"], {}, {"i": i}), root + "/victim")
    print(i, flush=True)
"""

KEYFRAME_WRITER = """
import sys, numpy as np
from langx_ros.core.frames import Frame
from langx_ros.core.keyframes import KeyframeStore
store = KeyframeStore(sys.argv[1], 3)
K = np.array([[50.0, 0, 32], [0, 50.0, 24], [0, 0, 1]])
rng = np.random.default_rng(0)
for i in range(1, 10**6):
    pose = np.eye(4); pose[0, 3] = 0.01 * i
    f = Frame(f"cam@{i}", rng.integers(0, 255, (240, 320, 3), dtype=np.uint8), K, pose,
              rng.uniform(0.5, 3.0, (240, 320)).astype(np.float32), float(i))
    print(store.add(f, "cam"), flush=True)
"""


def _run_and_kill(code: str, root: Path, rng: random.Random) -> list[str]:
    """Start the writer, let it confirm at least one write, kill -9 it at a random moment; returns
    the lines it printed (each a confirmed write)."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    p = subprocess.Popen([sys.executable, "-c", code, str(root)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    first = p.stdout.readline()
    assert first, p.stderr.read()
    time.sleep(rng.uniform(0.0, 0.6))
    os.kill(p.pid, signal.SIGKILL)
    rest, _ = p.communicate()
    return [first.strip(), *rest.split()]


def test_kill_9_during_field_saves_leaves_the_name_complete(tmp_path):
    rng = random.Random(7)
    for trial in range(6):
        root = tmp_path / f"t{trial}"
        root.mkdir()
        confirmed = _run_and_kill(FIELD_WRITER, root, rng)
        last = int(confirmed[-1])
        recover_dirs(root, is_saved_field)  # what the node does at start
        f = load_field(root / "victim")
        i = f.meta["i"]
        assert i in (last, last + 1), (i, last)  # the last confirmed save, or the one in flight had finished
        assert torch.all(f.params["means"] == float(i)) and torch.all(f.params["sem"] == float(i))  # one version, whole
        hidden = [p.name for p in root.iterdir() if p.name.startswith(".")]
        assert hidden == [(root / "victim").resolve().name], hidden  # nothing else left behind


def test_kill_9_during_keyframe_capture_and_rotation_leaves_whole_keyframes(tmp_path):
    rng = random.Random(11)
    for trial in range(6):
        root = tmp_path / f"t{trial}"
        confirmed = _run_and_kill(KEYFRAME_WRITER, root, rng)
        store = KeyframeStore(root, 3)
        assert store.skipped == [], store.skipped  # every keyframe folder there reads back whole
        assert not [p.name for p in root.iterdir() if p.name.startswith(".")]
        assert confirmed[-1] in store.ids() or max(store.ids()) > confirmed[-1], (confirmed[-1], store.ids())
        assert all(np.isfinite(store.frames[k].pose).all() for k in store.ids())
