"""Units of work (workers.run.run_many, workers.units.plan_units): a unit's records equal the one-run path.

Tolerances (issue 22): 1e-10 relative in float64 modes, 1e-6 in float32. On the numpy backend every
operation of a batch is row-wise, so the records are in fact bitwise equal (asserted for expected mode
and counted for the rest); the torch backend (on the CPU here) is compared at the same tolerances.
"""

from __future__ import annotations

import itertools
import json
import math
import subprocess
import sys

import numpy as np
import pytest

from workers.batched import BatchRun, NumpyBackend, TorchBackend, train_batch
from workers.dugd import TrainingConfig, batch_run, initial_gamma, train
from workers.run import parse_spec, run, run_many
from workers.spectra import build_problem
from workers.units import identical_across_seeds, plan_units, unit_keys

QUICK = dict(problem="dugd", n=16, batches_per_generation=12, eval_samples=200)


def _close(solo, unit, tolerance: float) -> None:
    """Every scalar, series and info field of two Results agree to `tolerance` relative."""
    assert (unit.status, unit.reason) == (solo.status, solo.reason)
    assert unit.scalars.keys() == solo.scalars.keys() and unit.series.keys() == solo.series.keys()
    assert unit.info == solo.info
    for name, value in solo.scalars.items():
        other = unit.scalars[name]
        assert (value is None) == (other is None), name
        if value is not None:
            assert math.isclose(other, value, rel_tol=tolerance, abs_tol=1e-300) or other == value, name
    for name, values in solo.series.items():
        np.testing.assert_allclose(unit.series[name], values, rtol=tolerance, atol=0, err_msg=name)


def _bitwise(solo, unit) -> bool:
    return json.dumps(solo.to_dict() | {"wall_s": 0}) == json.dumps(unit.to_dict() | {"wall_s": 0})


GRID = [dict(QUICK, T=T, kappa=kappa, seed=seed, lr=(0.002, 0.01)[(seed + T) % 2], mode=mode, training=training,
             dtype=dtype)
        for (mode, dtype), training, T, kappa, seed in itertools.product(
            [("expected", "float32"), ("eigen", "float32"), ("eigen", "float64")], ["incremental", "full"],
            [2, 4], [10.0, 100.0], [0, 1])]


def test_a_unit_records_what_each_point_gives_alone():
    unit = run_many(GRID)
    solo = [run_many([spec])[0] for spec in GRID]
    bitwise = 0
    for spec, alone, shared in zip(GRID, solo, unit):
        assert alone.status == "FINISHED", alone.reason
        float32 = spec["mode"] == "eigen" and spec["dtype"] == "float32"
        _close(alone, shared, 1e-6 if float32 else 1e-10)
        bitwise += _bitwise(alone, shared)
        if spec["mode"] == "expected":
            assert _bitwise(alone, shared), spec
    assert bitwise == len(GRID)  # numpy backend: every record bitwise equal to its one-run record


def test_run_is_run_many_of_one():
    spec = dict(QUICK, T=3, mode="eigen")
    assert _bitwise(run(spec), run_many([spec])[0])


@pytest.mark.parametrize("init", [0.3, "random"])
def test_generation_g_of_a_deep_training_is_the_training_at_depth_g(init):
    problem = build_problem(parse_spec(dict(QUICK, m=40)))
    deep = train(problem, TrainingConfig(T=6, mode="eigen", init=init, batches_per_generation=12, dtype="float64"))
    for g in (1, 3, 5):
        shallow = train(problem, TrainingConfig(T=g, mode="eigen", init=init, batches_per_generation=12, dtype="float64"))
        assert np.array_equal(deep.gamma_by_generation[:g, :g], shallow.gamma_by_generation)  # bitwise
        assert np.array_equal(deep.grad_norm[:g], shallow.grad_norm)


def test_a_diverging_point_fails_alone():
    specs = [dict(QUICK, T=3, mode="expected", lr=0.01), dict(QUICK, T=3, mode="expected", lr=900.0),
             dict(QUICK, T=3, mode="eigen", lr=900.0, seed=1), dict(QUICK, T=3, mode="eigen", seed=2)]
    unit = run_many(specs)
    assert [r.status for r in unit] == ["FINISHED", "FAILED", "FAILED", "FINISHED"]
    assert all(("diverged" in r.reason or "non-finite" in r.reason) for r in unit[1:3])
    for index in (0, 3):
        assert _bitwise(run(specs[index]), unit[index])


def test_an_invalid_point_fails_alone():
    unit = run_many([dict(QUICK, T=2, mode="expected"), dict(QUICK, T=2, n=-3)])
    assert unit[0].status == "FINISHED" and unit[1].status == "FAILED" and "n" in unit[1].reason


def test_a_hook_stops_one_point_and_the_others_go_on():
    specs = [dict(QUICK, T=4, mode="eigen", seed=s) for s in range(3)] + [dict(QUICK, T=2, mode="eigen", seed=1)]
    seen: list[tuple[int, float]] = []

    def stop_after_two(generation: int, value: float) -> bool:
        seen.append((generation, value))
        return generation >= 2

    unit = run_many(specs, [None, stop_after_two, None, None])
    assert [r.status for r in unit] == ["FINISHED", "KILLED", "FINISHED", "FINISHED"]
    assert unit[1].scalars["stopped_at_generation"] == 2.0 and [g for g, _ in seen] == [1, 2]
    alone = run(specs[1], stop_after_two)
    _close(alone, unit[1], 0.0)
    for index in (0, 2, 3):  # the T=2 point of seed 1 shares its family with the stopped T=4 point
        assert _bitwise(run(specs[index]), unit[index])


