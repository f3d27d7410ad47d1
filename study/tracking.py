"""MLflow conventions (design.md "MLflow conventions"): one experiment and one parent run per sweep,
one child run per run, found again by tags. The coordinator is the only writer; it writes through
study.writer.TrackingWriter, which calls the `apply_*` functions here from one background thread.

The experiment is tagged mlflow.experimentKind = custom_model_development (unless the user set it),
so the MLflow UI opens on its runs. The parent run is named after the sweep; a child run after its
point: the sweep's varying axes and the seed (`T=8 kappa=30 n=64 s=1`). A child's params are its
own (workers.specs.own_parameters: no None, nothing of a feature it does not use).

Tags on the parent: study.sweep_id (= sweep name), study.kind = sweep, study.method, provenance.
Tags on a child: mlflow.parentRunId, study.sweep_id, study.kind = run, study.run_key, study.problem,
study.attempt, study.node, provenance, and study.trial / study.reason when they apply.
Provenance (see provenance()): mlflow.source.git.commit and study.git_dirty in a git checkout, and
study.versions (torch, numpy, ray, mlflow, optuna, this project), as the coordinator has them.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import importlib.metadata
import json
import os
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import mlflow
from mlflow import MlflowClient
from mlflow.entities import Metric, Param, Run, RunTag
from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository

from study.lease import store_init_lock
from study.names import (  # noqa: F401 - re-exported
    EXPERIMENT_KIND_RUNS, KIND_RUN, KIND_SWEEP, FIGURES_ARTIFACT_DIR, RESULT_ARTIFACT, SWEEP_FILE_ARTIFACT,
    TAG_ATTEMPT, TAG_EXPERIMENT_KIND, TAG_GIT_COMMIT, TAG_GIT_DIRTY, TAG_KIND, TAG_METHOD, TAG_NODE, TAG_PARENT,
    TAG_PROBLEM, TAG_REASON, TAG_RUN_KEY, TAG_RUN_NAME, TAG_SWEEP_ID, TAG_TRIAL, TAG_VERSION_PREFIX, TAG_VERSIONS,
)
from workers.result import Result
from workers.specs import own_parameters

# MLflow's limits: log_batch takes <= 1000 entities, of which <= 100 params+tags; values are capped.
_MAX_BATCH = 1000
_MAX_PARAMS_PER_BATCH = 100
_MAX_PARAM_VALUE = 6000
_MAX_TAG_VALUE = 5000
_MAX_REASON = 500
_PAGE = 10_000
MAX_RUN_NAME = 250  # MLflow's runs.name column
# Whose versions a run records (the distribution names; the last is this project).
PROVENANCE_PACKAGES = ("torch", "numpy", "ray", "mlflow", "optuna", "deep-unfolding-study")


def resolve_tracking_uri(tracking_uri: str | None = None) -> str:
    """--tracking-uri, else MLFLOW_TRACKING_URI, else MLflow's default (sqlite:///<cwd>/mlflow.db)."""
    return tracking_uri or mlflow.get_tracking_uri()


def store_directory(tracking_uri: str) -> Path | None:
    """The directory holding a SQLite store (None for servers and databases elsewhere)."""
    parsed = urlparse(tracking_uri)
    if parsed.scheme != "sqlite":
        return None
    path = tracking_uri.removeprefix("sqlite:///")
    return Path(path if path.startswith("/") else Path.cwd() / path).parent


def spool_path(sweep_name: str, tracking_uri: str) -> Path:
    """Where writes wait while the store is unreachable: $STUDY_SPOOL_DIR or ~/.cache/study/spool,
    one JSON-lines file per (sweep, store)."""
    base = Path(os.environ.get("STUDY_SPOOL_DIR") or Path.home() / ".cache" / "study" / "spool")
    digest = hashlib.sha256(tracking_uri.encode()).hexdigest()[:8]
    return base / f"{sweep_name}-{digest}.jsonl"


def _now_ms() -> int:
    return int(time.time() * 1000)


