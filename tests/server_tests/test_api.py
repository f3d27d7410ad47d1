"""`study serve` over real HTTP on loopback: auth, size limit, validation, OpenAPI, no leaks, a full
sweep and a cancel. The service runs as a subprocess against the session's real local Ray and a
SQLite MLflow store; probe runs have known cost and closed-form values."""

from __future__ import annotations

import io
import json
import time

import httpx
import pandas as pd
import pytest
from mlflow import MlflowClient

from study.client import StudyClient

from study.errors import StudyInputError
from study.spec.loading import load_sweep
from tests.support import topology
from tests.support.topology import child_runs, wait_for

TOKEN = "test-token-4f1c"
BAD_SWEEP = """\
name: api-bad
parameters:
  problem: probe
  work_s: -1
  fail: sometimes
"""


@pytest.fixture(scope="module")
def service(ray_local, tmp_path_factory):
    base = tmp_path_factory.mktemp("api")
    tracking_uri = f"sqlite:///{base / 'mlflow.db'}"
    address = ray_local.get_runtime_context().gcs_address
    managed, url = topology.start_study_serve("serve", base, tracking_uri, address, TOKEN)
    yield {"url": url, "tracking_uri": tracking_uri, "process": managed}
    managed.stop()


def auth(token: str = TOKEN) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


ENDPOINTS = [
    ("GET", "/sweeps"),
    ("POST", "/sweeps"),
    ("GET", "/sweeps/anything"),
    ("POST", "/sweeps/anything/cancel"),
    ("GET", "/sweeps/anything/results"),
]


@pytest.mark.parametrize("headers", [{}, auth("wrong-token"), {"Authorization": f"Basic {TOKEN}"}, auth(TOKEN + "x")],
                         ids=["none", "wrong", "basic-scheme", "longer"])
def test_every_endpoint_but_healthz_needs_the_token(service, headers):
    for method, path in ENDPOINTS:
        response = httpx.request(method, service["url"] + path, headers=headers, content=b"name: x\n")
        assert response.status_code == 401, (method, path, response.text)
        assert response.headers["www-authenticate"] == "Bearer"
    assert httpx.get(service["url"] + "/healthz").json()["status"] == "ok"


def test_right_token_is_accepted_and_openapi_is_served(service):
    assert httpx.get(service["url"] + "/sweeps", headers=auth()).status_code == 200
    schema = httpx.get(service["url"] + "/openapi.json").json()
    assert {"/sweeps", "/sweeps/{sweep_id}", "/sweeps/{sweep_id}/cancel", "/sweeps/{sweep_id}/results", "/healthz"} <= set(schema["paths"])
    assert schema["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"


def test_oversize_body_is_refused_with_413(service):
    big = b"#" * 1_000_001
    declared = httpx.post(service["url"] + "/sweeps", headers=auth(), content=big)
    assert declared.status_code == 413
    # A chunked upload has no Content-Length; the streamed size is counted instead.
    streamed = httpx.post(service["url"] + "/sweeps", headers=auth(), content=iter([big[:600_000], big[600_000:]]))
    assert streamed.status_code == 413
    assert httpx.get(service["url"] + "/healthz").status_code == 200


def test_bad_sweep_gives_the_cli_messages_and_starts_nothing(service):
    response = httpx.post(service["url"] + "/sweeps", headers=auth(), content=BAD_SWEEP)
    assert response.status_code == 422
    with pytest.raises(StudyInputError) as expected:
        load_sweep(BAD_SWEEP)
    assert response.json()["detail"] == expected.value.errors
    assert any(line.startswith("parameters.work_s: got -1") for line in response.json()["detail"])
    names = [e.name for e in MlflowClient(service["tracking_uri"]).search_experiments()]
    assert "api-bad" not in names
    listed = httpx.get(service["url"] + "/sweeps", headers=auth()).json()
    assert "api-bad" not in [s["id"] for s in listed]


@pytest.mark.parametrize("body", [b"", b"\xff\xfe not utf-8", b"name: [unclosed", b"/etc/passwd", b"- a list"],
                         ids=["empty", "binary", "bad-yaml", "a-path", "not-a-mapping"])
def test_malformed_bodies_are_422_one_line_each_and_read_no_files(service, body):
    response = httpx.post(service["url"] + "/sweeps", headers=auth(), content=body)
    assert response.status_code == 422
    detail = response.json()["detail"]
    assert detail and all(isinstance(line, str) and "\n" not in line for line in detail)
    assert "root:" not in response.text  # the body is never read as a path on the server


def test_unknown_sweep_is_404_and_bad_query_is_422(service):
    assert httpx.get(service["url"] + "/sweeps/nope", headers=auth()).status_code == 404
    assert httpx.post(service["url"] + "/sweeps/nope/cancel", headers=auth()).status_code == 404
    assert httpx.get(service["url"] + "/sweeps/nope/results", headers=auth()).status_code == 404
    bad = httpx.get(service["url"] + "/sweeps/nope/results", headers=auth(), params={"format": "xml"})
    assert bad.status_code == 422
    assert bad.json()["detail"][0].startswith("format: got 'xml'")


def test_serve_refuses_to_start_without_a_token(run_cli):
    result = run_cli("serve", "--port", "1", env={"STUDY_API_TOKEN": ""}, timeout=60)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "error: STUDY_API_TOKEN: got nothing, expected a bearer token in the environment (or --insecure)"
    ]


