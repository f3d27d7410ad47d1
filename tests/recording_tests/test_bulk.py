"""Child runs written in one SQL transaction (study.recording.bulk) read back through MLflow's own API exactly
like runs written through MlflowClient, and the results table agrees row for row with search_runs."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pandas as pd
import pytest
import sqlalchemy
from mlflow import MlflowClient

from study.recording import bulk

import study.mlflow_names as names

from study.reading import results

from study.recording import layout as tracking
from study.spec.loading import load_sweep
from study.recording.writer import TrackingWriter
from workers.result import Result
from workers.run import run

SWEEP = """
name: bulk
seeds: [0, 1]
parameters: {problem: dugd, mode: expected, n: 8, T: [2, 3], kappa: 10, batches_per_generation: 5, eval_samples: 50}
"""


@pytest.fixture(autouse=True)
def _spool(tmp_path, monkeypatch):
    monkeypatch.setenv("STUDY_SPOOL_DIR", str(tmp_path / "spool"))
    monkeypatch.chdir(tmp_path)  # a PostgreSQL store keeps its artifacts under ./mlruns


@pytest.fixture(params=["sqlite", "postgresql"])
def store_uri(request, tmp_path) -> str:
    """A fresh store: SQLite in tmp_path, or a new database on the session's PostgreSQL server
    (conftest.auth_server), reached through psycopg2 as a deployment would."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'mlflow.db'}"
    top = request.getfixturevalue("auth_server")
    database = f"bulk_{uuid.uuid4().hex[:12]}"
    engine = sqlalchemy.create_engine(top.database_url("postgres"), isolation_level="AUTOCOMMIT")
    with engine.connect() as connection:
        connection.exec_driver_sql(f"CREATE DATABASE {database}")
    engine.dispose()
    return top.database_url(database)


def _command(sweep, point, record, attempt=1):
    return {"op": "run", "sweep": sweep.name, "run_key": point.run_key, "record": record, "attempt": attempt,
            "trial": None, "node": "n1", "start_ms": 1_000, "end_ms": 2_000, "varying": sweep.varying_axes,
            "curves": "charted", "run_id": "0" * 31 + str(attempt)}


def _view(client, run_id):
    found = client.get_run(run_id)
    info = found.info
    history = {key: [(m.step, m.value, m.timestamp) for m in client.get_metric_history(run_id, key)]
               for key in found.data.metrics}
    artifacts = sorted(a.path for a in client.list_artifacts(run_id))
    tags = {k: v for k, v in found.data.tags.items() if k != names.TAG_PARENT}
    return {"status": info.status, "start": info.start_time, "end": info.end_time, "stage": info.lifecycle_stage,
            "name": info.run_name, "user": info.user_id, "artifact_tail": info.artifact_uri.rsplit("/", 2)[-1],
            "tags": tags, "params": found.data.params, "metrics": found.data.metrics, "history": history,
            "artifacts": artifacts}


def test_a_bulk_run_reads_back_like_a_client_run(tmp_path, store_uri):
    uri = store_uri
    sweep = load_sweep(SWEEP)
    point = sweep.expand()[0]
    record = run(point.params).as_record()
    client = MlflowClient(uri)
    start = tracking.apply_sweep_start(client, uri, {"experiment": "bulk", "sweep": "bulk", "method": "grid",
                                                     "params": {}, "sweep_text": SWEEP, "time_ms": 500})
    via_client = tracking.apply_run(client, uri, start.experiment_id, start.parent_id, _command(sweep, point, record))
    rows = tracking.apply_runs_bulk(client._tracking_client.store, uri, start, [_command(sweep, point, record, 2)])
    client_view, bulk_view = _view(client, via_client["run_id"]), _view(client, rows[0]["run_id"])
    assert client_view["tags"].pop(names.TAG_ATTEMPT) == "1" and bulk_view["tags"].pop(names.TAG_ATTEMPT) == "2"
    assert bulk_view == client_view
    # Only the charted curves are step-indexed metrics; the others stay in result.json.
    curves = {key for key, steps in bulk_view["history"].items() if len(steps) > 1}
    assert curves == {"learned_steps", "chebyshev_steps", "mse_curve", "mse_curve_chebyshev"}
    local = client.download_artifacts(rows[0]["run_id"], names.RESULT_ARTIFACT, str(tmp_path))
    with open(local) as handle:
        stored = json.load(handle)
    assert stored["learned_steps_by_generation"] == record["series"]["learned_steps_by_generation"]
    assert len(bulk.existing_run_ids(client._tracking_client.store, [rows[0]["run_id"], "f" * 32])) == 1


def test_results_table_agrees_with_search_runs_across_failures_and_reruns(tmp_path, store_uri):
    uri = store_uri
    sweep = load_sweep(SWEEP)
    points = sweep.expand()
    for submission in range(2):  # the second submission re-runs the failed point: two attempts of one key
        writer = TrackingWriter(sweep, uri)
        writer.start_sweep()
        for index, point in enumerate(points):
            if submission == 1 and index != 0:
                continue
            if submission == 0 and index == 0:
                writer.log_run(Result(params=point.params, status="FAILED", reason="diverged").as_record(), point.run_key)
            else:
                writer.log_run(run(point.params).as_record(), point.run_key, attempt=1 + submission)
        writer.end_sweep("FINISHED", {})
        assert writer.close(60) and writer.rejected == []
    parent = tracking.parent_run(sweep, uri)
    assert parent.data.metrics[names.METRIC_RESULTS_ROWS] == len(points) + 1
    from_table = results.load_results("bulk", uri)
    from_store = results.load_results("bulk", uri, from_store=True)
    assert len(from_table) == len(points) and from_table["status"].eq("FINISHED").all()
    pd.testing.assert_frame_equal(from_table[sorted(from_table.columns)], from_store[sorted(from_store.columns)],
                                  check_dtype=False)
    # A hand-deleted part makes the table incomplete: the reader goes back to the store.
    table_dir = Path(parent.info.artifact_uri.removeprefix("file://")) / names.RESULTS_TABLE_DIR
    for part in sorted(table_dir.iterdir())[:1]:
        part.unlink()
    pd.testing.assert_frame_equal(results.load_results("bulk", uri), from_store)


def test_run_ids_are_uuid7_hex_in_creation_order_and_unique_across_threads():
    import threading
    import uuid

    from mlflow.utils.validation import _validate_run_id

    made: list[list[str]] = [[] for _ in range(4)]

    def make(out: list[str]) -> None:
        out.extend(bulk.new_run_id() for _ in range(5_000))

    threads = [threading.Thread(target=make, args=(out,)) for out in made]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    every = [run_id for out in made for run_id in out]
    assert len(set(every)) == 20_000  # many share a millisecond: the counter keeps them apart
    for out in made:
        assert out == sorted(out)  # one thread's ids sort as it made them (what the indexes want)
    for run_id in every[:50]:
        parsed = uuid.UUID(hex=run_id)
        assert len(run_id) == 32 and parsed.version == 7 and parsed.variant == uuid.RFC_4122
        _validate_run_id(run_id)  # MLflow's own check
    import time

    assert abs((int(every[0][:12], 16) - time.time() * 1000)) < 60_000  # the first 48 bits are Unix ms
