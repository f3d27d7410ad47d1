"""Helpers for the fault-injection tests: a Ray head of our own, a real `mlflow server`, the `study`
command as a subprocess, and MLflow counts. Every process here is started, and stopped, by PID;
nothing ever runs `ray stop`."""

from __future__ import annotations

import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import psutil

from study.recording import layout as tracking
from tests.support.topology import free_port, wait_for_port  # noqa: F401 - shared loopback helpers

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


class RayHead:
    """`ray start --head --block` with its own temp dir and free ports; stop() ends only its processes."""

    def __init__(self, num_cpus: int = 2):
        # A short path: Ray's Unix sockets live under it (108-byte limit).
        self.temp_dir = tempfile.mkdtemp(prefix="rayrel-", dir="/tmp")
        self.port = free_port()
        ports = {flag: str(free_port()) for flag in (
            "--node-manager-port", "--object-manager-port", "--ray-client-server-port", "--dashboard-agent-grpc-port",
            "--dashboard-agent-listen-port", "--metrics-export-port", "--runtime-env-agent-port")}
        command = [str(BIN / "ray"), "start", "--head", "--block", f"--port={self.port}", f"--num-cpus={num_cpus}",
                   f"--temp-dir={self.temp_dir}", "--node-ip-address=127.0.0.1", "--include-dashboard=false", "--disable-usage-stats",
                   *[f"{flag}={port}" for flag, port in ports.items()]]
        # Token auth, as `ray start` clusters run in deployment: the head and every driver share the token.
        self.env = {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(32), "RAY_USAGE_STATS_ENABLED": "0"}
        self.process = subprocess.Popen(command, env={**os.environ, **self.env}, stdout=subprocess.DEVNULL,
                                        stderr=subprocess.DEVNULL, start_new_session=True)
        self.address = f"127.0.0.1:{self.port}"
        wait_for_port(self.port)

    def running_chunk_workers(self) -> list[psutil.Process]:
        """This cluster's worker processes that are executing a chunk of runs right now."""
        busy = []
        for process in psutil.Process(self.process.pid).children(recursive=True):
            try:
                if re.search(r"ray::_?run_(chunk|unit)\b", " ".join(process.cmdline())):  # Ray titles a busy worker by its task
                    busy.append(process)
            except psutil.Error:
                continue
        return busy

    def stop(self) -> None:
        try:
            family = psutil.Process(self.process.pid).children(recursive=True)
        except psutil.Error:
            family = []
        self.process.terminate()  # `ray start --block` stops what it started on SIGTERM
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
        for process in family:  # whatever outlived it, by PID
            try:
                process.kill()
            except psutil.Error:
                pass
        shutil.rmtree(self.temp_dir, ignore_errors=True)


class MlflowServer:
    """A real `mlflow server` (SQLite backend, one worker, job execution off) on a fixed loopback port,
    in its own process group so stop() takes uvicorn down with it."""

    def __init__(self, directory: Path, port: int | None = None):
        self.directory = directory
        self.port = port or free_port()
        self.uri = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen | None = None

    def start(self) -> "MlflowServer":
        env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
        self.process = subprocess.Popen(
            [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(self.port), "--workers", "1",
             "--backend-store-uri", f"sqlite:///{self.directory / 'server.db'}",
             "--artifacts-destination", str(self.directory / "artifacts")],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
        )
        wait_for_port(self.port, timeout_s=120)
        return self

    def kill(self) -> None:
        """SIGKILL the whole server (its process group): an outage, not a shutdown."""
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=30)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:  # the port is free again once the group is gone
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                time.sleep(0.2)
            except OSError:
                return


class StudyProcess(subprocess.Popen):
    """`python -m study.cli ARGS` with its stdout and stderr in files beside it, not pipes: a pipe
    nobody reads while the test polls would block the coordinator once 64 KB of output piled up."""

    def __init__(self, args: list[str], cwd: Path, env: dict[str, str]):
        logs = Path(tempfile.mkdtemp(prefix="study-cli-", dir=cwd))
        self.stdout_path, self.stderr_path = logs / "stdout", logs / "stderr"
        with self.stdout_path.open("w") as out, self.stderr_path.open("w") as err:
            super().__init__([sys.executable, "-m", "study.cli", *args], cwd=cwd, env=env, stdout=out, stderr=err, text=True)

    def communicate(self, input=None, timeout=None) -> tuple[str, str]:  # noqa: A002 - Popen's signature
        self.wait(timeout)
        return self.output()

    def output(self) -> tuple[str, str]:
        """What it printed so far: (stdout, stderr)."""
        return self.stdout_path.read_text(errors="replace"), self.stderr_path.read_text(errors="replace")


def study_process(args: list[str], cwd: Path, env: dict[str, str] | None = None) -> StudyProcess:
    """`python -m study.cli ARGS` as a subprocess (the coordinator as users run it)."""
    return StudyProcess(args, cwd, {**os.environ, "PYTHONPATH": str(REPO), **(env or {})})


def kill_when(process: StudyProcess, ready: Callable[[], object], timeout_s: float = 180, poll_s: float = 0.1) -> None:
    """SIGKILL the coordinator once ready() holds (no clean-up of any kind). If it never does, the
    error carries the coordinator's stderr and every thread's stack (SIGUSR1, see study.cli).
    poll_s: each ready() on a tracking server costs requests that the coordinator's writes share."""
    deadline = time.monotonic() + timeout_s
    last_error = None
    while time.monotonic() < deadline and process.poll() is None:
        try:
            if ready():
                break
        except Exception as error:  # noqa: BLE001 - the store may not have the experiment yet
            last_error = error
        time.sleep(poll_s)
    else:
        if process.poll() is None:
            process.send_signal(signal.SIGUSR1)
            time.sleep(2)
            process.kill()
            process.wait(timeout=30)
            raise TimeoutError(f"not ready after {timeout_s} s (last check error: {last_error!r}); the coordinator's "
                               f"stderr and stacks:\n{process.output()[1][-6000:]}")
    assert process.poll() is None, "the sweep ended before the kill: " + process.output()[1][-2000:]
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)
    assert process.returncode == -signal.SIGKILL


def duplicate_keys(runs: list) -> dict[str, int]:
    counts = Counter(run.data.tags[tracking.TAG_RUN_KEY] for run in runs)
    return {key: count for key, count in counts.items() if count > 1}
