"""The Ray task: runs a chunk of specs in a worker. Kept apart from the coordinator so that a worker
imports only this, Ray and workers/ (not MLflow or Optuna): a fresh worker starts in well under a second."""

from __future__ import annotations

import signal
import threading
from typing import Any

import ray


@ray.remote
def run_chunk(
    specs: list[dict[str, Any]], timeout_s: float | None = None, figures: bool = False
) -> tuple[str, list[dict[str, Any]]]:
    """A Ray task: run each spec (failures come back as FAILED records, never as exceptions).
    With timeout_s, an alarm stops a run that has been running that long (timed from its start,
    not from when the coordinator submitted it); the coordinator's force-cancel is the backstop
    for code that never returns to Python.
    With `figures`, a record of a run long enough to afford it carries its summary.png (study.plots)."""
    node = ray.get_runtime_context().get_node_id()
    records = _run_all(specs, timeout_s)
    if figures:
        from study.figure_budget import worth_rendering

        affordable = [record for record in records if worth_rendering(record)]
        if affordable:  # import matplotlib only in tasks that draw
            from study.plots import record_figures

            for record in affordable:
                record["figures"] = record_figures(record)
    return node, records


def _run_all(specs: list[dict[str, Any]], timeout_s: float | None) -> list[dict[str, Any]]:
    from workers.run import run

    if not timeout_s or threading.current_thread() is not threading.main_thread():
        return [run(spec).as_record() for spec in specs]
    reason = f"timeout after {timeout_s:g} s"

    def on_alarm(signum, frame):
        raise _RunTimeout(reason)

    previous = signal.signal(signal.SIGALRM, on_alarm)
    records = []
    try:
        for spec in specs:
            signal.setitimer(signal.ITIMER_REAL, timeout_s)
            try:
                record = run(spec).as_record()
            finally:
                signal.setitimer(signal.ITIMER_REAL, 0)
            if record["status"] == "FAILED" and (record["reason"] or "").startswith(_RunTimeout.__name__):
                record["reason"] = reason
            records.append(record)
    finally:
        signal.signal(signal.SIGALRM, previous)
    return records


class _RunTimeout(Exception):
    """Raised inside a run by the per-run alarm; workers.run.run turns it into a FAILED result."""
