"""Pruning, multi-objective search and parameter importance on real local Ray (num_cpus=2), a real
SQLite MLflow store and a real Optuna journal in a temp dir; sweep-file errors through the real CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from mlflow import MlflowClient
from optuna.trial import TrialState

from study.reading import analysis as insight

import study.mlflow_names as names
from study.scheduling.coordinator import submit
from study.reading.results import aggregate, load_results, sweep_status
from study.scheduling.search import open_storage
from study.spec.loading import load_sweep
from tests.support.mlflow import children, load_study

# Expected-loss DUGD: each generation is 2,500 Adam steps (>= 50 ms even on a quick machine), so every
# checkpoint is posted (study.scheduling.task.POST_EVERY_S) and a pruning decision reaches the run while it trains.
PRUNED_SEARCH = """
name: {name}
method: tpe
metric: {{name: mse, goal: minimize}}
budget: {{trials: 10}}
pruner: {{name: median, startup_trials: 3, warmup_steps: 1}}
parameters:
  problem: dugd
  n: 64
  T: 8
  kappa: 30
  mode: expected
  batches_per_generation: 2500
  eval_samples: 200
  lr: {{distribution: log_uniform, min: 1.0e-5, max: 1.0e-1}}
"""


@pytest.fixture(autouse=True)
def _local_spool(tmp_path, monkeypatch):
    monkeypatch.setenv("STUDY_SPOOL_DIR", str(tmp_path / "spool"))


def test_median_pruner_prunes_records_killed_runs_and_resumes_without_rerunning(ray_local, mlflow_uri):
    sweep = load_sweep(PRUNED_SEARCH.format(name="pruned"))
    summary = submit(sweep, tracking_uri=mlflow_uri, figures=False)
    study = load_study(mlflow_uri, "pruned")
    states = [trial.state for trial in study.trials]
    pruned = [trial for trial in study.trials if trial.state == TrialState.PRUNED]
    assert len(study.trials) == 10 and TrialState.FAIL not in states
    assert len(pruned) >= 1, [(t.number, t.state.name, len(t.intermediate_values)) for t in study.trials]
    runs = children(mlflow_uri, "pruned")
    killed = [run for run in runs if run.info.status == "KILLED"]
    # Exactly one child per pruned trial (one seed), KILLED with its reason; the rest FINISHED.
    assert len(killed) == len(pruned) == summary.pruned
    assert summary.finished == 10 - len(pruned) and summary.failed == 0 and summary.cancelled == 0
    assert len(runs) == 10 and all(run.info.status in ("FINISHED", "KILLED") for run in runs)
    client = MlflowClient(mlflow_uri)
    by_trial = {int(run.data.tags[names.TAG_TRIAL]): run for run in killed}
    assert set(by_trial) == {trial.number for trial in pruned}
    for trial in pruned:
        run = by_trial[trial.number]
        step = max(trial.intermediate_values)
        value = trial.intermediate_values[step]
        assert run.data.tags[names.TAG_REASON] == names.pruned_reason(step, value)
        # Its partial curve is kept: the generations trained before the stop reached it (< T = 8).
        # (expected_loss is not a charted curve: it is in the run's result.json, not in metric rows)
        with open(client.download_artifacts(run.info.run_id, names.RESULT_ARTIFACT)) as handle:
            curve = json.load(handle)["expected_loss"]
        assert step <= len(curve) < 8
        assert curve[step - 1] == pytest.approx(value, rel=1e-12)  # one seed: the trial's value is the run's
    for trial in study.trials:  # every step reported once, in order; a complete trial reported all 8
        steps = sorted(trial.intermediate_values)
        assert steps == list(range(1, len(steps) + 1))
        if trial.state == TrialState.COMPLETE:
            assert len(steps) == 8 and trial.intermediate_values[8] == pytest.approx(trial.value, rel=1e-9)
    frame = load_results("pruned", mlflow_uri)
    assert int(frame["reason"].map(names.is_pruned_reason).sum()) == len(pruned)
    table = aggregate(frame, [], ["mse"])  # `study results` counts them as pruned, not failed
    assert (table["pruned"].item(), table["failed"].item(), table["mse_count"].item()) == (len(pruned), 0, 10 - len(pruned))
    status = sweep_status("pruned", mlflow_uri)
    assert (status["finished"], status["failed"], status["pruned"], status["other"]) == (10 - len(pruned), 0, len(pruned), 0)

    # Resubmitted: the budget is spent (pruned trials count), nothing runs again.
    again = submit(sweep, tracking_uri=mlflow_uri, figures=False)
    assert again.finished == again.failed == again.pruned == 0 and again.skipped == 10
    assert len(load_study(mlflow_uri, "pruned").trials) == 10 and len(children(mlflow_uri, "pruned")) == 10


def test_a_cancelled_pruned_search_resumes_with_its_budget_and_reruns_no_pruned_trial(ray_local, mlflow_uri):
    import threading

    sweep = load_sweep(PRUNED_SEARCH.format(name="pruned-cancel").replace("trials: 10", "trials: 14"))
    cancel = threading.Event()

    def on_progress(progress):
        if progress.pruned >= 1:  # stop the coordinator once something was pruned
            cancel.set()

    first = submit(sweep, tracking_uri=mlflow_uri, figures=False, on_progress=on_progress, cancel_event=cancel)
    assert first.status == "KILLED" and first.pruned >= 1
    before = load_study(mlflow_uri, "pruned-cancel")
    pruned_before = {t.number: t.params for t in before.trials if t.state == TrialState.PRUNED}
    runs_before = children(mlflow_uri, "pruned-cancel")
    killed_keys = {r.data.tags[names.TAG_RUN_KEY] for r in runs_before if r.info.status == "KILLED"}
    assert len(killed_keys) == len(pruned_before) == first.pruned

    second = submit(sweep, tracking_uri=mlflow_uri, figures=False)
    assert second.status == "FINISHED"
    after = load_study(mlflow_uri, "pruned-cancel")
    assert len(after.trials) == 14  # the budget counts the first run's trials, pruned ones included
    assert {t.number: t.params for t in after.trials if t.number in pruned_before} == pruned_before
    assert all(after.trials[number].state == TrialState.PRUNED for number in pruned_before)
    runs_after = children(mlflow_uri, "pruned-cancel")
    for key in killed_keys:  # no pruned run ran again
        assert [r.info.status for r in runs_after if r.data.tags[names.TAG_RUN_KEY] == key] == ["KILLED"]
    killed_after = [r for r in runs_after if r.info.status == "KILLED"]
    assert len(killed_after) == sum(t.state == TrialState.PRUNED for t in after.trials) == first.pruned + second.pruned


def test_two_objective_search_returns_a_front_no_finished_point_dominates(ray_local, mlflow_uri, tmp_path):
    # Deeper networks reach a lower MSE for more Adam steps: a real trade-off along T.
    text = """
