"""Units of work on a real local Ray (num_cpus=2) with a real SQLite MLflow store: one Ray task per
unit (study.scheduling.task.run_unit), faults and features kept per point inside a unit (a pruned point stops
while the others go on, a diverging point fails alone, timeout_s per point), resume of a partly done
depth family, GPU requests per unit, and the tiny-trial pruned search of issue 22."""

from __future__ import annotations

import time

import pytest
import ray
from optuna.trial import TrialState

from tests.support.reliability import duplicate_keys

from tests.support.mlflow import children
import study.mlflow_names as names
from study.recording import layout as tracking
from study.scheduling import units as unit_plan
from study.scheduling.coordinator import submit
from study.scheduling.search import REPLAYED
from study.spec.loading import load_sweep
from study.scheduling.task import PruneBoard, run_unit
from tests.support.mlflow import load_study


@pytest.fixture(autouse=True)
def _local_spool(tmp_path, monkeypatch):
    monkeypatch.setenv("STUDY_SPOOL_DIR", str(tmp_path / "spool"))


def _points(text: str):
    return load_sweep(text).expand()


def test_a_pruned_point_inside_a_unit_stops_at_its_next_checkpoint_while_the_others_go_on(ray_local):
    # 400 eigen Adam steps per generation (>= 50 ms): checkpoints are posted (study.scheduling.task.POST_EVERY_S).
    points = _points("name: u\nseeds: [0, 1]\nparameters: {problem: dugd, n: 64, T: 8, kappa: 30, mode: eigen, "
                     "batches_per_generation: 400}\n")
    board = PruneBoard.remote()
    ray.get(board.stop.remote([0]))  # trial 0 is pruned before its unit starts
    ids = [(0, points[0].run_key), (1, points[1].run_key)]
    _, records = ray.get(run_unit.remote([p.params for p in points], None, False, board, ids))
    stopped, other = records
    assert stopped["status"] == "KILLED" and len(stopped["series"]["expected_loss"]) < 8
    assert other["status"] == "FINISHED" and len(other["series"]["expected_loss"]) == 8
    posted = {run_key for _, run_key, _ in ray.get(board.drain.remote())}
    assert posted == {points[0].run_key, points[1].run_key}  # one unit posts for all its points


def test_a_diverging_point_inside_a_unit_fails_alone_with_its_reason(ray_local):
    points = _points("name: u\nparameters: {problem: dugd, mode: expected, n: 16, T: 4, batches_per_generation: 20, "
                     "lr: [0.002, 1000, 0.01]}\n")
    _, records = ray.get(run_unit.remote([p.params for p in points]))
    assert [r["status"] for r in records] == ["FINISHED", "FAILED", "FINISHED"]
    assert records[1]["reason"].startswith("diverged: learned steps give MSE_T = ")


def test_timeout_stays_per_point_inside_a_unit(ray_local):
    # The unit's alarm rings at 2 x 1 s; then each point runs alone under 1 s: the quick one finishes.
    points = _points("name: u\nparameters: {problem: probe, work_s: [0.05, 30, 0.1]}\n")
    started = time.monotonic()
    _, records = ray.get(run_unit.remote([p.params for p in points], 1.0))
    assert time.monotonic() - started < 15
    assert [(r["status"], r["reason"]) for r in records] == [
        ("FINISHED", None), ("FAILED", "timeout after 1 s"), ("FINISHED", None)]


def test_gpu_units_ask_one_gpu_where_the_cluster_has_one_and_none_without():
    sweep = load_sweep("name: g\nparameters: {problem: dugd, n: 16, T: 2, mode: eigen, device: [cuda, auto, cpu]}\n")
    cuda, auto, cpu = ([point] for point in sweep.expand())
    assert [unit_plan.options(sweep, unit, 1.0)["num_gpus"] for unit in (cuda, auto, cpu)] == [1, 1, 0]
    # No GPU in the cluster: nothing asks for one (a cuda point then fails in its worker, with its reason).
    assert [unit_plan.options(sweep, unit, 0.0)["num_gpus"] for unit in (cuda, auto, cpu)] == [0, 0, 0]
    options = unit_plan.options(sweep, cpu + cuda, 2.0)
    assert (options["num_gpus"], options["num_cpus"], options["max_retries"]) == (1, 1, sweep.max_retries)


