"""A sweep's child runs as MLflow stores them, and its Optuna study: what the tests count and compare."""

from __future__ import annotations

import optuna
from mlflow import MlflowClient

from study.recording import layout
from study.recording.writer import TrackingWriter
from study.scheduling.search import open_storage
from workers.run import run


def children(uri: str, sweep_name: str, experiment: str | None = None) -> list:
    """The sweep's child runs (none when its experiment does not exist yet)."""
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name(experiment or sweep_name)
    return list(layout.sweep_runs(client, exp.experiment_id, sweep_name)) if exp else []


def load_study(uri: str, name: str) -> optuna.Study:
    return optuna.load_study(study_name=name, storage=open_storage(uri))


def write_sweep(sweep, uri: str) -> None:
    """Run every point of `sweep` in-process and record it through the coordinator's TrackingWriter."""
    writer = TrackingWriter(sweep, uri)
    writer.start_sweep()
    for point in sweep.expand():
        writer.log_run(run(point.params).as_record(), point.run_key)
    writer.end_sweep("FINISHED", {})
    assert writer.close(60) and writer.rejected == []
