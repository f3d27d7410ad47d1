"""deploy/slurm/study.sbatch on a real two-node SLURM cluster on loopback (tests/support/slurm_cluster.py):
the job starts its own PostgreSQL and MLflow server, a Ray head, a Ray worker on the other node
(srun) and `study submit`; a job cancelled mid-sweep (scancel) stops cleanly, and resubmitting it
completes the sweep in the store with exact counts, each run key FINISHED once."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import yaml
from mlflow import MlflowClient

from tests.support import slurm_cluster, topology

pytestmark = pytest.mark.topology

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "deploy" / "slurm" / "study.sbatch"
X_VALUES, SEEDS = [0.0, 2.0], list(range(5))
TOTAL = len(X_VALUES) * len(SEEDS)


@pytest.fixture(scope="module")
def slurm():
    slurm_cluster.require_slurm("the SLURM batch script test")
    topology.require_postgres("the SLURM batch script test")
    try:
        cluster = slurm_cluster.start_slurm(nodes=2, cpus=1)
    except (RuntimeError, TimeoutError, OSError, subprocess.SubprocessError) as error:  # e.g. a container without the rights slurmd needs
        slurm_cluster.not_tested("the SLURM batch script test", f"the one-node cluster did not start: {error}"[:2000])
    yield cluster
    cluster.stop()


@pytest.fixture
def job_dir():
    # Under /tmp and traversable: as root the job's PostgreSQL runs as another account.
    path = Path(tempfile.mkdtemp(prefix="study-sbatch-"))
    os.chmod(path, 0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def write_sweep(job_dir: Path, name: str, work_s: float) -> Path:
    sweep = {"name": name, "seeds": SEEDS, "parameters": {"problem": "probe", "work_s": work_s, "x": X_VALUES}}
    path = job_dir / f"{name}.yaml"
    path.write_text(yaml.safe_dump(sweep))
    return path


def sbatch(slurm, job_dir: Path, sweep: Path) -> str:
    env = {"PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}", "PYTHONPATH": str(REPO),
           "STUDY_DEPLOY_DIR": str(REPO / "deploy"), "STUDY_STATE_DIR": str(job_dir / "state"),
           "STUDY_NODE_IP": "127.0.0.1",
           # A busy CI box (load 20+ on 2 cores, seen here) delays the worker raylet's health checks past
           # Ray's default (~15 s), and the GCS then drops the worker: give it a minute.
           "RAY_health_check_failure_threshold": "20", "RAY_health_check_timeout_ms": "10000"}
    done = slurm.run("sbatch", "--parsable", "--nodes=2", "--cpus-per-task=1", f"--chdir={job_dir}",
                     f"--output={job_dir}/job-%j.out", f"--export=ALL,{','.join(f'{k}={v}' for k, v in env.items())}",
                     str(SCRIPT), str(sweep))
    return done.stdout.strip().split(";")[0]


def job_output(job_dir: Path, job_id: str) -> str:
    path = job_dir / f"job-{job_id}.out"
    return path.read_text(errors="replace") if path.exists() else "(no output)"


def tracking_client(job_dir: Path, monkeypatch) -> MlflowClient:
    """The job's MLflow server, as the admin (the password the job generated into the state dir)."""
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "admin")
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", (job_dir / "state" / "secrets" / "mlflow-admin-password").read_text().strip())
    uri = next(line.split(":", 1)[1].strip() for line in (job_dir / "state" / "endpoints.txt").read_text().splitlines()
               if line.startswith("tracking URI:"))
    return MlflowClient(uri)


def finished_keys(client: MlflowClient, sweep: str) -> list[str]:
    experiment = client.get_experiment_by_name(sweep)
    if experiment is None:
        return []
    runs = client.search_runs([experiment.experiment_id], "tags.`study.kind` = 'run' and attributes.status = 'FINISHED'",
                              max_results=1000)
    return [run.data.tags["study.run_key"] for run in runs]


def stored_children(job_dir: Path, sweep: str) -> list:
    """The sweep's child runs read straight from the job's PostgreSQL data directory (the job is over:
    this starts the server again on a loopback port)."""
    pg_bin = topology.postgres_bin()
    port = topology.free_port()
    socket_dir = Path(tempfile.mkdtemp(prefix="study-pgsock-"))
    user = topology.postgres_user()
    if user:
        shutil.chown(socket_dir, user)
    server = topology.launch("postgres-check", topology.postgres_command(pg_bin, job_dir / "state" / "pgdata", port, socket_dir),
                             socket_dir, user=user)
    server.stop_signal = signal.SIGINT
    try:
        ready = [str(pg_bin / "pg_isready"), "-h", "127.0.0.1", "-p", str(port), "-U", "postgres"]
        topology.wait_until(lambda: subprocess.run(ready, capture_output=True).returncode == 0, 30, "postgres", server)
        client = MlflowClient(f"postgresql+psycopg2://postgres@127.0.0.1:{port}/mlflow")
        experiment = client.get_experiment_by_name(sweep)
        return client.search_runs([experiment.experiment_id], "tags.`study.kind` = 'run'", max_results=1000)
    finally:
        server.stop()
        shutil.rmtree(socket_dir, ignore_errors=True)


