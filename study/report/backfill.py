"""`study figures SWEEP`: the low-priority stage that gives every child run its figures/ artifacts.

Public face:
    log_sweep_figures(sweep, tracking_uri=None, full=False, force=False, processes=2) -> FigureStage

A sweep renders a run's summary.png inside the Ray task only when the run is long enough for the
figure to cost at most 10 % of it (study.figures.run_figures.MIN_RUN_S_FOR_FIGURES); quick runs would pay 2-4x.
This stage renders the rest afterwards from each run's result.json, in niced worker processes
(matplotlib holds the GIL), and logs them under figures/ of the child run. Runs that already have
figures are skipped unless `force`.
"""

from __future__ import annotations

import os
import tempfile
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import mlflow
from mlflow import MlflowClient

import study.mlflow_names as names

from study.figures import run_figures as plots
from study.reading.results import load_results

LOW_PRIORITY = 10  # os.nice increment of the rendering processes


@dataclass
class FigureStage:
    runs: int  # child runs of the sweep
    rendered: int  # runs given figures now
    skipped: int  # runs that had figures already
    empty: int  # runs with nothing to draw (no result.json, or a FAILED run without series)


def _render(run_id: str, full: bool) -> dict[str, bytes]:
    try:
        result = mlflow.artifacts.load_dict(f"runs:/{run_id}/result.json")
    except Exception:  # noqa: BLE001 - a run that died before logging has no result.json
        return {}
    pngs = plots.summary_figures(result)
    return {**pngs, **plots.run_figures(result)} if full else pngs


def _low_priority(tracking_uri: str) -> None:
    os.nice(LOW_PRIORITY)
    mlflow.set_tracking_uri(tracking_uri)
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")


def log_sweep_figures(sweep: str, tracking_uri: str | None = None, full: bool = False, force: bool = False,
                      processes: int = 2) -> FigureStage:
    """Render and log figures/summary.png (and with `full` every per-run figure) for the sweep's runs."""
    frame = load_results(sweep, tracking_uri)  # raises SweepNotFound; sets the tracking URI
    uri = mlflow.get_tracking_uri()
    client = MlflowClient(uri)
    run_ids = [str(run_id) for run_id in frame["run_id"]]
    todo = [run_id for run_id in run_ids if force or not client.list_artifacts(run_id, names.FIGURES_ARTIFACT_DIR)]
    stage = FigureStage(runs=len(run_ids), rendered=0, skipped=len(run_ids) - len(todo), empty=0)
    if not todo:
        return stage
    with ProcessPoolExecutor(max(1, min(processes, len(todo))), initializer=_low_priority, initargs=(uri,)) as pool:
        for run_id, pngs in zip(todo, pool.map(_render, todo, [full] * len(todo))):
            if not pngs:
                stage.empty += 1
                continue
            with tempfile.TemporaryDirectory(prefix="study-figures-") as directory:
                for name, png in pngs.items():
                    (Path(directory) / name).write_bytes(png)
                client.log_artifacts(run_id, directory, names.FIGURES_ARTIFACT_DIR)
            stage.rendered += 1
    return stage


__all__ = ["FigureStage", "log_sweep_figures"]