def _clip(value: Any, limit: int) -> str:
    text = value if isinstance(value, str) else json.dumps(value) if isinstance(value, (list, dict)) else str(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


# --- lookup -------------------------------------------------------------------------------------


def experiment_id(client: MlflowClient, name: str, tracking_uri: str, create: bool = False) -> str | None:
    experiment = client.get_experiment_by_name(name)
    if experiment is not None:
        return experiment.experiment_id
    if not create:
        return None
    directory = store_directory(tracking_uri)
    # Keep artifacts beside a SQLite store (MLflow would use ./mlruns of whatever the cwd is).
    location = (directory / "mlruns").as_uri() if directory else None
    return client.create_experiment(name, artifact_location=location, tags={TAG_EXPERIMENT_KIND: EXPERIMENT_KIND_RUNS})


def mark_experiment_kind(client: MlflowClient, exp_id: str) -> None:
    """Tag an existing experiment for the UI's classic (runs) view, unless it carries a kind already."""
    if TAG_EXPERIMENT_KIND not in client.get_experiment(exp_id).tags:
        client.set_experiment_tag(exp_id, TAG_EXPERIMENT_KIND, EXPERIMENT_KIND_RUNS)


# --- names and provenance -----------------------------------------------------------------------


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
    commit, dirty = _git_state(Path(__file__).resolve().parents[1])
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


def sweep_runs(client: MlflowClient, exp_id: str, sweep_name: str, kind: str = KIND_RUN, status: str | None = None) -> Iterator[Run]:
    """Every run of a sweep of one kind (and status), across pages."""
    query = f"tags.`{TAG_SWEEP_ID}` = '{sweep_name}' and tags.`{TAG_KIND}` = '{kind}'"
    if status:
        query += f" and attributes.status = '{status}'"
    token = None
    while True:
        page = client.search_runs([exp_id], query, max_results=_PAGE, page_token=token)
        yield from page
        token = page.token
        if not token:
            return


def parent_run(sweep: Any, tracking_uri: str | None = None, client: MlflowClient | None = None) -> Run | None:
    """The sweep's parent run (sweep: a Sweep or its name; the experiment defaults to the name)."""
    name = getattr(sweep, "name", sweep)
    experiment = getattr(sweep, "experiment_name", name)
    uri = resolve_tracking_uri(tracking_uri)
    client = client or MlflowClient(uri)
    exp_id = experiment_id(client, experiment, uri)
    if exp_id is None:
        return None
    runs = list(sweep_runs(client, exp_id, name, kind=KIND_SWEEP))
    return min(runs, key=_parent_order) if runs else None


def _parent_order(run: Run) -> tuple[int, str]:
    """Which of several parent runs is the sweep's: the earliest, ties by run id (every process agrees)."""
    return run.info.start_time, run.info.run_id


def finished_runs(sweep: Any, tracking_uri: str | None = None, client: MlflowClient | None = None) -> dict[str, dict[str, float]]:
    """run_key -> metrics of every FINISHED child run of the sweep (resume skips these keys)."""
    uri = resolve_tracking_uri(tracking_uri)
    client = client or MlflowClient(uri)
    exp_id = experiment_id(client, sweep.experiment_name, uri)
    if exp_id is None:
        return {}
    return {run.data.tags[TAG_RUN_KEY]: dict(run.data.metrics) for run in sweep_runs(client, exp_id, sweep.name, status="FINISHED")}


def finished_run_keys(sweep: Any, tracking_uri: str | None = None) -> set[str]:
    return set(finished_runs(sweep, tracking_uri))


def sweep_history(sweep: Any, tracking_uri: str | None = None) -> tuple[dict[str, dict[str, float]], dict[str, int]]:
    """One pass over a sweep's children: (run_key -> metrics of FINISHED runs, run_key -> runs logged)."""
    uri = resolve_tracking_uri(tracking_uri)
    client = MlflowClient(uri)
    exp_id = experiment_id(client, sweep.experiment_name, uri)
    finished: dict[str, dict[str, float]] = {}
    attempts: dict[str, int] = {}
    if exp_id is None:
        return finished, attempts
    for run in sweep_runs(client, exp_id, sweep.name):
        key = run.data.tags.get(TAG_RUN_KEY, "")
        attempts[key] = attempts.get(key, 0) + 1
        if run.info.status == "FINISHED":
            finished[key] = dict(run.data.metrics)
    return finished, attempts


# --- writes (called from the writer thread only) ----------------------------------------------


def apply_sweep_start(client: MlflowClient, tracking_uri: str, command: dict[str, Any]) -> tuple[str, str]:
    """Find or create the experiment and the parent run; mark it RUNNING; log the sweep file.
    Children a killed coordinator left RUNNING (created, never terminated) are marked FAILED."""
    exp_id = experiment_id(client, command["experiment"], tracking_uri, create=True)
    mark_experiment_kind(client, exp_id)
    runs = list(sweep_runs(client, exp_id, command["sweep"], kind=KIND_SWEEP))
    if runs:
        parent_id = min(runs, key=_parent_order).info.run_id
        client.update_run(parent_id, status="RUNNING")
        for orphan in sweep_runs(client, exp_id, command["sweep"], status="RUNNING"):
            client.set_tag(orphan.info.run_id, TAG_REASON, "coordinator stopped while logging this run")
            client.set_terminated(orphan.info.run_id, "FAILED")
    else:
        parent_id = _create_parent(client, exp_id, command)
    # The code and environment of the latest submission (each child records its own as well).
    versions = {f"{TAG_VERSION_PREFIX}{name}": version for name, version in package_versions().items()}
    client.log_batch(parent_id, tags=[RunTag(key, value) for key, value in {**provenance(), **versions}.items()])
    client.log_text(parent_id, command["sweep_text"], SWEEP_FILE_ARTIFACT)
    return exp_id, parent_id


def _create_parent(client: MlflowClient, exp_id: str, command: dict[str, Any]) -> str:
    tags = {TAG_SWEEP_ID: command["sweep"], TAG_KIND: KIND_SWEEP, TAG_METHOD: command["method"], TAG_RUN_NAME: command["sweep"]}
    parent_id = client.create_run(exp_id, start_time=command["time_ms"], tags=tags).info.run_id
    params = [Param(key[:250], _clip(value, _MAX_PARAM_VALUE)) for key, value in command["params"].items()]
    for start in range(0, len(params), _MAX_PARAMS_PER_BATCH):
        client.log_batch(parent_id, params=params[start : start + _MAX_PARAMS_PER_BATCH])
    return parent_id


# --- the synchronous start (the coordinator's thread, before anything is scheduled) ---------------


class SweepStartRefused(RuntimeError):
    """The store would not create (or show) the sweep's experiment and parent run; nothing ran."""


START_TRIES = 5
START_RETRY_S = (0.5, 1.5, 3.0, 5.0)  # ~10 s in all: long enough for a migration or a lock to pass
SETTLE_S = 1.0  # a second coordinator's parent run becomes visible within this (server stores)
_PERMANENT = ("PERMISSION_DENIED", "UNAUTHENTICATED", "INVALID_PARAMETER_VALUE")


def sweep_start_command(sweep: Any) -> dict[str, Any]:
    """The sweep_start write command (TrackingWriter.start_sweep journals the same)."""
    from study.spec import flatten

    params = flatten(sweep.model_dump(mode="json", exclude_none=True))
    return {"op": "sweep_start", "sweep": sweep.name, "experiment": sweep.experiment_name, "method": sweep.method,
            "params": params, "sweep_text": sweep.source_text, "time_ms": _now_ms()}


def start_parent(sweep: Any, tracking_uri: str) -> str:
    """Find or create the sweep's experiment and parent run now, retrying briefly (a fresh SQLite
    store that another process is migrating, a locked database, a server starting); the parent's
    run id. Raises SweepStartRefused with a one-line reason when the store keeps refusing.
    The first use of a SQLite store holds study.lease.store_init_lock.
    Two coordinators creating the parent at once on a server store: each waits SETTLE_S, and the
    one whose run is not the sweep's (_parent_order) deletes its own."""
    last: BaseException | None = None
    for attempt in range(START_TRIES):
        try:
            with store_init_lock(tracking_uri):  # a fresh SQLite store: one process migrates it
                client = MlflowClient(tracking_uri)
                exp_id = experiment_id(client, sweep.experiment_name, tracking_uri, create=True)
            runs = list(sweep_runs(client, exp_id, sweep.name, kind=KIND_SWEEP))
            if runs:
                return min(runs, key=_parent_order).info.run_id
            own = _create_parent(client, exp_id, sweep_start_command(sweep))
            if store_directory(tracking_uri) is None:
                time.sleep(SETTLE_S)
            sweeps = [run for run in sweep_runs(client, exp_id, sweep.name, kind=KIND_SWEEP)]
            first = min(sweeps, key=_parent_order).info.run_id if sweeps else own
            if first != own:
                client.delete_run(own)
            return first
        except Exception as error:  # noqa: BLE001 - classified: permanent refusals fail at once
            last = error
            if getattr(error, "error_code", "") in _PERMANENT or attempt == START_TRIES - 1:
                break
            if "RESOURCE_ALREADY_EXISTS" in str(getattr(error, "error_code", "")):
                continue  # another process created the experiment just now: look again
            time.sleep(START_RETRY_S[attempt])
    first_line = str(last).strip().splitlines()[0][:200] if str(last).strip() else ""
    raise SweepStartRefused(f"sweep {sweep.name}: the tracking store refused to create its parent run "
                            f"({type(last).__name__}: {first_line}); nothing was scheduled") from last


def apply_sweep_end(client: MlflowClient, parent_id: str, command: dict[str, Any]) -> None:
    metrics = [Metric(key, float(value), command["time_ms"], 0) for key, value in command["metrics"].items()]
    client.log_batch(parent_id, metrics=metrics)
    client.set_terminated(parent_id, command["status"], end_time=command["time_ms"])


def child_entities(command: dict[str, Any], parent_id: str) -> tuple[dict[str, str], list[Param], list[Metric]]:
    """Tags, params and metrics of one child run, from a run command (see TrackingWriter.log_run)."""
    record = command["record"]
    params = record["params"]
    tags = {
        TAG_PARENT: parent_id,
        TAG_SWEEP_ID: command["sweep"],
        TAG_KIND: KIND_RUN,
        TAG_RUN_KEY: command["run_key"],
        TAG_PROBLEM: str(params.get("problem", "")),
        TAG_ATTEMPT: str(command["attempt"]),
        TAG_NODE: command.get("node") or "",
        TAG_RUN_NAME: (child_run_name(params, command["varying"]) if "varying" in command  # journals of older coordinators
                       else f"{params.get('problem', 'run')}-{command['run_key'][:8]}"),
        **provenance(),
    }
    if command.get("trial") is not None:
        tags[TAG_TRIAL] = str(command["trial"])
    if record.get("reason"):
        tags[TAG_REASON] = _clip(record["reason"], _MAX_REASON)
    logged = {key: _clip(value, _MAX_PARAM_VALUE) for key, value in own_parameters(params).items()}
    for key, value in (record.get("info") or {}).items():  # facts the run decided, beside the spec
        if value is None or logged.get(key) == _clip(value, _MAX_PARAM_VALUE):
            continue  # nothing decided, or the spec's own value again (mode, spectrum, ...)
        logged.setdefault(key if key not in params else f"info.{key}", _clip(value, _MAX_PARAM_VALUE))
    end = command["end_ms"]
    metrics = [Metric(k, float(v), end, 0) for k, v in record["scalars"].items() if _finite(v)]
    metrics.append(Metric("wall_s", float(record["wall_s"]), end, 0))
    for name, values in (record.get("series") or {}).items():
        metrics += [Metric(name, float(v), end, step) for step, v in enumerate(values) if _finite(v)]
    return tags, [Param(k[:250], v) for k, v in logged.items()], metrics


def apply_run(client: MlflowClient, tracking_uri: str, exp_id: str, parent_id: str, command: dict[str, Any]) -> str:
    """Create, fill and terminate one child run in one go."""
    tags, params, metrics = child_entities(command, parent_id)
    run = client.create_run(exp_id, start_time=command["start_ms"], tags=tags)
    run_id = run.info.run_id
    for batch_params, batch_metrics in _batches(params, metrics):
        client.log_batch(run_id, metrics=batch_metrics, params=batch_params)
    record = dict(command["record"])
    figures = record.pop("figures", None)  # base64 PNGs rendered in the Ray task (study.plots.record_figures)
    log_text_artifact(run.info.artifact_uri, tracking_uri, json.dumps(Result.from_dict(record).to_dict()), RESULT_ARTIFACT)
    if figures:
        log_figures(run.info.artifact_uri, tracking_uri, figures)
    client.set_terminated(run_id, record["status"], end_time=command["end_ms"])
    return run_id


def log_text_artifact(artifact_uri: str, tracking_uri: str, text: str, name: str) -> None:
    """client.log_text without its get_run round trip (we have the artifact URI from create_run)."""
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / name
        path.write_text(text)
        get_artifact_repository(artifact_uri, tracking_uri=tracking_uri).log_artifact(str(path))


def log_figures(artifact_uri: str, tracking_uri: str, encoded: dict[str, str]) -> None:
    """A run's PNGs (base64 in the record, see study.plots.record_figures) under figures/, in one call."""
    with tempfile.TemporaryDirectory() as directory:
        for name, text in encoded.items():
            (Path(directory) / name).write_bytes(base64.b64decode(text))
        get_artifact_repository(artifact_uri, tracking_uri=tracking_uri).log_artifacts(directory, FIGURES_ARTIFACT_DIR)


def _batches(params: list[Param], metrics: list[Metric]) -> Iterator[tuple[list[Param], list[Metric]]]:
    """Split into log_batch calls: <= 100 params and <= 1000 entities each."""
    while params or metrics:
        head, params = params[:_MAX_PARAMS_PER_BATCH], params[_MAX_PARAMS_PER_BATCH:]
        room = _MAX_BATCH - len(head)
        yield head, metrics[:room]
        metrics = metrics[room:]


def _finite(value: Any) -> bool:
    try:
        return abs(float(value)) != float("inf") and float(value) == float(value)
    except (TypeError, ValueError):
        return False
