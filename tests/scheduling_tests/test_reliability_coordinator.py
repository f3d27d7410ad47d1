"""R2: the coordinator (`study submit`) killed with SIGKILL mid-sweep, then the same sweep submitted
again. Grid: exactly N FINISHED child runs, no duplicate run_key, the one parent run FINISHED.
TPE search: the study holds exactly budget trials, those in flight at the crash are FAIL, and every
COMPLETE trial has one FINISHED child per seed. Both coordinators run on a Ray head of our own."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest
from mlflow import MlflowClient
from optuna.trial import TrialState

from tests.support.reliability import RayHead, duplicate_keys, kill_when, study_process

from tests.support.mlflow import children
from study.recording import layout as tracking
from study.scheduling.search import JOURNAL_FILE, open_storage
from study.spec.loading import load_sweep


@pytest.fixture(scope="module")
def ray_head():
    head = RayHead(num_cpus=2)
    yield head
    head.stop()


def submit_process(ray_head: RayHead, tmp_path: Path, store: str):
    return study_process(["submit", "sweep.yaml", "--address", ray_head.address, "--tracking-uri", store], tmp_path,
                         env={**ray_head.env, "STUDY_SPOOL_DIR": str(tmp_path / "spool"), "STUDY_TRACKING_BACKOFF_MAX_S": "1"})


def resubmit(ray_head: RayHead, tmp_path: Path, store: str) -> str:
    again = submit_process(ray_head, tmp_path, store)
    out, err = again.communicate(timeout=300)
    assert again.returncode == 0, err[-3000:]
    return out


def test_grid_resumes_after_the_coordinator_is_sigkilled(ray_head, tmp_path):
    total = 60
    text = f"name: crash-grid\nparameters: {{problem: probe, work_s: 0.1, x: {[float(i) for i in range(total)]}}}\n"
    (tmp_path / "sweep.yaml").write_text(text)
    store = f"sqlite:///{tmp_path / 'mlflow.db'}"

    def some_landed() -> bool:
        try:
            # count FINISHED ones, as the assertion below does: a run can land as RUNNING first
            return sum(r.info.status == "FINISHED" for r in children(store, "crash-grid")) >= 15
        except Exception:  # noqa: BLE001 - the store may not have its tables yet
            return False

    kill_when(submit_process(ray_head, tmp_path, store), some_landed)
    landed = len([r for r in children(store, "crash-grid") if r.info.status == "FINISHED"])
    assert 15 <= landed < total

    out = resubmit(ray_head, tmp_path, store)
    assert f"runs: {total} total, " in out and ", 0 failed," in out, out
    runs = children(store, "crash-grid")
    assert len(runs) == total and duplicate_keys(runs) == {}
    assert {r.data.tags[tracking.TAG_RUN_KEY] for r in runs} == {p.run_key for p in load_sweep(text).expand()}
    assert all(r.info.status == "FINISHED" for r in runs)
    parents = list(tracking.sweep_runs(MlflowClient(store), runs[0].info.experiment_id, "crash-grid", kind="sweep"))
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    assert parents[0].data.metrics["runs_finished"] == total


def test_tpe_search_resumes_to_its_budget_after_the_coordinator_is_sigkilled(ray_head, tmp_path):
    budget, seeds = 8, 2
    text = (f"name: crash-tpe\nmethod: tpe\nbudget: {{trials: {budget}}}\nseeds: [0, 1]\nmetric: {{name: value}}\n"
            "parameters: {problem: probe, work_s: 0.4, x: {distribution: uniform, min: -2, max: 4}}\n")
    (tmp_path / "sweep.yaml").write_text(text)
    store = f"sqlite:///{tmp_path / 'mlflow.db'}"

    def trials() -> list:
        if not (tmp_path / JOURNAL_FILE).exists():
            return []
        try:
            return optuna.load_study(study_name="crash-tpe", storage=open_storage(store)).get_trials(deepcopy=False)
        except (KeyError, ValueError):  # read while the coordinator appends: the study or a record is not there yet
            return []

    def mid_search() -> bool:
        states = [t.state for t in trials()]
        return states.count(TrialState.COMPLETE) >= 2 and TrialState.RUNNING in states

    kill_when(submit_process(ray_head, tmp_path, store), mid_search)
    in_flight = {t.number for t in trials() if t.state == TrialState.RUNNING}
    assert in_flight

    resubmit(ray_head, tmp_path, store)
    final = trials()
    assert len(final) == budget
    assert all(final[number].state == TrialState.FAIL for number in in_flight)
    assert all(t.state in (TrialState.COMPLETE, TrialState.FAIL) for t in final)
    complete = {str(t.number) for t in final if t.state == TrialState.COMPLETE}
    assert complete and len(complete) == budget - len(in_flight)  # nothing else failed

    runs = children(store, "crash-tpe")
    assert duplicate_keys(runs) == {} and all(r.info.status in ("FINISHED", "FAILED") for r in runs)
    finished_by_trial: dict[str, int] = {}
    for run in runs:
        if run.info.status == "FINISHED":
            trial = run.data.tags[tracking.TAG_TRIAL]
            finished_by_trial[trial] = finished_by_trial.get(trial, 0) + 1
    assert {t: n for t, n in finished_by_trial.items() if t in complete} == {t: seeds for t in complete}
    assert tracking.parent_run("crash-tpe", store).info.status == "FINISHED"
