"""What the MLflow UI shows of a sweep, on a real SQLite store: the experiment's kind, run names by
point, a child's own parameters only, and the code and package versions behind every number."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from mlflow import MlflowClient

import study.mlflow_names as names

from study.recording import layout as tracking
from study.spec.loading import load_sweep
from tests.support.mlflow import write_sweep
from workers.specs import DESCENT_FIELDS, DugdSpec, PsorSpec, own_parameters

REPO = Path(__file__).resolve().parents[2]

SWEEP = """
name: ui-names
seeds: [0, 1]
parameters:
  problem: dugd
  n: [8, 16]
  T: [2]
  kappa: [10, 30.5]
  mode: expected
  batches_per_generation: 5
  eval_samples: 10
"""


@pytest.fixture(autouse=True)
def _local_spool(tmp_path, monkeypatch):
    monkeypatch.setenv("STUDY_SPOOL_DIR", str(tmp_path / "spool"))


def _children(client: MlflowClient, sweep):
    exp = client.get_experiment_by_name(sweep.experiment_name)
    return list(tracking.sweep_runs(client, exp.experiment_id, sweep.name))


def _git(*args: str) -> str:
    return subprocess.run(["git", "-C", str(REPO), *args], capture_output=True, text=True, check=True).stdout.strip()


def test_experiment_kind_run_names_own_params_and_provenance(mlflow_uri):
    sweep = load_sweep(SWEEP)
    assert sweep.varying_axes == ["kappa", "n"]  # T has one value: it does not vary
    write_sweep(sweep, mlflow_uri)
    client = MlflowClient(mlflow_uri)
    experiment = client.get_experiment_by_name("ui-names")
    assert experiment.tags[names.TAG_EXPERIMENT_KIND] == names.EXPERIMENT_KIND_RUNS

    children = _children(client, sweep)
    assert len(children) == 8
    expected_names = {f"kappa={k} n={n} s={s}" for k in ("10", "30.5") for n in (8, 16) for s in (0, 1)}
    assert {child.info.run_name for child in children} == expected_names
    versions = tracking.package_versions()
    commit = _git("rev-parse", "HEAD")
    for child in children:
        params = child.data.params
        assert "None" not in params.values(), params
        assert not set(DESCENT_FIELDS) & set(params)  # descent_eps off: none of its settings
        assert not {"batch_size", "dtype", "device"} & set(params)  # mode expected: no batches, float64 on the CPU
        assert params["kappa"] in {"10.0", "30.5"} and params["info.m"]  # m was not given: the run's choice is info
        assert "info.mode" not in params and "info.spectrum" not in params  # the same as the spec's: not twice
        tags = child.data.tags
        assert f"torch={versions['torch']}" in tags[names.TAG_VERSIONS].split()
        assert {"numpy", "ray", "mlflow", "optuna"} <= {item.split("=")[0] for item in tags[names.TAG_VERSIONS].split()}
        assert tags[names.TAG_GIT_COMMIT] == commit

    parent = tracking.parent_run(sweep, mlflow_uri)
    assert parent.info.run_name == "ui-names"
    assert parent.data.tags[names.TAG_GIT_COMMIT] == commit
    assert parent.data.tags[names.TAG_GIT_DIRTY] == ("true" if _git("status", "--porcelain", "--untracked-files=no") else "false")
    assert parent.data.tags[f"{names.TAG_VERSION_PREFIX}torch"] == versions["torch"]
    sweep_file = client.download_artifacts(parent.info.run_id, names.SWEEP_FILE_ARTIFACT)
    assert Path(sweep_file).read_text() == sweep.source_text


def test_existing_experiments_get_the_kind_unless_the_user_set_one(mlflow_uri):
    client = MlflowClient(mlflow_uri)
    bare = client.create_experiment("bare")
    chosen = client.create_experiment("chosen", tags={names.TAG_EXPERIMENT_KIND: "genai_development"})
    for experiment in ("bare", "chosen"):
        write_sweep(load_sweep(f"name: {experiment}\nparameters: {{problem: probe, x: [1, 2]}}\n"), mlflow_uri)
    assert client.get_experiment(bare).tags[names.TAG_EXPERIMENT_KIND] == names.EXPERIMENT_KIND_RUNS
    assert client.get_experiment(chosen).tags[names.TAG_EXPERIMENT_KIND] == "genai_development"


def test_own_parameters_per_problem():
    dugd = DugdSpec(n=8).model_dump(mode="json")
    assert "kappa" not in own_parameters(dugd) and "m" not in own_parameters(dugd)  # None: absent
    assert not set(DESCENT_FIELDS) & set(own_parameters(dugd)) and own_parameters(dugd)["batch_size"] == 200
    descending = own_parameters(DugdSpec(n=8, descent_eps=0.05).model_dump(mode="json"))
    assert set(DESCENT_FIELDS) <= set(descending) and "mode" not in descending and "batches_per_generation" not in descending
    jacobi = own_parameters(PsorSpec().model_dump(mode="json"))
    assert {"entry_std", "rhs"} <= set(jacobi) and not {"lam", "sparsity", "lr", "omega_init"} & set(jacobi)
    ista = own_parameters(PsorSpec(fixed_point="ista", omega="learned").model_dump(mode="json"))
    assert {"lam", "sparsity", "lr", "omega_init"} <= set(ista) and not {"entry_std", "rhs", "beta", "m"} & set(ista)


def test_child_run_names_are_stable_and_cut_to_mlflow_limit():
    params = {"T": 8, "kappa": 30.0, "n": 64, "seed": 1, "lr": 0.00123456, "init": "random", "descent_eps": None}
    assert tracking.child_run_name(params, ["T", "kappa", "n"]) == "T=8 kappa=30 n=64 s=1"
    assert tracking.child_run_name(params, ["descent_eps", "init", "lr"]) == "descent_eps=none init=random lr=0.001235 s=1"
    assert tracking.child_run_name(params, []) == "s=1"
    long = tracking.child_run_name({"x": "y" * 400, "seed": 0}, ["x"])
    assert len(long) == tracking.MAX_RUN_NAME and long.endswith("...")
