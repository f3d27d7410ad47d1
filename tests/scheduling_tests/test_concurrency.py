"""One coordinator per sweep (study.scheduling.lease), with real processes: two `study submit` at once on one
fresh SQLite store; the CLI beside `study serve`; two coordinators on different Ray clusters sharing
the loopback MLflow server (auth app, PostgreSQL); kill -9 of the holder, then resubmit. Every test
counts exactly: N finished child runs with N distinct run keys, no refused write, and the loser's
refusal is one line naming the holder."""

from __future__ import annotations

import re
import time
from pathlib import Path

import httpx
import pytest
from mlflow import MlflowClient

from tests.support.reliability import RayHead, duplicate_keys, kill_when, study_process

from tests.support.mlflow import children
from study.scheduling import lease
from study.recording import parent_run as sweep_start
from study.recording import layout as tracking
from study.spec.loading import load_sweep
from tests.support import topology

TTL_S = 20  # the server lease's expiry in the kill test (30 s by default)
N = 12  # runs in each grid: 6 points x 2 seeds
GRID = "name: {name}\nseeds: [0, 1]\nparameters: {{problem: probe, x: [0, 1, 2, 3, 4, 5]}}\n"
# A grid slow enough to kill mid-sweep: 12 probe runs of 1 s each.
SLOW = "name: {name}\nseeds: [0, 1]\nparameters: {{problem: probe, work_s: 1.0, x: [0, 1, 2, 3, 4, 5]}}\n"
REFUSAL = re.compile(r"error: sweep (\S+) is being run by host \S+ pid (\d+) since \d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ "
                     r"\((.+)\); use --wait to wait for it")


@pytest.fixture(scope="module")
def ray_head():
    head = RayHead(num_cpus=2)
    yield head
    head.stop()


def write_sweep(directory: Path, name: str, template: str = GRID) -> Path:
    path = directory / f"{name}.yaml"
    path.write_text(template.format(name=name))
    return path


def submit(directory: Path, sweep_file: Path, store: str, ray: RayHead, *extra: str, env: dict | None = None):
    return study_process(["submit", str(sweep_file), "--address", ray.address, "--tracking-uri", store, *extra],
                         directory, env={**ray.env, "STUDY_SPOOL_DIR": str(directory / "spool"), **(env or {})})


def finish(process, timeout_s: float = 300) -> tuple[int, str, str]:
    out, err = process.communicate(timeout=timeout_s)
    return process.returncode, out, err


def assert_landed_once(store: str, name: str, template: str = GRID) -> None:
    """N FINISHED children with the N distinct run keys of the grid (after a kill, the children the
    dead coordinator left half-written are marked FAILED and run again, so only FINISHED count)."""
    runs = [run for run in children(store, name) if run.info.status == "FINISHED"]
    keys = {run.data.tags[tracking.TAG_RUN_KEY] for run in runs}
    assert len(runs) == N and duplicate_keys(runs) == {}, (len(runs), duplicate_keys(runs))
    assert keys == {point.run_key for point in load_sweep(template.format(name=name)).expand()}


def assert_one_line_refusal(err: str, name: str) -> re.Match:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err[-2000:]
    match = REFUSAL.fullmatch(lines[0])
    assert match and match.group(1) == name, lines[0]
    return match


def test_two_cli_submits_on_a_fresh_sqlite_store_run_each_point_once(ray_head, tmp_path):
    """Three processes start together on a fresh store: two of sweep `race` (one runs it, one is
    refused in one line) and one of `other` (initialising the same fresh store at the same time)."""
    store = f"sqlite:///{tmp_path / 'mlflow.db'}"
    race, other = write_sweep(tmp_path, "race"), write_sweep(tmp_path, "other")
    processes = [submit(tmp_path, race, store, ray_head), submit(tmp_path, race, store, ray_head),
                 submit(tmp_path, other, store, ray_head)]
    (code_a, out_a, err_a), (code_b, out_b, err_b), (code_o, out_o, err_o) = [finish(p) for p in processes]

    assert code_o == 0, err_o[-3000:]
    assert sorted([code_a, code_b]) == [0, 3], (err_a[-2000:], err_b[-2000:])
    winner_out, loser_err = (out_a, err_b) if code_a == 0 else (out_b, err_a)
    assert f"runs: {N} total, {N} finished, 0 failed, 0 skipped" in winner_out
    assert_one_line_refusal(loser_err, "race")
    for text in (out_a, err_a, out_b, err_b, out_o, err_o):
        assert "rejected" not in text.lower() and "refused to create" not in text
    assert_landed_once(store, "race")
    assert_landed_once(store, "other")
    assert tracking.parent_run(load_sweep(race), store).info.status == "FINISHED"


