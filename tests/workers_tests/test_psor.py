"""PSOR on Jacobi and ISTA (issue 4): bounds, ordering, linearisation, learned ω, the CLI."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch

from workers import chebyshev
from workers.fixed_point import ista_problem, jacobi_matrix, jacobi_problem, lasso_instance, lasso_kkt_violation
from workers.psor import build_problem as build_psor_problem
from workers.psor import error_curve, initial_points, run_psor, run_psor_many, scheme_omegas
from workers.psor_iteration import gated_chebyshev
from workers.run import run
from workers.specs import PsorSpec


@pytest.fixture(scope="module")
def jacobi_chebyshev():
    # Smaller than the notebook's 512 for speed; entry_std doubled so that n·std² (the spectrum) matches.
    spec = PsorSpec(fixed_point="jacobi", n=128, entry_std=0.06, T=8, iterations=24, omega="chebyshev", matrix_seed=3)
    return run_psor(spec)


def test_jacobi_spectrum_from_symmetric_form_matches_direct_eigenvalues():
    P = jacobi_matrix(64, matrix_seed=1)
    problem = jacobi_problem(P)
    direct = np.linalg.eigvals(P / np.diag(P)[:, None])  # D^{-1}P, non-symmetric
    assert np.max(np.abs(direct.imag)) < 1e-12
    np.testing.assert_allclose(np.sort(direct.real), problem.eigenvalues, rtol=1e-12, atol=1e-12)


def test_chebyshev_psor_period_contraction_within_closed_form_bound(jacobi_chebyshev):
    s = jacobi_chebyshev.scalars
    bound = chebyshev.chebyshev_bound(s["kappa_realized"], 8)
    assert s["chebyshev_bound"] == pytest.approx(bound, rel=1e-12)
    # Spectral radius per period equals the bound up to the eigenvalues lying inside the interval.
    assert s["rho_chebyshev"] <= bound * (1 + 1e-9)
    # The minimax polynomial attains the bound at the interval's ends (dense grid includes them).
    assert s["sup_chebyshev"] == pytest.approx(bound, rel=1e-9)
    # B = D^{-1}P is D^{1/2}-similar to symmetric: ‖P_T(B)‖₂ ≤ sqrt(d_max/d_min)·ρ, and every
    # per-sample ratio, hence the ratio of means, obeys it.
    contractions = jacobi_chebyshev.series["period_contraction"]
    assert len(contractions) == 3
    assert max(contractions) <= bound * s["norm_equivalence"] * (1 + 1e-9)
    # The round-off mark is consistent with the curve and the stated floor (1e-14 · e_0 when x* = 0).
    curve = np.asarray(jacobi_chebyshev.series["error_curve"])
    mask = np.asarray(jacobi_chebyshev.series["roundoff_mask"]) == 1.0
    np.testing.assert_array_equal(mask, curve <= 1e-14 * curve[0])


def test_plain_constant_chebyshev_order_as_theory_says(jacobi_chebyshev):
    s = jacobi_chebyshev.scalars
    kappa = s["kappa_realized"]
    # Closed forms: plain rate = max|1 − λ|, constant = (κ−1)/(κ+1), Chebyshev per-step ≤ its bound.
    assert s["rate_plain"] == pytest.approx(max(abs(1 - s["lambda_min"]), abs(1 - s["lambda_max"])), rel=1e-10)
    assert s["rate_constant"] == pytest.approx(chebyshev.constant_step_rate(kappa), rel=1e-10)
    assert s["rate_chebyshev"] <= chebyshev.chebyshev_rate(kappa, 8) * (1 + 1e-9)
    assert s["rho_plain"] > s["rho_constant"] > s["rho_chebyshev"]
    assert s["final_error_plain"] > s["final_error_constant"] > s["final_error_chebyshev"]
    curves = jacobi_chebyshev.series
    assert curves["error_curve"] == curves["error_curve_chebyshev"]
    assert len(curves["error_curve_plain"]) == 25


def test_jacobi_with_nonzero_rhs_converges_to_direct_solve():
    P = jacobi_matrix(48, matrix_seed=2)
    q = np.random.default_rng(5).normal(size=48)
    problem = jacobi_problem(P, q)
    direct = np.linalg.solve(P, q)
    np.testing.assert_allclose(problem.x_star, direct, rtol=1e-12)
    omegas = scheme_omegas("chebyshev", problem.lambda_min, problem.lambda_max, 8)
    curve = error_curve(problem, omegas, np.zeros((1, 48)), 64)
    # The iterate (not just x*) reaches the direct solution: the error is measured against `direct`.
    assert curve[-1] <= 1e-10 * np.linalg.norm(direct)
    with torch.no_grad():
        fixed = problem.apply(torch.as_tensor(direct)[None])[0].numpy()
    np.testing.assert_allclose(fixed, direct, rtol=1e-12, atol=1e-12)


def test_ista_linearized_range_matches_jacobian_at_fixed_point():
    instance = lasso_instance(n=64, m=40, sparsity=0.1, lam=0.1, matrix_seed=4)
    problem = ista_problem(instance)
    assert lasso_kkt_violation(instance, problem.x_star) < 1e-10
    assert problem.facts["off_support_margin"] > 0  # J is well defined (strict complementarity)
    support_size = np.count_nonzero(problem.x_star)
    assert problem.facts["support_size"] == support_size > 0
    # Jacobian of the actual map at x*, by autodiff, independent of the closed form.
    x_star = torch.as_tensor(problem.x_star)
    J = torch.func.jacrev(lambda x: problem.apply(x[None])[0])(x_star).numpy()
    direct = np.linalg.eigvals(np.eye(64) - J)
    assert np.max(np.abs(direct.imag)) < 1e-10
    np.testing.assert_allclose(np.sort(direct.real), problem.eigenvalues, atol=1e-10)
    assert problem.lambda_min == pytest.approx(direct.real.min(), abs=1e-10)
    assert problem.lambda_max == pytest.approx(direct.real.max(), abs=1e-10)
    assert np.sum(np.isclose(direct.real, 1.0, atol=1e-12)) >= 64 - support_size


def test_ista_local_chebyshev_follows_bound_until_roundoff():
    spec = PsorSpec(
        fixed_point="ista", n=64, m=40, sparsity=0.1, lam=0.1, matrix_seed=4, T=4, iterations=80,
        omega="chebyshev", x0_around="fixed_point", x0_scale=1e-7,
    )
    result = run(spec)
    assert result.status == "FINISHED", result.reason
    s, curve = result.scalars, np.asarray(result.series["error_curve"])
    # Local regime: per-period contraction within the linearised bound (loose: B is not symmetric).
    contractions = result.series["period_contraction"]
    assert contractions and contractions[0] <= 10 * s["chebyshev_bound"]
    assert s["first_roundoff_iteration"] > 0
    assert result.series["roundoff_mask"][-1] == 1.0
    assert curve[-1] < 1e-13 * (curve[0] + np.linalg.norm(ista_problem(lasso_instance(64, 40, 0.1, 0.1, 4)).x_star))


def test_learned_omega_beats_constant_sor_at_trained_depth():
    spec = PsorSpec(
        fixed_point="jacobi", n=32, entry_std=0.1, T=4, iterations=4, omega="learned", matrix_seed=0,
        lr=0.02, batch_size=100, steps_per_depth=60, eval_samples=200,
    )
    result = run(spec)
    assert result.status == "FINISHED", result.reason
    learned = result.series["error_curve_learned"]
    constant = result.series["error_curve_constant"]
    assert learned[4] < constant[4]
    assert len(result.series["learned_omega"]) == 4
    # Metrics against Chebyshev ω through workers/metrics (independent re-computation here).
    nodes = np.sort(chebyshev.chebyshev_nodes(result.scalars["lambda_min"], result.scalars["lambda_max"], 4))
    roots = np.sort(1 / np.asarray(result.series["learned_omega"]))
    assert result.scalars["root_error"] == pytest.approx(np.linalg.norm(roots - nodes) / np.linalg.norm(nodes))


def test_run_one_psor_prints_all_curves_and_bound(run_cli):
    done = run_cli(
        "run-one", "problem=psor", "fixed_point=jacobi", "n=512", "T=8", "iterations=25", "omega=chebyshev", "--json"
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    for name in ("plain", "constant", "chebyshev"):
        assert len(result[f"error_curve_{name}"]) == 26
    assert len(result["chebyshev_bound_curve"]) == 26
    assert 0 < result["chebyshev_bound"] < 1
    assert result["wall_s"] < 10


# --- ISTA from the origin: Chebyshev-PSOR gated by the active set (issue 23, item 2) --------------------

ISTA_ACCEPTANCE = dict(problem="psor", fixed_point="ista", n=512, m=256, T=8, iterations=200)  # issue 23's command


def test_gated_chebyshev_converges_on_ista_from_the_origin_before_constant_sor():
    result = run({**ISTA_ACCEPTANCE, "omega": "chebyshev"})
    assert result.status == "FINISHED", result.reason
    s, curve = result.scalars, np.asarray(result.series["error_curve"])
    # The 1e-8 reduction is reached, and before constant SOR reaches it (99 against 145 on this instance).
    assert s["iterations_to_1e-8"] == s["iterations_to_1e-8_chebyshev"] == float(np.argmax(curve <= 1e-8 * curve[0]))
    assert s["iterations_to_1e-8_chebyshev"] < s["iterations_to_1e-8_constant"]
    assert s["final_error_chebyshev"] < 1e-12 * curve[0]
    # The gate: the safe (constant) factor for at least the first window of T iterations, then Chebyshev.
    share = np.asarray(result.series["chebyshev_share"])
    assert len(share) == 200 and np.all(share[:8] == 0.0) and share[-1] == 1.0


def test_chebyshev_local_on_ista_from_the_origin_diverges_and_is_failed():
    result = run({**ISTA_ACCEPTANCE, "omega": "chebyshev_local"})
    curve = result.series["error_curve"]
    assert curve[-1] > curve[0]  # the periodic schedule from k = 0 throws the iterate off (issue 23: 33.5)
    assert result.status == "FAILED"
    assert result.reason.startswith("diverged: omega=chebyshev_local ends at error ")
    # Its curves are kept, beside the gated one on the same starting points.
    assert result.series["error_curve_chebyshev_local"] == curve
    assert result.scalars["final_error_chebyshev"] < 1e-12 * curve[0]
    assert result.scalars["iterations_to_1e-8_chebyshev_local"] is None


def test_gated_chebyshev_is_the_periodic_schedule_on_a_linear_map():
    problem = jacobi_problem(jacobi_matrix(32, matrix_seed=1))
    omegas = scheme_omegas("chebyshev", problem.lambda_min, problem.lambda_max, 4)
    x0 = np.random.default_rng(0).normal(size=(3, 32))
    gated = gated_chebyshev(problem, omegas, 0.8, x0, 12)
    np.testing.assert_array_equal(gated.curve, error_curve(problem, omegas, x0, 12))
    assert gated.restarts == 0.0 and np.all(gated.chebyshev_share == 1.0)


def test_gated_chebyshev_waits_for_a_settled_active_set_and_rejects_a_growing_period():
    # An active set that flips on every step never settles: the gate never opens, and the curve is
    # constant SOR's.
    problem = jacobi_problem(jacobi_matrix(16, matrix_seed=2))
    flips = {"k": 0}

    def flipping(fx):
        flips["k"] += 1
        return torch.full_like(fx, float(flips["k"] % 2))

    flipping_problem = dataclasses.replace(problem, active_set=flipping)
    omegas = scheme_omegas("chebyshev", problem.lambda_min, problem.lambda_max, 4)
    x0 = np.random.default_rng(1).normal(size=(2, 16))
    gated = gated_chebyshev(flipping_problem, omegas, 0.75, x0, 20)
    np.testing.assert_allclose(gated.curve, error_curve(problem, np.full(4, 0.75), x0, 20), rtol=1e-12)
    assert gated.restarts == 0.0 and np.all(gated.chebyshev_share == 0.0)  # never stable: never opened
    # Stable active set but a residual that grows over the period: rejected, the window doubles.
    steady = dataclasses.replace(problem, active_set=lambda fx: torch.zeros_like(fx))
    too_large = np.full(4, 3.0)  # |1 − 3λ| > 1 on λ ≥ 0.68: the residual grows
    gated = gated_chebyshev(steady, too_large, 0.75, x0, 40)
    assert gated.restarts >= 1.0
    # Each rejected period is undone (x restored to its start), so the curve never rises above the
    # first checkpoint's error, while the periodic schedule blows up.
    assert np.max(gated.curve) <= gated.curve[0] and gated.curve[-1] < 1e-2 * gated.curve[0]
    assert error_curve(problem, too_large, x0, 40)[-1] > 1e3 * gated.curve[0]


# --- Units (issue 22): run_psor_many shares instances, curves and depth prefixes ----------------------


def _assert_same_result(got, expected, rtol=1e-10):
    assert (got.status, got.reason) == (expected.status, expected.reason)
    assert got.scalars.keys() == expected.scalars.keys() and got.series.keys() == expected.series.keys()
    for key, value in expected.scalars.items():
        assert (got.scalars[key] is None) == (value is None), key
        if value is not None:
            assert got.scalars[key] == pytest.approx(value, rel=rtol, abs=0.0), key
    for key, values in expected.series.items():
        np.testing.assert_allclose(got.series[key], values, rtol=rtol, atol=0.0, err_msg=key)
    assert got.info == expected.info


def test_run_psor_many_equals_one_run_per_point():
    base = dict(fixed_point="jacobi", n=16, entry_std=0.1, iterations=10, steps_per_depth=4, batch_size=8)
    specs = [PsorSpec(**base, T=T, omega=omega, seed=seed, train_depth=depth)
             for T, seed in ((2, 0), (4, 0), (2, 1)) for omega, depth in
             (("plain", None), ("chebyshev", None), ("learned", None), ("learned", 3), ("learned", 6))]
    specs += [PsorSpec(fixed_point="ista", n=24, m=16, T=4, iterations=12, omega=omega) for omega in ("chebyshev", "constant")]
    specs += [PsorSpec(**base, T=2, omega="learned", train_depth=5, omega_loss="mse", x0_around="random_rhs")]
    specs += [PsorSpec(fixed_point="gram", n=8, T=2, iterations=6, omega="learned", train_depth=4, lr=0.1)]
    together = run_psor_many(specs)
    assert len(together) == len(specs)
    for spec, got in zip(specs, together):
        expected = run_psor(spec)
        assert expected.status == "FINISHED", expected.reason
        _assert_same_result(got, expected)
        if spec.omega == "learned":  # the shared training's snapshot is the one-point training, bitwise
            assert got.series["learned_omega"] == expected.series["learned_omega"]


def test_run_psor_many_stops_one_point_and_fails_one_alone():
    deep = PsorSpec(fixed_point="jacobi", n=16, T=2, iterations=6, omega="learned", train_depth=5, steps_per_depth=3)
    shallow = deep.model_copy(update={"train_depth": 4})
    calls = []

    def stop_at_two(depth, loss):
        calls.append(depth)
        return depth == 2

    # x* = 0 (empty support): every eigenvalue of I − J is 1, no Chebyshev interval.
    bad = PsorSpec(fixed_point="ista", n=24, m=16, T=4, iterations=6, lam=1e5)
    results = run_psor_many([deep, shallow, bad], [None, stop_at_two, None])
    assert results[0].status == "FINISHED" and len(results[0].series["train_loss"]) == 5
    assert results[1].status == "KILLED" and results[1].series["train_loss"] == results[0].series["train_loss"][:2]
    assert calls == [1, 2]
    assert results[1].series["learned_omega"] == run_psor(shallow, lambda d, loss: d == 2).series["learned_omega"]
    assert results[2].status == "FAILED" and results[2].reason == run_psor(bad).reason


# --- DU-Book's problems and start (issue 23, item 3) ---------------------------------------------------


def test_du_book_problems_and_random_rhs_start_follow_the_notebooks():
    # DU-PSOR.ipynb: A = GᵀG / norm(GᵀG) (Julia's norm of a matrix is Frobenius), f(x) = Ax + b.
    spec = PsorSpec(fixed_point="gram", n=8, matrix_seed=3, x0_around="random_rhs", omega="learned", omega_loss="mse")
    problem = build_psor_problem(spec)
    G = np.random.default_rng(3).normal(size=(8, 8))
    A = G.T @ G / np.linalg.norm(G.T @ G, "fro")
    np.testing.assert_allclose(problem.eigenvalues, np.linalg.eigvalsh(np.eye(8) - A), rtol=1e-12)
    assert 0 < problem.lambda_min and problem.lambda_max <= 1 + 1e-12
    # x0 = 0 with a fresh b: the error x0 − x*(b) = −(I − A)⁻¹ b; for q = 0 here x* = 0.
    b = np.random.default_rng(4).normal(size=(5, 8))
    np.testing.assert_allclose(initial_points(problem, b, "random_rhs", 1.0), -np.linalg.solve(np.eye(8) - A, b.T).T,
                               rtol=1e-10)
    # DU-PSOR-Jacobi.ipynb: P = 0.15 I + MᵀM, M = 0.05·N(0, 1); x0 − x* = −P⁻¹q.
    jacobi = build_psor_problem(PsorSpec(n=32, jacobi_shift=0.15, entry_std=0.05, matrix_seed=1))
    M = np.random.default_rng(1).normal(0.0, 0.05, size=(32, 32))
    P = 0.15 * np.eye(32) + M.T @ M
    q = np.random.default_rng(5).normal(size=(3, 32))
    np.testing.assert_allclose(initial_points(jacobi, q, "random_rhs", 1.0), -np.linalg.solve(P, q.T).T, rtol=1e-10)
    with pytest.raises(ValueError, match="x0_around: got 'random_rhs' with fixed_point 'ista'"):
        PsorSpec(fixed_point="ista", x0_around="random_rhs")


def test_plan_units_keeps_a_depth_family_together():
    from workers.units import plan_units

    specs = [PsorSpec(n=16, T=2, omega="learned", train_depth=depth, seed=seed) for seed in (0, 1) for depth in (2, 5, 10)]
    specs += [PsorSpec(n=16, T=2, omega=omega) for omega in ("plain", "constant", "chebyshev")]
    units = plan_units(specs, slots=4)
    assert sorted(i for unit in units for i in unit) == list(range(len(specs)))
    home = {i: k for k, unit in enumerate(units) for i in unit}
    assert home[0] == home[1] == home[2] and home[3] == home[4] == home[5]  # each seed's depths train once
    assert home[6] == home[7] == home[8]  # the fixed schemes' curves from one set of starting points
