"""Sweep files: validation (one line per error, exit 2, nothing written), expansion and run keys."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from study.errors import StudyInputError
from study.spec.loading import MAX_GRID_RUNS, load_sweep, run_key

REPO = Path(__file__).resolve().parents[2]

GOOD = """
name: grid-1
seeds: [0, 1]
parameters:
  problem: dugd
  n: [32, 64]
  T: [4, 8, 16]
  kappa: 10
  mode: expected
"""

# (sweep text, the one error line expected)
MALFORMED = {
    "unknown key": ("name: a\nbogus: 1\nparameters: {problem: probe}", "bogus: unknown key (value 1)"),
    "wrong type": ("name: a\nparameters: {problem: dugd, n: abc}", "parameters.n: got 'abc', expected a valid integer"),
    "empty grid": ("name: a\nparameters: {problem: dugd, T: []}", "parameters.T: got [], expected a non-empty list of values"),
    "bad distribution": (
        "name: a\nmethod: tpe\nbudget: {trials: 5}\nparameters: {problem: dugd, lr: {distribution: log_uniform, min: 0, max: 1}}",
        "parameters.lr: got {",
    ),
    "negative kappa": ("name: a\nparameters: {problem: dugd, kappa: -3}", "parameters.kappa: got -3, expected greater than 1"),
    "T=0": ("name: a\nparameters: {problem: dugd, T: [0, 4]}", "parameters.T: got 0, expected greater than or equal to 1"),
    "distribution with grid": (
        "name: a\nparameters: {problem: dugd, T: {distribution: int_uniform, min: 1, max: 9}}",
        "parameters.T: got a distribution",
    ),
    "nan": ("name: a\nparameters: {problem: probe, x: .nan}", "parameters.x: got nan, expected a finite number"),
    "inf in distribution": (
        "name: a\nmethod: random\nbudget: {trials: 2}\nparameters: {problem: probe, x: {distribution: uniform, min: 0, max: .inf}}",
        "parameters.x.max: got inf, expected a finite number",
    ),
    "path in name": ("name: ../../etc\nparameters: {problem: probe}", "name: got '../../etc', expected a safe identifier"),
    "budget missing": ("name: a\nmethod: tpe\nparameters: {problem: probe, x: [1, 2]}", "budget: missing, expected {trials: N}"),
    "seed as parameter": ("name: a\nparameters: {problem: probe, seed: 3}", "parameters.seed: got 3, expected no `seed` parameter"),
    "int field, float distribution": (
        "name: a\nmethod: tpe\nbudget: {trials: 5}\nparameters: {problem: dugd, T: {distribution: uniform, min: 1, max: 9}}",
        "parameters.T: got uniform, expected int_uniform or categorical",
    ),
    "seed true": ("name: a\nseeds: [true]\nparameters: {problem: probe}", "seeds: got [True], expected integer seeds, not booleans"),
    "boolean parameter": ("name: a\nparameters: {problem: dugd, T: [4, true]}", "parameters.T: got 'true', expected a valid integer"),
    "matrix_seed past numpy's": ("name: a\nparameters: {problem: dugd, matrix_seed: 4294967296}",
                                 "parameters.matrix_seed: got 4294967296, expected less than or equal to 4294967295"),
    "psor matrix_seed past numpy's": ("name: a\nparameters: {problem: psor, matrix_seed: [0, 99999999999999]}",
                                      "parameters.matrix_seed: got 99999999999999, expected less than or equal to 4294967295"),
    "empty text": ("", "sweep file: got an empty document, expected a mapping of sweep settings"),
    "only a comment": ("# nothing yet\n", "sweep file: got an empty document, expected a mapping of sweep settings"),
    "distribution bound outside the field": (
        "name: a\nmethod: cmaes\nbudget: {trials: 5}\nparameters: {problem: dugd, kappa: {distribution: log_uniform, min: 0.5, max: 9}}",
        "parameters.kappa: got 0.5, expected greater than 1",
    ),
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_malformed_sweep_is_one_line_naming_key_and_value(case):
    text, expected = MALFORMED[case]
    with pytest.raises(StudyInputError) as raised:
        load_sweep(text)
    assert len(raised.value.errors) == 1, raised.value.errors
    assert raised.value.errors[0].startswith(expected), raised.value.errors


def test_empty_sweep_file_is_reported_as_empty(run_cli, tmp_path):
    (tmp_path / "empty.yaml").write_text("")
    done = run_cli("validate", "empty.yaml", timeout=120)
    assert done.returncode == 2
    assert done.stderr.strip() == "error: sweep file: got an empty document, expected a mapping of sweep settings (name, parameters, ...)"


def test_matrix_seed_bound_is_what_the_matrix_builder_takes():
    from workers.specs import MAX_MATRIX_SEED, DugdSpec
    from workers.spectra import build_problem

    assert build_problem(DugdSpec(n=4, m=8, matrix_seed=MAX_MATRIX_SEED)).lambda_min > 0  # the largest seed builds
    import numpy as np

    with pytest.raises(ValueError):
        np.random.RandomState(MAX_MATRIX_SEED + 1)  # one past it is what numpy refuses at run time


def test_every_error_is_reported_at_once():
    text = "name: a\nextra: 1\nparameters: {problem: dugd, T: 0, kappa: -3, mode: [eigen, bad], n: .inf}"
    with pytest.raises(StudyInputError) as raised:
        load_sweep(text)
    keys = [line.split(":")[0] for line in raised.value.errors]
    assert keys == ["extra", "parameters.T", "parameters.kappa", "parameters.mode", "parameters.n"]


def test_grid_size_is_capped():
    axis = list(range(2, 2 + 400))
    text = json.dumps({"name": "huge", "parameters": {"problem": "probe", "x": axis, "work_s": [0.0, 0.1, 0.2]}, "seeds": list(range(100))})
    with pytest.raises(StudyInputError) as raised:
        load_sweep(text)
    assert raised.value.errors == [f"parameters: got a grid of 120000 runs, expected at most {MAX_GRID_RUNS} (split the sweep)"]


def test_expand_fills_defaults_and_orders_seeds_innermost():
    sweep = load_sweep(GOOD)
    points = sweep.expand()
    assert len(points) == sweep.total_runs == 2 * 3 * 2
    assert [(p.params["n"], p.params["T"], p.params["seed"]) for p in points[:4]] == [(32, 4, 0), (32, 4, 1), (32, 8, 0), (32, 8, 1)]
    first = points[0].params
    assert first["kappa"] == 10.0 and first["lr"] == 0.002 and first["init"] == "auto" and first["training"] == "incremental"
    assert len({p.run_key for p in points}) == len(points)
    assert sweep.experiment_name == "grid-1"


def test_run_key_is_sha256_of_canonical_json_and_ignores_spelled_out_defaults():
    implicit = load_sweep("name: a\nparameters: {problem: probe, x: 2}").expand()[0]
    explicit = load_sweep("name: b\nparameters: {problem: probe, x: 2.0, fail: none, work_s: 0}\nseeds: [0]").expand()[0]
    assert implicit.run_key == explicit.run_key
    canonical = json.dumps(implicit.params, sort_keys=True, separators=(",", ":"))
    assert implicit.run_key == hashlib.sha256(canonical.encode()).hexdigest()[:16]
    other = load_sweep("name: a\nparameters: {problem: probe, x: 2.5}").expand()[0]
    assert other.run_key != implicit.run_key


def test_run_key_is_stable_across_processes():
    code = "from study.spec.loading import load_sweep; print(load_sweep('name: a\\nparameters: {problem: dugd, n: 64, T: 8}').expand()[0].run_key)"
    keys = {
        subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True, env={"PYTHONHASHSEED": str(seed), "PATH": ""}).stdout.strip()
        for seed in (1, 2)
    }
    local = load_sweep("name: a\nparameters: {problem: dugd, n: 64, T: 8}").expand()[0].run_key
    assert keys == {local}


@settings(max_examples=25, deadline=None)
@given(st.lists(st.floats(-1e6, 1e6, allow_nan=False), min_size=1, max_size=6, unique=True), st.lists(st.integers(0, 50), min_size=1, max_size=3, unique=True))
def test_expansion_size_and_keys(xs, seeds):
    sweep = load_sweep(json.dumps({"name": "p", "seeds": seeds, "parameters": {"problem": "probe", "x": xs, "fail": ["none", "nan"]}}))
    points = sweep.expand()
    assert len(points) == len(xs) * 2 * len(seeds)
    assert len({p.run_key for p in points}) == len(points)
    assert {run_key(p.params) for p in points} == {p.run_key for p in points}


def test_search_sweep_counts_trials_times_seeds():
    sweep = load_sweep("name: s\nmethod: tpe\nbudget: {trials: 7}\nseeds: [0, 1, 2]\nparameters: {problem: probe, x: {distribution: uniform, min: -1, max: 3}, fail: [none]}")
    assert sweep.total_runs == 21
    assert sweep.distributions["x"].max == 3.0 and sweep.axes == {"fail": ["none"]}
    with pytest.raises(ValueError):
        sweep.expand()


def test_configs_validate(run_cli):
    for path in sorted((REPO / "configs").glob("*.yaml")):
        if path.name.startswith(("quick", "paper-dugd", "chgd", "search-")):
            done = run_cli("validate", str(path))
            assert done.returncode == 0, (path.name, done.stderr)
            assert "runs" in done.stdout


def test_validate_summary(run_cli, tmp_path):
    (tmp_path / "s.yaml").write_text(GOOD)
    done = run_cli("validate", "s.yaml")
    assert done.returncode == 0, done.stderr
    assert "12 runs = grid 6 x 2 seeds" in done.stdout and "n (2), T (3)" in done.stdout
    # GOOD is expected mode with the default (constant) init and two seeds: one line says the seeds
    # cannot change training, and names matrix_seed as the axis that replicates over matrices.
    notes = [line for line in done.stdout.splitlines() if "cannot change training" in line]
    assert len(notes) == 1 and notes[0].startswith("note: seeds [0, 1] cannot change training on every point"), done.stdout
    assert "matrix_seed is the axis that replicates over matrices" in notes[0]


@pytest.mark.parametrize("change, expected", [
    ("", "on every point"),
    ("  mode: [expected, eigen]\n", "on 6 of 12 points"),  # eigen draws its training batches from the seed
    ("  init: random\n", None),  # a random init comes from the seed
    ("  mode: eigen\n", None),
])
def test_seed_note_counts_the_points_whose_training_the_seeds_cannot_change(change, expected):
    from study.spec.checks import seed_note

    text = GOOD.replace("  mode: expected\n", "") + (change or "  mode: expected\n")
    note = seed_note(load_sweep(text))
    if expected is None:
        assert note is None
    else:
        assert note is not None and expected in note and "matrix_seed" in note
    assert seed_note(load_sweep(text.replace("seeds: [0, 1]", "seeds: [0]"))) is None  # one seed: nothing to say


@pytest.mark.parametrize("case", ["unknown key", "wrong type", "empty grid", "bad distribution", "negative kappa", "T=0"])
def test_submit_bad_file_exits_2_and_writes_nothing(run_cli, tmp_path, case):
    text, expected = MALFORMED[case]
    (tmp_path / "bad.yaml").write_text(text)
    store = tmp_path / "store"
    done = run_cli("submit", "bad.yaml", env={"MLFLOW_TRACKING_URI": f"sqlite:///{store}/mlflow.db", "STUDY_SPOOL_DIR": str(tmp_path / "spool")})
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: " + expected), lines
    # Nothing reached MLflow or Optuna: no store, no default store in the cwd, no spool.
    assert not store.exists() and not (tmp_path / "mlflow.db").exists() and not (tmp_path / "mlruns").exists()
    assert not (tmp_path / "spool").exists()
