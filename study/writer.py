"""One background thread that does every MLflow write of a sweep, in order, off the scheduling path.

If the tracking store cannot be reached, writes are appended to a local JSON-lines spool
(study.tracking.spool_path) and retried with exponential backoff; once the store answers, the
spool is replayed in order and removed. A spool left by an earlier coordinator (killed, or closed
during an outage) is replayed first. Nothing is lost while the process lives or the disk holds.
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


class TrackingWriter:
    """Queue of write commands for one sweep; a daemon thread applies them to MLflow."""

    def __init__(self, sweep: Any, tracking_uri: str, *, backoff_max_s: float | None = None):
        self.sweep = sweep
        self.tracking_uri = tracking_uri
        self.spool = tracking.spool_path(sweep.name, tracking_uri)
        self.backoff_max_s = backoff_max_s or float(os.environ.get("STUDY_TRACKING_BACKOFF_MAX_S", "30"))
        self.written = 0
        self.rejected: list[str] = []
        self._outage_since: float | None = None
        self._outage_error = ""
        self._queue: queue.Queue = queue.Queue()
        self._idle = threading.Condition()
        self._busy = 0
        self._client: MlflowClient | None = None
        self._exp_id: str | None = None
        self._parent_id: str | None = None
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
        sweep = self.sweep
        from study.spec import flatten

        params = flatten(sweep.model_dump(mode="json", exclude_none=True))
        self._put({"op": "sweep_start", "sweep": sweep.name, "experiment": sweep.experiment_name, "method": sweep.method,
                   "params": params, "sweep_text": sweep.source_text, "time_ms": tracking._now_ms()})

    def log_run(self, record: dict[str, Any], run_key: str, *, attempt: int = 1, trial: int | None = None,
                node: str | None = None, start_ms: int | None = None, end_ms: int | None = None) -> None:
        end_ms = end_ms or tracking._now_ms()
        start_ms = start_ms or end_ms - int(1000 * record.get("wall_s", 0.0))
        self._put({"op": "run", "sweep": self.sweep.name, "run_key": run_key, "record": record, "attempt": attempt,
                   "trial": trial, "node": node, "start_ms": start_ms, "end_ms": end_ms})

    def end_sweep(self, status: str, metrics: dict[str, float]) -> None:
        self._put({"op": "sweep_end", "status": status, "metrics": metrics, "time_ms": tracking._now_ms()})

    def close(self, timeout_s: float | None = None) -> bool:
        """Stop after the queue is written (or spooled, if the store stays down past timeout_s).
        Returns True when everything reached the store."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        with self._idle:
            while (self._busy or self._outage_since is not None) and (deadline is None or time.monotonic() < deadline):
                self._idle.wait(0.05 if deadline is None else max(0.0, min(0.05, deadline - time.monotonic())))
        self._queue.put(_STOP)
        self._thread.join()
        return self._outage_since is None and not self.spool.exists()

    def pending(self) -> int:
        return self._busy

    # --- the thread ----------------------------------------------------------------------------

    def _put(self, command: dict[str, Any]) -> None:
        with self._idle:
            self._busy += 1
        self._queue.put(command)

    def _done(self, count: int = 1) -> None:
        with self._idle:
            self._busy -= count
            self._idle.notify_all()

    def _loop(self) -> None:
        backoff = 0.5
        retry_at = 0.0 if self.spool.exists() else None  # replay an earlier coordinator's spool first
        stopping = False
        while True:
            if retry_at is not None and time.monotonic() >= retry_at:
                if self._replay():
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
                stopping = True
                retry_at = None if retry_at is None else 0.0  # one last replay attempt
                continue
            if retry_at is not None:
                self._append_spool(command)  # keep order: nothing overtakes spooled writes
                self._done()
                continue
            try:
                self._apply(command)
                self._done()
            except Exception as error:  # noqa: BLE001 - classified below
                if is_unreachable(error):
                    self._enter_outage(error)
                    self._append_spool(command)
                    retry_at = time.monotonic() + backoff
                else:
                    self._reject(command, error)
                self._done()

    def _apply(self, command: dict[str, Any]) -> None:
        if self._client is None:
            self._client = MlflowClient(self.tracking_uri)
        op = command["op"]
        if op == "sweep_start":
            self._exp_id, self._parent_id = tracking.apply_sweep_start(self._client, self.tracking_uri, command)
            return
        if self._parent_id is None:  # replaying a spool whose sweep_start already reached the store
            parent = tracking.parent_run(self.sweep, self.tracking_uri, self._client)
            if parent is None:
                raise RuntimeError(f"no parent run for sweep {self.sweep.name}")
            self._exp_id, self._parent_id = parent.info.experiment_id, parent.info.run_id
        if op == "run":
            tracking.apply_run(self._client, self.tracking_uri, self._exp_id, self._parent_id, command)
        else:
            tracking.apply_sweep_end(self._client, self._parent_id, command)
        self.written += 1

    def _replay(self) -> bool:
        """Apply the spooled commands in order; keep the rest on the first failure."""
        try:
            lines = self.spool.read_text().splitlines()
        except FileNotFoundError:
            lines = []
        for index, line in enumerate(lines):
            try:
                self._apply(json.loads(line))
            except Exception as error:  # noqa: BLE001
                if not is_unreachable(error):
                    self._reject(json.loads(line), error)
                    continue
                self._enter_outage(error)
                self._rewrite_spool(lines[index:])
                return False
        self.spool.unlink(missing_ok=True)
        if self._outage_since is not None:
            log.warning("tracking store is back; replayed %d spooled writes", len(lines))
        self._outage_since = None
        return True

    def _enter_outage(self, error: BaseException) -> None:
        self._client = None  # reconnect from scratch next time
        if self._outage_since is None:
            self._outage_since = time.time()
        self._outage_error = f"{type(error).__name__}: {str(error).splitlines()[0][:120] if str(error) else ''}"

    def _append_spool(self, command: dict[str, Any]) -> None:
        self.spool.parent.mkdir(parents=True, exist_ok=True)
        with self.spool.open("a") as handle:
            handle.write(json.dumps(command) + "\n")

    def _rewrite_spool(self, lines: list[str]) -> None:
        temporary = self.spool.with_suffix(".tmp")
        temporary.write_text("".join(line + "\n" for line in lines))
        os.replace(temporary, self.spool)

    def _reject(self, command: dict[str, Any], error: BaseException) -> None:
        """A write the store refuses (not an outage): keep it beside the spool and say so."""
        message = f"{command.get('op')} {command.get('run_key', '')}: {type(error).__name__}: {error}"
        self.rejected.append(message[:300])
        log.error("MLflow rejected a write: %s", message[:300])
        rejected = self.spool.with_suffix(".rejected.jsonl")
        rejected.parent.mkdir(parents=True, exist_ok=True)
        with rejected.open("a") as handle:
            handle.write(json.dumps({"error": message[:300], "command": command}) + "\n")


def spooled_finished(sweep: Any, tracking_uri: str) -> dict[str, dict[str, float]]:
    """run_key -> scalars of FINISHED runs waiting in the spool (they count as done for resume)."""
    path: Path = tracking.spool_path(sweep.name, tracking_uri)
    found: dict[str, dict[str, float]] = {}
    if path.exists():
        for line in path.read_text().splitlines():
            command = json.loads(line)
            if command.get("op") == "run" and command["record"]["status"] == "FINISHED":
                found[command["run_key"]] = command["record"]["scalars"]
    return found
