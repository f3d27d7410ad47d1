"""Shared fixtures: a real local Ray (num_cpus=2) and real MLflow / Optuna stores in temp dirs."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def ray_local():
    """One real local Ray for the whole test session (starting Ray costs ~5 s)."""
    import ray

    if not ray.is_initialized():
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield ray
    ray.shutdown()


@pytest.fixture(scope="session")
def auth_server(tmp_path_factory):
    """PostgreSQL and the MLflow server with its auth app, as compose runs them (tests/support/topology.py),
    once per session: the server tests and the PostgreSQL bulk tests share it (starting costs ~15 s).
    Each test keeps to its own experiments, users or databases."""
    from tests.support import topology

    topology.require_postgres("the MLflow server and PostgreSQL tests")
    top = topology.start_topology(tmp_path_factory.mktemp("mlflow-auth"), ray=False)
    yield top
    top.stop()


@pytest.fixture
def mlflow_uri(tmp_path: Path) -> str:
    """A fresh SQLite MLflow store (the MLflow 3 default backend) in a temporary directory."""
    return f"sqlite:///{tmp_path / 'mlflow.db'}"


@pytest.fixture
def run_cli(tmp_path: Path):
    """Run `study ...` as a real subprocess (python -m study.cli) in tmp_path; returns CompletedProcess."""

    def call(*args: str, env: dict[str, str] | None = None, timeout: float = 300, cwd: Path | None = None):
        full_env = {**os.environ, "PYTHONPATH": str(REPO), **(env or {})}
        return subprocess.run(
            [sys.executable, "-m", "study.cli", *args],
            cwd=cwd or tmp_path,
            env=full_env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    return call
