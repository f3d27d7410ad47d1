"""Query MLflow into pandas and aggregate over seeds (design.md "What users see").

Public face:
    load_results(sweep, tracking_uri=None) -> DataFrame   one row per run point (latest attempt)
    aggregate(frame, group_by, metrics) -> DataFrame      mean / std / count over seeds, failures
    sweep_status(sweep, tracking_uri=None) -> dict        counts by state
    list_sweeps(tracking_uri=None) -> DataFrame           every sweep in the store
    sweep_file_text(parent_run_id) -> str | None          the sweep file logged on a parent run
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import mlflow
import pandas as pd

from study.mlflow_names import is_pruned_reason
from study.mlflow_names import KIND_RUN, KIND_SWEEP, TAG_KIND as KIND_TAG, TAG_REASON as REASON_TAG, TAG_RUN_KEY as RUN_KEY_TAG
from study.mlflow_names import TAG_SWEEP_ID as SWEEP_TAG
from study.recording import results_table
from study.mlflow_names import METRIC_RESULTS_ROWS, SWEEP_FILE_ARTIFACT, TAG_RESULTS_GENERATION


class SweepNotFound(LookupError):
    pass


def _use(tracking_uri: str | None) -> None:
    """Point MLflow's fluent API (search_runs) at the store, in this process only: set_tracking_uri
    also writes MLFLOW_TRACKING_URI into os.environ, which every subprocess started later inherits."""
    if tracking_uri:
        inherited = os.environ.get("MLFLOW_TRACKING_URI")
        mlflow.set_tracking_uri(tracking_uri)
        if inherited is None:
            os.environ.pop("MLFLOW_TRACKING_URI", None)
        else:
            os.environ["MLFLOW_TRACKING_URI"] = inherited


def _quote(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def parent_runs(tracking_uri: str | None = None, sweep: str | None = None) -> pd.DataFrame:
    """The sweeps' parent runs (newest first), optionally of one sweep."""
    _use(tracking_uri)
    query = f"tags.`{KIND_TAG}` = '{KIND_SWEEP}'"
    if sweep is not None:
        query += f" AND tags.`{SWEEP_TAG}` = {_quote(sweep)}"
        # Most sweeps live in the experiment of their own name: one lookup instead of every experiment.
        experiment = mlflow.get_experiment_by_name(sweep)
        if experiment is not None:
            found = mlflow.search_runs([experiment.experiment_id], query, order_by=["attributes.start_time DESC"])
            if not found.empty:
                return found
    return mlflow.search_runs(search_all_experiments=True, filter_string=query, order_by=["attributes.start_time DESC"])


def sweep_file_text(parent_run_id: str) -> str | None:
    """The sweep file as submitted (the parent run's sweep.yaml artifact); None where it is missing."""
    try:
        return mlflow.artifacts.load_text(f"runs:/{parent_run_id}/{SWEEP_FILE_ARTIFACT}")
    except Exception:  # noqa: BLE001 - an older or hand-made sweep may lack it; callers say so
        return None


def load_results(sweep: str, tracking_uri: str | None = None, *, from_store: bool = False) -> pd.DataFrame:
    """One row per run point of the sweep: parameters (typed), result metrics, status and reason.

    When a point ran more than once (a failure re-run on resubmission), the FINISHED attempt wins,
    else the latest one. Read from the sweep's results table (study.recording.results_table) when it is
    complete, else (or with from_store) from the store's runs.
    """
    _use(tracking_uri)  # callers (study.report.backfill) read mlflow.get_tracking_uri() afterwards
    runs = None if from_store else _embedded_results_table(mlflow.get_tracking_uri(), sweep)
    if runs is None:
        parents = parent_runs(tracking_uri, sweep)
        if parents.empty:
            raise SweepNotFound(f"sweep {sweep!r}: no such sweep in the tracking store")
        runs = None if from_store else _results_table(parents)
    if runs is None:
        runs = mlflow.search_runs(
            experiment_ids=sorted(set(parents["experiment_id"])),
            filter_string=f"tags.`{SWEEP_TAG}` = {_quote(sweep)} AND tags.`{KIND_TAG}` = '{KIND_RUN}'",
        )
    if runs.empty:
        return pd.DataFrame(columns=["run_id", "run_key", "status", "reason"])
    runs = runs.assign(_finished=runs["status"].eq("FINISHED")).sort_values(["_finished", "end_time"])
    runs = runs.drop_duplicates(subset=[f"tags.{RUN_KEY_TAG}"], keep="last").drop(columns="_finished")
    frame = pd.DataFrame(
        {
            "run_id": runs["run_id"],
            "run_key": runs[f"tags.{RUN_KEY_TAG}"],
            "status": runs["status"],
            "reason": runs.get(f"tags.{REASON_TAG}", pd.Series(index=runs.index, dtype=object)),
        }
    )
    params = runs.filter(like="params.").rename(columns=lambda c: c.removeprefix("params."))
    metrics = runs.filter(like="metrics.").rename(columns=lambda c: c.removeprefix("metrics."))
    params = params.apply(_typed)
    frame = pd.concat([frame, params, metrics.drop(columns=[c for c in metrics if c in params])], axis=1)
    return frame.sort_values("run_key").reset_index(drop=True)


