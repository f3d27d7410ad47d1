"""One background thread that does every MLflow write of a sweep, in order, off the scheduling path.

Every write command is first appended to a local JSON-lines journal (the spool,
study.tracking.spool_path), then queued. The thread applies queued commands; the journal is
removed whenever everything in it has reached the store. So:

- while the store is unreachable (a connection-type error), commands stay in the journal and the
  thread retries with exponential backoff, then replays the journal in order;
- if the coordinator dies (even SIGKILL) with writes pending, the next coordinator of the same
  sweep and store inherits the journal and replays it first, skipping runs that did land and
  deleting children left half-written (created, never terminated). Nothing is lost.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import threading
import time
from pathlib import Path
from typing import Any

from mlflow import MlflowClient

from study import tracking

log = logging.getLogger(__name__)

# Our own backoff replaces MLflow's HTTP retries (which would block the writer for minutes).
os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "10")

_STOP = object()
_UNREACHABLE_MARKERS = (
    "max retries exceeded", "connection refused", "failed to establish", "connection aborted",
    "unable to open database", "database is locked", "read timed out", "not a directory",
    "temporarily unavailable", "service unavailable", "bad gateway", "response code 50",
)


def is_unreachable(error: BaseException) -> bool:
    """A connection-type failure (store down, file unreachable) rather than a rejected write."""
    seen: BaseException | None = error
    while seen is not None:
        if isinstance(seen, (ConnectionError, TimeoutError, OSError)):
            return True
        if type(seen).__name__ in {"OperationalError", "ConnectionError", "Timeout", "ConnectTimeout"}:
            return True
        if any(marker in str(seen).lower() for marker in _UNREACHABLE_MARKERS):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def inherited_path(spool: Path) -> Path:
    return spool.with_suffix(".inherited.jsonl")


class _Outage(Exception):
    """The store did not answer; the command stays journaled."""


class TrackingWriter:
    """Journal + queue of write commands for one sweep; a daemon thread applies them to MLflow."""

    def __init__(self, sweep: Any, tracking_uri: str, *, backoff_max_s: float | None = None):
        self.sweep = sweep
        self.tracking_uri = tracking_uri
        self.spool = tracking.spool_path(sweep.name, tracking_uri)
        self.inherited = inherited_path(self.spool)
        self.backoff_max_s = backoff_max_s or float(os.environ.get("STUDY_TRACKING_BACKOFF_MAX_S", "30"))
        self.written = 0
        self.rejected: list[str] = []
        self._outage_since: float | None = None
        self._outage_error = ""
        self._lock = threading.Lock()  # journal appends vs. journal removal
        self._appended = 0
        self._applied = 0
        self._busy = 0
        self._idle = threading.Condition()
        self._queue: queue.Queue = queue.Queue()
        self._client: MlflowClient | None = None
        self._exp_id: str | None = None
        self._parent_id: str | None = None
        self._varying = sweep.varying_axes  # names each child run (tracking.child_run_name)
        self._adopt_journal()
        self._thread = threading.Thread(target=self._loop, name=f"mlflow-writer-{sweep.name}", daemon=True)
        self._thread.start()

    # --- public face ---------------------------------------------------------------------------

    @property
    def outage(self) -> str | None:
        """None while the store answers; else a one-line description of the outage."""
        if self._outage_since is None:
            return None
        since = time.strftime("%H:%M:%S", time.localtime(self._outage_since))
        return f"tracking store unreachable since {since} ({self._outage_error}); results spooled to {self.spool}"

    def start_sweep(self) -> None:
        from study.spec import flatten

        sweep = self.sweep
        params = flatten(sweep.model_dump(mode="json", exclude_none=True))
        self._put({"op": "sweep_start", "sweep": sweep.name, "experiment": sweep.experiment_name, "method": sweep.method,
                   "params": params, "sweep_text": sweep.source_text, "time_ms": tracking._now_ms()})

    def log_run(self, record: dict[str, Any], run_key: str, *, attempt: int = 1, trial: int | None = None,
                node: str | None = None, start_ms: int | None = None, end_ms: int | None = None) -> None:
        end_ms = end_ms or tracking._now_ms()
        start_ms = start_ms or end_ms - int(1000 * record.get("wall_s", 0.0))
        self._put({"op": "run", "sweep": self.sweep.name, "run_key": run_key, "record": record, "attempt": attempt,
                   "trial": trial, "node": node, "start_ms": start_ms, "end_ms": end_ms, "varying": self._varying})

    def end_sweep(self, status: str, metrics: dict[str, float]) -> None:
        self._put({"op": "sweep_end", "status": status, "metrics": metrics, "time_ms": tracking._now_ms()})

    def close(self, timeout_s: float | None = None) -> bool:
        """Wait until every write reached the store (or timeout_s passed; the journal then stays on
        disk for the next coordinator). Returns True when everything reached the store."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        with self._idle:
            while self._busy or self._outage_since is not None or self.inherited.exists():
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    break
                self._idle.wait(0.05 if left is None else min(0.05, left))
        self._queue.put(_STOP)
        self._thread.join()
        return self._outage_since is None and not self.spool.exists() and not self.inherited.exists()

    def pending(self) -> int:
        return self._busy

    # --- journal -------------------------------------------------------------------------------

    def _adopt_journal(self) -> None:
        """A journal left by an earlier coordinator becomes the inherited backlog, replayed first."""
        if self.spool.exists():
            with self.inherited.open("a") as handle:
                handle.write(self.spool.read_text())
            self.spool.unlink()

    def _put(self, command: dict[str, Any]) -> None:
        with self._lock:
            self._appended += 1
            command["seq"] = self._appended
            line = json.dumps(command)
            self.spool.parent.mkdir(parents=True, exist_ok=True)
            with self.spool.open("a") as handle:
                handle.write(line + "\n")
        with self._idle:
            self._busy += 1
        self._queue.put(command)

    def _done(self) -> None:
        with self._idle:
            self._busy -= 1
            self._idle.notify_all()

    def _forget_journal_if_caught_up(self) -> None:
        with self._lock:
            if self._applied == self._appended:
                self.spool.unlink(missing_ok=True)

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
            wait = None if retry_at is None else max(0.01, retry_at - time.monotonic())
            try:
                command = self._queue.get(timeout=wait)
            except queue.Empty:
                continue
            if command is _STOP:
                stopping, retry_at = True, (None if retry_at is None else 0.0)  # one last attempt
                continue
            # In an outage the command just waits in the journal; a replay may have applied it already.
            if retry_at is None and command["seq"] > self._applied:
                try:
                    self._apply_safely(command)
                    self._applied = command["seq"]
                    if self._queue.empty():
                        self._forget_journal_if_caught_up()
                except _Outage:
                    retry_at = time.monotonic() + backoff
            self._done()

    def _apply_safely(self, command: dict[str, Any], skip: set[tuple[str, int]] | None = None) -> None:
        try:
            if skip is not None and command.get("op") == "run" and (command["run_key"], command["attempt"]) in skip:
                return  # landed before the earlier coordinator died
            self._apply(command)
        except Exception as error:  # noqa: BLE001 - classified here
            if is_unreachable(error):
                self._enter_outage(error)
                raise _Outage() from error
            self._reject(command, error)

    def _catch_up(self) -> bool:
        """Replay the inherited backlog, then our own journal past what was applied."""
        try:
            if self.inherited.exists():
                lines = self.inherited.read_text().splitlines()
                skip = self._landed_runs()
                for index, line in enumerate(lines):
                    try:
                        self._apply_safely(json.loads(line), skip)
                    except _Outage:
                        temporary = self.inherited.with_suffix(".tmp")
                        temporary.write_text("".join(rest + "\n" for rest in lines[index:]))
                        os.replace(temporary, self.inherited)
                        return False
                self.inherited.unlink()
            with self._lock:
                lines = self.spool.read_text().splitlines() if self.spool.exists() else []
            pending = [command for command in map(json.loads, lines) if command["seq"] > self._applied]
            # The write the outage cut off may have half-landed (a child created, or even finished,
            # with the answer lost): delete half-written children and skip whole ones, as for a
            # journal inherited from a dead coordinator, so the replay adds no duplicate.
            skip = self._landed_runs() if any(command["op"] == "run" for command in pending) else None
            for command in pending:
                self._apply_safely(command, skip)
                self._applied = command["seq"]
        except _Outage:
            return False
        self._forget_journal_if_caught_up()
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

    def _apply(self, command: dict[str, Any]) -> None:
        client = self._connect()
        op = command["op"]
        if op == "sweep_start":
            self._exp_id, self._parent_id = tracking.apply_sweep_start(client, self.tracking_uri, command)
            return
        if self._parent_id is None:  # replaying a journal whose sweep_start reached the store before
            parent = tracking.parent_run(self.sweep, self.tracking_uri, client)
            if parent is None:
                raise RuntimeError(f"no parent run for sweep {self.sweep.name}")
            self._exp_id, self._parent_id = parent.info.experiment_id, parent.info.run_id
        if op == "run":
            tracking.apply_run(client, self.tracking_uri, self._exp_id, self._parent_id, command)
        else:
            tracking.apply_sweep_end(client, self._parent_id, command)
        self.written += 1

    def _enter_outage(self, error: BaseException) -> None:
        self._client = None  # reconnect from scratch next time
        if self._outage_since is None:
            self._outage_since = time.time()
        first_line = str(error).splitlines()[0][:120] if str(error) else ""
        self._outage_error = f"{type(error).__name__}: {first_line}"

    def _reject(self, command: dict[str, Any], error: BaseException) -> None:
        """A write the store refuses (not an outage): keep it beside the spool and say so."""
        message = f"{command.get('op')} {command.get('run_key', '')}: {type(error).__name__}: {error}"
        self.rejected.append(message[:300])
        log.error("MLflow rejected a write: %s", message[:300])
        rejected = self.spool.with_suffix(".rejected.jsonl")
        rejected.parent.mkdir(parents=True, exist_ok=True)
        with rejected.open("a") as handle:
            handle.write(json.dumps({"error": message[:300], "command": command}) + "\n")


def journaled_runs(sweep: Any, tracking_uri: str) -> tuple[dict[str, dict[str, float]], dict[str, int]]:
    """From a journal left by an earlier coordinator: (run_key -> scalars of FINISHED runs,
    run_key -> highest attempt). They count for resume: those runs are not lost."""
    spool = tracking.spool_path(sweep.name, tracking_uri)
    finished: dict[str, dict[str, float]] = {}
    attempts: dict[str, int] = {}
    for path in (inherited_path(spool), spool):
        if not path.exists():
            continue
        for line in path.read_text().splitlines():
            command = json.loads(line)
            if command.get("op") == "run":
                key = command["run_key"]
                attempts[key] = max(attempts.get(key, 0), int(command["attempt"]))
                if command["record"]["status"] == "FINISHED":
                    finished[key] = command["record"]["scalars"]
    return finished, attempts