def test_cli_and_study_serve_on_one_store_never_run_a_sweep_twice(ray_head, tmp_path):
    store = f"sqlite:///{tmp_path / 'mlflow.db'}"
    token = "t" * 32
    service, url = topology.start_study_serve("serve", tmp_path, store, ray_head.address, token,
                                              env={**ray_head.env, "STUDY_SPOOL_DIR": str(tmp_path / "spool")})
    headers = {"Authorization": f"Bearer {token}"}

    def state(name: str) -> str:
        return httpx.get(f"{url}/sweeps/{name}", headers=headers, timeout=10).json()["state"]

    try:
        # The CLI first: the service answers 409 with the refusal line, naming the CLI's pid.
        cli = submit(tmp_path, write_sweep(tmp_path, "cli-first"), store, ray_head)
        lock = tmp_path / ".study-locks" / "mlflow.db.cli-first.lock"
        topology.wait_for(lambda: lock.exists() and lock.read_text(), 120, "the CLI holds the sweep")
        refused = httpx.post(f"{url}/sweeps", content=GRID.format(name="cli-first"), headers=headers, timeout=60)
        assert refused.status_code == 409, refused.text
        assert REFUSAL.fullmatch("error: " + refused.json()["detail"]).group(2) == str(cli.pid)
        code, out, err = finish(cli)
        assert code == 0, err[-3000:]
        assert f"runs: {N} total, {N} finished, 0 failed, 0 skipped" in out

        # The service first, with runs long enough that it still holds the sweep however slowly the
        # CLI starts: the CLI is refused in one line naming the service's pid; then cancel it.
        long_runs = "name: svc-first\nseeds: [0, 1]\nparameters: {problem: probe, work_s: 600, x: [0, 1]}\n"
        posted = httpx.post(f"{url}/sweeps", content=long_runs, headers=headers, timeout=60)
        assert posted.status_code == 202, posted.text
        (tmp_path / "svc-first.yaml").write_text(long_runs)
        code, _, err = finish(submit(tmp_path, tmp_path / "svc-first.yaml", store, ray_head))
        assert code == 3
        assert int(assert_one_line_refusal(err, "svc-first").group(2)) == service.process.pid
        httpx.post(f"{url}/sweeps/svc-first/cancel", headers=headers, timeout=10)
        topology.wait_for(lambda: state("svc-first") == "cancelled", 120, "the service's sweep cancelled")
        lease.acquire(load_sweep(tmp_path / "svc-first.yaml"), store).release()  # the service let go of it
    finally:
        service.stop()
    assert_landed_once(store, "cli-first")
    assert children(store, "svc-first") == []  # cancelled in flight: nothing half-written, nothing twice


def test_kill_9_of_the_holder_frees_an_embedded_store_at_once(ray_head, tmp_path):
    store = f"sqlite:///{tmp_path / 'mlflow.db'}"
    sweep_file = write_sweep(tmp_path, "killed", SLOW)
    first = submit(tmp_path, sweep_file, store, ray_head)
    kill_when(first, lambda: len(children(store, "killed")) >= 3)
    held = lease.acquire(load_sweep(sweep_file), store)  # at once: the kernel dropped the dead holder's lock
    held.release()
    code, out, err = finish(submit(tmp_path, sweep_file, store, ray_head))
    assert code == 0, err[-3000:]
    assert_landed_once(store, "killed", SLOW)


