"""What the parts of langx_node share: the field queries answer from, the running
reconstruction's progress, the last failure, and the keyframe store, under one lock."""
from __future__ import annotations

import threading
from dataclasses import dataclass, field

from langx_ros.core.keyframes import KeyframeStore
from langx_ros.core.reconstruct import STAGES


@dataclass
class Progress:
    """Shared state of a running reconstruction (written by the worker, read by feedback/status)."""

    stage: str = "validate"
    stage_progress: float = 0.0
    detail: str = ""
    cancel: threading.Event = field(default_factory=threading.Event)
    _entered: list[str] = field(default_factory=lambda: ["validate"])  # stages begun since the last snapshot
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def update(self, stage: str, fraction: float, detail: str) -> None:
        """The reconstruction's progress callback."""
        with self._lock:
            if stage != self.stage:
                self._entered.append(stage)
            self.stage, self.stage_progress, self.detail = stage, fraction, detail

    @property
    def total(self) -> float:
        return self._total(self.stage, self.stage_progress)

    @staticmethod
    def _total(stage: str, fraction: float) -> float:
        i = STAGES.index(stage) if stage in STAGES else 0
        return (i + fraction) / len(STAGES)

    def snapshot(self) -> list[tuple[str, float, float, str]]:
        """(stage, stage fraction, overall fraction, detail) of every stage begun since the last
        snapshot, then of the current one: a stage shorter than the feedback period is still
        reported (as done), and the overall fraction never goes back."""
        with self._lock:
            passed = [st for st in self._entered if st != self.stage]
            self._entered = []
            cur = (self.stage, self.stage_progress, self._total(self.stage, self.stage_progress), self.detail)
        return [(st, 1.0, self._total(st, 1.0), "done") for st in passed] + [cur]


@dataclass
class NodeState:
    """Hold ``lock`` to read or change more than one attribute together (or the store)."""

    keyframes: KeyframeStore
    lock: threading.Lock = field(default_factory=threading.Lock)
    field: object | None = None  # the LanguageField ~/query answers from (built by ~/reconstruct or loaded)
    progress: Progress | None = None  # set while a reconstruction runs
    last_error: str = ""  # why the last reconstruction failed ("" after a success)
    last_recon_s: float = -1.0
