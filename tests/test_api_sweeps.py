"""Sweeps through `study serve` over real HTTP: a full sweep, cancel, and a restart mid-sweep.
Real local Ray (the session's), a real SQLite MLflow store per test, probe runs of known cost."""

from __future__ import annotations

import io
import json
import time

import httpx
import pandas as pd
import pytest
from mlflow import MlflowClient

from study.client import StudyClient
from tests import topology

TOKEN = "sweep-token-9b2e"


def child_runs(tracking_uri: str, sweep: str, status: str | None = None) -> list:
    client = MlflowClient(tracking_uri)
    experiment = client.get_experiment_by_name(sweep)
    if experiment is None:
        return []
    query = "tags.`study.kind` = 'run'" + (f" and attributes.status = '{status}'" if status else "")
    return client.search_runs([experiment.experiment_id], query, max_results=5000)


def wait_for(check, timeout_s: float, what: str):
    return topology.wait_until(check, timeout_s, what, poll_s=0.2)


@pytest.fixture
def server(ray_local, tmp_path):
    """Start `study serve` on a store in tmp_path; more calls start more servers on the same store."""
    tracking_uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    address = ray_local.get_runtime_context().gcs_address
    started = []

    def start(name: str = "serve"):
        managed, url = topology.start_study_serve(name, tmp_path, tracking_uri, address, TOKEN)
        started.append(managed)
        return managed, StudyClient(url, token=TOKEN)

    start.tracking_uri = tracking_uri
    yield start
    for managed in started:
        managed.stop()


def probe_sweep(name: str, seeds: int, work_s: float, xs: list[float] = (0.0,)) -> str:
    return json.dumps({"name": name, "seeds": list(range(seeds)),
                       "parameters": {"problem": "probe", "work_s": work_s, "x": list(xs)}})


def test_full_sweep_through_the_api(server, run_cli):
    _, client = server()
    accepted = client.submit(probe_sweep("api-full", seeds=2, work_s=0.05, xs=[0.0, 1.0, 3.0]))
    assert accepted == {"id": "api-full", "state": "running", "runs": 6}
    final = client.follow("api-full", poll_s=0.3, timeout_s=120)
    assert final["state"] == "finished", final
    assert final["total"] == 6 and final["failed"] == 0
    assert [s["id"] for s in client.sweeps()] == ["api-full"]

    rows = pd.DataFrame(client.results("api-full", group_by=["x"], metrics=["value"])).set_index("x")
    assert sorted(rows.index) == [0.0, 1.0, 3.0]
    for x, row in rows.iterrows():  # probe: value = (x-1)^2 + 0.01*seed over seeds {0, 1}
        assert row["value_mean"] == pytest.approx((x - 1) ** 2 + 0.005, abs=1e-12)
        assert row["value_std"] == pytest.approx(0.01 / 2**0.5, abs=1e-12)
        assert row["value_count"] == 2 and row["failed"] == 0
    csv = pd.read_csv(io.StringIO(client.results("api-full", ["x"], ["value"], fmt="csv"))).set_index("x")
    pd.testing.assert_frame_equal(csv, rows, check_dtype=False, rtol=1e-12)
    assert len(child_runs(server.tracking_uri, "api-full", "FINISHED")) == 6

    # `study results --server` prints what `study results` prints against the store itself.
    args = ["api-full", "--group-by", "x", "--metric", "value", "--format", "json"]
    over_http = run_cli("results", *args, "--server", client._http.base_url.__str__(), env={"STUDY_API_TOKEN": TOKEN})
    direct = run_cli("results", *args, "--tracking-uri", server.tracking_uri)
    assert over_http.returncode == 0 and direct.returncode == 0, over_http.stderr + direct.stderr
    pd.testing.assert_frame_equal(pd.read_json(io.StringIO(over_http.stdout)), pd.read_json(io.StringIO(direct.stdout)))


def test_cancel_stops_the_remaining_runs_and_keeps_the_finished(server):
    _, client = server()
    client.submit(probe_sweep("api-cancel", seeds=12, work_s=0.8))
    wait_for(lambda: len(child_runs(server.tracking_uri, "api-cancel", "FINISHED")) >= 2, 60, "two finished runs")
    assert client.cancel("api-cancel")["state"] in ("cancelling", "cancelled")
    final = client.follow("api-cancel", poll_s=0.2, timeout_s=60)
    assert final["state"] == "cancelled", final
    finished = len(child_runs(server.tracking_uri, "api-cancel", "FINISHED"))
    assert 2 <= finished < 12
    time.sleep(2.0)  # longer than a run: nothing is still running in the background
    assert len(child_runs(server.tracking_uri, "api-cancel", "FINISHED")) == finished
    assert len(child_runs(server.tracking_uri, "api-cancel")) < 12


def test_restart_mid_sweep_resumes_without_duplicates(server):
    first, client = server("serve-1")
    total = 10
    client.submit(probe_sweep("api-restart", seeds=total, work_s=0.8))
    wait_for(lambda: len(child_runs(server.tracking_uri, "api-restart", "FINISHED")) >= 2, 60, "two finished runs")
    first.process.kill()  # a crash, not a shutdown: the parent run stays RUNNING
    first.process.wait(10)
    before = {run.info.run_id for run in child_runs(server.tracking_uri, "api-restart", "FINISHED")}
    assert 2 <= len(before) < total

    _, client = server("serve-2")
    listed = {s["id"]: s for s in client.sweeps()}
    assert listed["api-restart"]["resumed"] is True
    final = client.follow("api-restart", poll_s=0.3, timeout_s=120)
    assert final["state"] == "finished", final

    finished = child_runs(server.tracking_uri, "api-restart", "FINISHED")
    keys = [run.data.tags["study.run_key"] for run in finished]
    assert len(finished) == total and len(set(keys)) == total
    assert before <= {run.info.run_id for run in finished}  # runs done before the crash were kept, not re-run