def assert_complete(children: list) -> None:
    finished = [run for run in children if run.info.status == "FINISHED"]
    keys = [run.data.tags["study.run_key"] for run in finished]
    assert len(finished) == TOTAL and len(set(keys)) == TOTAL, (len(finished), len(set(keys)))
    assert sorted((float(run.data.params["x"]), int(run.data.params["seed"])) for run in finished) == \
        sorted((x, seed) for x in X_VALUES for seed in SEEDS)


def no_processes_left(job_dir: Path) -> list[str]:
    import psutil

    left = []
    for process in psutil.process_iter(["cmdline"]):
        cmdline = " ".join(process.info["cmdline"] or [])
        if str(job_dir) in cmdline:
            left.append(cmdline[:200])
    return left


def test_sbatch_scancel_mid_sweep_then_resubmit_completes_it(slurm, job_dir, monkeypatch):
    """Two jobs (each starts PostgreSQL, MLflow and Ray: about a minute on an idle 2-core box): the
    first is cancelled mid-sweep and stops cleanly; the second resumes and finishes the sweep."""
    sweep = write_sweep(job_dir, "slurm-resume", work_s=2.0)  # 10 runs x 2 s on 2 CPUs: ~10 s of work
    first = sbatch(slurm, job_dir, sweep)
    deadline = time.monotonic() + 240
    while True:  # cancel once some runs are done but not all
        assert slurm.job_state(first), f"job ended before it could be cancelled\n{job_output(job_dir, first)}"
        done = []
        if (job_dir / "state" / "endpoints.txt").exists():
            try:
                done = finished_keys(tracking_client(job_dir, monkeypatch), "slurm-resume")
            except Exception:  # noqa: BLE001 - the server is still starting
                done = []
        if len(done) >= 2:
            break
        assert time.monotonic() < deadline, job_output(job_dir, first)
        time.sleep(0.5)
    slurm.run("scancel", first)
    slurm.wait_gone(first, timeout_s=120)
    first_end_ms = time.time() * 1000
    output = job_output(job_dir, first)
    assert "study submit exited 130 (cancelled)" in output and "stopped" in output, output  # a clean cancel, then the stop
    assert no_processes_left(job_dir) == []
    partial = stored_children(job_dir, "slurm-resume")
    assert 2 <= sum(run.info.status == "FINISHED" for run in partial) < TOTAL

    second = sbatch(slurm, job_dir, sweep)
    slurm.wait_gone(second, timeout_s=240)
    output = job_output(job_dir, second)
    assert "study submit exited 0" in output and "stopped" in output, output
    assert no_processes_left(job_dir) == []
    children = stored_children(job_dir, "slurm-resume")
    assert_complete(children)
    second_runs = [run for run in children if run.info.status == "FINISHED" and run.info.start_time > first_end_ms]
    assert len({run.data.tags["study.node"] for run in second_runs}) == 2  # the srun worker joined and ran some
    secrets_dir = job_dir / "state" / "secrets"  # generated once, readable by the owner only
    assert oct(secrets_dir.stat().st_mode & 0o777) == "0o700"
    assert {f.name: oct(f.stat().st_mode & 0o777) for f in secrets_dir.iterdir()} == \
        {"mlflow-admin-password": "0o600", "mlflow-secret-key": "0o600"}


# ---- without SLURM: the script runs the programs and key flags the topology test runs -------------------


def script_commands() -> dict[str, list[str]]:
    """`start NAME SIGNAL PROGRAM ...` lines of the batch script (continuations joined), by NAME."""
    import shlex

    text = SCRIPT.read_text().replace("\\\n", " ")
    commands = {}
    for line in text.splitlines():
        words = shlex.split(line.strip(), comments=True) if line.strip().startswith("start ") else []
        if len(words) > 3:
            commands[words[1]] = words[3:]
    return commands


@pytest.mark.parametrize(("name", "service"), [("mlflow", "mlflow"), ("ray-head", "ray-head"), ("ray-workers", "ray-worker")])
def test_batch_script_runs_what_the_topology_test_runs(name, service):
    from tests.deploy_tests.test_compose import KEY_FLAGS, split_program, topology_commands

    argv = script_commands()[name]
    if argv[0] == "srun":  # srun ... bash -c 'exec ray start ...': the program is what srun starts on each node
        import shlex

        argv = shlex.split(argv[-1].removeprefix("exec "))
    program, flags = split_program(argv)
    local_program, local_flags = split_program(topology_commands()[service])
    assert program == local_program
    assert KEY_FLAGS[service] <= set(flags) and KEY_FLAGS[service] <= set(local_flags)
    if service == "mlflow":
        assert set(flags) == set(local_flags)
        assert flags["--app-name"] == "basic-auth" and flags["--workers"] == "1"


def test_batch_script_submits_with_wait_and_stops_on_signals():
    text = SCRIPT.read_text()
    assert "trap cleanup EXIT" in text and "trap 'log \"signal received\"; exit 143' TERM INT" in text
    assert 'SUBMIT=(env "${CREDENTIALS[@]}" study submit "$SWEEP_FILE" --address' in text and "--wait)" in text
    assert "#SBATCH --signal=B:TERM@" in text
    assert "ray stop" not in text  # it would stop every Ray of the user on the node
