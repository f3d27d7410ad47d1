"""MLflow conventions (design.md "MLflow conventions"): one experiment and one parent run per sweep,
one child run per run, found again by tags. The coordinator is the only writer; it writes through
study.recording.writer.TrackingWriter, which calls the `apply_*` functions here from one background thread.

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
import hashlib
import json
import os
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse
from urllib.request import url2pathname

import mlflow
from mlflow import MlflowClient
from mlflow.entities import Metric, Param, Run, RunTag
from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository

from study.mlflow_names import (  # noqa: F401 - re-exported
    CHARTED_CURVES, EXPERIMENT_KIND_RUNS, KIND_RUN, KIND_SWEEP, METRIC_RESULTS_ROWS, TAG_RESULTS_GENERATION, FIGURES_ARTIFACT_DIR, RESULT_ARTIFACT, SWEEP_FILE_ARTIFACT,
    TAG_ATTEMPT, TAG_EXPERIMENT_KIND, TAG_GIT_COMMIT, TAG_GIT_DIRTY, TAG_KIND, TAG_METHOD, TAG_NODE, TAG_PARENT,
    TAG_PROBLEM, TAG_REASON, TAG_RUN_KEY, TAG_RUN_NAME, TAG_SWEEP_ID, TAG_TRIAL, TAG_VERSION_PREFIX, TAG_VERSIONS,
)
from study.recording.provenance import MAX_RUN_NAME, child_run_name, package_versions, provenance  # noqa: F401 - re-exported
from workers.result import Result
from workers.specs import own_parameters

# MLflow's limits: log_batch takes <= 1000 entities, of which <= 100 params+tags; values are capped.
_MAX_BATCH = 1000
_MAX_PARAMS_PER_BATCH = 100
_MAX_PARAM_VALUE = 6000
_MAX_TAG_VALUE = 5000
_MAX_REASON = 500
PAGE_SIZE = 10_000


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


def now_ms() -> int:
    """Wall-clock time in milliseconds, as MLflow stores run times."""
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


def sweep_runs(client: MlflowClient, exp_id: str, sweep_name: str, kind: str = KIND_RUN, status: str | None = None) -> Iterator[Run]:
    """Every run of a sweep of one kind (and status), across pages."""
    query = f"tags.`{TAG_SWEEP_ID}` = '{sweep_name}' and tags.`{TAG_KIND}` = '{kind}'"
    if status:
        query += f" and attributes.status = '{status}'"
    token = None
    while True:
        page = client.search_runs([exp_id], query, max_results=PAGE_SIZE, page_token=token)
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
    return min(runs, key=parent_order) if runs else None


def parent_order(run: Run) -> tuple[int, str]:
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
    table = _results_table_of(client, sweep, uri)
    if table is not None:  # a terminated sweep's complete table: no paging over every child run
        metric_columns = [column for column in table.columns if column.startswith("metrics.")]
        for entry in table.to_dict("records"):
            key = entry.get(f"tags.{TAG_RUN_KEY}", "")
            attempts[key] = attempts.get(key, 0) + 1
            if entry["status"] == "FINISHED":
                finished[key] = {c.removeprefix("metrics."): entry[c] for c in metric_columns if entry[c] == entry[c]}
        return finished, attempts
    for run in sweep_runs(client, exp_id, sweep.name):
        key = run.data.tags.get(TAG_RUN_KEY, "")
        attempts[key] = attempts.get(key, 0) + 1
        if run.info.status == "FINISHED":
            finished[key] = dict(run.data.metrics)
    return finished, attempts


def _results_table_of(client: MlflowClient, sweep: Any, tracking_uri: str) -> Any:
    """The sweep's results table (study.recording.results_table) if its parent has a complete one, else None."""
    from study.recording import results_table

    parent = parent_run(sweep, tracking_uri, client)
    if parent is None:
        return None
    return results_table.read(parent.info.artifact_uri, parent.info.status, parent.data.metrics.get(METRIC_RESULTS_ROWS),
                              parent.data.tags.get(TAG_RESULTS_GENERATION), tracking_uri)


# --- writes (called from the writer thread only) ----------------------------------------------


@dataclass
class SweepStart:
    """What the writer needs of a sweep's parent run once the sweep started."""

    experiment_id: str
    parent_id: str
    artifact_location: str  # the experiment's (child runs' artifacts go under it)
    table_generation: int  # the parent's results table (study.recording.results_table), as found
    table_rows: int | None  # None: no table, or one that cannot be trusted (the parent was left RUNNING)
    table_parts: int


