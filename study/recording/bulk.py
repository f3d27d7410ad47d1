"""Many finished child runs in one database transaction, for stores that MLflow keeps in SQL.

MLflow's client writes a run in three or more transactions (create_run, log_batch,
set_terminated), each a fresh ORM session with per-row checks: about 25-40 ms per tiny run on
SQLite, whatever the batch. A finished child run is known whole by the time we write it, so here a
batch of them goes in as plain multi-row INSERTs into MLflow's own tables (its SQLAlchemy models,
so the column names and types are MLflow's), one commit per batch:

- `runs` rows carry their final status and end time: a child is never seen half-written;
- `latest_metrics` holds, per key, the entry MLflow itself would keep (highest (step, timestamp,
  value));
- the run id is chosen by the caller (new_run_id: a time-ordered UUID, 32 hex digits like MLflow's
  own), so a replayed batch can tell which of its runs already landed, and the indexes that begin
  with run_uuid (five of them) grow at their right edge instead of at random pages.

Only for stores that MLflow opens as a SqlAlchemyStore (sqlite, postgresql, mysql URIs). A server
(http) store goes through the client (study.recording.layout.apply_run). tests/recording_tests/test_bulk.py checks that a
run written here reads back through MLflow's API exactly like one written through the client.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from operator import itemgetter
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


class _RunIds:
    """UUIDv7 (RFC 9562): 48 bits of Unix milliseconds, then 74 random bits that count up within a
    millisecond (the RFC's monotonic method), so ids made by one process sort by creation."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._ms = 0
        self._tail = 0

    def __call__(self) -> str:
        with self._lock:
            ms = time.time_ns() // 1_000_000
            if ms > self._ms:  # 73 random bits: room to count up within the millisecond
                self._ms, self._tail = ms, int.from_bytes(os.urandom(10), "big") >> 7
            else:  # same millisecond (or the clock stepped back): the next id after the last one
                self._tail += 1
            ms, tail = self._ms, self._tail
        value = (ms << 80) | (0x7 << 76) | ((tail >> 62) << 64) | (0b10 << 62) | (tail & ((1 << 62) - 1))
        return f"{value:032x}"


new_run_id = _RunIds()


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


_RUN_COLUMNS = ("run_uuid", "name", "source_type", "source_name", "entry_point_name", "user_id", "status",
                "start_time", "end_time", "deleted_time", "source_version", "lifecycle_stage", "artifact_uri",
                "experiment_id")
_KEY_VALUE_COLUMNS = ("key", "value", "run_uuid")
_METRIC_COLUMNS = ("key", "value", "timestamp", "step", "is_nan", "run_uuid")


def insert_runs(store: SqlAlchemyStore, runs: Sequence[ChildRun], artifact_location: str) -> None:
    """Insert finished child runs, whole, in one transaction (all of them land or none)."""
    if not runs:
        return
    source_type = SourceType.to_string(SourceType.UNKNOWN)  # as MlflowClient.create_run
    run_rows, tag_rows, param_rows, metric_rows, latest_rows = [], [], [], [], []
    for run in runs:
        run_id = run.run_id
        run_rows.append((run_id, run.name, source_type, "", "", "unknown", run.status, run.start_ms, run.end_ms, None,
                         "", LifecycleStage.ACTIVE, artifact_uri(artifact_location, run_id), int(run.experiment_id)))
        tag_rows += [(key, value, run_id) for key, value in run.tags.items()]
        param_rows += [(key, value, run_id) for key, value in run.params.items()]
        latest: dict[str, tuple[int, int, float]] = {}
        for key, value, timestamp, step in run.metrics:
            metric_rows.append((key, value, timestamp, step, False, run_id))
            if key not in latest or (step, timestamp, value) > latest[key]:
                latest[key] = (step, timestamp, value)
        latest_rows += [(key, value, timestamp, step, False, run_id) for key, (step, timestamp, value) in latest.items()]
    # Grouped by key, the rows go into MLflow's (key, ...) primary-key indexes in order: fewer
    # page splits, so a faster insert and a denser file.
    metric_rows.sort(key=itemgetter(0))  # stable: within a key, runs stay in id order
    latest_rows.sort(key=itemgetter(0))
    with store.ManagedSessionMaker() as session:  # commits on exit, rolls back on error
        connection = session.connection()
        for model, columns, rows in ((SqlRun, _RUN_COLUMNS, run_rows), (SqlTag, _KEY_VALUE_COLUMNS, tag_rows),
                                     (SqlParam, _KEY_VALUE_COLUMNS, param_rows),
                                     (SqlMetric, _METRIC_COLUMNS, metric_rows),
                                     (SqlLatestMetric, _METRIC_COLUMNS, latest_rows)):
            _insert(connection, model.__table__, columns, rows)


def _insert(connection: Any, table: Any, columns: tuple[str, ...], rows: list[tuple]) -> None:
    """Plain tuples straight to the driver: SQLAlchemy's per-row parameter processing costs more
    than SQLite's own insert here. psycopg2's executemany is one round trip per row (~200 per tiny
    run), so on PostgreSQL the rows go as multi-row VALUES (execute_values). Table and column
    names are MLflow's."""
    if not rows:
        return
    quote = connection.dialect.identifier_preparer.quote
    head = f"INSERT INTO {quote(table.name)} ({', '.join(quote(c) for c in columns)}) VALUES "
    if connection.dialect.driver == "psycopg2":
        from psycopg2.extras import execute_values

        with connection.connection.cursor() as cursor:  # the transaction's own DBAPI connection
            execute_values(cursor, head + "%s", rows, page_size=1000)
        return
    marker = "?" if connection.dialect.paramstyle == "qmark" else "%s"
    statement = head + f"({', '.join([marker] * len(columns))})"
    for start in range(0, len(rows), 5000):
        connection.exec_driver_sql(statement, rows[start : start + 5000])
