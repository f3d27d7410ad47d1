"""Chebyshev steps and bound against closed forms (domain.md §2.1, §2.2, §2.5, §2.6)."""

import math

import numpy as np
import pytest
from scipy.special import eval_chebyu

from workers import chebyshev as cheb
from workers.metrics import mse_curve, residual_polynomial, sup_on_interval
from workers.specs import DugdSpec
from workers.spectra import build_problem

CASES = [(2.0, 1), (10.0, 3), (10.0, 8), (30.8, 25), (100.0, 16), (1000.0, 7)]


@pytest.mark.parametrize("kappa,T", CASES)
def test_bound_is_the_worst_case_of_the_chebyshev_polynomial(kappa, T):
    low, high = 0.37, 0.37 * kappa
    steps = cheb.chebyshev_steps(low, high, T)
    # the minimax polynomial equioscillates and reaches its max at both ends: include them
    grid = np.concatenate([[low, high], np.linspace(low, high, 200_001)])
    worst = np.max(np.abs(residual_polynomial(steps, grid)))
    assert worst == pytest.approx(cheb.chebyshev_bound(kappa, T), rel=1e-9)
    assert abs(residual_polynomial(steps, [low])[0]) == pytest.approx(worst, rel=1e-9)
    assert abs(residual_polynomial(steps, [high])[0]) == pytest.approx(worst, rel=1e-9)
    # the two closed forms agree: 1/cosh(T arccosh((κ+1)/(κ−1))) = 2q^T/(1+q^{2T})
    assert cheb.chebyshev_bound(kappa, T) == pytest.approx(1 / math.cosh(T * math.acosh((kappa + 1) / (kappa - 1))), rel=1e-12)


@pytest.mark.parametrize(
    "kappa,T,bound,rate,q,constant",
    [
        (10, 8, 1.0609e-2, 0.5665, 0.5195, 0.8182),
        (10, 16, 5.6275e-5, 0.5425, 0.5195, 0.8182),
        (100, 16, 8.0523e-2, 0.8543, 0.8182, 0.9802),
        (100, 25, 1.3251e-2, 0.8412, 0.8182, 0.9802),
    ],
)
def test_reference_table(kappa, T, bound, rate, q, constant):
    # the table in domain.md §2.2 is printed to 5 significant figures: agree to its rounding
    assert cheb.chebyshev_bound(kappa, T) == pytest.approx(bound, rel=6e-5)
    assert cheb.chebyshev_rate(kappa, T) == pytest.approx(rate, abs=5e-5)
    assert cheb.q_factor(kappa) == pytest.approx(q, abs=5e-5)
    assert cheb.constant_step_rate(kappa) == pytest.approx(constant, abs=5e-5)


@pytest.mark.parametrize("T", [1, 4, 25])
def test_roots_are_the_chebyshev_nodes(T):
    low, high = 0.18, 5.7
    nodes = cheb.chebyshev_nodes(low, high, T)
    steps = cheb.chebyshev_steps(low, high, T)
    np.testing.assert_allclose(residual_polynomial(steps, nodes), 0.0, atol=1e-12)
    # natural order increases from ≈1/λ_max to ≈1/λ_min, strictly inside the interval
    assert np.all(np.diff(steps) > 0) or T == 1
    assert np.all((1 / high < steps) & (steps < 1 / low))
    # nodes are cos((2k+1)π/(2T)) mapped to the interval: T_T vanishes there
    x = (nodes - (high + low) / 2) / ((high - low) / 2)
    np.testing.assert_allclose(np.cos(T * np.arccos(x)), 0.0, atol=1e-9)


def test_second_kind_nodes_are_zeros_of_u_t():
    low, high, T = 0.2, 6.0, 9
    x = (cheb.second_kind_nodes(low, high, T) - (high + low) / 2) / ((high - low) / 2)
    np.testing.assert_allclose(eval_chebyu(T, x), 0.0, atol=1e-9)


def test_second_kind_steps_beat_first_kind_in_mse_on_the_mp_law():
    # domain.md §2.5: for the MP law the kernel-polynomial (U_T) roots minimise the MSE
    problem = build_problem(DugdSpec(n=4000, kappa=30.0, spectrum="mp"))
    lam, low, high = problem.eigenvalues, problem.lambda_min, problem.lambda_max
    for T in (4, 8, 16):
        assert mse_curve(cheb.second_kind_steps(low, high, T), lam)[-1] < mse_curve(cheb.chebyshev_steps(low, high, T), lam)[-1]
        # ... while the first kind keeps the smaller worst case
        assert sup_on_interval(cheb.chebyshev_steps(low, high, T), low, high) < sup_on_interval(
            cheb.second_kind_steps(low, high, T), low, high)


def test_constant_step_and_heavy_ball_rules():
    low, high = 0.5, 20.0
    step = cheb.optimal_constant_step(low, high)
    assert max(abs(1 - step * low), abs(1 - step * high)) == pytest.approx(cheb.constant_step_rate(high / low), rel=1e-14)
    heavy_step, momentum = cheb.heavy_ball_parameters(low, high)
    assert momentum == pytest.approx(cheb.q_factor(high / low) ** 2, rel=1e-14)
    assert heavy_step == pytest.approx(2 * (1 + momentum) / (low + high), rel=1e-14)  # CHGD_MSE.ipynb's form


def test_semi_iterative_weights_follow_the_notebook_recursion():
    kappa, count = 30.0, 12
    rho = 1 - 1 / kappa
    expected, omega = [], 1.0  # CHGD_MSE.ipynb: gamma = 1; after step 0: 2/(2−ρ²); then 1/(1−ρ²γ/4)
    for i in range(count):
        expected.append(omega)
        omega = 2 / (2 - rho**2) if i == 0 else 1 / (1 - rho**2 * omega / 4)
    np.testing.assert_allclose(cheb.semi_iterative_weights(rho, count), expected, rtol=1e-15)
    # the weights tend to the fixed point 2/(1 + √(1−ρ²))
    assert cheb.semi_iterative_weights(rho, 400)[-1] == pytest.approx(2 / (1 + math.sqrt(1 - rho**2)), rel=1e-10)
