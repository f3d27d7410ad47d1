"""Run a sweep on Ray: units of work (study.scheduling.units), bounded in-flight tasks, per-point timeouts,
resume by run key, cancel, and one background MLflow writer. `submit(sweep) -> SweepSummary`.

Data flow: Sweep -> RunPoints -> units (points that share computation) -> one Ray task per unit
calling workers.run.run_many -> one plain record per point -> the writer (MLflow) and, for search
methods, Optuna. This process is the only one that writes to either. Progress counts points.
"""

from __future__ import annotations

import logging
import math
import os
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

import ray

from study.scheduling import lease

import study.mlflow_names as names

from study.recording import parent_run as sweep_start

from study.recording import layout as tracking

from study.scheduling import units as unit_plan
from study.spec.loading import RunPoint, Sweep
from study.scheduling import task
from study.scheduling.task import run_unit
from study.recording.journal import journaled_runs
from study.scheduling.outcome import Progress, SweepSummary
from study.recording.writer import TrackingWriter

log = logging.getLogger(__name__)

# Ship the task's code with it, so workers need only `workers/` importable (not this checkout of
# study/: a driver joining a running cluster does not pass its PYTHONPATH on to the workers).
ray.cloudpickle.register_pickle_by_value(task)

PROGRESS_EVERY_S = 0.2


class GridSource:
    """Grid points not yet finished, in file order."""

    def __init__(self, points: list[RunPoint]):
        self._pending = deque(points)

    def next_points(self, capacity: int) -> list[RunPoint]:
        return [self._pending.popleft() for _ in range(min(capacity, len(self._pending)))]

    def observe(self, point: RunPoint, record: dict[str, Any]) -> None:
        pass

    def exhausted(self) -> bool:
        return not self._pending

    def remaining(self) -> int:
        return len(self._pending)


def submit(
    sweep: Sweep,
    *,
    tracking_uri: str | None = None,
    ray_address: str | None = None,
    optuna_storage: str | None = None,
    max_in_flight: int | None = None,
    on_progress: Callable[[Progress], None] | None = None,
    cancel_event: threading.Event | None = None,
    figures: bool = True,
    wait: bool = False,
    on_wait: Callable[[str], None] | None = None,
    held: Any = None,
) -> SweepSummary:
    """Run every run of the sweep not already FINISHED under it in MLflow; log each as a child run.
    Only while holding the sweep's lease (study.scheduling.lease): raises lease.SweepBusy when another
    coordinator runs it (wait=True waits for it instead; `held`: a lease the caller took already),
    and sweep_start.SweepStartRefused when the store will not create its parent run."""
    coordinator = _Coordinator(sweep, tracking_uri, ray_address, optuna_storage, max_in_flight, on_progress,
                               cancel_event, figures)
    held = held or lease.acquire(sweep, coordinator.uri, wait=wait, on_wait=on_wait)
    try:
        return coordinator.run()
    finally:
        held.release()


