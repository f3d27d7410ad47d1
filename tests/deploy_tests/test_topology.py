"""The compose topology with real processes on loopback: PostgreSQL, `mlflow server` on it, two Ray
nodes, `study serve`. A sweep submitted over HTTP runs on both nodes, lands in MLflow on PostgreSQL,
and its results over HTTP equal `study results` run directly against the store."""

from __future__ import annotations

import io
import json
import re

import optuna
import pandas as pd
import pytest
from mlflow import MlflowClient

from study.client import StudyClient
from tests.support import topology

pytestmark = pytest.mark.topology


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    topology.require_postgres("the topology tests")
    top = topology.start_topology(tmp_path_factory.mktemp("topology"))
    yield top
    top.stop()


def test_sweep_over_http_runs_on_both_nodes_into_postgres(cluster, run_cli):
    sweep = {"name": "topo", "seeds": list(range(6)), "parameters": {"problem": "probe", "work_s": 0.4, "x": [0.0, 2.0]}}
    with StudyClient(cluster.api_url, token=cluster.api_token) as client:
        assert client.submit(json.dumps(sweep))["runs"] == 12
        final = client.follow("topo", poll_s=0.5, timeout_s=180)
        assert final["state"] == "finished", final
        over_http = client.results("topo", group_by=["x"], metrics=["value"])

    # Read PostgreSQL directly (not through the MLflow server): the runs are in the database.
    store = MlflowClient(cluster.database_url("mlflow"))
    experiment = store.get_experiment_by_name("topo")
    children = store.search_runs([experiment.experiment_id], "tags.`study.kind` = 'run'", max_results=100)
    assert sorted(run.info.status for run in children) == ["FINISHED"] * 12
    nodes = {run.data.tags["study.node"] for run in children}
    assert len(nodes) == 2, nodes  # head and second node each ran some
    assert all(re.fullmatch(r"[0-9a-f]{56}", node) for node in nodes)

    direct = run_cli("results", "topo", "--tracking-uri", cluster.database_url("mlflow"),
                     "--group-by", "x", "--metric", "value", "--format", "json")
    assert direct.returncode == 0, direct.stderr
    expected = pd.read_json(io.StringIO(direct.stdout))
    pd.testing.assert_frame_equal(pd.DataFrame(over_http), expected, check_dtype=False, rtol=1e-12)
    assert expected["value_count"].tolist() == [6, 6]


def test_search_sweep_keeps_its_optuna_study_in_postgres(cluster):
    sweep = {"name": "topo-search", "method": "tpe", "metric": {"name": "value", "goal": "minimize"},
             "budget": {"trials": 6}, "seeds": [0],
             "parameters": {"problem": "probe", "x": {"distribution": "uniform", "min": -1.0, "max": 3.0}}}
    with StudyClient(cluster.api_url, token=cluster.api_token) as client:
        client.submit(json.dumps(sweep))
        final = client.follow("topo-search", poll_s=0.5, timeout_s=180)
    assert final["state"] == "finished", final

    study = optuna.load_study(study_name="topo-search", storage=cluster.database_url("optuna"))
    trials = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert len(trials) == 6
    for trial in trials:  # probe with seed 0: value = (x - 1)^2
        assert trial.value == pytest.approx((trial.params["x"] - 1.0) ** 2, abs=1e-12)

    store = MlflowClient(cluster.database_url("mlflow"))
    experiment = store.get_experiment_by_name("topo-search")
    children = store.search_runs([experiment.experiment_id], "tags.`study.kind` = 'run'", max_results=100)
    assert sorted(run.data.metrics["value"] for run in children) == pytest.approx(sorted(t.value for t in trials), abs=1e-12)