def probe_sweep(name: str, seeds: int, work_s: float, xs: list[float] = (0.0,)) -> str:
    return json.dumps({"name": name, "seeds": list(range(seeds)),
                       "parameters": {"problem": "probe", "work_s": work_s, "x": list(xs)}})


def test_full_sweep_through_the_api(service, run_cli):
    client = StudyClient(service["url"], token=TOKEN)
    accepted = client.submit(probe_sweep("api-full", seeds=2, work_s=0.05, xs=[0.0, 1.0, 3.0]))
    assert accepted == {"id": "api-full", "state": "running", "runs": 6}
    final = client.follow("api-full", poll_s=0.3, timeout_s=120)
    assert final["state"] == "finished", final
    assert final["total"] == 6 and final["failed"] == 0
    assert "api-full" in [s["id"] for s in client.sweeps()]

    rows = pd.DataFrame(client.results("api-full", group_by=["x"], metrics=["value"])).set_index("x")
    assert sorted(rows.index) == [0.0, 1.0, 3.0]
    for x, row in rows.iterrows():  # probe: value = (x-1)^2 + 0.01*seed over seeds {0, 1}
        assert row["value_mean"] == pytest.approx((x - 1) ** 2 + 0.005, abs=1e-12)
        assert row["value_std"] == pytest.approx(0.01 / 2**0.5, abs=1e-12)
        assert row["value_count"] == 2 and row["failed"] == 0
    csv = pd.read_csv(io.StringIO(client.results("api-full", ["x"], ["value"], fmt="csv"))).set_index("x")
    pd.testing.assert_frame_equal(csv, rows, check_dtype=False, rtol=1e-12)
    assert len(child_runs(service["tracking_uri"], "api-full", "FINISHED")) == 6

    # `study results --server` prints what `study results` prints against the store itself.
    args = ["api-full", "--group-by", "x", "--metric", "value", "--format", "json"]
    over_http = run_cli("results", *args, "--server", service["url"], env={"STUDY_API_TOKEN": TOKEN})
    direct = run_cli("results", *args, "--tracking-uri", service["tracking_uri"])
    assert over_http.returncode == 0 and direct.returncode == 0, over_http.stderr + direct.stderr
    pd.testing.assert_frame_equal(pd.read_json(io.StringIO(over_http.stdout)), pd.read_json(io.StringIO(direct.stdout)))


def test_cancel_stops_the_remaining_runs_and_keeps_the_finished(service):
    client = StudyClient(service["url"], token=TOKEN)
    client.submit(probe_sweep("api-cancel", seeds=12, work_s=0.8))
    wait_for(lambda: len(child_runs(service["tracking_uri"], "api-cancel", "FINISHED")) >= 2, 60, "two finished runs")
    assert client.cancel("api-cancel")["state"] in ("cancelling", "cancelled")
    final = client.follow("api-cancel", poll_s=0.2, timeout_s=60)
    assert final["state"] == "cancelled", final
    finished = len(child_runs(service["tracking_uri"], "api-cancel", "FINISHED"))
    assert 2 <= finished < 12
    time.sleep(2.0)  # longer than a run: nothing is still running in the background
    assert len(child_runs(service["tracking_uri"], "api-cancel", "FINISHED")) == finished
    assert len(child_runs(service["tracking_uri"], "api-cancel")) < 12


def test_errors_inside_are_a_generic_500_and_insecure_mode_needs_no_token(ray_local, tmp_path):
    (tmp_path / "a-file").write_text("")
    broken_store = f"sqlite:///{tmp_path / 'a-file' / 'mlflow.db'}"  # under a file: cannot be created
    address = ray_local.get_runtime_context().gcs_address
    managed, url = topology.start_study_serve("serve-broken", tmp_path, broken_store, address, None, extra=["--insecure"])
    try:
        response = httpx.get(url + "/sweeps")  # no token: --insecure
        assert response.status_code == 500
        assert response.json() == {"detail": "internal server error"}
        assert httpx.get(url + "/healthz").status_code == 200
    finally:
        managed.stop()
    assert "Traceback" in managed.log_tail(100_000)  # the details go to the server's log only


def test_study_submit_server_sends_and_follows(service, run_cli, tmp_path):
    sweep_file = tmp_path / "cli.yaml"
    sweep_file.write_text("name: api-cli\nseeds: [0, 1, 2]\nparameters:\n  problem: probe\n  work_s: 0.05\n")
    result = run_cli("submit", "--server", service["url"], str(sweep_file), env={"STUDY_API_TOKEN": TOKEN})
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == f"submitted api-cli (3 runs) to {service['url']}"
    assert lines[-1].startswith("api-cli: finished  done 3/3")
    assert len(child_runs(service["tracking_uri"], "api-cli", "FINISHED")) == 3

    refused = run_cli("submit", "--server", service["url"], str(sweep_file), env={"STUDY_API_TOKEN": "wrong"})
    assert refused.returncode == 1
    assert refused.stderr.strip() == "error: missing or wrong bearer token"
