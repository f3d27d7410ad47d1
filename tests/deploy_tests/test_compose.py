"""docker-compose.yml, checked without an engine: YAML, a JSON schema of the subset we use, health
checks and dependencies, and the same programs and key flags as the topology test starts."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import jsonschema
import pytest
import yaml

from tests.support import topology

REPO = Path(__file__).resolve().parents[2]
COMPOSE = yaml.safe_load((REPO / "docker-compose.yml").read_text())
SERVICES = COMPOSE["services"]

# Flags both sides must pass: what makes each service the service it is.
KEY_FLAGS = {
    "postgres": {"-c"},
    "mlflow": {"--backend-store-uri", "--serve-artifacts", "--artifacts-destination", "--host", "--port",
               "--workers", "--allowed-hosts", "--app-name"},
    "ray-head": {"--head", "--block", "--port", "--num-cpus"},
    "ray-worker": {"--block", "--address", "--num-cpus"},
    "coordinator": {"--host", "--port", "--tracking-uri", "--address", "--optuna-storage"},
}
# Flags only the containers pass (the dashboard is published from the head container).
COMPOSE_ONLY = {"ray-head": {"--dashboard-host", "--dashboard-port"}}


def topology_commands() -> dict[str, list[str]]:
    """What tests/support/topology.py starts, with placeholder paths and ports."""
    ports = {"node-manager-port": 1, "min-worker-port": 2}
    return {
        "postgres": topology.postgres_command(Path("/pg/bin"), Path("/data"), 5432, Path("/sock")),
        "mlflow": topology.mlflow_command("postgresql+psycopg2://u@h/mlflow", "/art", "127.0.0.1", 5000, "h:5000"),
        "ray-head": topology.ray_head_command(6379, 1, Path("/tmp/r"), ports),
        "ray-worker": topology.ray_worker_command("127.0.0.1:6379", 1, ports),
        "coordinator": topology.serve_command("127.0.0.1", 8000, "http://127.0.0.1:5000", "127.0.0.1:6379",
                                              "postgresql+psycopg2://u@h/optuna"),
    }


def split_program(argv: list[str]) -> tuple[tuple[str, ...], dict[str, str | None]]:
    """('ray', 'start'), {'--head': None, '--port': '6379', ...}; `python -m study.cli` is `study`."""
    if len(argv) > 2 and argv[1:3] == ["-m", "study.cli"]:
        argv = ["study", *argv[3:]]
    words = [Path(argv[0]).name]
    rest = argv[1:]
    while rest and not rest[0].startswith("-"):
        words.append(rest.pop(0))
    flags: dict[str, str | None] = {}
    for index, token in enumerate(rest):
        if token.startswith("-"):
            following = rest[index + 1] if index + 1 < len(rest) else None
            flags[token] = None if following is None or following.startswith("-") else following
    return tuple(words), flags


def compose_argv(service: str) -> list[str]:
    """The service's main program. `sh -c "a && exec b"` runs b last, and b is the service."""
    command = SERVICES[service]["command"]
    argv = shlex.split(command) if isinstance(command, str) else list(command)
    if argv[:2] == ["sh", "-c"]:
        argv = shlex.split(argv[2].split("&&")[-1].strip().removeprefix("exec "))
    return argv


def test_compose_matches_schema():
    schema = json.loads((REPO / "tests" / "deploy_tests" / "compose_schema.json").read_text())
    jsonschema.validate(COMPOSE, schema)


def test_schema_rejects_what_compose_would():
    schema = json.loads((REPO / "tests" / "deploy_tests" / "compose_schema.json").read_text())
    broken = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    broken["services"]["mlflow"]["depends_on"]["postgres"]["condition"] = "healthy"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(broken, schema)
    del broken["services"]["mlflow"]["healthcheck"]
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(broken, schema)


def test_every_service_is_health_checked_and_waits_for_healthy_dependencies():
    assert set(SERVICES) == set(KEY_FLAGS)
    for name, service in SERVICES.items():
        assert service["healthcheck"]["test"], name
        for dependency, rule in service.get("depends_on", {}).items():
            assert dependency in SERVICES, (name, dependency)
            assert rule["condition"] == "service_healthy", (name, dependency)


