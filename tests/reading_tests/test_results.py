"""study.reading.results against a real SQLite MLflow store, laid out as the coordinator writes it."""

import json

import pandas as pd
import pytest
from mlflow import MlflowClient
from mlflow.entities import Metric, Param

from study.reading import results


def _write_sweep(uri: str, sweep: str, rows: list[dict]) -> None:
    client = MlflowClient(uri)
    experiment = client.create_experiment(sweep)
    parent = client.create_run(experiment, tags={"study.sweep_id": sweep, "study.kind": "sweep"}, run_name=sweep)
    for row in rows:
        child = client.create_run(
            experiment,
            tags={
                "mlflow.parentRunId": parent.info.run_id,
                "study.sweep_id": sweep,
                "study.kind": "run",
                "study.run_key": row["key"],
                **({"study.reason": row["reason"]} if "reason" in row else {}),
            },
        )
        client.log_batch(
            child.info.run_id,
            params=[Param(k, str(v)) for k, v in row["params"].items()],
            metrics=[Metric(k, v, 0, 0) for k, v in row.get("metrics", {}).items()],
        )
        client.set_terminated(child.info.run_id, status=row["status"])
    client.set_terminated(parent.info.run_id, status="FINISHED")


@pytest.fixture
def store(mlflow_uri):
    # value = (x - 1)^2 + 0.01 * seed for x in {1, 3} and seeds {0, 1, 2}; one extra failed point at x = 5.
    rows = []
    for x in (1, 3):
        for seed in (0, 1, 2):
            value = (x - 1) ** 2 + 0.01 * seed
            rows.append({"key": f"k{x}{seed}", "status": "FINISHED", "params": {"x": x, "seed": seed, "problem": "probe"},
                         "metrics": {"value": value}})
    rows.insert(0, {"key": "k30", "status": "FAILED", "params": {"x": 3, "seed": 0, "problem": "probe"}, "reason": "boom"})
    rows.append({"key": "k50", "status": "FAILED", "params": {"x": 5, "seed": 0, "problem": "probe"}, "reason": "diverged"})
    _write_sweep(mlflow_uri, "toy", rows)
    _write_sweep(mlflow_uri, "other", rows[:2])
    return mlflow_uri


def test_load_results_one_row_per_point_finished_attempt_wins(store):
    frame = results.load_results("toy", store)
    assert len(frame) == 7  # 6 points + the failed x=5; the failed first attempt of k30 is superseded
    assert frame.set_index("run_key").loc["k30", "status"] == "FINISHED"
    assert frame.set_index("run_key").loc["k50", "reason"] == "diverged"
    assert pd.api.types.is_numeric_dtype(frame["x"])


def test_aggregate_matches_hand_computation(store):
    table = results.aggregate(results.load_results("toy", store), ["x"], ["value"]).set_index("x")
    # mean over seeds of (x-1)^2 + 0.01*seed = (x-1)^2 + 0.01; sample std of {0, .01, .02} = 0.01.
    assert table.loc[1, "value_mean"] == pytest.approx(0.01, abs=1e-12)
    assert table.loc[3, "value_mean"] == pytest.approx(4.01, abs=1e-12)
    assert table.loc[3, "value_std"] == pytest.approx(0.01, abs=1e-12)
    assert table.loc[3, "value_count"] == 3 and table.loc[3, "failed"] == 0
    assert table.loc[5, "failed"] == 1 and table.loc[5, "value_count"] == 0


def test_aggregate_unknown_column_names_it(store):
    with pytest.raises(KeyError, match="kappa"):
        results.aggregate(results.load_results("toy", store), ["kappa"], ["value"])


def test_status_and_listing(store):
    status = results.sweep_status("toy", store)
    assert (status["finished"], status["failed"], status["state"]) == (6, 1, "FINISHED")
    assert set(results.list_sweeps(store)["sweep"]) == {"toy", "other"}
    with pytest.raises(results.SweepNotFound):
        results.load_results("nope", store)


def test_results_cli_formats(store, run_cli, tmp_path):
    done = run_cli("results", "toy", "--group-by", "x", "--metric", "value", "--format", "json", "--tracking-uri", store)
    assert done.returncode == 0, done.stderr
    rows = {row["x"]: row for row in json.loads(done.stdout)}
    assert rows[3]["value_mean"] == pytest.approx(4.01)
    out = tmp_path / "t.parquet"
    done = run_cli("results", "toy", "--group-by", "x", "--metric", "value", "--format", "parquet", "-o", str(out),
                   "--tracking-uri", store)
    assert done.returncode == 0, done.stderr
    means = pd.read_parquet(out).set_index("x")["value_mean"]
    assert means.loc[1] == pytest.approx(0.01) and means.loc[3] == pytest.approx(4.01) and pd.isna(means.loc[5])
    bad = run_cli("results", "toy", "--group-by", "kappa", "--metric", "value", "--tracking-uri", store)
    assert bad.returncode == 2 and "kappa" in bad.stderr and len(bad.stderr.strip().splitlines()) == 1
