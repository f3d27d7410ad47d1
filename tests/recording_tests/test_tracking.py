"""MLflow writes on real stores: batching limits, pagination of lookups, and the spool replaying
after an outage (a SQLite store whose directory is blocked, and an `mlflow server` started late)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from study.recording import parent_run as sweep_start

from study.recording import layout as tracking
from study.scheduling.coordinator import submit
from study.spec.loading import load_sweep
from study.recording.writer import TrackingWriter, is_unreachable
from tests.support.mlflow import children
from tests.support.topology import free_port
from workers.run import run


@pytest.fixture(autouse=True)
def _local_spool(tmp_path, monkeypatch):
    monkeypatch.setenv("STUDY_SPOOL_DIR", str(tmp_path / "spool"))
    monkeypatch.setenv("STUDY_TRACKING_BACKOFF_MAX_S", "0.5")


def test_batches_respect_mlflow_limits():
    params = [f"p{i}" for i in range(250)]
    metrics = list(range(2500))
    batches = list(tracking.log_batches(params, metrics))
    assert all(len(p) <= 100 and len(p) + len(m) <= 1000 for p, m in batches)
    assert [x for p, _ in batches for x in p] == params and [x for _, m in batches for x in m] == metrics


def test_big_run_lands_whole_and_lookups_paginate(mlflow_uri, monkeypatch):
    # curves: all, so the probe's long "curve" is logged as step-indexed metrics (it is not a charted one)
    sweep = load_sweep("name: pages\nseeds: [0, 1, 2, 3]\ntracking: {curves: all}\nparameters: {problem: probe, x: [0, 1]}")
    writer = TrackingWriter(sweep, mlflow_uri)
    writer.start_sweep()
    for index, point in enumerate(sweep.expand()):
        record = run(point.params).as_record()
        if index == 0:  # one run with a long curve and many info facts: several log_batch calls
            record["series"]["curve"] = [0.5**k for k in range(2500)]
            record["info"] = {f"fact{i}": i for i in range(150)}
        writer.log_run(record, point.run_key)
    writer.end_sweep("FINISHED", {"runs_finished": 8})
    assert writer.close(60) and writer.rejected == []
    monkeypatch.setattr(tracking, "PAGE_SIZE", 3)  # force several pages of search_runs
    assert tracking.finished_run_keys(sweep, mlflow_uri) == {p.run_key for p in sweep.expand()}
    first = next(r for r in children(mlflow_uri, "pages") if r.data.tags[tracking.TAG_RUN_KEY] == sweep.expand()[0].run_key)
    history = MlflowClient(mlflow_uri).get_metric_history(first.info.run_id, "curve")
    assert len(history) == 2500 and {m.step: m.value for m in history}[10] == 0.5**10
    assert len([k for k in first.data.params if k.startswith("fact")]) == 150
    assert tracking.parent_run(sweep, mlflow_uri).data.metrics["runs_finished"] == 8
    assert not writer.spool.exists()


def test_connection_errors_are_outages_and_rejections_are_not():
    assert is_unreachable(ConnectionRefusedError(111, "Connection refused"))
    wrapped = MlflowException("API request to http://127.0.0.1:1/api failed with exception: Max retries exceeded")
    assert is_unreachable(wrapped)
    assert not is_unreachable(MlflowException("Invalid value for parameter 'x'", error_code="INVALID_PARAMETER_VALUE"))


def test_a_store_unreachable_at_the_start_fails_the_start_then_runs_once_it_is_back(ray_local, tmp_path):
    # Issue 12: a sweep whose parent run cannot be written is not run (an outage mid-sweep is spooled:
    # tests/recording_tests/test_reliability_tracking.py and tests/recording_tests/test_slow_store.py).
    blocker = tmp_path / "store"
    blocker.write_text("a file where the store's directory should be")
    uri = f"sqlite:///{blocker / 'mlflow.db'}"
    sweep = load_sweep("name: outage\nseeds: [0, 1]\nparameters: {problem: probe, work_s: 0.05, x: [0, 1, 2, 3, 4]}")
    with pytest.raises(sweep_start.SweepStartRefused) as refused:
        submit(sweep, tracking_uri=uri)
    assert "\n" not in str(refused.value) and "NotADirectory" in str(refused.value)
    assert not list((tmp_path / "spool").glob("*.jsonl"))  # nothing was journaled
    blocker.unlink()
    summary = submit(sweep, tracking_uri=uri)
    assert summary.finished == 10 and summary.spool is None and summary.outage is None
    runs = children(uri, "outage")
    assert sorted(r.data.tags[tracking.TAG_RUN_KEY] for r in runs) == sorted(p.run_key for p in sweep.expand())
    assert all(r.info.status == "FINISHED" for r in runs)
    assert tracking.parent_run(sweep, uri).info.status == "FINISHED"
    assert not list((tmp_path / "spool").glob("*.jsonl"))


@pytest.mark.slow
def test_a_tracking_server_that_starts_late_is_waited_for_briefly(ray_local, tmp_path, monkeypatch):
    """The start retries for ~10 s (a server starting, a migration): a server up within that runs the sweep."""
    port = free_port()
    uri = f"http://127.0.0.1:{port}"
    sweep = load_sweep("name: late-server\nparameters: {problem: probe, x: [0, 1, 2, 3]}")
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    command = [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
               "--backend-store-uri", f"sqlite:///{tmp_path / 'server.db'}", "--artifacts-destination", str(tmp_path / "artifacts")]
    with pytest.raises(sweep_start.SweepStartRefused):  # no server at all: refused after the retries, nothing ran
        submit(sweep, tracking_uri=uri)
    server = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    monkeypatch.setattr(sweep_start, "START_RETRY_S", (2.0, 4.0, 8.0, 16.0))  # a server slow to start on a loaded machine
    try:
        summary = submit(sweep, tracking_uri=uri)  # issued while the server is still starting
        assert (summary.finished, summary.spool) == (4, None)
        runs = children(uri, "late-server")
        assert len(runs) == 4 and all(r.info.status == "FINISHED" for r in runs)
    finally:
        server.terminate()
        server.wait(timeout=30)
