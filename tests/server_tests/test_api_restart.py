"""A restart of `study serve` mid-sweep (a crash: SIGKILL) resumes the sweep with no duplicate runs.
Real local Ray (the session's), a real SQLite MLflow store, probe runs of known cost."""

from __future__ import annotations

import json

import pytest

from study.client import StudyClient
from tests.support import topology
from tests.support.topology import child_runs, wait_for

TOKEN = "sweep-token-9b2e"


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
