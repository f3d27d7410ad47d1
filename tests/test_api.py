"""`study serve` over real HTTP on loopback: auth, size limit, validation, OpenAPI, no leaks.
The service runs as a subprocess against the session's real local Ray and a SQLite MLflow store."""

from __future__ import annotations

import httpx
import pytest
from mlflow import MlflowClient

from study.errors import StudyInputError
from study.spec import load_sweep
from tests import topology

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