def apply_sweep_start(client: MlflowClient, tracking_uri: str, command: dict[str, Any]) -> SweepStart:
    """Find or create the experiment and the parent run; mark it RUNNING; log the sweep file.
    Children a killed coordinator left RUNNING (created, never terminated) are marked FAILED."""
    from study.recording import results_table

    exp_id = experiment_id(client, command["experiment"], tracking_uri, create=True)
    mark_experiment_kind(client, exp_id)
    runs = list(sweep_runs(client, exp_id, command["sweep"], kind=KIND_SWEEP))
    generation, rows, parts = 0, None, 0
    if runs:
        parent = min(runs, key=parent_order)
        parent_id = parent.info.run_id
        generation = int(parent.data.tags.get(TAG_RESULTS_GENERATION, 0))
        found = parent.data.metrics.get(METRIC_RESULTS_ROWS)
        if found is not None and parent.info.status != "RUNNING":  # closed by its coordinator: complete
            rows, parts = int(found), results_table.parts_of(client, parent)
        elif found == 0 and not _has_children(client, exp_id, command["sweep"]):
            rows = 0  # created a moment ago (start_parent), nothing written yet
        client.update_run(parent_id, status="RUNNING")
        for orphan in sweep_runs(client, exp_id, command["sweep"], status="RUNNING"):
            client.set_tag(orphan.info.run_id, TAG_REASON, "coordinator stopped while logging this run")
            client.set_terminated(orphan.info.run_id, "FAILED")
            rows = None  # the orphan changed status: the table row (if any) is stale
    else:
        parent_id = create_parent(client, exp_id, command)
        rows = 0  # a new sweep: its table starts empty and complete
    # The code and environment of the latest submission (each child records its own as well).
    versions = {f"{TAG_VERSION_PREFIX}{name}": version for name, version in package_versions().items()}
    client.log_batch(parent_id, tags=[RunTag(key, value) for key, value in {**provenance(), **versions}.items()])
    client.log_text(parent_id, command["sweep_text"], SWEEP_FILE_ARTIFACT)
    location = client.get_experiment(exp_id).artifact_location
    return SweepStart(exp_id, parent_id, location, generation, rows, parts)


def create_parent(client: MlflowClient, exp_id: str, command: dict[str, Any]) -> str:
    """The parent run of a new sweep, with its params and an empty results table (study.recording.results_table)."""
    tags = {TAG_SWEEP_ID: command["sweep"], TAG_KIND: KIND_SWEEP, TAG_METHOD: command["method"], TAG_RUN_NAME: command["sweep"],
            TAG_RESULTS_GENERATION: "0"}
    parent_id = client.create_run(exp_id, start_time=command["time_ms"], tags=tags).info.run_id
    params = [Param(key[:250], _clip(value, _MAX_PARAM_VALUE)) for key, value in command["params"].items()]
    for start in range(0, len(params), _MAX_PARAMS_PER_BATCH):
        client.log_batch(parent_id, params=params[start : start + _MAX_PARAMS_PER_BATCH])
    client.log_metric(parent_id, METRIC_RESULTS_ROWS, 0, timestamp=command["time_ms"])
    return parent_id


def _has_children(client: MlflowClient, exp_id: str, sweep_name: str) -> bool:
    query = f"tags.`{TAG_SWEEP_ID}` = '{sweep_name}' and tags.`{TAG_KIND}` = '{KIND_RUN}'"
    return bool(client.search_runs([exp_id], query, max_results=1))


def apply_sweep_end(client: MlflowClient, parent_id: str, command: dict[str, Any]) -> None:
    metrics = [Metric(key, float(value), command["time_ms"], 0) for key, value in command["metrics"].items()]
    client.log_batch(parent_id, metrics=metrics)
    client.set_terminated(parent_id, command["status"], end_time=command["time_ms"])


def child_entities(command: dict[str, Any], parent_id: str) -> tuple[dict[str, str], dict[str, str], list[Metric]]:
    """Tags, params and metrics of one child run, from a run command (see TrackingWriter.log_run).
    Curves: the charted ones (CHARTED_CURVES) unless the command says curves = all."""
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
    every_curve = command.get("curves") == "all"
    for name, values in (record.get("series") or {}).items():
        if every_curve or name in CHARTED_CURVES:
            metrics += [Metric(name, float(v), end, step) for step, v in enumerate(values) if _finite(v)]
    return tags, {k[:250]: v for k, v in logged.items()}, metrics


