"""The Ray task: runs a chunk of specs in a worker. Kept apart from the coordinator so that a worker
imports only this, Ray and workers/ (not MLflow or Optuna): a fresh worker starts in well under a second."""

from __future__ import annotations

import signal
import threading
import time
from typing import Any

import ray


# A run posts its checkpoint values (and reads back its stop flag) at most this often: one actor round
# trip (1.8 ms measured at load 9 on 2 cores: benchmarks/README.md "pruning") per
# POST_EVERY_S of compute, so at most ~4%; a run quicker than this posts nothing and pays nothing (its
# values come back with the result, as its training curve, and the coordinator replays them). Where
# checkpoints are further apart than this, a run reads its flag at every one of them.
POST_EVERY_S = 0.05


@ray.remote(num_cpus=0)
class PruneBoard:
    """One per pruned search: runs post (trial, run_key, [(step, value)]) and read back whether their
    trial was pruned; the coordinator drains the posts and marks pruned trials. It decides nothing."""

    def __init__(self) -> None:
        self._posts: list[tuple[int, str, list[tuple[int, float]]]] = []
        self._stopped: set[int] = set()

    def post(self, trial: int, run_key: str, values: list[tuple[int, float]]) -> bool:
        self._posts.append((trial, run_key, values))
        return trial in self._stopped

    def drain(self) -> list[tuple[int, str, list[tuple[int, float]]]]:
        posts, self._posts = self._posts, []
        return posts

    def stop(self, trials: list[int]) -> None:
        self._stopped.update(trials)


class _Checkpoints:
    """on_checkpoint for one run: buffer (step, value); every POST_EVERY_S post them, return the flag."""

    def __init__(self, board: Any, trial: int, run_key: str):
        self.board, self.trial, self.run_key = board, trial, run_key
        self.unsent: list[tuple[int, float]] = []
        self.last_post = time.perf_counter()

    def __call__(self, step: int, value: float) -> bool:
        self.unsent.append((int(step), float(value)))
        now = time.perf_counter()
        if now - self.last_post < POST_EVERY_S:
            return False
        self.last_post = now
        stop = ray.get(self.board.post.remote(self.trial, self.run_key, self.unsent))
        self.unsent = []
        return bool(stop)


@ray.remote
def run_chunk(
    specs: list[dict[str, Any]], timeout_s: float | None = None, figures: bool = False,
    board: Any = None, checkpoint_ids: list[tuple[int, str]] | None = None,
) -> tuple[str, list[dict[str, Any]]]:
    """A Ray task: run each spec (failures come back as FAILED records, never as exceptions).
    With timeout_s, an alarm stops a run that has been running that long (timed from its start,
    not from when the coordinator submitted it); the coordinator's force-cancel is the backstop
    for code that never returns to Python.
    With `figures`, a record of a run long enough to afford it carries its summary.png (study.plots).
    With a PruneBoard, run i reports its checkpoints as checkpoint_ids[i] = (trial, run_key) and stops
    (KILLED) at the first checkpoint after its trial is marked pruned."""
    node = ray.get_runtime_context().get_node_id()
    hooks = [_Checkpoints(board, *ids) for ids in checkpoint_ids] if board is not None else [None] * len(specs)
    records = _run_all(specs, timeout_s, hooks)
    if figures:
        from study.figure_budget import worth_rendering

        affordable = [record for record in records if worth_rendering(record)]
        if affordable:  # import matplotlib only in tasks that draw
            from study.plots import record_figures

            for record in affordable:
                record["figures"] = record_figures(record)
    return node, records


def _run_all(specs: list[dict[str, Any]], timeout_s: float | None, hooks: list[Any]) -> list[dict[str, Any]]:
    from workers.run import run

    if not timeout_s or threading.current_thread() is not threading.main_thread():
        return [run(spec, hook).as_record() for spec, hook in zip(specs, hooks)]
    reason = f"timeout after {timeout_s:g} s"

    def on_alarm(signum, frame):
        raise _RunTimeout(reason)

    previous = signal.signal(signal.SIGALRM, on_alarm)
    records = []
    try:
        for spec, hook in zip(specs, hooks):
            signal.setitimer(signal.ITIMER_REAL, timeout_s)
            try:
                record = run(spec, hook).as_record()
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