def test_identical_trainings_differ_only_where_the_seed_enters():
    specs = [dict(QUICK, T=3, mode="expected", seed=s) for s in (0, 1)]
    assert identical_across_seeds(specs[0]) and not identical_across_seeds(dict(specs[0], init="random"))
    assert not identical_across_seeds(dict(specs[0], mode="eigen"))
    first, second = run_many(specs)
    differ = {k for k in first.scalars if first.scalars[k] != second.scalars[k]}
    assert differ == {"mse_empirical", "final_validation_loss"}
    assert unit_keys(parse_spec(specs[0])) == unit_keys(parse_spec(specs[1]))


def test_chgd_points_differing_in_seed_share_everything():
    specs = [dict(problem="chgd", n=20, T=4, iterations=10, seed=s) for s in (0, 1)]
    first, second = run_many(specs)
    assert first.scalars == second.scalars and first.series == second.series
    assert identical_across_seeds(specs[0])


def test_torch_backend_matches_numpy_backend_on_the_cpu():
    problem = build_problem(parse_spec(dict(QUICK, m=40)))
    for mode, dtype, tolerance in (("expected", "float64", 1e-10), ("eigen", "float64", 1e-10), ("eigen", "float32", 1e-5)):
        config = TrainingConfig(T=4, mode=mode, dtype=dtype, batches_per_generation=12, init="random")
        runs = {}
        for name, backend in (("numpy", NumpyBackend(dtype)), ("torch", TorchBackend(dtype, "cpu"))):
            runs[name] = [batch_run(problem, config, None), BatchRun(problem.eigenvalues * 2, initial_gamma(config, problem) / 2, 0.01, 50, 7)]
            train_batch(runs[name], config.depths(), config.batches_per_generation, mode, backend)
        for ours, theirs in zip(runs["numpy"], runs["torch"]):
            np.testing.assert_allclose(np.array(theirs.gammas), np.array(ours.gammas), rtol=tolerance)


def test_plan_units_keeps_families_whole_and_sizes_units_to_the_slots():
    grid = [dict(problem="dugd", n=300, T=T, kappa=k, seed=s, mode="eigen")
            for T in range(1, 26) for k in (10.0, 100.0) for s in (0, 1)]
    extra = [dict(problem="probe", x=float(i)) for i in range(40)]
    specs = grid + extra
    for slots in (2, 64):
        units = plan_units(specs, slots)
        assert sorted(i for unit in units for i in unit) == list(range(len(specs)))
        home = {i: u for u, unit in enumerate(units) for i in unit}
        families: dict = {}
        for i, spec in enumerate(specs):
            families.setdefault(unit_keys(parse_spec(spec)), set()).add(home[i])
        assert all(len(where) == 1 for where in families.values())  # a family is never split
        if slots == 2:
            assert 2 <= len(units) <= 16
        else:  # 4 depth families and 40 probes: every family may be its own unit, but no more
            assert len(units) <= len(families) and len(units) >= 4


def test_expected_eigen_chgd_and_probe_points_do_not_import_torch():
    """(psor's modules import torch at their top: not checked here.)"""
    code = ("import sys; from workers.run import run_many; rs = run_many([dict(problem='dugd', n=12, T=2, "
            "mode='expected', batches_per_generation=5), dict(problem='dugd', n=12, T=2, batches_per_generation=5), "
            "dict(problem='chgd', n=12, T=2, iterations=4), dict(problem='probe')]); "
            "assert all(r.status == 'FINISHED' for r in rs), rs; print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_row_blocks_of_a_large_batch_give_the_same_numbers():
    problem = build_problem(parse_spec(dict(QUICK, m=40)))
    config = TrainingConfig(T=3, mode="eigen", batches_per_generation=12, init="random")
    configs = [TrainingConfig(**{**config.__dict__, "seed": s, "lr": 0.002 * (1 + s)}) for s in range(5)]
    blocked = NumpyBackend("float32")
    blocked.chunk_rows = 2
    together = [batch_run(problem, c, None) for c in configs]
    train_batch(together, config.depths(), 12, "eigen", blocked)
    for c, run_ in zip(configs, together):
        alone = batch_run(problem, c, None)
        train_batch([alone], config.depths(), 12, "eigen", NumpyBackend("float32"))
        assert np.array_equal(np.array(alone.gammas), np.array(run_.gammas))


def test_a_hook_that_raises_fails_its_point_alone():
    specs = [dict(QUICK, T=3, mode="expected", seed=s) for s in (0, 1)]  # one family (identical seeds)

    def broken(generation: int, value: float) -> bool:
        raise ConnectionError("prune board unreachable")

    unit = run_many(specs, [broken, None])
    assert unit[0].status == "FAILED" and unit[0].reason == "ConnectionError: prune board unreachable"
    assert unit[1].status == "FINISHED" and _bitwise(run(specs[1]), unit[1])
    assert run(specs[0], broken).reason == unit[0].reason
