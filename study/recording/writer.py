"""One background thread that does every MLflow write of a sweep, in order, off the scheduling path.

Every write command is first appended to the sweep's journal (study.recording.journal), then queued. The
thread applies queued commands; the journal is removed whenever everything in it reached the store.

- Child runs are written in batches: on a SQL store (SQLite, PostgreSQL) a batch of finished runs
  is one transaction (study.recording.bulk); on a tracking server, up to `threads` runs go at once through
  the client (the default chosen by benchmarks/write_threads.py). Per run the order stays (a child
  exists before its metrics); the sweep's start is applied before any run, its end after all.
- While the store is unreachable (a connection-type error) commands stay in the journal; the
  thread retries with exponential backoff, then replays the journal in order.
- If the coordinator dies (even SIGKILL) with writes pending, the next coordinator of the same
  sweep and store inherits the journal and replays it first, skipping runs that did land and
  deleting children left half-written (created, never terminated). Nothing is lost or doubled.
- close() waits as long as writes make progress, with a progress callback; it gives up (the
  journal kept) only when the store is down for `outage_timeout_s` or no write completes for
  STALL_S seconds, and then `outage` names the cause.
- As runs land, their rows go to the sweep's results table (study.recording.results_table).
"""

from __future__ import annotations

import json
import logging
import os
import queue
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from mlflow import MlflowClient

from study.recording import bulk

from study.recording import layout as tracking
from study.recording.journal import Journal
from study.recording.results_table import ResultsTable
from study.recording.outage import is_unreachable  # noqa: F401 - re-exported

log = logging.getLogger(__name__)

# Our own backoff replaces MLflow's HTTP retries (which would block the writer for minutes).
os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "10")
os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")  # no "View run at" line per child run

MAX_BATCH = 256  # child runs per transaction / per round of parallel client writes
SERVER_WRITE_THREADS = int(os.environ.get("STUDY_WRITE_THREADS", "4"))
STALL_S = float(os.environ.get("STUDY_FLUSH_STALL_S", "300"))
_STOP = object()
class _Outage(Exception):
    """The store did not answer; the command stays journaled."""