def _embedded_results_table(tracking_uri: str, sweep: str) -> pd.DataFrame | None:
    """The fast path for the embedded default: the table found without opening MLflow's SQL store."""
    found = results_table.embedded_parent(tracking_uri, sweep)
    return None if found is None else results_table.read(*found, tracking_uri)


def _results_table(parents: pd.DataFrame) -> pd.DataFrame | None:
    """The table of the sweep's (first) parent run, if it has a complete one."""
    parent = parents.sort_values("start_time").iloc[0]
    rows = parent.get(f"metrics.{METRIC_RESULTS_ROWS}")
    generation = parent.get(f"tags.{TAG_RESULTS_GENERATION}")
    return results_table.read(parent["artifact_uri"], parent["status"], rows,
                              None if generation is None or pd.isna(generation) else generation, mlflow.get_tracking_uri())


def _typed(column: pd.Series) -> pd.Series:
    """MLflow stores params as strings; give numbers back their type so grouping sorts numerically."""
    try:
        return pd.to_numeric(column)
    except (ValueError, TypeError):
        return column


def aggregate(frame: pd.DataFrame, group_by: Sequence[str], metrics: Sequence[str]) -> pd.DataFrame:
    """mean, std and count over the remaining axes (the seeds) of FINISHED runs, plus failures per group
    and, when the sweep pruned any run, `pruned` per group (runs a pruner stopped are not failures)."""
    missing = [name for name in [*group_by, *metrics] if name not in frame.columns]
    if missing:
        available = sorted(c for c in frame.columns if c not in {"run_id", "run_key", "status", "reason"})
        raise KeyError(f"unknown column(s) {', '.join(missing)}; available: {', '.join(available)}")
    keys = list(group_by) or [lambda _: "all"]
    finished = frame[frame["status"] == "FINISHED"]
    table = finished.groupby(keys, dropna=False)[list(metrics)].agg(["mean", "std", "count"])
    table.columns = [f"{metric}_{stat}" for metric, stat in table.columns]
    pruned_runs = pruned_mask(frame)
    groups = [frame[k] for k in group_by] or [lambda _: "all"]
    failed = (frame["status"].ne("FINISHED") & ~pruned_runs).groupby(groups).sum()
    table = table.join(failed.rename("failed"), how="outer")
    table["failed"] = table["failed"].fillna(0).astype(int)
    if pruned_runs.any():
        table = table.join(pruned_runs.groupby(groups).sum().rename("pruned"), how="outer")
        table["pruned"] = table["pruned"].fillna(0).astype(int)
    for metric in metrics:
        table[f"{metric}_count"] = table[f"{metric}_count"].fillna(0).astype(int)
    return table.reset_index() if group_by else table.reset_index(drop=True)


def pruned_mask(frame: pd.DataFrame) -> pd.Series:
    """Runs a pruner stopped: KILLED with the reason "pruned at step S (value V)"."""
    if frame.empty:
        return pd.Series(False, index=frame.index)
    return frame["status"].eq("KILLED") & frame["reason"].map(is_pruned_reason).astype(bool)


def sweep_status(sweep: str, tracking_uri: str | None = None) -> dict:
    """The sweep's state and run counts by status."""
    parents = parent_runs(tracking_uri, sweep)
    if parents.empty:
        raise SweepNotFound(f"sweep {sweep!r}: no such sweep in the tracking store")
    frame = load_results(sweep)
    counts = frame["status"].value_counts().to_dict()
    pruned = int(pruned_mask(frame).sum())
    latest = parents.iloc[0]
    return {
        "sweep": sweep,
        "state": latest["status"],
        "experiment_id": latest["experiment_id"],
        "parent_run_id": latest["run_id"],
        "runs": int(len(frame)),
        "finished": int(counts.get("FINISHED", 0)),
        "failed": int(counts.get("FAILED", 0)),
        "other": int(sum(v for k, v in counts.items() if k not in {"FINISHED", "FAILED"})) - pruned,
        "pruned": pruned,
    }


def list_sweeps(tracking_uri: str | None = None) -> pd.DataFrame:
    """Every sweep in the store: name, state, start time, experiment."""
    parents = parent_runs(tracking_uri)
    columns = ["sweep", "state", "start_time", "experiment_id", "parent_run_id"]
    if parents.empty:
        return pd.DataFrame(columns=columns)
    return pd.DataFrame(
        {
            "sweep": parents[f"tags.{SWEEP_TAG}"],
            "state": parents["status"],
            "start_time": parents["start_time"],
            "experiment_id": parents["experiment_id"],
            "parent_run_id": parents["run_id"],
        }
    ).drop_duplicates("sweep")[columns].reset_index(drop=True)