DEPTHS = "name: depth-resume\nseeds: [0, 1]\nparameters: {{problem: dugd, mode: expected, n: 16, kappa: 10, T: {T}, " \
         "batches_per_generation: 20}}\n"


def test_resume_of_a_partly_done_depth_family_runs_only_its_missing_depths(ray_local, mlflow_uri):
    first = submit(load_sweep(DEPTHS.format(T=[3, 5])), tracking_uri=mlflow_uri, figures=False)
    assert (first.finished, first.failed) == (4, 0)
    before = {run.data.tags[tracking.TAG_RUN_KEY]: run.info.run_id for run in children(mlflow_uri, "depth-resume")}
    whole = load_sweep(DEPTHS.format(T=[1, 2, 3, 4, 5]))
    missing = [p for p in whole.expand() if p.run_key not in before]
    # What the resumed coordinator plans: the missing points only, so a family trains to T = 4, not 5.
    # Expected mode, constant init: the seeds cannot change training, so all six points are one family.
    planned = unit_plan.plan(missing, 2)
    assert len(planned) == 1 and max(point.params["T"] for point in planned[0]) == 4
    second = submit(whole, tracking_uri=mlflow_uri, figures=False)
    assert (second.total, second.skipped, second.finished, second.failed, second.tasks) == (10, 4, 6, 0, 1)
    runs = children(mlflow_uri, "depth-resume")
    assert len(runs) == 10 and duplicate_keys(runs) == {}
    after = {run.data.tags[tracking.TAG_RUN_KEY]: run.info.run_id for run in runs}
    assert all(after[key] == run_id for key, run_id in before.items())  # nothing FINISHED ran again
    assert {run.data.tags[tracking.TAG_ATTEMPT] for run in runs} == {"1"}


TINY_SEARCH = """
name: tiny-pruned
method: tpe
metric: {name: mse, goal: minimize}
budget: {trials: 24}
pruner: {name: median, startup_trials: 4}
parameters:
  problem: dugd
  n: 32
  T: 8
  kappa: 30
  mode: expected
  batches_per_generation: 60
  lr: {distribution: log_uniform, min: 1.0e-5, max: 0.3}
"""


def test_a_median_pruned_search_of_tiny_trials_prunes_and_records_them_as_pruned(ray_local, mlflow_uri):
    # Runs of a few ms post no checkpoint: their curves are replayed into the pruner before they are
    # logged, so the search prunes (issue 22: it pruned 0 of 24), and says so in one line.
    summary = submit(load_sweep(TINY_SEARCH), tracking_uri=mlflow_uri, figures=False)
    study = load_study(mlflow_uri, "tiny-pruned")
    pruned = [trial for trial in study.trials if trial.state == TrialState.PRUNED]
    assert len(study.trials) == 24 and len(pruned) >= 1
    runs = children(mlflow_uri, "tiny-pruned")
    killed = [run for run in runs if run.info.status == "KILLED"]
    assert len(runs) == 24 and duplicate_keys(runs) == {}
    assert len(killed) == len(pruned) == summary.pruned
    assert all(names.is_pruned_reason(run.data.tags[names.TAG_REASON]) for run in killed)
    by_trial = {int(run.data.tags[names.TAG_TRIAL]): run for run in killed}
    assert set(by_trial) == {trial.number for trial in pruned}
    replayed = [run for run in killed if run.data.tags[names.TAG_REASON].endswith(REPLAYED)]
    for trial in pruned:  # the reason names the step and value told to Optuna; never the last step
        step = max(trial.intermediate_values)
        assert step < 8 and by_trial[trial.number].data.tags[names.TAG_REASON].startswith(
            names.pruned_reason(step, trial.intermediate_values[step]))
    notes = [note for note in summary.notes if note.startswith("note: pruner median: ")]
    if replayed:  # trials judged after their runs finished: one line says so, with the count
        assert len(notes) == 1 and f"{len(replayed)} were pruned after finishing" in notes[0], summary.notes
