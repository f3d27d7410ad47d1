"""The Ray task: runs a unit of work (points that share computation, workers.units.plan_units) in a
worker and returns one record per point. Kept apart from the coordinator so that a worker imports only
this, Ray and workers/ (not MLflow or Optuna): a fresh worker starts in well under a second."""

from __future__ import annotations

import signal
import threading
import time
from typing import Any

import ray


# A unit posts its points' checkpoint values (and reads back which of its trials were pruned) at most
# this often, in one actor round trip for all its points (1.8 ms measured at load 9 on 2 cores:
# benchmarks/README.md "pruning"), so at most ~4% of its compute; a unit quicker than this posts nothing
# and pays nothing (its values come back with the results, as training curves, and the coordinator
# replays them into the pruner before telling: study.scheduling.search).
POST_EVERY_S = 0.05


@ray.remote(num_cpus=0)
class PruneBoard:
    """One per pruned search: units post [(trial, run_key, [(step, value)])] and read back which of
    their trials were pruned; the coordinator drains the posts and marks pruned trials. It decides nothing."""

    def __init__(self) -> None:
        self._posts: list[tuple[int, str, list[tuple[int, float]]]] = []
        self._stopped: set[int] = set()

    def post(self, trial: int, run_key: str, values: list[tuple[int, float]]) -> bool:
        return bool(self.post_many([(trial, run_key, values)]))

    def post_many(self, posts: list[tuple[int, str, list[tuple[int, float]]]]) -> list[int]:
        """Take a unit's posts; return those of their trials that are pruned."""
        self._posts.extend(post for post in posts if post[2])
        return sorted({trial for trial, _, _ in posts} & self._stopped)

    def drain(self) -> list[tuple[int, str, list[tuple[int, float]]]]:
        posts, self._posts = self._posts, []
        return posts

    def stop(self, trials: list[int]) -> None:
        self._stopped.update(trials)


class _UnitCheckpoints:
    """The on_checkpoint hooks of a unit's points: each buffers (step, value); every POST_EVERY_S the
    unit posts every point's buffer in one round trip, and a point stops once its trial is pruned."""

    def __init__(self, board: Any, ids: list[tuple[int, str]]):
        self.board, self.ids = board, ids
        self.unsent: list[list[tuple[int, float]]] = [[] for _ in ids]
        self.stopped: set[int] = set()
        self.last_post = time.perf_counter()

    def hook(self, index: int):
        def on_checkpoint(step: int, value: float) -> bool:
            self.unsent[index].append((int(step), float(value)))
            now = time.perf_counter()
            if now - self.last_post >= POST_EVERY_S:
                self.last_post = now
                posts = [(trial, key, values) for (trial, key), values in zip(self.ids, self.unsent)]
                self.unsent = [[] for _ in self.ids]
                self.stopped.update(ray.get(self.board.post_many.remote(posts)))
            return self.ids[index][0] in self.stopped
        return on_checkpoint

    def hooks(self) -> list[Any]:
        return [self.hook(index) for index in range(len(self.ids))]


@ray.remote
def run_unit(
    specs: list[dict[str, Any]], timeout_s: float | None = None, figures: bool = False,
    board: Any = None, checkpoint_ids: list[tuple[int, str]] | None = None,
) -> tuple[str, list[dict[str, Any]]]:
    """A Ray task: run a unit's specs together (workers.run.run_many); failures come back as FAILED
    records, never as exceptions, one per point.
    timeout_s is per point: the unit's alarm rings after timeout_s x its points (a batched unit costs
    less than its points alone); if it rings, each point of the unit runs again alone under its own
    alarm of timeout_s, so a point fails by timeout for its own time only. The coordinator's
    force-cancel is the backstop for code that never returns to Python.
    With `figures`, a record of a run long enough to afford it carries its summary.png (study.figures.run_figures).
    With a PruneBoard, point i reports its checkpoints as checkpoint_ids[i] = (trial, run_key) and stops
    (KILLED) at its first checkpoint after its trial is marked pruned; the unit's other points go on."""
    node = ray.get_runtime_context().get_node_id()
    hooks = _UnitCheckpoints(board, checkpoint_ids).hooks() if board is not None else None
    records = _run_unit(specs, timeout_s, hooks)
    if figures:
        from study.figures.budget import worth_rendering

        affordable = [record for record in records if worth_rendering(record)]
        if affordable:  # import matplotlib only in tasks that draw
            from study.figures.run_figures import record_figures

            for record in affordable:
                record["figures"] = record_figures(record)
    return node, records


def _run_unit(specs: list[dict[str, Any]], timeout_s: float | None, hooks: list[Any] | None) -> list[dict[str, Any]]:
    from workers.run import run_many

    if not timeout_s or threading.current_thread() is not threading.main_thread():
        return [result.as_record() for result in run_many(specs, hooks)]
    try:
        return [result.as_record() for result in _alarmed(run_many, timeout_s * len(specs), specs, hooks)]
    except _UnitTimeout:
        pass
    records = []
    for index, spec in enumerate(specs):  # the unit ran out of time: each point alone, on its own clock
        hook = None if hooks is None else [hooks[index]]
        try:
            records.append(_alarmed(run_many, timeout_s, [spec], hook)[0].as_record())
        except _UnitTimeout:
            records.append(_timed_out(spec, timeout_s))
    return records


def _alarmed(function, seconds: float, *args):
    """function(*args) under a SIGALRM that raises _UnitTimeout after `seconds`."""
    def on_alarm(signum, frame):
        raise _UnitTimeout(seconds)

    previous = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        return function(*args)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def _timed_out(spec: dict[str, Any], timeout_s: float) -> dict[str, Any]:
    from workers.result import Result

    result = Result(params=dict(spec), status="FAILED", reason=f"timeout after {timeout_s:g} s")
    result.wall_s = timeout_s
    return result.as_record()


class _UnitTimeout(BaseException):
    """Raised inside a unit by its alarm. A BaseException, so that the workers' per-point `except
    Exception` (a failing point is FAILED alone) does not take it for the point's own failure."""
