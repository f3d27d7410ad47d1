"""Many finished child runs in one database transaction, for stores that MLflow keeps in SQL.

MLflow's client writes a run in three or more transactions (create_run, log_batch,
set_terminated), each a fresh ORM session with per-row checks: about 25-40 ms per tiny run on
SQLite, whatever the batch. A finished child run is known whole by the time we write it, so here a
batch of them goes in as plain multi-row INSERTs into MLflow's own tables (its SQLAlchemy models,
so the column names and types are MLflow's), one commit per batch:

- `runs` rows carry their final status and end time: a child is never seen half-written;
- `latest_metrics` holds, per key, the entry MLflow itself would keep (highest (step, timestamp,
  value));
- the run id is chosen by the caller (uuid4 hex, as MLflow does), so a replayed batch can tell
  which of its runs already landed.

Only for stores that MLflow opens as a SqlAlchemyStore (sqlite, postgresql, mysql URIs). A server
(http) store goes through the client (study.tracking.apply_run). tests/test_bulk.py checks that a
run written here reads back through MLflow's API exactly like one written through the client.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlparse

from mlflow.entities import LifecycleStage, SourceType
from mlflow.store.tracking.dbmodels.models import SqlLatestMetric, SqlMetric, SqlParam, SqlRun, SqlTag
from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore
from mlflow.utils.uri import append_to_uri_path
from sqlalchemy import select

SQL_SCHEMES = ("sqlite", "postgresql", "mysql", "mssql")


@dataclass
class ChildRun:
    """One finished child run, ready to insert (metrics as (key, value, timestamp_ms, step))."""

    run_id: str
    experiment_id: str
    name: str
    status: str
    start_ms: int
    end_ms: int
    tags: dict[str, str]
    params: dict[str, str]
    metrics: list[tuple[str, float, int, int]] = field(default_factory=list)


def is_sql_store(tracking_uri: str) -> bool:
    """A tracking URI that MLflow opens as a SqlAlchemyStore."""
    return urlparse(tracking_uri).scheme.split("+")[0] in SQL_SCHEMES


def artifact_uri(experiment_location: str, run_id: str) -> str:
    """Where MLflow's create_run puts a run's artifacts (SqlAlchemyStore.create_run)."""
    return append_to_uri_path(experiment_location, run_id, SqlAlchemyStore.ARTIFACTS_FOLDER_NAME)


def existing_run_ids(store: SqlAlchemyStore, run_ids: Iterable[str]) -> set[str]:
    """The ones of run_ids that are in the store already (a replay skips them)."""
    wanted = list(run_ids)
    found: set[str] = set()
    with store.ManagedSessionMaker() as session:
        for start in range(0, len(wanted), 500):
            rows = session.execute(select(SqlRun.run_uuid).where(SqlRun.run_uuid.in_(wanted[start : start + 500])))
            found.update(row[0] for row in rows)
    return found


def insert_runs(store: SqlAlchemyStore, runs: Sequence[ChildRun], artifact_location: str) -> None:
    """Insert finished child runs, whole, in one transaction (all of them land or none)."""
    if not runs:
        return
    run_rows, tag_rows, param_rows, metric_rows, latest_rows = [], [], [], [], []
    for run in runs:
        run_rows.append({
            "run_uuid": run.run_id, "name": run.name, "source_type": SourceType.to_string(SourceType.UNKNOWN),
            "source_name": "", "entry_point_name": "", "user_id": "unknown", "status": run.status,  # as MlflowClient.create_run
            "start_time": run.start_ms, "end_time": run.end_ms, "deleted_time": None, "source_version": "",
            "lifecycle_stage": LifecycleStage.ACTIVE, "artifact_uri": artifact_uri(artifact_location, run.run_id),
            "experiment_id": int(run.experiment_id),
        })
        tag_rows += [{"key": key, "value": value, "run_uuid": run.run_id} for key, value in run.tags.items()]
        param_rows += [{"key": key, "value": value, "run_uuid": run.run_id} for key, value in run.params.items()]
        latest: dict[str, tuple[int, int, float]] = {}
        for key, value, timestamp, step in run.metrics:
            metric_rows.append({"key": key, "value": value, "timestamp": timestamp, "step": step, "is_nan": False,
                                "run_uuid": run.run_id})
            if key not in latest or (step, timestamp, value) > latest[key]:
                latest[key] = (step, timestamp, value)
        latest_rows += [{"key": key, "value": value, "timestamp": timestamp, "step": step, "is_nan": False,
                         "run_uuid": run.run_id} for key, (step, timestamp, value) in latest.items()]
    # Grouped by key, the rows go into MLflow's (key, ...) primary-key indexes in order: fewer
    # page splits, so a faster insert and a denser file.
    metric_rows.sort(key=lambda row: row["key"])
    latest_rows.sort(key=lambda row: row["key"])
    with store.ManagedSessionMaker() as session:  # commits on exit, rolls back on error
        connection = session.connection()
        for model, rows in ((SqlRun, run_rows), (SqlTag, tag_rows), (SqlParam, param_rows),
                            (SqlMetric, metric_rows), (SqlLatestMetric, latest_rows)):
            _insert(connection, model.__table__, rows)


def _insert(connection: Any, table: Any, rows: list[dict[str, Any]]) -> None:
    """One executemany of plain tuples straight to the driver: SQLAlchemy's per-row parameter
    processing costs more than SQLite's own insert here. Table and column names are MLflow's."""
    if not rows:
        return
    columns = list(rows[0])
    marker = "?" if connection.dialect.paramstyle == "qmark" else "%s"
    quote = connection.dialect.identifier_preparer.quote
    statement = (f"INSERT INTO {quote(table.name)} ({', '.join(quote(c) for c in columns)}) "
                 f"VALUES ({', '.join([marker] * len(columns))})")
    for start in range(0, len(rows), 5000):
        connection.exec_driver_sql(statement, [tuple(row[c] for c in columns) for row in rows[start : start + 5000]])