def test_a_store_that_refuses_the_start_fails_the_submit_before_any_run(tmp_path, run_cli):
    """No tracking server listens: the parent run cannot be created. After ~10 s of retries the
    submit fails in one line (exit 1) and nothing is scheduled (no Ray is even started)."""
    sweep_file = write_sweep(tmp_path, "refused")
    store = f"http://127.0.0.1:{topology.free_port()}"
    started = time.monotonic()
    result = run_cli("submit", str(sweep_file), "--tracking-uri", store, env={"STUDY_SPOOL_DIR": str(tmp_path / "spool")})
    assert result.returncode == 1, result.stderr[-2000:]
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: sweep refused: the tracking store refused to create its parent run ("), lines
    assert lines[0].endswith("); nothing was scheduled")
    assert time.monotonic() - started >= sum(sweep_start.START_RETRY_S)  # it retried before giving up
    assert not (tmp_path / "spool").exists()  # not one write was journaled


# ---- a server store shared by coordinators on different Ray clusters ("hosts") --------------------


@pytest.fixture
def credentials(auth_server, monkeypatch) -> dict[str, str]:
    """The coordinator's credentials, also for this test process's own reads."""
    env = topology.mlflow_credentials(auth_server)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return env


@pytest.fixture(scope="module")
def two_clusters():
    heads = [RayHead(num_cpus=1), RayHead(num_cpus=1)]
    yield heads
    for head in heads:
        head.stop()


def test_two_coordinators_on_two_clusters_share_the_mlflow_server(auth_server, credentials, two_clusters, tmp_path):
    store = auth_server.mlflow_url
    sweep_file = write_sweep(tmp_path, "shared")
    for name in ("a", "b"):
        (tmp_path / name).mkdir()  # each "host" with its own spool
    processes = [submit(tmp_path / name, sweep_file, store, head, env=credentials)
                 for name, head in zip(("a", "b"), two_clusters)]
    (code_a, out_a, err_a), (code_b, out_b, err_b) = [finish(p) for p in processes]
    assert sorted([code_a, code_b]) == [0, 3], (err_a[-2000:], err_b[-2000:])
    match = assert_one_line_refusal(err_b if code_a == 0 else err_a, "shared")
    assert match.group(3) == "lease expires 30 s after its last heartbeat"
    assert "rejected" not in (out_a + err_a + out_b + err_b).lower()
    assert_landed_once(store, "shared")
    parents = list(tracking.sweep_runs(MlflowClient(store), tracking.parent_run("shared", store).info.experiment_id,
                                       "shared", kind=tracking.KIND_SWEEP))
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    assert not [key for key in parents[0].data.tags if key.startswith("study.lease.")]  # released


def test_kill_9_of_the_server_lease_holder_blocks_for_one_ttl(auth_server, credentials, two_clusters, tmp_path,
                                                              monkeypatch):
    store = auth_server.mlflow_url
    monkeypatch.setenv("STUDY_LEASE_TTL_S", str(TTL_S))
    env = {**credentials, "STUDY_LEASE_TTL_S": str(TTL_S)}
    sweep_file = write_sweep(tmp_path, "lost-holder", SLOW)
    first = submit(tmp_path, sweep_file, store, two_clusters[0], env=env)
    kill_when(first, lambda: len(children(store, "lost-holder")) >= 3, poll_s=0.5)
    killed_at = time.time()
    # Right after the kill the dead holder's claim is still live: a new coordinator is refused.
    with pytest.raises(lease.SweepBusy) as busy:
        lease.acquire(load_sweep(sweep_file), store)
    assert busy.value.holder["pid"] == first.pid
    assert str(busy.value).endswith(f"(lease expires {TTL_S} s after its last heartbeat); use --wait to wait for it")
    expires_at = float(busy.value.holder["heartbeat"]) + TTL_S

    code, out, err = finish(submit(tmp_path, sweep_file, store, two_clusters[1], "--wait", env=env))
    assert code == 0, err[-3000:]
    assert time.time() >= expires_at
    # It said whom it waited for, then took the sweep over once the lease expired and resumed it.
    assert f"waiting: sweep lost-holder is being run by host {busy.value.holder['host']} pid {first.pid} since" in err
    assert_landed_once(store, "lost-holder", SLOW)
    # Every run the second coordinator ran itself (not replayed from the dead one's journal) began
    # after the lease expired.
    resumed = [run for run in children(store, "lost-holder") if run.info.start_time / 1000 > killed_at]
    assert all(run.info.start_time / 1000 >= expires_at for run in resumed)
