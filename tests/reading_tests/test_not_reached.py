""""Never reached" is no number: such scalars are None, the run still FINISHES, nothing is logged for
them, and aggregation over seeds averages only the runs that reached the event (the count says how many)."""

import json

import numpy as np
import pytest
from mlflow import MlflowClient

from study.reading import results

from study.recording import layout as tracking
from workers import metrics
from workers.result import Result
from workers.run import run
from workers.unrolling import curse_of_unrolling


def test_unrolling_without_recovery_within_T_is_none():
    lam = np.linspace(0.5, 1.0, 200)
    cut = curse_of_unrolling(np.full(5, 1.9), lam)["scalars"]  # still in the burn-in at t = 5
    assert cut["burn_in_index"] > 0 and cut["jacobian_recovery_index"] is None
    assert curse_of_unrolling(np.full(80, 1.9), lam)["scalars"]["jacobian_recovery_index"] > 5


def test_undefined_ordering_and_descent_metrics_are_none():
    assert metrics.kendall_tau_increasing([0.3]) is None
    assert metrics.kendall_tau_increasing([0.3, 0.3, 0.3]) is None
    assert metrics.peak_intermediate_mse([1.0, 0.2]) is None


def test_result_with_none_finishes_and_serialises_as_null():
    result = run(dict(problem="psor", n=32, T=4, iterations=3))
    assert result.status == "FINISHED", result.reason
    assert result.scalars["first_roundoff_iteration"] is None
    assert result.scalars["period_contraction_max"] is None
    assert json.loads(json.dumps(result.to_dict()))["first_roundoff_iteration"] is None
    assert Result(params={}, scalars={"x": float("nan"), "y": None}).non_finite_scalars() == ["x"]


def _log(client, uri, exp_id, parent_id, key, record):
    command = {"sweep": "reach", "run_key": key, "attempt": 1, "record": record, "start_ms": 0, "end_ms": 1}
    tracking.apply_run(client, uri, exp_id, parent_id, command)


def test_aggregation_counts_only_the_seeds_that_reached_it(mlflow_uri):
    client = MlflowClient(mlflow_uri)
    exp_id = client.create_experiment("reach")
    parent_id = client.create_run(exp_id, tags={"study.sweep_id": "reach", "study.kind": "sweep"}).info.run_id
    reached = []
    for seed, iterations in ((0, 200), (1, 200), (2, 3)):  # seed 2 stops before the round-off floor
        result = run(dict(problem="psor", n=32, T=4, iterations=iterations, seed=seed))
        assert result.status == "FINISHED", result.reason
        if result.scalars["first_roundoff_iteration"] is not None:
            reached.append(result.scalars["first_roundoff_iteration"])
        _log(client, mlflow_uri, exp_id, parent_id, f"k{seed}", result.as_record())
    client.set_terminated(parent_id)
    frame = results.load_results("reach", mlflow_uri)
    assert len(frame) == 3 and (frame["status"] == "FINISHED").all()
    table = results.aggregate(frame, ["T"], ["first_roundoff_iteration"])
    row = table.iloc[0]
    assert len(reached) == 2 and row["first_roundoff_iteration_count"] == 2
    assert row["first_roundoff_iteration_mean"] == pytest.approx(np.mean(reached))
    assert row["failed"] == 0
