"""Action feedback bookkeeping: every stage begun is reported, progress never goes back."""
from __future__ import annotations

from langx_ros.core.reconstruct import STAGES
from langx_ros.ros.state import Progress


def test_snapshot_reports_stages_shorter_than_the_feedback_period():
    p = Progress()
    assert p.snapshot() == [("validate", 0.0, 0.0, "")]
    p.update("semantics", 0.5, "frame 1")
    p.update("lqc", 0.1, "step 10")  # semantics ended between two snapshots
    snap = p.snapshot()
    assert [s[0] for s in snap] == ["semantics", "lqc"] and snap[0][1] == 1.0 and snap[0][3] == "done"
    assert snap[1][1:] == (0.1, (STAGES.index("lqc") + 0.1) / len(STAGES), "step 10")
    assert [s[2] for s in snap] == sorted(s[2] for s in snap)
    p.update("lqc", 0.6, "step 60")
    assert p.snapshot() == [("lqc", 0.6, (STAGES.index("lqc") + 0.6) / len(STAGES), "step 60")]  # reported once
    p.update("init", 1.0, "")
    p.update("field", 0.0, "")
    assert [s[0] for s in p.snapshot()] == ["init", "field"]