class TrackingWriter:
    """Journal + queue of write commands for one sweep; a daemon thread applies them to MLflow."""

    def __init__(self, sweep: Any, tracking_uri: str, *, backoff_max_s: float | None = None,
                 threads: int | None = None):
        self.sweep = sweep
        self.tracking_uri = tracking_uri
        self.journal = Journal(sweep.name, tracking_uri)
        self.spool = self.journal.path
        self.inherited = self.journal.inherited
        self.backoff_max_s = backoff_max_s or float(os.environ.get("STUDY_TRACKING_BACKOFF_MAX_S", "30"))
        self.sql = bulk.is_sql_store(tracking_uri)
        # SQLite takes one writer at a time; a batch there is already one transaction.
        self.threads = 1 if self.sql else max(1, threads or SERVER_WRITE_THREADS)
        self.written = 0
        self.rejected: list[str] = []
        self.table = ResultsTable()
        self._outage_since: float | None = None
        self._outage_error = ""
        self._stalled_s: float | None = None
        self._applied = 0  # highest seq applied (commands are applied in seq order, batch by batch)
        self._busy = 0
        self._idle = threading.Condition()
        self._queue: queue.Queue = queue.Queue()
        self._client: MlflowClient | None = None
        self._start: tracking.SweepStart | None = None
        self._rows_lock = threading.Lock()
        self._pool = ThreadPoolExecutor(self.threads, thread_name_prefix="mlflow-write") if self.threads > 1 else None
        self._varying = sweep.varying_axes  # names each child run (tracking.child_run_name)
        self._curves = getattr(getattr(sweep, "tracking", None), "curves", "charted")
        self._thread = threading.Thread(target=self._loop, name=f"mlflow-writer-{sweep.name}", daemon=True)
        self._thread.start()

    # --- public face ---------------------------------------------------------------------------

    @property
    def outage(self) -> str | None:
        """None while the store answers; else a one-line description of the outage."""
        if self._stalled_s is not None and self._outage_since is None:
            return (f"tracking store stalled: no write completed in {self._stalled_s:.0f} s; "
                    f"results spooled to {self.spool}")
        if self._outage_since is None:
            return None
        since = time.strftime("%H:%M:%S", time.localtime(self._outage_since))
        return f"tracking store unreachable since {since} ({self._outage_error}); results spooled to {self.spool}"

    def start_sweep(self) -> None:
        from study.spec.loading import flatten

        sweep = self.sweep
        params = flatten(sweep.model_dump(mode="json", exclude_none=True))
        self._put({"op": "sweep_start", "sweep": sweep.name, "experiment": sweep.experiment_name, "method": sweep.method,
                   "params": params, "sweep_text": sweep.source_text, "time_ms": tracking.now_ms()})

    def log_run(self, record: dict[str, Any], run_key: str, *, attempt: int = 1, trial: int | None = None,
                node: str | None = None, start_ms: int | None = None, end_ms: int | None = None) -> None:
        end_ms = end_ms or tracking.now_ms()
        start_ms = start_ms or end_ms - int(1000 * record.get("wall_s", 0.0))
        # The run id is chosen here and journaled, so a replayed SQL batch can tell what landed.
        self._put({"op": "run", "sweep": self.sweep.name, "run_key": run_key, "record": record, "attempt": attempt,
                   "trial": trial, "node": node, "start_ms": start_ms, "end_ms": end_ms, "varying": self._varying,
                   "curves": self._curves, "run_id": bulk.new_run_id()})

    def end_sweep(self, status: str, metrics: dict[str, float]) -> None:
        self._put({"op": "sweep_end", "status": status, "metrics": metrics, "time_ms": tracking.now_ms()})

    def pending(self) -> int:
        """Commands queued and not yet through the thread."""
        return self._busy

    def close(self, outage_timeout_s: float | None = None, *,
              on_progress: Callable[[int, float | None], None] | None = None) -> bool:
        """Wait until every write reached the store, as long as writes make progress; report
        (pending, seconds left) to on_progress. Give up only when the store stays unreachable for
        outage_timeout_s (default $STUDY_FLUSH_TIMEOUT_S or 60) or no write completes for STALL_S;
        the journal then stays on disk for the next coordinator. True when everything landed."""
        outage_limit = outage_timeout_s if outage_timeout_s is not None else float(os.environ.get("STUDY_FLUSH_TIMEOUT_S", "60"))
        samples: deque[tuple[float, int]] = deque(maxlen=50)
        last_report = 0.0
        progress_at, seen_pending = time.monotonic(), self._busy
        outage_started: float | None = None
        with self._idle:
            while self._busy or self._outage_since is not None or self.inherited.exists():
                now = time.monotonic()
                if self._busy < seen_pending:
                    progress_at = now
                seen_pending = self._busy
                samples.append((now, self._busy))
                if self._outage_since is not None:
                    outage_started = outage_started or now
                    if now - outage_started >= outage_limit:
                        break
                else:
                    outage_started = None
                    if now - progress_at >= STALL_S:
                        self._stalled_s = now - progress_at
                        break
                if on_progress is not None and now - last_report >= 0.5:
                    last_report = now
                    on_progress(self._busy, _seconds_left(samples))
                self._idle.wait(0.05)
        self._queue.put(_STOP)
        self._thread.join(timeout=None if self._stalled_s is None else 5)
        if self._pool is not None:
            self._pool.shutdown(wait=False)
        self.journal.close()
        return (self._outage_since is None and self._stalled_s is None and not self.journal.pending_files())

    # --- queue ---------------------------------------------------------------------------------

    def _put(self, command: dict[str, Any]) -> None:
        self.journal.append(command)
        with self._idle:
            self._busy += 1
        self._queue.put(command)

    def _done(self, count: int = 1) -> None:
        with self._idle:
            self._busy -= count
            self._idle.notify_all()

    # --- the thread ----------------------------------------------------------------------------

    def _loop(self) -> None:
        backoff = 0.5
        retry_at: float | None = 0.0 if self.inherited.exists() else None
        stopping = False
        while True:
            if retry_at is not None and time.monotonic() >= retry_at:
                if self._catch_up():
                    retry_at, backoff = None, 0.5
                else:
                    backoff = min(backoff * 2, self.backoff_max_s)
                    retry_at = time.monotonic() + backoff
            if stopping:
                return
            wait = 1.0 if retry_at is None else max(0.01, retry_at - time.monotonic())
            try:
                batch = [self._queue.get(timeout=wait)]
            except queue.Empty:
                self._flush_table_if_due()
                continue
            while batch[-1] is not _STOP and len(batch) < MAX_BATCH:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            if batch[-1] is _STOP:
                batch.pop()
                stopping, retry_at = True, (None if retry_at is None else 0.0)  # one last attempt
            # In an outage the commands just wait in the journal; a replay may have applied some already.
            todo = [command for command in batch if command["seq"] > self._applied]
            if retry_at is None and todo:
                try:
                    self._apply_in_order(todo)
                    if self._queue.empty():
                        self.journal.forget_if_caught_up(self._applied)
                except _Outage:
                    retry_at = time.monotonic() + backoff
            self._done(len(batch))

    def _apply_in_order(self, commands: list[dict[str, Any]], skip: set[tuple[str, int]] | None = None,
                        track: bool = True) -> None:
        """Apply commands in order: consecutive runs as one batch, the sweep's start and end alone.
        track: they are this writer's own (advance the applied mark); else an inherited backlog."""
        index = 0
        while index < len(commands):
            end = index
            while end < len(commands) and commands[end]["op"] == "run":
                end += 1
            if end > index:
                runs = [c for c in commands[index:end] if skip is None or (c["run_key"], c["attempt"]) not in skip]
                if skip is not None and len(runs) < end - index:
                    self.table.trusted = False  # landed before the answer was lost: its row is not ours
                self._apply_runs(runs)
                index = end
            else:
                self._apply_safely(commands[index])
                index += 1
            if track:
                self._applied = commands[index - 1]["seq"]
        self._flush_table_if_due()

    def _apply_safely(self, command: dict[str, Any]) -> None:
        try:
            self._apply(command)
        except Exception as error:  # noqa: BLE001 - classified here
            if is_unreachable(error):
                self._enter_outage(error)
                raise _Outage() from error
            self._reject(command, error)

    def _apply_runs(self, commands: list[dict[str, Any]]) -> None:
        if not commands:
            return
        self._ensure_started()
        if self.sql and all("run_id" in command for command in commands):  # journals of older coordinators lack it
            try:
                rows = tracking.apply_runs_bulk(self._store(), self.tracking_uri, self._start, commands)
            except Exception as error:  # noqa: BLE001 - classified here
                if is_unreachable(error):
                    self._enter_outage(error)
                    raise _Outage() from error
                log.warning("bulk write refused (%s); writing the batch run by run", error)
            else:
                self._landed(rows)
                return
        if self._pool is None:
            for command in commands:
                self._apply_safely(command)
            return
        outages = [error for error in self._pool.map(self._apply_run_in_thread, commands) if error is not None]
        if outages:
            raise outages[0]

    def _apply_run_in_thread(self, command: dict[str, Any]) -> _Outage | None:
        try:
            self._apply_safely(command)
        except _Outage as outage:
            return outage
        return None

    def _catch_up(self) -> bool:
        """Replay the inherited backlog, then our own journal past what was applied."""
        try:
            lines = self.journal.backlog()
            if lines:
                skip = self._landed_runs()
                for start in range(0, len(lines), MAX_BATCH):
                    try:
                        self._apply_in_order([json.loads(line) for line in lines[start : start + MAX_BATCH]], skip, track=False)
                    except _Outage:
                        self.journal.keep_backlog(lines[start:])
                        return False
                self.journal.drop_backlog()
            pending = self.journal.commands_after(self._applied)
            # The write the outage cut off may have half-landed (a child created, or even finished,
            # with the answer lost): delete half-written children and skip whole ones, as for a
            # journal inherited from a dead coordinator, so the replay adds no duplicate.
            skip = self._landed_runs() if any(command["op"] == "run" for command in pending) else None
            self._apply_in_order(pending, skip)
        except _Outage:
            return False
        self.journal.forget_if_caught_up(self._applied)
        if self._outage_since is not None:
            log.warning("tracking store is back; spooled writes replayed")
        self._outage_since = None
        with self._idle:
            self._idle.notify_all()
        return True

    def _landed_runs(self) -> set[tuple[str, int]]:
        """(run_key, attempt) of children that landed whole; half-written ones are deleted."""
        try:
            client = self._connect()
            exp_id = tracking.experiment_id(client, self.sweep.experiment_name, self.tracking_uri)
            landed: set[tuple[str, int]] = set()
            for run in tracking.sweep_runs(client, exp_id, self.sweep.name) if exp_id else []:
                if run.info.status == "RUNNING":
                    client.delete_run(run.info.run_id)  # the journal re-creates it whole
                else:
                    landed.add((run.data.tags.get(tracking.TAG_RUN_KEY, ""), int(run.data.tags.get(tracking.TAG_ATTEMPT, 1))))
            return landed
        except Exception as error:  # noqa: BLE001
            if is_unreachable(error):
                self._enter_outage(error)
                raise _Outage() from error
            raise

    def _connect(self) -> MlflowClient:
        if self._client is None:
            self._client = MlflowClient(self.tracking_uri)
        return self._client

    def _store(self) -> Any:
        return self._connect()._tracking_client.store  # the SqlAlchemyStore MLflow opened for this URI

    def _ensure_started(self) -> None:
        """The parent run, for a journal whose sweep_start reached the store in an earlier process."""
        if self._start is not None:
            return
        client = self._connect()
        parent = tracking.parent_run(self.sweep, self.tracking_uri, client)
        if parent is None:
            raise RuntimeError(f"no parent run for sweep {self.sweep.name}")
        location = client.get_experiment(parent.info.experiment_id).artifact_location
        self._start = tracking.SweepStart(parent.info.experiment_id, parent.info.run_id, location, 0, None, 0)
        self.table.adopt(int(parent.data.tags.get(tracking.TAG_RESULTS_GENERATION, 0)), None, 0)

    def _apply(self, command: dict[str, Any]) -> None:
        client = self._connect()
        op = command["op"]
        if op == "sweep_start":
            self._start = tracking.apply_sweep_start(client, self.tracking_uri, command)
            self.table.adopt(self._start.table_generation, self._start.table_rows, self._start.table_parts)
            return
        self._ensure_started()
        if op == "run":
            row = tracking.apply_run(client, self.tracking_uri, self._start.experiment_id, self._start.parent_id, command)
            self._landed([row])
        else:
            self._finish_table(client)
            tracking.apply_sweep_end(client, self._start.parent_id, command)
            self.written += 1

    def _landed(self, rows: list[dict[str, Any]]) -> None:
        with self._rows_lock:
            for row in rows:
                self.table.add(row)
            self.written += len(rows)

    def _flush_table_if_due(self) -> None:
        if self._start is None or not self.table.due():
            return
        try:
            self.table.flush(self._connect(), self._start.parent_id)
        except Exception as error:  # noqa: BLE001 - the table is a copy; readers fall back to the store
            log.warning("could not write a results-table part (%s); kept for the next one", error)

    def _finish_table(self, client: MlflowClient) -> None:
        """Before the parent run ends: the table's last part, or a fresh generation if it cannot be trusted."""
        try:
            if self.table.trusted:
                self.table.flush(client, self._start.parent_id)
            else:
                runs = list(tracking.sweep_runs(client, self._start.experiment_id, self.sweep.name))
                self.table.rebuild(client, self._start.parent_id, runs)
        except Exception as error:  # noqa: BLE001
            if is_unreachable(error):
                raise
            log.warning("could not finish the results table (%s); readers will use the store", error)

    def _enter_outage(self, error: BaseException) -> None:
        self._client = None  # reconnect from scratch next time
        if self._outage_since is None:
            self._outage_since = time.time()
        first_line = str(error).splitlines()[0][:120] if str(error) else ""
        self._outage_error = f"{type(error).__name__}: {first_line}"

    def _reject(self, command: dict[str, Any], error: BaseException) -> None:
        """A write the store refuses (not an outage): keep it beside the journal and say so."""
        message = f"{command.get('op')} {command.get('run_key', '')}: {type(error).__name__}: {error}"
        self.rejected.append(message[:300])
        log.error("MLflow rejected a write: %s", message[:300])
        self.journal.reject(command, message[:300])


def _seconds_left(samples: deque[tuple[float, int]]) -> float | None:
    """Pending writes / recent rate, from (time, pending) samples."""
    if len(samples) < 2:
        return None
    (first_time, first_pending), (last_time, last_pending) = samples[0], samples[-1]
    rate = (first_pending - last_pending) / max(last_time - first_time, 1e-9)
    return last_pending / rate if rate > 0 else None
