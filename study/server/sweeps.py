"""The sweeps one `study serve` process runs: each in a background thread of the process, with its
progress in memory, cancel on request, and resume on restart (every sweep whose MLflow parent run is
still RUNNING is submitted again, which skips its finished run keys). study.server.app is the HTTP face of
this; MLflow holds the durable truth.
"""

from __future__ import annotations

import dataclasses
import logging
import re
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Literal

from fastapi import HTTPException

import study.mlflow_names as names

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 1_000_000  # a sweep file is a few kB; this is generous and still bounded
# MLflow parent-run status (and SweepSummary.status) -> the service's sweep states.
STORE_STATES = {"RUNNING": "running", "FINISHED": "finished", "KILLED": "cancelled", "FAILED": "failed"}


@dataclasses.dataclass(frozen=True)
class ServiceConfig:
    """Where the service sends work and records it. `token=None` means no auth (--insecure)."""

    token: str | None
    tracking_uri: str | None = None
    ray_address: str | None = None
    optuna_storage: str | None = None
    max_in_flight: int | None = None
    max_body_bytes: int = MAX_BODY_BYTES
    resume: bool = True


@dataclasses.dataclass
class SweepRecord:
    """What the service knows about one sweep it runs (in memory; MLflow holds the durable truth)."""

    sweep_id: str
    state: Literal["running", "cancelling", "cancelled", "finished", "failed"] = "running"
    progress: dict[str, Any] = dataclasses.field(default_factory=dict)
    summary: dict[str, Any] | None = None
    error: str | None = None
    resumed: bool = False
    submitted_at: float = dataclasses.field(default_factory=time.time)
    finished_at: float | None = None
    cancel_event: threading.Event = dataclasses.field(default_factory=threading.Event)

    def view(self) -> dict[str, Any]:
        return {
            "id": self.sweep_id,
            "state": self.state,
            "source": "service",
            **self.progress,
            "error": self.error,
            "resumed": self.resumed,
            "submitted_at": self.submitted_at,
            "finished_at": self.finished_at,
            "summary": self.summary,
        }


_QUOTED_PATH = re.compile(r"""(['"])(?:[A-Za-z][\w+.-]*:/)?/[^'"]*\1""")
_BARE_PATH = re.compile(r"""(?<![\w.])(?:[A-Za-z][\w+.-]*:/)?/[^\s'",;)]+""")


def _without_paths(message: str) -> str:
    """An error as clients see it: file paths and store URIs of this host replaced by <path>
    (the full message, with its traceback, goes to the service log)."""
    return _BARE_PATH.sub("<path>", _QUOTED_PATH.sub("<path>", message))


def _plain(value: Any) -> dict[str, Any]:
    """Progress / SweepSummary as a JSON-able dict, whatever the coordinator made them of."""
    if value is None:
        return {}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    if hasattr(value, "model_dump"):
        return value.model_dump(mode="json")
    return dict(value) if isinstance(value, dict) else dict(vars(value))


class SweepService:
    """Runs sweeps in background threads and answers questions about them."""

    def __init__(self, config: ServiceConfig):
        self.config = config
        self._sweeps: dict[str, SweepRecord] = {}
        self._lock = threading.Lock()

    def start(self, sweep: Any, *, resumed: bool = False) -> SweepRecord:
        """409 when this service runs the sweep, or another coordinator (CLI, another service) holds
        its lease on the store; 503 when the store will not create its parent run."""
        from study.scheduling import lease
        from study.recording import parent_run as sweep_start
        from study.recording import layout as tracking

        with self._lock:
            current = self._sweeps.get(sweep.name)
            if current is not None and current.state in ("running", "cancelling"):
                raise HTTPException(409, f"sweep {sweep.name!r} is already running")
            record = SweepRecord(sweep_id=sweep.name, resumed=resumed)
            self._sweeps[sweep.name] = record
        try:
            held = lease.acquire(sweep, tracking.resolve_tracking_uri(self.config.tracking_uri))
        except (lease.SweepBusy, sweep_start.SweepStartRefused) as error:
            with self._lock:  # forget the record: the sweep is not ours
                if self._sweeps.get(sweep.name) is record:
                    if current is None:
                        del self._sweeps[sweep.name]
                    else:
                        self._sweeps[sweep.name] = current
            status = 409 if isinstance(error, lease.SweepBusy) else 503
            raise HTTPException(status, _without_paths(str(error))) from None
        # Daemon: a service that stops leaves the parent run RUNNING, which is what resume looks for.
        threading.Thread(target=self._run, args=(sweep, record, held), name=f"sweep-{sweep.name}", daemon=True).start()
        return record

    def _run(self, sweep: Any, record: SweepRecord, held: Any) -> None:
        from study.scheduling.coordinator import submit

        def on_progress(progress: Any) -> None:
            record.progress = _plain(progress)

        try:
            summary = submit(
                sweep,
                tracking_uri=self.config.tracking_uri,
                ray_address=self.config.ray_address,
                optuna_storage=self.config.optuna_storage,
                max_in_flight=self.config.max_in_flight,
                on_progress=on_progress,
                cancel_event=record.cancel_event,
                held=held,
            )
            record.summary = _plain(summary)
            # The coordinator's verdict (FINISHED | KILLED | FAILED) wins over whether cancel was asked.
            fallback = "cancelled" if record.cancel_event.is_set() else "finished"
            record.state = STORE_STATES.get(getattr(summary, "status", ""), fallback)
        except Exception as error:  # noqa: BLE001 - reported on the sweep, logged with its traceback here
            log.exception("sweep %s failed", sweep.name)
            record.error = _without_paths(f"{type(error).__name__}: {error}".splitlines()[0])[:500]
            record.state = "failed"
        finally:
            record.finished_at = time.time()

    def get(self, sweep_id: str) -> SweepRecord | None:
        return self._sweeps.get(sweep_id)

    def all(self) -> list[SweepRecord]:
        return list(self._sweeps.values())

    def cancel(self, sweep_id: str) -> SweepRecord:
        record = self._sweeps.get(sweep_id)
        if record is None:
            raise HTTPException(404, f"sweep {sweep_id!r} is not known to this service")
        if record.state == "running":
            record.state = "cancelling"
            record.cancel_event.set()
        return record

    def resume_unfinished(self) -> list[str]:
        """Re-submit every sweep whose MLflow parent run is RUNNING (left so by a stopped service)."""
        from mlflow.tracking import MlflowClient

        from study.spec.loading import load_sweep

        client = MlflowClient(self.config.tracking_uri)
        experiment_ids = [e.experiment_id for e in client.search_experiments()]
        if not experiment_ids:
            return []
        parents = client.search_runs(
            experiment_ids, filter_string=f"tags.`{names.TAG_KIND}` = '{names.KIND_SWEEP}' and attributes.status = 'RUNNING'"
        )
        resumed = []
        for parent in parents:
            try:
                with tempfile.TemporaryDirectory() as scratch:
                    path = client.download_artifacts(parent.info.run_id, names.SWEEP_FILE_ARTIFACT, scratch)
                    sweep = load_sweep(Path(path).read_text() + "\n")
            except Exception:  # noqa: BLE001 - one unreadable sweep must not stop the service
                log.exception("cannot resume sweep run %s", parent.info.run_id)
                continue
            if sweep.name not in self._sweeps:
                try:
                    self.start(sweep, resumed=True)
                except HTTPException as refused:  # another coordinator runs it (or the store refuses)
                    log.warning("not resuming sweep %s: %s", sweep.name, refused.detail)
                    continue
                resumed.append(sweep.name)
        return resumed
