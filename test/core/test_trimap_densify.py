"""densify(): the batch it asks for (RGB, normals, one semantic video per level) and how the
generated videos come back as views (colour, unit normals, mask ids in the pair's id space)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from langx_ros.core.frames import normals_from_depth
from langx_ros.core.synthetic import make_scene
from langx_ros.core.trimap.densify import _from_model, _to_model, densify
from langx_ros.core.trimap.interpolate import TriMapConfig
from langx_ros.core.trimap.segment_match import shared_ids


class HoldInterpolator:
    """Test double with the interpolator's call signature: the first half of the video repeats
    the first key frame, the rest the last one (so what comes back is known exactly)."""

    execution_device = torch.device("cpu")

    def __init__(self):
        self.calls = []

    def __call__(self, first, last, num_frames, steps, guidance, seed=0, pin_keyframes=True, guidance_fraction=1.0, on_step=None):
        self.calls.append({"batch": first.shape[0], "seed": seed, "guidance_fraction": guidance_fraction})
        for i in range(steps):
            on_step(i + 1, steps)
        video = torch.stack([first if i < num_frames // 2 else last for i in range(num_frames)], 1)
        return video


@pytest.fixture(scope="module")
def scene():
    return make_scene(3, 48, 32, span_deg=90.0)


def test_generated_views_carry_colour_normals_and_shared_mask_ids(scene):
    cfg = TriMapConfig(width=96, height=64, num_frames=9, steps=2, seed=7, guidance_fraction=0.5)  # 2x the frames: resized both ways
    interp = HoldInterpolator()
    out = densify(scene.frames, interp, cfg, [[ins] for ins in scene.instances])
    assert [c["batch"] for c in interp.calls] == [3, 3]  # RGB + normals + one semantic level, per pair
    assert [c["seed"] for c in interp.calls] == [7, 10] and interp.calls[0]["guidance_fraction"] == 0.5
    assert len(out.views) == 2 * 7 and out.views[0].frame.frame_id == "gen-view-000-view-001-01"
    ids = shared_ids(scene.instances[0], scene.instances[1], scene.frames[0], scene.frames[1], cfg.semantic_colors)
    early, late = out.views[0], out.views[6]  # frame 1 holds key frame 0; frame 7 holds key frame 1
    assert np.array_equal(early.segments[0], ids.first) and np.array_equal(late.segments[0], ids.second)
    assert early.frame.rgb.shape == scene.frames[0].rgb.shape
    there_and_back = _from_model(_to_model(scene.frames[0].rgb / 255.0, 96, 64), 48, 32, "bilinear")  # bilinear both ways
    assert np.abs(early.frame.rgb.astype(int) - np.clip(there_and_back * 255 + 0.5, 0, 255).astype(int)).max() <= 1
    n0 = normals_from_depth(scene.frames[0].depth, scene.frames[0].K, scene.frames[0].pose)
    ok = np.isfinite(n0).all(-1) & np.isfinite(early.normals).all(-1)
    assert ok.mean() > 0.5 and np.median(np.abs(early.normals[ok] - n0[ok])) < 1e-3
    assert early.frame.depth is None and not np.allclose(early.frame.pose, scene.frames[0].pose)
    assert any("matched" in n for n in out.notes)


def test_without_semantics_or_depth(scene):
    import dataclasses

    cfg = TriMapConfig(width=48, height=32, num_frames=9, steps=2)
    interp = HoldInterpolator()
    frames = [dataclasses.replace(f, depth=None) for f in scene.frames[:2]]
    out = densify(frames, interp, cfg, None)
    assert interp.calls[0]["batch"] == 2 and out.views[0].segments == []
    assert np.isnan(out.views[0].normals).all()  # a grey condition decodes to no direction
    assert any("neutral grey normal condition" in n for n in out.notes)


def test_progress_per_step_and_cancel_between_steps(scene):
    from langx_ros.core.field.train import Cancelled

    cfg = TriMapConfig(width=48, height=32, num_frames=9, steps=4)
    seen = []
    densify(scene.frames, HoldInterpolator(), cfg, None, progress=lambda fr, d: seen.append((fr, d)))
    assert len(seen) == 2 * 4 and seen[0] == (0.125, "pair 1/2 (view-000 -> view-001): step 1/4") and seen[-1][0] == 1.0
    calls = []
    with pytest.raises(Cancelled, match="pair 2/2 \\(step 1/4\\)"):
        densify(scene.frames, HoldInterpolator(), cfg, None, cancel=lambda: calls.append(1) or len(calls) > 4)
