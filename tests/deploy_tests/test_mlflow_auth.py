"""The tracking server needs credentials: the loopback MLflow server runs its basic-auth app as
docker-compose.yml does (tests/support/topology.py). No credentials: 401 on the REST API and the UI. A
read-only user (created by the admin, as the README tells) reads the sweep and cannot write to it
(403). The coordinator, with MLFLOW_TRACKING_USERNAME / PASSWORD, records every run."""

from __future__ import annotations

import httpx
import pytest
from mlflow import MlflowClient

from tests.support.reliability import RayHead, duplicate_keys, study_process

from tests.support.mlflow import children
from study.recording import layout as tracking
from study.spec.loading import load_sweep
from tests.support import topology

N = 8
SWEEP = "name: behind-auth\nseeds: [0, 1]\nparameters: {problem: probe, x: [0, 1, 2, 3]}\n"


@pytest.fixture(scope="module")
def swept(auth_server, tmp_path_factory):
    """The sweep as the coordinator runs it: `study submit` with the admin's credentials."""
    directory = tmp_path_factory.mktemp("submit")
    (directory / "sweep.yaml").write_text(SWEEP)
    head = RayHead(num_cpus=2)
    try:
        env = {**head.env, **topology.mlflow_credentials(auth_server), "STUDY_SPOOL_DIR": str(directory / "spool")}
        process = study_process(["submit", "sweep.yaml", "--address", head.address, "--tracking-uri", auth_server.mlflow_url],
                                directory, env=env)
        out, err = process.communicate(timeout=300)
    finally:
        head.stop()
    assert process.returncode == 0, err[-3000:]
    return out


def admin(auth_server) -> tuple[str, str]:
    return topology.ADMIN, auth_server.mlflow_admin_password


def test_no_credentials_no_access(auth_server):
    api = f"{auth_server.mlflow_url}/api/2.0/mlflow"
    assert httpx.get(f"{api}/experiments/search", params={"max_results": 5}).status_code == 401
    assert httpx.post(f"{api}/experiments/create", json={"name": "intruder"}).status_code == 401
    assert httpx.get(f"{auth_server.mlflow_url}/").status_code == 401  # the UI too
    assert httpx.get(f"{api}/experiments/search", params={"max_results": 5}, auth=("admin", "wrong")).status_code == 401
    assert httpx.get(f"{auth_server.mlflow_url}/health").status_code == 200  # health checks need none


def test_the_coordinator_records_every_run_with_its_credentials(auth_server, swept, monkeypatch):
    for key, value in topology.mlflow_credentials(auth_server).items():
        monkeypatch.setenv(key, value)
    assert f"runs: {N} total, {N} finished, 0 failed" in swept
    runs = children(auth_server.mlflow_url, "behind-auth")
    assert len(runs) == N and duplicate_keys(runs) == {}
    assert {run.data.tags[tracking.TAG_RUN_KEY] for run in runs} == {p.run_key for p in load_sweep(SWEEP).expand()}
    assert all(run.info.status == "FINISHED" for run in runs)


def test_a_read_only_user_reads_and_cannot_write(auth_server, swept, monkeypatch):
    api = f"{auth_server.mlflow_url}/api/2.0/mlflow"
    # What the README tells the admin to do for a researcher.
    made = httpx.post(f"{api}/users/create", json={"username": "reader", "password": "reader-pass-1"}, auth=admin(auth_server))
    assert made.status_code == 200, made.text
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "reader")
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", "reader-pass-1")
    client = MlflowClient(auth_server.mlflow_url)
    parent = tracking.parent_run("behind-auth", auth_server.mlflow_url, client)
    assert parent is not None and parent.info.status == "FINISHED"
    assert len(children(auth_server.mlflow_url, "behind-auth")) == N  # reads every run

    reader = ("reader", "reader-pass-1")
    writes = [
        ("runs/create", {"experiment_id": parent.info.experiment_id}),
        ("runs/set-tag", {"run_id": parent.info.run_id, "key": "vandal", "value": "x"}),
        ("runs/delete", {"run_id": parent.info.run_id}),
        ("experiments/delete", {"experiment_id": parent.info.experiment_id}),
    ]
    for endpoint, body in writes:
        answer = httpx.post(f"{api}/{endpoint}", json=body, auth=reader)
        assert answer.status_code == 403, (endpoint, answer.status_code, answer.text)
    after = MlflowClient(auth_server.mlflow_url).get_run(parent.info.run_id)
    assert after.info.lifecycle_stage == "active" and "vandal" not in after.data.tags
    assert len(children(auth_server.mlflow_url, "behind-auth")) == N


def test_the_credential_cache_lets_no_old_password_or_deleted_user_through(auth_server):
    """deploy/mlflow-auth.ini turns on MLflow's credential cache (a password hash per request bound
    the write path); a password change or deletion through the API still takes effect at once."""
    assert "auth_cache_ttl_seconds = 60" in topology.AUTH_INI.read_text().splitlines()
    api = f"{auth_server.mlflow_url}/api/2.0/mlflow"
    search = f"{api}/experiments/search"
    made = httpx.post(f"{api}/users/create", json={"username": "rotating", "password": "first-pass-1"}, auth=admin(auth_server))
    assert made.status_code == 200, made.text
    for _ in range(3):  # cached after the first answer
        assert httpx.get(search, params={"max_results": 1}, auth=("rotating", "first-pass-1")).status_code == 200
    assert httpx.get(search, params={"max_results": 1}, auth=("rotating", "wrong-pass-1")).status_code == 401
    changed = httpx.patch(f"{api}/users/update-password", json={"username": "rotating", "password": "second-pass-2"},
                          auth=admin(auth_server))
    assert changed.status_code == 200, changed.text
    assert httpx.get(search, params={"max_results": 1}, auth=("rotating", "first-pass-1")).status_code == 401
    assert httpx.get(search, params={"max_results": 1}, auth=("rotating", "second-pass-2")).status_code == 200
    deleted = httpx.request("DELETE", f"{api}/users/delete", json={"username": "rotating"}, auth=admin(auth_server))
    assert deleted.status_code == 200, deleted.text
    assert httpx.get(search, params={"max_results": 1}, auth=("rotating", "second-pass-2")).status_code == 401