class _Coordinator:
    def __init__(self, sweep, tracking_uri, ray_address, optuna_storage, max_in_flight, on_progress, cancel_event,
                 figures=True):
        self.sweep: Sweep = sweep
        self.figures = figures
        self.uri = tracking.resolve_tracking_uri(tracking_uri)
        self.ray_address = ray_address
        self.optuna_storage = optuna_storage
        self.max_in_flight = max_in_flight
        self.on_progress = on_progress
        self.cancel_event = cancel_event or threading.Event()
        self.started = time.monotonic()
        self.finished = self.failed = self.skipped = self.tasks = self.pruned = 0
        self.compute_s = 0.0
        self.best: float | None = None
        self.best_params: dict[str, Any] | None = None
        self.inflight: dict[ray.ObjectRef, tuple[list[RunPoint], float]] = {}  # unit, submitted at
        self.pending: deque[list[RunPoint]] = deque()  # planned units not yet submitted
        self.gpus = 0.0
        self.last_progress = 0.0
        self.startup_outage: str | None = None
        self.phases: dict[str, float] = {}
        self.phase_started = self.started

    # --- set-up ------------------------------------------------------------------------------

    def _history(self) -> tuple[dict[str, dict[str, float]], dict[str, int]]:
        try:
            finished, attempts = tracking.sweep_history(self.sweep, self.uri)
        except Exception as error:  # noqa: BLE001 - the store may be down; the writer will spool
            self.startup_outage = f"could not read earlier runs ({type(error).__name__}); nothing skipped"
            log.warning("tracking store unreachable at start: %s", error)
            finished, attempts = {}, {}
        # Runs waiting in a journal (spool) already finished: they are not lost, so do not run them again.
        journaled, journaled_attempts = journaled_runs(self.sweep, self.uri)
        for key, attempt in journaled_attempts.items():
            attempts[key] = max(attempts.get(key, 0), attempt)
        return {**finished, **journaled}, attempts

    def _init_ray(self) -> None:
        if ray.is_initialized():
            return
        address = self.ray_address or os.environ.get("RAY_ADDRESS")
        if address:
            ray.init(address=address, log_to_driver=False, configure_logging=False)
        else:
            ray.init(include_dashboard=False, log_to_driver=False, configure_logging=False)

    def _slots(self) -> int:
        resources = ray.cluster_resources()
        wanted = self.sweep.resources
        slots = [resources.get("CPU", 1) / wanted.num_cpus] if wanted.num_cpus else [resources.get("CPU", 1)]
        if wanted.num_gpus:
            slots.append(resources.get("GPU", 0) / wanted.num_gpus)
        return max(1, int(min(slots)))

    # --- main loop ----------------------------------------------------------------------------

    def _phase(self, name: str) -> None:
        now = time.monotonic()
        self.phases[name] = self.phases.get(name, 0.0) + now - self.phase_started
        self.phase_started = now

    def _store_start(self) -> tuple[dict[str, dict[str, float]], dict[str, int]]:
        sweep_start.start_parent(self.sweep, self.uri)  # refused (after brief retries): fail before scheduling
        return self._history()

    def run(self) -> SweepSummary:
        # The store's start (parent run, earlier runs: seconds on a fresh SQLite store) and Ray's start
        # (seconds, mostly waiting on its processes) overlap; a refused parent run still schedules nothing.
        store_start = sweep_start.Background(self._store_start)
        self._init_ray()  # a Ray started here stays up for the process (later submits reuse it)
        self._phase("ray start (overlapping the store's start)")
        finished_before, self.attempts = store_start.result()
        self._phase("store start: parent run, earlier runs")
        self.writer = TrackingWriter(self.sweep, self.uri)
        self.writer.start_sweep()
        status = "FINISHED"
        try:
            self.slots = self._slots()
            self.gpus = ray.cluster_resources().get("GPU", 0.0)
            self.task_limit = self.max_in_flight or (self.slots if self.sweep.timeout_s else 2 * self.slots)
            self.source = self._source(finished_before)
            self._phase("plan")
            self._loop()
            self._phase("run: first unit submitted to last result back")
            if self.cancel_event.is_set():
                status = "KILLED"
        except KeyboardInterrupt:
            status = "KILLED"
        except BaseException:
            status = "FAILED"
            raise
        finally:
            self._cancel_inflight()
            summary = self._finish(status)
        return summary

    def _source(self, finished_before: dict[str, dict[str, float]]):
        metric = self.sweep.metric.name
        if self.sweep.is_search:
            from study.scheduling.search import SearchSource, open_storage

            storage = open_storage(self.uri, self.optuna_storage)
            # Two trials per slot in flight: a wave of trials plans into units (a trial's seeds share one).
            source = SearchSource(self.sweep, storage, finished_before, trials_in_flight=2 * self.slots)
            self.total = self.sweep.total_runs
            self.skipped = min(self.total, source.trial_count() * len(self.sweep.seeds))
            return source
        points = self.sweep.expand()
        todo = [p for p in points if p.run_key not in finished_before]
        self.total, self.skipped = len(points), len(points) - len(todo)
        for point in points:
            if point.run_key in finished_before and metric in finished_before[point.run_key]:
                self._consider_best(finished_before[point.run_key][metric], point.params)
        return GridSource(todo)

    def _loop(self) -> None:
        self._report(force=True)
        while not self.cancel_event.is_set():
            self._schedule()
            if not self.inflight:
                if self.source.exhausted() and not self.pending:
                    break
                continue
            refs = list(self.inflight)
            ready, _ = ray.wait(refs, num_returns=1, timeout=self._wait_s())
            if ready:  # take everything else that is done too, without waiting
                ready, _ = ray.wait(refs, num_returns=len(refs), timeout=0)
            for ref in ready:
                self._collect(ref)
            if getattr(self.source, "board", None) is not None:
                self.source.poll()  # pruning: checkpoint values in, decisions out
            self._expire_timeouts()
            self._report()
        self._report(force=True)

    def _schedule(self) -> None:
        while len(self.inflight) < self.task_limit:
            if not self.pending:
                # A grid is planned whole (families such as depth prefixes are never split); a search
                # plans the trials it asked, for the tasks it can start now.
                grid = isinstance(self.source, GridSource)
                free = self.task_limit - len(self.inflight)
                points = self.source.next_points(self.source.remaining() if grid else free)
                if not points:
                    return
                self.pending.extend(unit_plan.plan(points, self.slots if grid else free))
            unit = self.pending.popleft()
            options = unit_plan.options(self.sweep, unit, self.gpus)
            specs = [point.params for point in unit]
            board = getattr(self.source, "board", None)
            if board is None:
                ref = run_unit.options(**options).remote(specs, self.sweep.timeout_s, self.figures)
            else:
                ids = self.source.checkpoint_ids(unit)
                ref = run_unit.options(**options).remote(specs, self.sweep.timeout_s, self.figures, board, ids)
            self.inflight[ref] = (unit, time.monotonic())
            self.tasks += 1

    def _wait_s(self) -> float:
        poll_s = getattr(self.source, "poll_every_s", None) or PROGRESS_EVERY_S  # pruning decisions wait on this
        if not self.sweep.timeout_s:
            return min(poll_s, PROGRESS_EVERY_S)
        first = min(start + unit_plan.hard_limit_s(self.sweep.timeout_s, len(unit)) for unit, start in self.inflight.values())
        return max(0.001, min(poll_s, PROGRESS_EVERY_S, first - time.monotonic()))

    def _collect(self, ref: ray.ObjectRef) -> None:
        unit, _ = self.inflight.pop(ref)
        try:
            node, records = ray.get(ref)
        except Exception as error:  # noqa: BLE001 - the worker died past max_retries, or similar
            reason = f"task failed: {type(error).__name__}: {str(error).strip().splitlines()[0][:200] if str(error) else ''}"
            node, records = None, [unit_plan.failed(point, reason) for point in unit]
        for point, record in zip(unit, records):
            self._record(point, record, node)

    def _expire_timeouts(self) -> None:
        limit = self.sweep.timeout_s
        if not limit:
            return
        now = time.monotonic()
        for ref, (unit, start) in list(self.inflight.items()):
            if now - start > unit_plan.hard_limit_s(limit, len(unit)):  # stuck where no alarm reaches (native code)
                ray.cancel(ref, force=True)
                del self.inflight[ref]
                reason = f"timeout after {limit:g} s (cancelled {now - start:.0f} s after submission)"
                for point in unit:
                    self._record(point, unit_plan.failed(point, reason), None)

    def _record(self, point: RunPoint, record: dict[str, Any], node: str | None) -> None:
        attempt = self.attempts.get(point.run_key, 0) + 1
        self.attempts[point.run_key] = attempt
        if hasattr(self.source, "prepare"):
            record = self.source.prepare(point, record)
        self.writer.log_run(record, point.run_key, attempt=attempt, trial=point.trial, node=node)
        self.source.observe(point, record)
        self.compute_s += float(record.get("wall_s") or 0.0)
        if record["status"] == "FINISHED":
            self.finished += 1
            value = record["scalars"].get(self.sweep.metric.name)
            if value is not None and not self.sweep.is_search:
                self._consider_best(value, point.params)
        elif record["status"] == "KILLED" and names.is_pruned_reason(record.get("reason")):
            self.pruned += 1
        else:
            self.failed += 1

    def _consider_best(self, value: float, params: dict[str, Any]) -> None:
        if not math.isfinite(value):
            return
        better = self.best is None or (value < self.best if self.sweep.metric.goal == "minimize" else value > self.best)
        if better:  # name the point by what varies: the grid axes and the seed
            self.best, self.best_params = value, {k: params[k] for k in [*self.sweep.axes, "seed"] if k in params}

    def _cancel_inflight(self) -> None:
        for ref in list(self.inflight):
            ray.cancel(ref, force=True)  # a killed task writes nothing: no half-written child
        self.inflight.clear()
        self.pending.clear()

    # --- reporting ---------------------------------------------------------------------------

    def _running(self) -> int:
        return sum(len(unit) for unit, _ in self.inflight.values())

    def _report(self, force: bool = False) -> None:
        now = time.monotonic()
        if self.on_progress is None or (not force and now - self.last_progress < PROGRESS_EVERY_S):
            return
        self.last_progress = now
        if self.sweep.is_search:
            self.best, self.best_params = self.source.best()
        done = self.finished + self.failed + self.pruned
        remaining = self.total - self._skipped() - done
        eta = remaining * (now - self.started) / done if done else None
        outage = self.writer.outage or self.startup_outage
        self.on_progress(Progress(self.total, done, self._running(), self.failed, self._skipped(), eta, self.best, outage,
                                  self.pruned))

    def _report_writes(self, pending: int, seconds_left: float | None) -> None:
        """Progress while the last runs are written to MLflow (after the last result came back)."""
        if self.on_progress is None:
            return
        done = self.finished + self.failed + self.pruned
        self.on_progress(Progress(getattr(self, "total", 0), done, 0, self.failed, self._skipped(), 0.0, self.best,
                                  self.writer.outage, self.pruned, writes_pending=pending, writes_eta_s=seconds_left))

    def _skipped(self) -> int:
        """Runs not run here: finished before, or (search) a new trial's point that already ran."""
        return self.skipped + getattr(getattr(self, "source", None), "reused", 0)

    def _finish(self, status: str) -> SweepSummary:
        scheduled_s = time.monotonic() - self.started
        if self.sweep.is_search and hasattr(self, "source"):
            self.best, self.best_params = self.source.best()
        skipped = self._skipped()
        metrics = {names.METRIC_RUNS_FINISHED: skipped + self.finished, names.METRIC_RUNS_FAILED: self.failed}
        if self.pruned:
            metrics[names.METRIC_RUNS_PRUNED] = self.pruned
        if self.best is not None:
            metrics[names.METRIC_BEST_PREFIX + self.sweep.metric.name] = self.best
        self.writer.end_sweep(status, metrics)
        outage = self.writer.outage
        flushed = self.writer.close(on_progress=self._report_writes)
        self._phase("writes: last child runs, parent run closed")
        pending = 0 if flushed else self.writer.pending()
        total = getattr(self, "total", 0)
        return SweepSummary(
            sweep=self.sweep.name,
            status=status,
            total=total,
            skipped=skipped,
            finished=self.finished,
            failed=self.failed,
            cancelled=max(0, total - skipped - self.finished - self.failed - self.pruned),
            wall_s=time.monotonic() - self.started,
            best=self.best,
            best_params=self.best_params,
            outage=None if flushed else (self.writer.outage or outage or "tracking store did not take the writes"),
            spool=None if flushed else str(self.writer.spool),
            writes_pending=pending,
            rejected_writes=list(self.writer.rejected),
            tasks=self.tasks,
            compute_s=self.compute_s,
            scheduled_s=scheduled_s,
            pruned=self.pruned,
            notes=self.source.notes() if hasattr(getattr(self, "source", None), "notes") else [],
            phases=dict(self.phases),
        )