name: front
method: nsga2
metric: [{name: mse, goal: minimize}, {name: adam_steps, goal: minimize}]
budget: {trials: 8}
parameters:
  problem: dugd
  n: 32
  kappa: 30
  mode: expected
  batches_per_generation: 40
  T: {distribution: int_uniform, min: 1, max: 10}
  eval_samples: [100, 300]
"""
    sweep = load_sweep(text)
    assert sweep.metric.name == "mse" and [m.name for m in sweep.metrics] == ["mse", "adam_steps"]
    summary = submit(sweep, tracking_uri=mlflow_uri, figures=False)
    assert summary.status == "FINISHED" and summary.finished == 8
    study = load_study(mlflow_uri, "front")
    assert len(study.directions) == 2 and all(len(t.values) == 2 for t in study.trials)

    # From the MLflow data: every point's (mse, adam_steps), averaged over seeds (one seed here).
    frame = load_results("front", mlflow_uri)
    stored = insight.stored_sweep("front", mlflow_uri)
    front = insight.pareto_front(frame, stored)
    points = insight.point_means(frame, stored, ["mse", "adam_steps"])
    pairs = [(float(r.mse), float(r.adam_steps)) for r in points.itertuples()]
    on_front = {(float(r.mse), float(r.adam_steps)) for r in front.itertuples()}
    assert on_front
    for a in pairs:  # checked by hand: on the front iff no other point is <= in both and < in one
        dominated = any(b[0] <= a[0] and b[1] <= a[1] and (b[0] < a[0] or b[1] < a[1]) for b in pairs)
        assert (a in on_front) == (not dominated), (a, pairs)

    # The CLI prints the same front.
    from typer.testing import CliRunner

    from study.cli import app

    result = CliRunner().invoke(app, ["results", "front", "--pareto", "--format", "json", "--tracking-uri", mlflow_uri])
    assert result.exit_code == 0, result.output
    printed = json.loads(result.stdout)
    shown = sorted((row["mse"], row["adam_steps"]) for row in printed)  # JSON keeps 10 digits
    rows = sorted((float(r.mse), float(r.adam_steps)) for r in front.itertuples())
    assert len(shown) == len(rows)
    assert [v for pair in shown for v in pair] == pytest.approx([v for pair in rows for v in pair], rel=1e-8)

    # The report page draws the front beside its other figures.
    from study.report.page import build_report

    made = build_report("front", tmp_path / "report", metric="mse", tracking_uri=mlflow_uri)
    assert any(path.name == "pareto.png" for path in made.figures)
    assert "Pareto front: mse, adam_steps" in made.index.read_text()

    # Importance from the search's own study: T matters for mse, the eval sample count does not.
    table, source = insight.importances(stored, frame, mlflow_uri, "mse")
    assert "Optuna study" in source
    assert set(table["parameter"]) == {"T", "eval_samples"}
    assert table["importance"].sum() == pytest.approx(1.0)
    ranked = dict(zip(table["parameter"], table["importance"]))
    assert ranked["T"] > ranked["eval_samples"]


def test_importance_on_a_grid_ranks_a_dead_axis_last(ray_local, mlflow_uri, tmp_path):
    # In expected mode, eval_samples changes only mse_empirical: for mse it is a dead axis.
    text = """
