"""What a running sweep reports: Progress (the live line, counted in points) and SweepSummary (its
end). Plain data, apart from the coordinator so that readers of them need not import Ray."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class Progress:
    total: int
    done: int
    running: int
    failed: int
    skipped: int
    eta_s: float | None
    best: float | None
    outage: str | None
    pruned: int = 0  # runs stopped by a pruning decision (KILLED), not failures
    writes_pending: int = 0  # runs still to write to MLflow (shown once the runs are done)
    writes_eta_s: float | None = None


@dataclass
class SweepSummary:
    sweep: str
    status: str  # FINISHED | KILLED | FAILED (the coordinator itself broke)
    total: int
    skipped: int
    finished: int
    failed: int
    cancelled: int
    wall_s: float
    best: float | None = None
    best_params: dict[str, Any] | None = None
    outage: str | None = None
    spool: str | None = None  # set when writes are still waiting in the journal (the store was down)
    writes_pending: int = 0  # how many of them
    rejected_writes: list[str] = field(default_factory=list)
    tasks: int = 0  # Ray tasks submitted: one per unit of work (fewer than runs where points share a unit)
    compute_s: float = 0.0  # sum of the runs' own wall times (what ideal scheduling would pack)
    scheduled_s: float = 0.0  # until the last result came back (wall_s adds the final MLflow flush)
    pruned: int = 0  # runs stopped by a pruning decision (status KILLED, reason "pruned at step S ...")
    notes: list[str] = field(default_factory=list)  # one line each, e.g. a pruner that judged runs after they ended
    phases: dict[str, float] = field(default_factory=dict)  # seconds per phase, in order (STUDY_TIMING=1 prints them)
