"""R6: security of the HTTP service and of sweep input. Real HTTP on loopback: the FastAPI app of
study/server/app.py under uvicorn in this process (a thread), on the session's local Ray.

- Bearer tokens are compared in constant time (hmac.compare_digest, checked in the source), and a
  wrong token of equal length, of another length, or none at all is 401.
- No answer carries a stack trace or a server path, even when every endpoint fails inside.
- A sweep name cannot point outside its place (path traversal names are 422 / exit 2), and an odd
  experiment name does not move artifacts out of the store's directory.
- YAML never constructs objects (safe_load only, in every module; tags are refused).
"""

from __future__ import annotations

import inspect
import re
import threading
import time
from pathlib import Path

import httpx
import pytest
import uvicorn

from tests.support.reliability import free_port
from study.server import app as api
from study.scheduling.coordinator import submit
from study.spec.loading import load_sweep

REPO = Path(__file__).resolve().parents[2]
TOKEN = "s3cret-token-0123456789abcdef"
TRAVERSALS = ["../../x", "..", "../etc/passwd", "/etc/passwd", "a/b", "a\\b", "x/../../y", ".hidden", "~root"]


class _Serving:
    """create_app(config) under uvicorn on a free loopback port, in a daemon thread."""

    def __init__(self, config: api.ServiceConfig):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.server = uvicorn.Server(uvicorn.Config(api.create_app(config), host="127.0.0.1", port=self.port, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started and time.monotonic() < deadline:
            time.sleep(0.05)
        assert self.server.started

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)


@pytest.fixture(autouse=True)
def _quick_flush(tmp_path, monkeypatch):
    monkeypatch.setenv("STUDY_SPOOL_DIR", str(tmp_path / "spool"))
    monkeypatch.setenv("STUDY_FLUSH_TIMEOUT_S", "1")  # a broken store is not waited for


@pytest.fixture
def healthy(ray_local, tmp_path):
    serving = _Serving(api.ServiceConfig(token=TOKEN, tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}", resume=False))
    yield serving
    serving.stop()


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_token_comparison_is_constant_time_in_the_code_path():
    source = inspect.getsource(api.create_app)
    check = source[source.index("def require_token"): source.index("raise HTTPException(401")]
    assert "hmac.compare_digest(" in check
    assert not re.search(r"(==|!=)\s*config\.token|config\.token[^\n]*\s(==|!=)\s", check)


def test_wrong_tokens_of_equal_and_other_lengths_are_401(healthy):
    flipped = TOKEN[:-1] + ("x" if TOKEN[-1] != "x" else "y")
    wrong = {"equal length": bearer(flipped), "shorter": bearer(TOKEN[:-1]), "longer": bearer(TOKEN + "0"),
             "prefix only": bearer(TOKEN[:4]), "scheme only": {"Authorization": "Bearer"}, "none": {},
             "non-ascii": {"Authorization": "Bearer " + "é" * len(TOKEN)}}
    assert len(flipped) == len(TOKEN)
    for label, headers in wrong.items():
        for method, path in [("GET", "/sweeps"), ("POST", "/sweeps"), ("GET", "/sweeps/x"), ("GET", "/sweeps/x/results")]:
            headers_bytes = {k: v.encode("utf-8") for k, v in headers.items()}
            response = httpx.request(method, healthy.url + path, headers=headers_bytes, content=b"name: x\n")
            assert response.status_code == 401, (label, method, path, response.text)
    assert httpx.get(healthy.url + "/sweeps", headers=bearer(TOKEN), timeout=60).status_code == 200  # slow under load, never refused


def _assert_no_leak(response: httpx.Response, *server_paths: Path) -> None:
    body = response.text
    assert "Traceback" not in body and 'File "' not in body and ".py" not in body, body
    for path in (REPO, *server_paths):
        assert str(path) not in body, body
    assert "site-packages" not in body and "/tmp/" not in body, body


def test_internal_errors_leak_no_trace_or_server_path(ray_local, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("")  # the store and the journal would live under a file: every access fails
    config = api.ServiceConfig(token=TOKEN, tracking_uri=f"sqlite:///{blocker / 'mlflow.db'}",
                               optuna_storage=str(blocker / "optuna" / "journal.log"), resume=False)
    serving = _Serving(config)
    try:
        for method, path in [("GET", "/sweeps"), ("GET", "/sweeps/x"), ("GET", "/sweeps/x/results")]:
            response = httpx.request(method, serving.url + path, headers=bearer(TOKEN))
            assert response.status_code == 500 and response.json() == {"detail": "internal server error"}
            _assert_no_leak(response, tmp_path)
        # A sweep whose store cannot be used is refused at once (its lease cannot be taken), 503, without paths.
        sweep = "name: leak\nmethod: tpe\nbudget: {trials: 2}\nparameters: {problem: probe, x: {distribution: uniform, min: 0, max: 1}}\n"
        refused = httpx.post(serving.url + "/sweeps", headers=bearer(TOKEN), content=sweep.encode())
        assert refused.status_code == 503, refused.text
        assert refused.json()["detail"].startswith("sweep leak: cannot lock it beside its store (NotADirectoryError")
        _assert_no_leak(refused, tmp_path)
        for response in (httpx.get(serving.url + "/sweeps", headers=bearer(TOKEN)),
                         httpx.post(serving.url + "/sweeps", headers=bearer(TOKEN), content=b"\xff\xfe"),
                         httpx.post(serving.url + "/sweeps", headers=bearer(TOKEN), content=b"name: [\n")):
            assert response.status_code in (422, 500)
            _assert_no_leak(response, tmp_path)
    finally:
        serving.stop()


def test_traversal_sweep_names_are_refused_by_api_and_cli(healthy, run_cli, tmp_path):
    for name in TRAVERSALS:
        response = httpx.post(healthy.url + "/sweeps", headers=bearer(TOKEN),
                              content=f"name: '{name}'\nparameters: {{problem: probe}}\n".encode(), timeout=60)
        assert response.status_code == 422, (name, response.text)
        assert [line.split(":")[0] for line in response.json()["detail"]] == ["name"], response.text
    # Names in URLs are looked up, never used as paths: unknown is 404.
    for quoted in ["..%2F..%2Fetc%2Fpasswd", "%2E%2E", "..%5C..%5Cx"]:
        # the first lookup loads the results stack in the server: slow under load, so a long read timeout
        response = httpx.get(f"{healthy.url}/sweeps/{quoted}/results", headers=bearer(TOKEN), timeout=60)
        assert response.status_code == 404, (quoted, response.text)
    cli_dir = tmp_path / "cli"
    cli_dir.mkdir()
    (cli_dir / "t.yaml").write_text("name: ../../x\nparameters: {problem: probe}\n")
    done = run_cli("submit", "t.yaml", timeout=120, cwd=cli_dir)
    assert done.returncode == 2 and done.stderr.startswith("error: name: got '../../x', expected a safe identifier"), done.stderr
    assert sorted(p.name for p in cli_dir.iterdir()) == ["t.yaml"]  # no store, no spool, nothing


def test_odd_experiment_names_keep_artifacts_in_the_store_directory(ray_local, tmp_path):
    store_dir = tmp_path / "deep" / "store"
    store_dir.mkdir(parents=True)
    uri = f"sqlite:///{store_dir / 'mlflow.db'}"
    sweep = load_sweep("name: escape\nexperiment: ../../escaped\nparameters: {problem: probe, x: [0, 1]}\n")
    summary = submit(sweep, tracking_uri=uri)
    assert summary.finished == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["deep", "spool"]  # nothing beside the store's tree
    assert sorted(p.name for p in (tmp_path / "deep").iterdir()) == ["store"]
    results = sorted(store_dir.glob("mlruns/**/result.json"))
    assert len(results) == 2


def test_yaml_is_only_ever_safe_loaded_and_tags_are_refused(healthy, tmp_path):
    unsafe = re.compile(r"yaml\.(load|load_all|unsafe_load|full_load)\s*\(|Loader\s*=\s*yaml\.(Loader|FullLoader|UnsafeLoader)")
    offenders = [str(path) for folder in ("study", "workers", "benchmarks") for path in (REPO / folder).rglob("*.py")
                 if unsafe.search(path.read_text())]
    assert offenders == []
    marker = tmp_path / "constructed"
    for body in (f"name: a\nparameters: !!python/object/apply:os.system ['touch {marker}']\n",
                 f"!!python/object/apply:subprocess.check_call [[touch, '{marker}']]\n",
                 "name: !!python/name:os.system\nparameters: {problem: probe}\n"):
        response = httpx.post(healthy.url + "/sweeps", headers=bearer(TOKEN), content=body.encode())
        assert response.status_code == 422 and "invalid YAML" in response.text, response.text
    assert not marker.exists()
