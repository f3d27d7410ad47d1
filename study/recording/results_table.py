"""The sweep's results table: one row per child run (every attempt), kept as Parquet parts among the
parent run's artifacts (results/), so that `study results`, the report and the API read a sweep in
one artifact listing instead of paging `search_runs` over thousands of runs.

MLflow stays the source of truth; the table is a copy the coordinator writes as it writes the runs:
- columns are those of `mlflow.search_runs` (run_id, status, end_time, tags.…, params.…,
  metrics.… with each metric's latest value), so both sources go through the same reader code;
- parts are appended in chunks during the sweep (TABLE_PART_ROWS rows or TABLE_PART_S seconds);
- the parent run's metric METRIC_RESULTS_ROWS counts the rows and its tag TAG_RESULTS_GENERATION
  names the current set of parts. A coordinator that inherits a table it cannot trust (the parent
  was left RUNNING, or has no table) writes a new generation from the store when the sweep ends.

Readers trust the table only when the parent run is terminated (a coordinator closed it) and the
parts hold exactly METRIC_RESULTS_ROWS rows; otherwise they fall back to `search_runs`. The price:
a child run deleted or added by hand in the UI is seen by the table only after the next
submission of the sweep; `study results --from-store` reads the store itself.
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlparse
from urllib.request import url2pathname

import pandas as pd

from study.mlflow_names import (METRIC_RESULTS_ROWS, RESULTS_TABLE_DIR, TAG_ATTEMPT, TAG_REASON, TAG_RESULTS_GENERATION,
                         TAG_RUN_KEY)

TABLE_PART_ROWS = int(os.environ.get("STUDY_TABLE_PART_ROWS", "2000"))
TABLE_PART_S = float(os.environ.get("STUDY_TABLE_PART_S", "30"))
_TAGS = (TAG_RUN_KEY, TAG_ATTEMPT, TAG_REASON)


def row(run_id: str, status: str, end_ms: int, tags: dict[str, str], params: dict[str, str],
        metrics: dict[str, float]) -> dict[str, Any]:
    """One table row, keyed like a row of mlflow.search_runs."""
    entry: dict[str, Any] = {"run_id": run_id, "status": status, "end_time": end_ms}
    entry.update({f"tags.{key}": tags[key] for key in _TAGS if key in tags})
    entry.update({f"params.{key}": value for key, value in params.items()})
    entry.update({f"metrics.{key}": value for key, value in metrics.items()})
    return entry


def row_from_run(run: Any) -> dict[str, Any]:
    """The row of a run read back from MLflow (rebuilding the table)."""
    return row(run.info.run_id, run.info.status, run.info.end_time or 0, run.data.tags, run.data.params,
               run.data.metrics)


def embedded_parent(tracking_uri: str | None, sweep: str) -> tuple[str, str, float | None, str | None] | None:
    """(artifact URI, status, METRIC_RESULTS_ROWS, TAG_RESULTS_GENERATION) of a sweep's parent run,
    read straight from an embedded SQLite store's file (read-only, stdlib sqlite3, MLflow's table
    names). Importing MLflow's SQL store costs about a second, more than the rest of a results
    query; None whenever anything is unexpected, and the caller asks MLflow itself."""
    import sqlite3

    from study.mlflow_names import KIND_SWEEP, TAG_KIND, TAG_SWEEP_ID

    if not tracking_uri or not tracking_uri.startswith("sqlite:///"):
        return None
    path = Path(url2pathname(tracking_uri.removeprefix("sqlite:///")))
    path = path if path.is_absolute() else Path.cwd() / path
    if not path.is_file():
        return None
    try:
        with sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True, timeout=5) as connection:
            found = connection.execute(
                "SELECT r.run_uuid, r.artifact_uri, r.status FROM runs r"
                " JOIN tags k ON k.run_uuid = r.run_uuid AND k.key = ? AND k.value = ?"
                " JOIN tags s ON s.run_uuid = r.run_uuid AND s.key = ? AND s.value = ?"
                " WHERE r.lifecycle_stage = 'active' ORDER BY r.start_time, r.run_uuid LIMIT 1",
                (TAG_KIND, KIND_SWEEP, TAG_SWEEP_ID, sweep)).fetchone()
            if found is None:
                return None
            run_id, artifact_uri, status = found
            rows = connection.execute("SELECT value FROM latest_metrics WHERE run_uuid = ? AND key = ?",
                                      (run_id, METRIC_RESULTS_ROWS)).fetchone()
            generation = connection.execute("SELECT value FROM tags WHERE run_uuid = ? AND key = ?",
                                            (run_id, TAG_RESULTS_GENERATION)).fetchone()
    except sqlite3.Error:
        return None
    return artifact_uri, status, rows[0] if rows else None, generation[0] if generation else None


def part_name(generation: int, part: int) -> str:
    return f"g{generation:04d}-p{part:06d}.parquet"


class ResultsTable:
    """Rows waiting to be written as the next part (the writer thread's only)."""

    def __init__(self) -> None:
        self.generation = 0
        self.rows_written = 0
        self.trusted = False  # the parts already there are complete (set at sweep start)
        self._parts = 0
        self._pending: list[dict[str, Any]] = []
        self._last_flush = time.monotonic()

    def adopt(self, generation: int, rows: int | None, parts: int) -> None:
        """Continue the table a parent run already has (rows None: none, or not trusted)."""
        self.trusted = rows is not None
        self.generation = generation if self.trusted else generation + 1
        self.rows_written = rows or 0
        self._parts = parts if self.trusted else 0

    def add(self, entry: dict[str, Any]) -> None:
        self._pending.append(entry)

    def due(self) -> bool:
        return len(self._pending) >= TABLE_PART_ROWS or (
            bool(self._pending) and time.monotonic() - self._last_flush >= TABLE_PART_S)

    def flush(self, client: Any, parent_id: str) -> None:
        """Write pending rows as the next part; then record the row count on the parent."""
        self._last_flush = time.monotonic()
        if not self._pending:
            return
        self._write_part(client, parent_id, self._pending)
        self.rows_written += len(self._pending)
        self._pending = []
        client.log_metric(parent_id, METRIC_RESULTS_ROWS, self.rows_written)

    def rebuild(self, client: Any, parent_id: str, runs: list[Any]) -> None:
        """A fresh generation from the store's own runs (after a coordinator died mid-sweep). A new
        generation number: parts this writer flushed while untrusted must not count."""
        self.generation += 1
        self._parts, self._pending = 0, []
        entries = [row_from_run(run) for run in runs]
        if entries:
            self._write_part(client, parent_id, entries)
        self.rows_written, self.trusted = len(entries), True
        client.log_metric(parent_id, METRIC_RESULTS_ROWS, self.rows_written)

    def _write_part(self, client: Any, parent_id: str, entries: list[dict[str, Any]]) -> None:
        self._parts += 1
        client.set_tag(parent_id, TAG_RESULTS_GENERATION, str(self.generation))
        with tempfile.TemporaryDirectory() as directory:
            path = Path(directory) / part_name(self.generation, self._parts)
            pd.DataFrame(entries).to_parquet(path, index=False)
            client.log_artifact(parent_id, str(path), RESULTS_TABLE_DIR)


def read(artifact_uri: str, status: str, rows: float | None, generation: str | None,
         tracking_uri: str | None = None) -> pd.DataFrame | None:
    """The table of a terminated parent run (its artifact URI, status, METRIC_RESULTS_ROWS and
    TAG_RESULTS_GENERATION), if complete; None where the store must be read instead."""
    if status == "RUNNING" or rows is None or generation is None or rows != rows:  # NaN: no such metric
        return None
    from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository

    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # no bars on a results query
    prefix = f"g{int(generation):04d}-"
    local_root = urlparse(artifact_uri)
    frames = []
    if local_root.scheme == "file" and not local_root.netloc:  # beside an embedded store: read in place
        directory = Path(url2pathname(local_root.path)) / RESULTS_TABLE_DIR
        parts = sorted(directory.glob(f"{prefix}*.parquet")) if directory.is_dir() else []
        frames = [pd.read_parquet(part) for part in parts]
    else:
        try:  # mlflow-artifacts: URIs need the server's URL; a reader given the database URI has none
            repository = get_artifact_repository(artifact_uri, tracking_uri=tracking_uri)
            names = sorted(info.path for info in repository.list_artifacts(RESULTS_TABLE_DIR)
                           if Path(info.path).name.startswith(prefix))
            with tempfile.TemporaryDirectory() as scratch:
                frames = [pd.read_parquet(repository.download_artifacts(name, scratch)) for name in names]
        except Exception:  # noqa: BLE001 - the table is a copy: the caller reads the store instead
            return None
    table = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=["run_id", "status", "end_time"])
    if len(table) != int(rows):
        return None  # a part missing or an extra one: not the table the parent counted
    table["end_time"] = pd.to_datetime(table["end_time"], unit="ms", utc=True)
    return table


def parts_of(client: Any, parent: Any) -> int:
    """How many parts of the parent's current generation exist (to continue numbering)."""
    generation = parent.data.tags.get(TAG_RESULTS_GENERATION)
    if generation is None:
        return 0
    prefix = f"g{int(generation):04d}-"
    return sum(Path(info.path).name.startswith(prefix) for info in client.list_artifacts(parent.info.run_id, RESULTS_TABLE_DIR))
