"""CHGD error curves: analytic against Monte Carlo, and against closed forms."""

import numpy as np
import pytest

from workers import chebyshev as cheb
from workers.chgd import chgd_curves, initial_error_weights, run_chgd
from workers.specs import ChgdSpec
from workers.spectra import build_problem


def test_analytic_curves_match_monte_carlo_of_the_notebook_recursions():
    problem = build_problem(ChgdSpec(n=12, m=20, matrix_seed=3, T=4, iterations=10))
    a = problem.factor().T @ problem.factor()
    low, high = problem.lambda_min, problem.lambda_max
    curves = chgd_curves(problem, T=4, iterations=10)
    samples = 40_000
    x0 = np.random.default_rng(7).normal(1.0, 1.0, (samples, 12))  # x0 ~ N(1, 1), x* = 0
    steps = cheb.chebyshev_steps(low, high, 4)
    heavy_step, beta = cheb.heavy_ball_parameters(low, high)
    omegas, eta = cheb.semi_iterative_weights(high / low, 10), 1 / high
    runs = {name: [x0] for name in curves}
    gd = x0
    heavy_prev, heavy = np.zeros_like(x0), x0  # the notebook starts s_{−1} = 0
    semi_prev, semi = np.zeros_like(x0), x0
    cheb_x = x0
    for t in range(10):
        cheb_x = cheb_x - steps[t % 4] * cheb_x @ a
        gd = gd - cheb.optimal_constant_step(low, high) * gd @ a
        heavy, heavy_prev = heavy - heavy_step * heavy @ a + beta * (heavy - heavy_prev), heavy
        semi, semi_prev = semi - omegas[t] * eta * semi @ a + (omegas[t] - 1) * (semi - semi_prev), semi
        for name, x in (("chebyshev", cheb_x), ("gd", gd), ("heavy_ball", heavy), ("semi_iterative", semi)):
            runs[name].append(x)
    for name, iterates in runs.items():
        squared = np.array([np.sum(x**2, axis=1) for x in iterates])  # (t, samples)
        mean, standard_error = squared.mean(axis=1), squared.std(axis=1) / np.sqrt(samples)
        assert np.all(np.abs(mean - curves[name]) <= 5 * standard_error + 1e-12), name


def test_initial_error_is_two_n_and_weights_sum_to_it():
    problem = build_problem(ChgdSpec(n=30, m=45))
    weights = initial_error_weights(problem)
    assert weights.sum() == pytest.approx(60.0, rel=1e-12)  # ‖Qᵀ1‖² + n = 2n
    assert np.all(weights >= 1.0)


def test_default_run_reproduces_the_notebook_setting():
    result = run_chgd(ChgdSpec())
    s, curves = result.scalars, result.series
    assert s["lambda_max"] == pytest.approx(4.933429045923184, rel=1e-12)
    assert curves["error_curve_chebyshev"][0] == pytest.approx(600.0, rel=1e-12)
    assert len(curves["error_curve_gd"]) == 101
    bound = s["chebyshev_bound"]
    # one period of Chebyshev steps contracts every mode by at most the bound
    for k in range(1, 100 // 16 + 1):
        assert curves["error_curve_chebyshev"][16 * k] <= bound ** (2 * k) * 600.0 * (1 + 1e-9)
    assert s["error_chebyshev"] < s["error_gd"] and s["error_heavy_ball"] < s["error_gd"]
    assert s["rate_chebyshev"] < s["rate_gd"] <= s["rate_constant"] + 1e-12
    assert s["rho_chebyshev"] == pytest.approx(bound, rel=1e-9)  # exact edges: the bound is attained


def test_mp_edges_feed_the_reference():
    result = run_chgd(ChgdSpec(edges="mp", iterations=20))
    assert result.info["edges"] == "mp"
    assert result.scalars["chebyshev_bound"] == pytest.approx(cheb.chebyshev_bound(result.scalars["kappa_mp"], 16))
