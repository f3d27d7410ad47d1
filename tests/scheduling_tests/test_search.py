"""Optuna ask/tell sweeps on real Ray, a real SQLite MLflow store and a real journal file,
including a coordinator killed with SIGKILL mid-sweep and resubmitted."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from optuna.trial import TrialState

from study.recording import layout as tracking
from study.scheduling.coordinator import submit
from study.scheduling.search import JOURNAL_FILE
from study.spec.loading import load_sweep
from tests.support.mlflow import children, load_study

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def _local_spool(tmp_path, monkeypatch):
    monkeypatch.setenv("STUDY_SPOOL_DIR", str(tmp_path / "spool"))


def test_tpe_runs_its_budget_and_tells_the_mean_over_seeds(ray_local, mlflow_uri, tmp_path):
    sweep = load_sweep(
        "name: tpe-probe\nmethod: tpe\nbudget: {trials: 8}\nseeds: [0, 2]\nmetric: {name: value, goal: minimize}\n"
        "parameters: {problem: probe, x: {distribution: uniform, min: -2, max: 4}, fail: [none, raise]}"
    )
    summary = submit(sweep, tracking_uri=mlflow_uri)
    assert summary.status == "FINISHED" and summary.finished + summary.failed == 16
    assert (tmp_path / JOURNAL_FILE).exists()  # the journal sits beside the SQLite store
    study = load_study(mlflow_uri, "tpe-probe")
    assert len(study.trials) == 8
    runs = children(mlflow_uri, "tpe-probe")
    assert len(runs) == 16
    for trial in study.trials:
        mine = [r for r in runs if r.data.tags[tracking.TAG_TRIAL] == str(trial.number)]
        assert len(mine) == 2 and {r.data.params["seed"] for r in mine} == {"0", "2"}
        if trial.params["fail"] == "raise":
            assert trial.state == TrialState.FAIL
        else:
            # Objective = mean over seeds of (x-1)^2 + 0.01*seed, computed here from the closed form.
            expected = (trial.params["x"] - 1.0) ** 2 + 0.01
            assert trial.state == TrialState.COMPLETE and trial.value == pytest.approx(expected, rel=1e-12)
    complete = [t for t in study.trials if t.state == TrialState.COMPLETE]
    assert summary.best == pytest.approx(min(t.value for t in complete))


def test_cmaes_and_random_run_to_budget(ray_local, mlflow_uri):
    for method in ("cmaes", "random"):
        sweep = load_sweep(
            f"name: {method}-probe\nmethod: {method}\nbudget: {{trials: 6}}\n"
            "parameters: {problem: probe, x: {distribution: uniform, min: -2, max: 4}, work_s: {distribution: uniform, min: 0, max: 0.01}}"
        )
        summary = submit(sweep, tracking_uri=mlflow_uri)
        assert (summary.finished, summary.failed) == (6, 0)
        assert all(t.state == TrialState.COMPLETE for t in load_study(mlflow_uri, f"{method}-probe").trials)
        # A resubmission of a finished search asks nothing more.
        again = submit(sweep, tracking_uri=mlflow_uri)
        assert (again.finished, again.skipped) == (0, 6) and len(load_study(mlflow_uri, f"{method}-probe").trials) == 6


def test_search_resumes_after_the_coordinator_is_killed(ray_local, mlflow_uri, tmp_path):
    text = (
        "name: crash\nmethod: tpe\nbudget: {trials: 10}\nseeds: [0]\nmetric: {name: value}\n"
        "parameters: {problem: probe, work_s: 0.6, x: {distribution: uniform, min: -2, max: 4}}"
    )
    (tmp_path / "crash.yaml").write_text(text)
    address = ray_local.get_runtime_context().gcs_address
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    process = subprocess.Popen(
        [sys.executable, "-m", "study.cli", "submit", "crash.yaml", "--address", address, "--tracking-uri", mlflow_uri],
        cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    running: list[int] = []
    deadline = time.monotonic() + 90
    try:
        while time.monotonic() < deadline:
            time.sleep(0.1)
            if not (tmp_path / JOURNAL_FILE).exists():
                continue
            trials = load_study(mlflow_uri, "crash").trials
            running = [t.number for t in trials if t.state == TrialState.RUNNING]
            if running and sum(t.state == TrialState.COMPLETE for t in trials) >= 2:
                break
        process.send_signal(signal.SIGKILL)  # no clean-up at all: the crash resume must survive
    finally:
        process.wait(timeout=30)
    assert running, "the coordinator never had a trial in flight"
    in_flight = {t.number for t in load_study(mlflow_uri, "crash").trials if t.state == TrialState.RUNNING}
    assert in_flight

    summary = submit(load_sweep(text), tracking_uri=mlflow_uri)
    assert summary.status == "FINISHED"
    study = load_study(mlflow_uri, "crash")
    assert len(study.trials) == 10
    assert all(study.trials[n].state == TrialState.FAIL for n in in_flight)
    assert all(t.state in (TrialState.COMPLETE, TrialState.FAIL) for t in study.trials)
    runs = children(mlflow_uri, "crash")
    assert all(r.info.status in ("FINISHED", "FAILED") for r in runs)  # no child left RUNNING
    resumed_trials = {r.data.tags[tracking.TAG_TRIAL] for r in runs if r.info.status == "FINISHED"}
    # Every COMPLETE trial has its child run, including those told by the killed coordinator whose
    # MLflow writes were still queued: the journal it left was replayed.
    assert {str(t.number) for t in study.trials if t.state == TrialState.COMPLETE} <= resumed_trials
    assert tracking.parent_run("crash", mlflow_uri).info.status == "FINISHED"