name: grid-importance
metric: {name: mse, goal: minimize}
parameters:
  problem: dugd
  n: 32
  T: 4
  kappa: 30
  mode: expected
  batches_per_generation: 30
  lr: [0.0003, 0.003, 0.03]
  eval_samples: [100, 200]
"""
    summary = submit(load_sweep(text), tracking_uri=mlflow_uri, figures=False)
    assert summary.finished == 6
    stored = insight.stored_sweep("grid-importance", mlflow_uri)
    frame = load_results("grid-importance", mlflow_uri)
    study = insight.points_study(frame, stored, stored.metric)
    assert len(study.trials) == 6 and set(study.trials[0].distributions) == {"lr", "eval_samples"}
    table, source = insight.importances(stored, frame, mlflow_uri)
    assert "finished points" in source
    assert list(table["parameter"]) == ["lr", "eval_samples"]
    assert table["importance"].sum() == pytest.approx(1.0)
    assert table["importance"].iloc[1] < 0.05

    from typer.testing import CliRunner

    from study.cli import app

    result = CliRunner().invoke(app, ["results", "grid-importance", "--importance", "--format", "csv",
                                      "--tracking-uri", mlflow_uri])
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[0] == "parameter,importance" and result.stdout.splitlines()[1].startswith("lr,")
    # The report page shows them.
    from study.report.page import build_report

    made = build_report("grid-importance", tmp_path / "report", metric="mse", tracking_uri=mlflow_uri)
    assert any(path.name == "importance_mse.png" for path in made.figures)
    assert "Which parameter mattered for mse" in made.index.read_text()


@pytest.mark.parametrize("training", ["incremental", "full"])
def test_dugd_checkpoints_are_the_prefix_mse_and_a_stop_keeps_the_partial_curves(training):
    from workers.run import run

    spec = {"problem": "dugd", "n": 32, "T": 6, "kappa": 30, "mode": "expected", "training": training,
            "batches_per_generation": 40, "eval_samples": 100}
    seen: list[tuple[int, float]] = []
    full = run(spec, on_checkpoint=lambda step, value: seen.append((step, value)) or False)
    assert full.status == "FINISHED" and [step for step, _ in seen] == [1, 2, 3, 4, 5, 6]
    # The checkpoint value is the exact expected MSE of the trained prefix: the expected_loss series,
    # and at the last step the run's final mse.
    assert [value for _, value in seen] == pytest.approx(full.series["expected_loss"], rel=1e-12)
    assert seen[-1][1] == pytest.approx(full.scalars["mse"], rel=1e-12)
    stopped = run(spec, on_checkpoint=lambda step, value: step == 3)
    assert stopped.status == "KILLED" and stopped.reason == "stopped after generation 3 of 6 on request"
    assert stopped.series["expected_loss"] == pytest.approx(full.series["expected_loss"][:3], rel=1e-12)
    assert stopped.scalars["adam_steps"] == 3 * 40 and "mse" not in stopped.scalars


def test_psor_learned_omega_checkpoints_per_depth_and_stops():
    from workers.run import run

    spec = {"problem": "psor", "omega": "learned", "n": 32, "T": 4, "iterations": 8, "steps_per_depth": 5}
    seen: list[int] = []
    full = run(spec, on_checkpoint=lambda step, value: seen.append(step) or False)
    assert full.status == "FINISHED" and seen == [1, 2, 3]  # depth 4 is the end: nothing left to stop
    stopped = run(spec, on_checkpoint=lambda step, value: step == 2)
    assert stopped.status == "KILLED" and stopped.reason == "stopped after depth 2 of 4 on request"
    assert stopped.series["train_loss"] == pytest.approx(full.series["train_loss"][:2], rel=1e-12)


def test_non_dominated_by_hand():
    values = np.array([[1.0, 5.0], [2.0, 2.0], [3.0, 3.0], [5.0, 1.0], [2.0, 2.0], [1.0, 6.0]])
    # (3,3) is dominated by (2,2); (1,6) by (1,5); the two equal (2,2) do not dominate each other.
    assert non_dominated_list(values, ["minimize", "minimize"]) == [True, True, False, True, True, False]
    # Maximising the second objective: (1,6) has the least x and the most y, so it dominates all others.
    assert non_dominated_list(values, ["minimize", "maximize"]) == [False, False, False, False, False, True]
    # Maximising both: (5,1) has the most x, (1,6) the most y, (3,3) neither is beaten in both.
    assert non_dominated_list(values, ["maximize", "maximize"]) == [False, False, True, True, False, True]


def non_dominated_list(values, goals):
    return [bool(v) for v in insight.non_dominated(values, goals)]


BASE = ("name: bad\nmethod: {method}\nbudget: {{trials: 4}}\nmetric: {metric}\n{extra}"
        "parameters: {{problem: dugd, n: 16, T: 4, mode: expected, lr: {{distribution: log_uniform, min: 0.001, max: 0.1}}}}\n")
TWO = "[{name: mse, goal: minimize}, {name: rho_ratio, goal: minimize}]"


@pytest.mark.parametrize(
    ("method", "metric", "extra", "expected"),
    [
        ("cmaes", TWO, "", "metric: got 2 metrics for method cmaes, expected one"),
        ("tpe", TWO, "pruner: median\n", "pruner: got median with 2 metrics, expected pruner none"),
        ("tpe", "{name: mse}", "pruner: {name: median, startup_trials: 5, bogus: 2}\n", "pruner.bogus: unknown key (value 2)"),
        ("tpe", "{name: mse}", "pruner: medain\n", "pruner.name: got 'medain', expected 'none', 'median'"),
        ("tpe", "{name: mse}", "pruner: {name: median, max_resource: 9}\n", "expected no max_resource for pruner median"),
        ("tpe", "{name: mse}", "pruner: {name: hyperband, reduction_factor: 1}\n", "pruner.reduction_factor: got 1, expected"),
        ("tpe", "{name: root_error, goal: maximize}", "pruner: median\n", "pruner: got median with metric root_error (maximize)"),
        ("tpe", "[{name: mse}, {name: mse}]", "", "metric: got [{'name': 'mse'"),
        ("tpe", "{name: mse, goal: up}", "", "metric.goal: got 'up', expected 'minimize' or 'maximize'"),
    ],
)
def test_bad_pruner_or_metric_list_is_one_line_and_submits_nothing(run_cli, tmp_path, method, metric, extra, expected):
    path = tmp_path / "bad.yaml"
    path.write_text(BASE.format(method=method, metric=metric, extra=extra))
    store = tmp_path / "store.db"
    done = run_cli("submit", str(path), "--tracking-uri", f"sqlite:///{store}")
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and expected in lines[0], done.stderr
    assert not store.exists() and not (tmp_path / "optuna-journal.log").exists()  # nothing was submitted


def test_grid_ignores_the_pruner_with_a_note(run_cli, tmp_path):
    path = tmp_path / "grid.yaml"
    path.write_text("name: g\npruner: median\nparameters: {problem: probe, x: [0, 1]}\n")
    done = run_cli("validate", str(path))
    assert done.returncode == 0, done.stderr
    notes = [line for line in done.stdout.splitlines() if line.startswith("note:")]
    assert notes == ["note: pruner median ignored: grid sweeps run every point to the end"]


def test_optuna_dashboard_opens_our_journal(tmp_path, mlflow_uri):
    """The search's storage (the journal beside the SQLite store) is what `optuna-dashboard FILE` serves."""
    import shutil
    import socket
    import subprocess
    import sys
    import time

    import httpx

    pytest.importorskip("optuna_dashboard")
    from study.scheduling.search import open_study

    sweep = load_sweep(PRUNED_SEARCH.format(name="dash"))
    study = open_study(sweep, open_storage(mlflow_uri))
    trial = study.ask()
    trial.report(0.5, 1)
    study.tell(trial, state=TrialState.PRUNED)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    command = shutil.which("optuna-dashboard", path=str(Path(sys.executable).parent)) or "optuna-dashboard"
    server = subprocess.Popen([command, str(tmp_path / "optuna-journal.log"), "--port", str(port), "--quiet"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                answer = httpx.get(f"http://127.0.0.1:{port}/api/studies", timeout=2).json()
                break
            except httpx.HTTPError:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise
                time.sleep(0.3)
        assert [s["study_name"] for s in answer["study_summaries"]] == ["dash"]
    finally:
        server.terminate()
        server.wait(timeout=30)