@pytest.mark.parametrize("service", sorted(KEY_FLAGS))
def test_service_runs_what_the_topology_test_runs(service):
    compose_program, compose_flags = split_program(compose_argv(service))
    local_program, local_flags = split_program(topology_commands()[service])
    assert compose_program == local_program
    assert KEY_FLAGS[service] <= set(compose_flags), set(compose_flags)
    assert KEY_FLAGS[service] <= set(local_flags), set(local_flags)
    assert set(compose_flags) - set(local_flags) <= COMPOSE_ONLY.get(service, set())


def test_deployment_settings_the_design_asks_for():
    _, mlflow_flags = split_program(compose_argv("mlflow"))
    assert mlflow_flags["--backend-store-uri"].startswith("postgresql+psycopg2://")
    assert mlflow_flags["--workers"] == "1"
    assert SERVICES["mlflow"]["environment"]["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] == "false"
    _, head_flags = split_program(compose_argv("ray-head"))
    assert head_flags["--num-cpus"] == "0" and head_flags["--dashboard-port"] == "8265"
    assert SERVICES["ray-head"]["ports"] == ["127.0.0.1:8265:8265"]  # the dashboard: loopback only
    assert SERVICES["ray-head"]["shm_size"] and SERVICES["ray-worker"]["shm_size"]
    _, serve_flags = split_program(compose_argv("coordinator"))
    assert serve_flags["--tracking-uri"] == "http://mlflow:5000"
    assert serve_flags["--address"] == "ray-head:6379"
    assert serve_flags["--optuna-storage"].startswith("postgresql+psycopg2://")
    assert "STUDY_API_TOKEN" in SERVICES["coordinator"]["environment"]
    # Workers compute only: they are never given the MLflow server.
    assert "mlflow" not in SERVICES["ray-worker"].get("depends_on", {})
    assert "mlflow" not in json.dumps(SERVICES["ray-worker"])


def test_mlflow_needs_credentials_and_the_coordinator_has_them():
    _, mlflow_flags = split_program(compose_argv("mlflow"))
    assert mlflow_flags["--app-name"] == "basic-auth"
    environment = SERVICES["mlflow"]["environment"]
    # No default password: compose refuses to start without one in the environment.
    assert environment["MLFLOW_AUTH_ADMIN_PASSWORD"].startswith("${MLFLOW_ADMIN_PASSWORD:?")
    assert environment["MLFLOW_FLASK_SERVER_SECRET_KEY"].startswith("${MLFLOW_SECRET_KEY:?")
    mounted = {volume.split(":")[1]: volume.split(":")[0] for volume in SERVICES["mlflow"]["volumes"]}
    assert mounted[environment["MLFLOW_AUTH_CONFIG_PATH"]] == "./deploy/mlflow-auth.ini"
    auth = (REPO / "deploy" / "mlflow-auth.ini").read_text()
    settings = [line for line in auth.splitlines() if line and not line.startswith("#")]
    assert "default_permission = READ" in settings and not any(line.startswith("admin_password") for line in settings)
    database = next(line.split("=", 1)[1].strip() for line in auth.splitlines() if line.startswith("database_uri"))
    assert database.removeprefix("sqlite:///").rsplit("/", 1)[0] in mounted  # the user database lives on a volume
    coordinator = SERVICES["coordinator"]["environment"]
    assert coordinator["MLFLOW_TRACKING_USERNAME"] == "admin"
    assert coordinator["MLFLOW_TRACKING_PASSWORD"].startswith("${MLFLOW_ADMIN_PASSWORD:?")
    assert 'mlflow[auth]' in (REPO / "pyproject.toml").read_text()


def test_dockerfile_installs_cpu_torch_before_the_project():
    text = (REPO / "Dockerfile").read_text()
    lines = [line for line in text.splitlines() if line.startswith("RUN")]
    torch_line = next(i for i, line in enumerate(lines) if "torch==2.13.0" in line)
    project_line = next(i for i, line in enumerate(lines) if "pip install ." in line)
    # The CPU wheel unless the build asks for another index (the CUDA image of deploy/k8s's GPU group).
    assert torch_line < project_line and '--index-url "$TORCH_INDEX_URL"' in lines[torch_line]
    assert "ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu" in text.splitlines()
