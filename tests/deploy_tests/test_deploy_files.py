"""Nothing in the deployment files holds a secret value, a default password or a host path of a
developer machine: every secret comes from the environment, a generated file or a Kubernetes Secret."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
FILES = sorted(p for p in (REPO / "deploy").rglob("*") if p.is_file()) + [REPO / "docker-compose.yml", REPO / "Dockerfile"]

# A value is a reference, not a secret, when it names where the secret comes from.
REFERENCE = re.compile(r"""^["']?(\$|<|\{|\(|\)|$)""")
ASSIGNED = re.compile(r"""(?i)\b[\w-]*(password|passwd|secret|token|api[_-]?key)[\w-]*\s*[:=]\s*(?P<value>[^\s#,}]*)""")
URL_PASSWORD = re.compile(r"://[^/\s:@]+:(?P<value>[^@\s/]+)@")
HIGH_ENTROPY = re.compile(r"\b[A-Fa-f0-9]{32,}\b|\b[A-Za-z0-9+/]{40,}={0,2}(?![\w/])|BEGIN [A-Z ]*PRIVATE KEY")
HOST_PATH = re.compile(r"(?<![\w.])(/home/[\w.-]+|/Users/[\w.-]+|/root/|/work/|[A-Z]:\\\\Users)")


def problems(text: str) -> list[str]:
    found = []
    for number, line in enumerate(text.splitlines(), 1):
        for match in ASSIGNED.finditer(line):
            if not REFERENCE.match(match.group("value")):
                found.append(f"line {number}: a value for {match.group(0)!r}")
        for match in URL_PASSWORD.finditer(line):
            if not REFERENCE.match(match.group("value")):
                found.append(f"line {number}: a password in a URL")
        if HIGH_ENTROPY.search(line):
            found.append(f"line {number}: a key-like string")
        if HOST_PATH.search(line):
            found.append(f"line {number}: a host path {HOST_PATH.search(line).group(0)!r}")
    return found


@pytest.mark.parametrize("path", FILES, ids=lambda p: str(p.relative_to(REPO)))
def test_no_secret_value_default_password_or_host_path(path):
    assert problems(path.read_text(errors="replace")) == []


@pytest.mark.parametrize("line", [
    "POSTGRES_PASSWORD: hunter2",
    "MLFLOW_AUTH_ADMIN_PASSWORD=changeme",
    'admin_password = "password123"',
    "postgresql+psycopg2://study:s3cret@postgres:5432/mlflow",
    "RAY_AUTH_TOKEN: 0123456789abcdef0123456789abcdef",
    "      - /home/ada/deep-unfolding-study/configs:/app/configs",
    "--state /root/study-state",
])
def test_the_check_finds_what_it_looks_for(line):
    assert problems(line)


@pytest.mark.parametrize("line", [
    "POSTGRES_PASSWORD: ${POSTGRES_PASSWORD:?set POSTGRES_PASSWORD}",
    "MLFLOW_TRACKING_PASSWORD=$MLFLOW_AUTH_ADMIN_PASSWORD",
    "postgresql+psycopg2://study:${POSTGRES_PASSWORD}@postgres:5432/mlflow",
    "postgresql+psycopg2://study:<password>@db.example.internal:5432/mlflow",
    "secretKeyRef: {name: study-secrets, key: mlflow-admin-password}",
    "PGDATA: /var/lib/postgresql/data/pgdata",
])
def test_the_check_passes_references(line):
    assert problems(line) == []
