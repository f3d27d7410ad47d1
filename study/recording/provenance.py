"""What names a run and traces its numbers to what produced them: the child run's name (its point)
and the provenance tags (git commit, package versions), computed once per process."""

from __future__ import annotations

import functools
import importlib.metadata
import os
import subprocess
from pathlib import Path
from typing import Any

from study.mlflow_names import TAG_GIT_COMMIT, TAG_GIT_DIRTY, TAG_VERSIONS

MAX_RUN_NAME = 250  # MLflow's runs.name column
# Whose versions a run records (the distribution names; the last is this project).
PROVENANCE_PACKAGES = ("torch", "numpy", "ray", "mlflow", "optuna", "deep-unfolding-study")


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def child_run_name(params: dict[str, Any], varying: list[str]) -> str:
    """`T=8 kappa=30 n=64 s=1`: the point's values of the sweep's varying axes (in the order given,
    see Sweep.varying_axes), then the seed; cut to MLflow's limit."""
    parts = [f"{key}={_value_text(params.get(key))}" for key in varying if key != "seed"]
    parts.append(f"s={params.get('seed', 0)}")
    return _clip(" ".join(parts), MAX_RUN_NAME)


def _value_text(value: Any) -> str:
    if value is None:
        return "none"
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() and abs(value) < 1e15 else f"{value:.4g}"
    return str(value)


@functools.lru_cache(maxsize=1)
def provenance() -> dict[str, str]:
    """Tags that trace a number to what produced it: the git commit of this code when it is a git
    checkout (and whether tracked files differ from it), and the package versions, compact.
    Computed once per process (two short git calls)."""
    tags: dict[str, str] = {}
    commit, dirty = _git_state(Path(__file__).resolve().parents[2])
    if commit:
        tags[TAG_GIT_COMMIT] = commit
        tags[TAG_GIT_DIRTY] = "true" if dirty else "false"
    tags[TAG_VERSIONS] = " ".join(f"{name}={version}" for name, version in package_versions().items())
    return tags


@functools.lru_cache(maxsize=1)
def package_versions() -> dict[str, str]:
    """Installed versions of PROVENANCE_PACKAGES (read from metadata: nothing is imported)."""
    versions = {}
    for name in PROVENANCE_PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return versions


def _git_state(root: Path) -> tuple[str | None, bool]:
    """(HEAD commit, tracked files modified) when `root` is the top of a git checkout, else (None, False)."""
    env = {**os.environ, "GIT_OPTIONAL_LOCKS": "0"}  # never take the index lock of a checkout in use
    try:
        found = subprocess.run(["git", "-C", str(root), "rev-parse", "--show-toplevel", "HEAD"],
                               capture_output=True, text=True, timeout=10, env=env)
        lines = found.stdout.split()
        if found.returncode != 0 or len(lines) != 2 or Path(lines[0]).resolve() != root:
            return None, False  # not a checkout, or the code sits inside some other repository
        status = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                                capture_output=True, text=True, timeout=10, env=env)
        return lines[1], bool(status.stdout.strip())
    except (OSError, subprocess.SubprocessError):  # no git on this machine
        return None, False