def latest_values(metrics: list[Metric]) -> dict[str, float]:
    """Each metric's latest value, as MLflow keeps it (highest (step, timestamp, value))."""
    latest: dict[str, tuple[int, int, float]] = {}
    for metric in metrics:
        entry = (metric.step, metric.timestamp, metric.value)
        if metric.key not in latest or entry > latest[metric.key]:
            latest[metric.key] = entry
    return {key: value for key, (_, _, value) in latest.items()}


def apply_run(client: MlflowClient, tracking_uri: str, exp_id: str, parent_id: str, command: dict[str, Any]) -> dict[str, Any]:
    """Create, fill and terminate one child run through the client; returns its results-table row."""
    from study.recording import results_table

    tags, params, metrics = child_entities(command, parent_id)
    run = client.create_run(exp_id, start_time=command["start_ms"], tags=tags)
    run_id = run.info.run_id
    for batch_params, batch_metrics in log_batches([Param(k, v) for k, v in params.items()], metrics):
        client.log_batch(run_id, metrics=batch_metrics, params=batch_params)
    _log_run_artifacts(run.info.artifact_uri, tracking_uri, command["record"])
    client.set_terminated(run_id, command["record"]["status"], end_time=command["end_ms"])
    return results_table.row(run_id, command["record"]["status"], command["end_ms"], tags, params, latest_values(metrics))


def apply_runs_bulk(store: Any, tracking_uri: str, start: SweepStart, commands: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Many child runs, whole, in one transaction of a SQL store (study.recording.bulk); returns their table rows.
    Artifacts first: a run visible in the store always has its result.json."""
    from study.recording import bulk
    from study.recording import results_table

    children, rows = [], []
    for command in commands:
        tags, params, metrics = child_entities(command, start.parent_id)
        run_id, status = command["run_id"], command["record"]["status"]
        _log_run_artifacts(bulk.artifact_uri(start.artifact_location, run_id), tracking_uri, command["record"])
        children.append(bulk.ChildRun(run_id, start.experiment_id, tags[TAG_RUN_NAME], status, command["start_ms"],
                                      command["end_ms"], tags, params,
                                      [(m.key, m.value, m.timestamp, m.step) for m in metrics]))
        rows.append(results_table.row(run_id, status, command["end_ms"], tags, params, latest_values(metrics)))
    bulk.insert_runs(store, children, start.artifact_location)
    return rows


def _log_run_artifacts(artifact_uri: str, tracking_uri: str, record: dict[str, Any]) -> None:
    record = dict(record)
    figures = record.pop("figures", None)  # base64 PNGs rendered in the Ray task (study.figures.run_figures.record_figures)
    log_text_artifact(artifact_uri, tracking_uri, json.dumps(Result.from_dict(record).to_dict()), RESULT_ARTIFACT)
    if figures:
        log_figures(artifact_uri, tracking_uri, figures)


def log_text_artifact(artifact_uri: str, tracking_uri: str, text: str, name: str) -> None:
    """client.log_text without its get_run round trip (we have the artifact URI); a local artifact
    store (beside an embedded one) is written in place, which is most of the write cost saved."""
    parsed = urlparse(artifact_uri)
    if parsed.scheme == "file" and not parsed.netloc:
        directory = url2pathname(parsed.path)
        try:  # a new run's <run_id>/artifacts under an existing experiment folder: two mkdirs
            os.mkdir(os.path.dirname(directory))
            os.mkdir(directory)
        except OSError:
            os.makedirs(directory, exist_ok=True)
        with open(os.path.join(directory, name), "w") as handle:
            handle.write(text)
        return
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / name
        path.write_text(text)
        get_artifact_repository(artifact_uri, tracking_uri=tracking_uri).log_artifact(str(path))


def log_figures(artifact_uri: str, tracking_uri: str, encoded: dict[str, str]) -> None:
    """A run's PNGs (base64 in the record, see study.figures.run_figures.record_figures) under figures/, in one call."""
    with tempfile.TemporaryDirectory() as directory:
        for name, text in encoded.items():
            (Path(directory) / name).write_bytes(base64.b64decode(text))
        get_artifact_repository(artifact_uri, tracking_uri=tracking_uri).log_artifacts(directory, FIGURES_ARTIFACT_DIR)


def log_batches(params: list[Param], metrics: list[Metric]) -> Iterator[tuple[list[Param], list[Metric]]]:
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
