"""CHGD error curves: analytic against Monte Carlo, and against closed forms."""

import numpy as np
import pytest

from workers import chebyshev as cheb
from workers.chgd import chgd_curves, chgd_polynomials, chgd_problem, initial_error_weights, run_chgd
from workers.specs import ChgdSpec
from workers.spectra import build_problem


def test_analytic_curves_match_monte_carlo_of_the_notebook_recursions():
    problem = build_problem(ChgdSpec(n=12, m=20, matrix_seed=3, T=4, iterations=10))
    a = problem.factor().T @ problem.factor()
    low, high = problem.lambda_min, problem.lambda_max
    curves = chgd_curves(problem, T=4, iterations=10, x0_basis="original")
    samples = 40_000
    x0 = np.random.default_rng(7).normal(1.0, 1.0, (samples, 12))  # x0 ~ N(1, 1), x* = 0
    steps = cheb.chebyshev_steps(low, high, 4)
    heavy_step, beta = cheb.heavy_ball_parameters(low, high)
    eta_c, rho_c = 2 / (low + high), (high / low - 1) / (high / low + 1)  # centred: I − ηA on [−ρ, ρ]
    eta_n, rho_n = 1 / high, 1 - low / high  # CHGD_MSE.ipynb's
    omegas_c, omegas_n = cheb.semi_iterative_weights(rho_c, 10), cheb.semi_iterative_weights(rho_n, 11)
    runs = {name: [x0] for name in curves}
    gd = cheb_x = x0
    heavy_prev, heavy = x0, x0  # textbook x_{−1} = x_0
    nb_prev, nb = np.zeros_like(x0), x0  # the notebook starts s_{−1} = 0
    semi_prev, semi = np.zeros_like(x0), x0
    unc_prev, unc = np.zeros_like(x0), x0
    for t in range(10):
        cheb_x = cheb_x - steps[t % 4] * cheb_x @ a
        gd = gd - cheb.optimal_constant_step(low, high) * gd @ a
        heavy, heavy_prev = heavy - heavy_step * heavy @ a + beta * (heavy - heavy_prev), heavy
        nb, nb_prev = nb - heavy_step * nb @ a + beta * (nb - nb_prev), nb
        semi, semi_prev = semi - omegas_c[t] * eta_c * semi @ a + (omegas_c[t] - 1) * (semi - semi_prev), semi
        unc, unc_prev = unc - omegas_n[t] * eta_n * unc @ a + (omegas_n[t] - 1) * (unc - unc_prev), unc
        extra = unc
        for _ in range(t + 1):  # the notebook's plotted value: t+1 more GD steps of size ω_{t+1} η
            extra = extra - omegas_n[t + 1] * eta_n * extra @ a
        iterates = {"chebyshev": cheb_x, "gd": gd, "heavy_ball": heavy, "heavy_ball_notebook": nb,
                    "semi_iterative": semi, "semi_iterative_uncentred": unc, "semi_iterative_notebook": extra}
        for name, x in iterates.items():
            runs[name].append(x)
    assert set(runs) == set(iterates)
    for name, iterates in runs.items():
        squared = np.array([np.sum(x**2, axis=1) for x in iterates])  # (t, samples)
        mean, standard_error = squared.mean(axis=1), squared.std(axis=1) / np.sqrt(samples)
        assert np.all(np.abs(mean - curves[name]) <= 5 * standard_error + 1e-12), name


def test_eigen_basis_gives_every_mode_weight_two():
    problem = build_problem(ChgdSpec(n=12, m=20, matrix_seed=3))
    np.testing.assert_array_equal(initial_error_weights(problem, "eigen"), np.full(12, 2.0))
    assert chgd_curves(problem, 4, 3, "eigen")["gd"][0] == pytest.approx(24.0, rel=1e-14)


@pytest.mark.parametrize("x0_basis", ["eigen", "original"])
def test_optimal_semi_iterative_is_the_minimax_polynomial_and_beats_periodic_chebyshev(x0_basis):
    problem = chgd_problem(ChgdSpec(n=60, matrix_seed=5))
    low, high = problem.reference_edges
    T = 8
    polynomials = chgd_polynomials(problem, T, 3 * T)
    for t in range(3 * T + 1):  # closed form C_t((λ₊ − λ)/λ₋) / C_t(λ₊/λ₋), t = 0..3T
        closed = cheb.minimax_residual(problem.eigenvalues, low, high, t)
        np.testing.assert_allclose(polynomials["semi_iterative"][t], closed, rtol=1e-9, atol=1e-13)
    curves = chgd_curves(problem, T, 3 * T, x0_basis)
    semi, chebyshev = curves["semi_iterative"], curves["chebyshev"]
    assert semi[T] == pytest.approx(chebyshev[T], rel=1e-9)  # same polynomial at t = T
    assert semi[2 * T] < 0.5 * chebyshev[2 * T] and semi[3 * T] < 0.5 * chebyshev[3 * T]


def test_minimax_residual_matches_the_bound_on_the_interval():
    low, high, t = 0.2, 7.0, 11
    grid = np.linspace(low, high, 20001)
    peak = np.max(np.abs(cheb.minimax_residual(grid, low, high, t)))
    assert peak == pytest.approx(cheb.chebyshev_bound(high / low, t), rel=1e-9)
    assert cheb.minimax_residual(np.array([0.0]), low, high, t)[0] == pytest.approx(1.0, rel=1e-12)


# CHGD_MSE.ipynb's printed table (row label t+1 = value after t steps): Cheby, GD, MOM, CH-semi.
NOTEBOOK_ROWS = {
    16: (1.2804416015625, 16.2915578125, 3.0543365234375, 0.2749321044921875),
    32: (0.004065361404418945, 4.319415234375, 0.007021243286132813, 0.0007754480361938477),
    41: (0.00037255804538726805, 2.3426919921875, 0.000208907151222229, 2.4855896830558776e-05),
}


def test_eigen_basis_reproduces_the_notebook_printout():
    result = run_chgd(ChgdSpec(n=300, m=450, matrix_seed=32, T=16, iterations=64, x0_basis="eigen"))
    names = ("chebyshev", "gd", "heavy_ball_notebook", "semi_iterative_notebook")
    for t, printed in NOTEBOOK_ROWS.items():
        for name, value in zip(names, printed):
            # 10,000 samples: the Monte Carlo error of a mean of ‖x_t‖² is ~1% when a few modes dominate
            assert result.series[f"error_curve_{name}"][t] == pytest.approx(value, rel=0.02), (name, t)
    semi, chebyshev = result.series["error_curve_semi_iterative"], result.series["error_curve_chebyshev"]
    assert semi[16] == pytest.approx(chebyshev[16], rel=1e-9)
    assert semi[32] < chebyshev[32] and semi[48] < chebyshev[48]
    assert result.info["x0_basis"] == "eigen"


def test_initial_error_is_two_n_and_weights_sum_to_it():
    problem = build_problem(ChgdSpec(n=30, m=45))
    weights = initial_error_weights(problem, "original")
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
