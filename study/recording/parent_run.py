"""The sweep's parent run, found or created in the coordinator's own thread before anything is
scheduled (issue 12: never run a sweep whose parent-run write was refused). Brief retries cover a
store that is migrating, locked or starting; a refusal is one line and nothing is journaled.
The writer (study.recording.writer) later applies the journaled sweep_start to this same parent run.
A fresh SQLite store is created under store_init_lock, beside it in LOCK_DIR (the sweeps' leases,
study.scheduling.lease, live there too)."""

from __future__ import annotations

import fcntl
import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from mlflow import MlflowClient

from study.mlflow_names import KIND_SWEEP
from study.recording.layout import create_parent, experiment_id, now_ms, parent_order, store_directory, sweep_runs


class SweepStartRefused(RuntimeError):
    """The store would not create (or show) the sweep's experiment and parent run; nothing ran."""


START_TRIES = 5
START_RETRY_S = (0.5, 1.5, 3.0, 5.0)  # ~10 s in all: long enough for a migration or a lock to pass
SETTLE_S = 1.0  # a second coordinator's parent run becomes visible within this (server stores)
_PERMANENT = ("PERMISSION_DENIED", "UNAUTHENTICATED", "INVALID_PARAMETER_VALUE")
LOCK_DIR = ".study-locks"  # beside an embedded store: its init lock, and the sweeps' leases (study.scheduling.lease)


@contextmanager
def store_init_lock(tracking_uri: str) -> Iterator[None]:
    """Around a process's first use of a SQLite store: one process at a time creates its tables."""
    store = sqlite_file(tracking_uri)
    if store is None:
        yield
        return
    path = store.parent / LOCK_DIR / f"{store.name}.init.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing drops the lock


def sqlite_file(tracking_uri: str) -> Path | None:
    """The database file of a sqlite:/// tracking URI (relative to the working directory); None otherwise."""
    if urlparse(tracking_uri).scheme != "sqlite":
        return None
    path = tracking_uri.removeprefix("sqlite:///")
    return Path(path if path.startswith("/") else Path.cwd() / path)


def sweep_start_command(sweep: Any) -> dict[str, Any]:
    """The sweep_start write command (TrackingWriter.start_sweep journals the same)."""
    from study.spec.loading import flatten

    params = flatten(sweep.model_dump(mode="json", exclude_none=True))
    return {"op": "sweep_start", "sweep": sweep.name, "experiment": sweep.experiment_name, "method": sweep.method,
            "params": params, "sweep_text": sweep.source_text, "time_ms": now_ms()}


def start_parent(sweep: Any, tracking_uri: str) -> str:
    """Find or create the sweep's experiment and parent run now, retrying briefly (a fresh SQLite
    store that another process is migrating, a locked database, a server starting); the parent's
    run id. Raises SweepStartRefused with a one-line reason when the store keeps refusing.
    The first use of a SQLite store holds store_init_lock.
    Two coordinators creating the parent at once on a server store: each waits SETTLE_S, and the
    one whose run is not the sweep's (parent_order) deletes its own."""
    last: BaseException | None = None
    for attempt in range(START_TRIES):
        try:
            with store_init_lock(tracking_uri):  # a fresh SQLite store: one process migrates it
                client = MlflowClient(tracking_uri)
                exp_id = experiment_id(client, sweep.experiment_name, tracking_uri, create=True)
            runs = list(sweep_runs(client, exp_id, sweep.name, kind=KIND_SWEEP))
            if runs:
                return min(runs, key=parent_order).info.run_id
            own = create_parent(client, exp_id, sweep_start_command(sweep))
            if store_directory(tracking_uri) is None:
                time.sleep(SETTLE_S)
            sweeps = [run for run in sweep_runs(client, exp_id, sweep.name, kind=KIND_SWEEP)]
            first = min(sweeps, key=parent_order).info.run_id if sweeps else own
            if first != own:
                client.delete_run(own)
            return first
        except Exception as error:  # noqa: BLE001 - classified: permanent refusals fail at once
            last = error
            if getattr(error, "error_code", "") in _PERMANENT or attempt == START_TRIES - 1:
                break
            if "RESOURCE_ALREADY_EXISTS" in str(getattr(error, "error_code", "")):
                continue  # another process created the experiment just now: look again
            time.sleep(START_RETRY_S[attempt])
    first_line = str(last).strip().splitlines()[0][:200] if str(last).strip() else ""
    raise SweepStartRefused(f"sweep {sweep.name}: the tracking store refused to create its parent run "
                            f"({type(last).__name__}: {first_line}); nothing was scheduled") from last


class Background:
    """function() in a daemon thread; result() joins it and returns its value or raises its error. The
    coordinator starts the store (parent run, earlier runs) so while Ray starts."""

    def __init__(self, function: Callable[[], Any]):
        self._value: Any = None
        self._error: BaseException | None = None
        self._function = function
        self._thread = threading.Thread(target=self._call, daemon=True)
        self._thread.start()

    def _call(self) -> None:
        try:
            self._value = self._function()
        except BaseException as error:  # noqa: BLE001 - handed to result()
            self._error = error

    def result(self) -> Any:
        self._thread.join()
        if self._error is not None:
            raise self._error
        return self._value

