"""Curse-of-unrolling metrics (domain.md §6) against closed forms and torch autodiff."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from workers import chebyshev
from workers.metrics import residual_polynomial
from workers.run import run
from workers.unrolling import (
    burn_in_report,
    curse_of_unrolling,
    jacobian_errors,
    jacobian_ratio_modes,
    polynomials_and_derivatives,
    residual_polynomial_derivative,
)


def test_derivative_matches_prefix_suffix_products_and_finite_differences():
    rng = np.random.default_rng(0)
    steps = rng.uniform(0.05, 1.5, size=7)
    lam = np.linspace(0.1, 3.0, 41)
    factors = 1.0 - np.multiply.outer(lam, steps)  # (λ, T)
    # The definition itself: −Σ_j γ_j Π_{s≠j}(1 − γ_s λ).
    others = np.stack([np.prod(np.delete(factors, j, axis=1), axis=1) for j in range(steps.size)], axis=1)
    expected = -np.sum(steps * others, axis=1)
    np.testing.assert_allclose(residual_polynomial_derivative(steps, lam), expected, rtol=1e-12, atol=1e-14)
    h = 1e-6  # central difference: error O(h²) ≈ 1e-12 relative to P'' scale
    numeric = (residual_polynomial(steps, lam + h) - residual_polynomial(steps, lam - h)) / (2 * h)
    np.testing.assert_allclose(residual_polynomial_derivative(steps, lam), numeric, rtol=1e-6, atol=1e-8)
    values, _ = polynomials_and_derivatives(steps, lam)
    np.testing.assert_allclose(values[-1], residual_polynomial(steps, lam), rtol=1e-12)


def test_constant_step_derivative_closed_form():
    h, lam = 0.4, np.linspace(0.2, 4.5, 33)
    _, derivatives = polynomials_and_derivatives(np.full(9, h), lam)
    for t in range(10):
        closed = -t * h * (1 - h * lam) ** max(t - 1, 0)
        np.testing.assert_allclose(derivatives[t], closed, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("kappa, T", [(10.0, 8), (100.0, 16), (30.0, 25)])
def test_chebyshev_max_derivative_equals_two_t_squared_rho(kappa, T):
    lambda_min, lambda_max = 0.5, 0.5 * kappa
    steps = chebyshev.chebyshev_steps(lambda_min, lambda_max, T)
    report = curse_of_unrolling(steps, np.array([lambda_min, lambda_max]))
    expected = 2 * T**2 * chebyshev.chebyshev_bound(kappa, T) / (lambda_max - lambda_min)
    assert report["scalars"]["max_abs_dpoly"] == pytest.approx(expected, rel=1e-9)


def _explicit_spd(size: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    Q, _ = np.linalg.qr(rng.normal(size=(size, size)))
    lam = np.sort(rng.uniform(0.2, 5.0, size=size))
    return Q @ np.diag(lam) @ Q.T, Q, lam


def test_jacobian_error_formula_matches_autodiff_of_the_actual_recursion():
    A0, Q, lam = _explicit_spd(6, seed=1)
    x_star = np.random.default_rng(2).normal(size=6)
    b = torch.as_tensor(A0 @ x_star)
    A = torch.as_tensor(A0)
    steps = np.random.default_rng(3).uniform(0.05, 0.45, size=10)  # includes steps > 2/λ_max: not monotone

    def error_at(theta: torch.Tensor, depth: int) -> torch.Tensor:
        A_theta = A + theta * torch.eye(6, dtype=torch.float64)
        x = torch.zeros(6, dtype=torch.float64)
        for gamma in steps[:depth]:
            x = x - float(gamma) * (A_theta @ x - b)
        return x - torch.linalg.solve(A_theta, b)

    formula = jacobian_errors(steps, lam, Q.T @ x_star)
    theta0 = torch.zeros((), dtype=torch.float64)
    for depth in range(len(steps) + 1):
        autodiff = torch.func.jacfwd(lambda th: error_at(th, depth))(theta0).numpy()
        assert formula[depth] == pytest.approx(np.linalg.norm(autodiff), rel=1e-8)


def test_isotropic_rms_is_root_mean_square_over_random_x_star():
    lam = np.array([0.3, 1.0, 2.5])
    steps = [0.3, 0.6, 0.2]
    isotropic = jacobian_errors(steps, lam)
    unit_vectors = [jacobian_errors(steps, lam, np.eye(3)[i]) for i in range(3)]
    # E‖v ∘ x*‖² over x* ~ N(0, I) is Σ v_i², the sum over the basis vectors.
    np.testing.assert_allclose(isotropic**2, np.sum(np.square(unit_vectors), axis=0), rtol=1e-12)
    assert isotropic[0] == pytest.approx(np.linalg.norm(1 / lam), rel=1e-12)


def test_gd_burn_in_peak_and_recovery_are_consistent():
    # Step h = 1.9/L: modes with hλ near 1.9 contract by |1 − hλ| ≈ 0.9 while P_t' grows like t,
    # so J_t rises before it falls (burn-in). With x_0 = 0 and small steps there is none: J_0 = ‖A^{-1}x*‖.
    lam = np.linspace(0.5, 1.0, 200)
    report = curse_of_unrolling(np.full(80, 1.9), lam)
    errors = np.asarray(report["series"]["jacobian_error"])
    s = report["scalars"]
    t_b, recovery = int(s["burn_in_index"]), int(s["jacobian_recovery_index"])
    assert t_b > 0 and s["jacobian_peak"] == errors.max() > errors[0]
    # The slowest mode alone, (0.9)^{t−1}(1.9t − 0.9), peaks at t ≈ 10; faster modes pull t_b earlier.
    assert 1 <= t_b <= 10
    assert recovery > t_b and errors[recovery] <= errors[0] and np.all(errors[t_b:recovery] > errors[0])
    assert s["jacobian_error_final"] == errors[-1]
    assert s["jacobian_error_ratio"] == pytest.approx(errors[-1] / errors[0])
    no_burn_in = curse_of_unrolling(np.full(20, 0.5), lam)["scalars"]  # hλ ≤ 0.5: J_t/J_0 ≤ 1 per mode
    assert no_burn_in["burn_in_index"] == 0.0 and no_burn_in["jacobian_recovery_index"] == 1.0


# --- The `unrolling` problem: the abstract's trade-off, at reduced size ---------------------------------

UNROLLING_STEPS = ("1/L", "1.5/L", "1.9/L", "2/(mu+L)")


def test_burn_in_lengthens_with_the_step_while_the_asymptotic_rate_improves():
    results = [run(dict(problem="unrolling", n=60, iterations=250, step=step)) for step in UNROLLING_STEPS]
    assert [r.status for r in results] == ["FINISHED"] * 4, [r.reason for r in results]
    s = [r.scalars for r in results]
    burn_in = [x["burn_in_length"] for x in s]
    assert burn_in[0] == 0.0 and burn_in == sorted(burn_in) and len(set(burn_in)) == 4, burn_in
    peaks = [x["jacobian_peak_ratio"] for x in s]
    assert peaks[0] == 1.0 and peaks == sorted(peaks) and len(set(peaks)) == 4, peaks
    rates = [x["rate"] for x in s]
    assert rates == sorted(rates, reverse=True) and len(set(rates)) == 4, rates
    lam = np.linspace(s[0]["lambda_min"], s[0]["lambda_max"], 2)
    for x in s:  # the rate is max|1 − hλ| over the spectrum: at an end
        assert x["rate"] == pytest.approx(np.max(np.abs(1 - x["step_size"] * lam)), rel=1e-12)
    assert s[-1]["rate"] == pytest.approx(s[-1]["rate_constant"], rel=1e-12)  # 2/(μ+L): (κ−1)/(κ+1)
    # the curve: J_0 = 1, rises above 1 for t = 1..burn_in at its last, falls below 1 after it
    curve = np.asarray(results[-1].series["jacobian_ratio"])
    b = int(burn_in[-1])
    assert curve[0] == 1.0 and curve[b] > 1.0 and np.all(curve[b + 1:] <= 1.0)
    assert int(np.argmax(curve)) == s[-1]["jacobian_peak_index"]


def test_worst_case_ratio_is_the_sup_of_the_isotropic_error_ratio_over_x_star():
    # J_t/J_0 worst case = max_i |P_t − λ_i P_t'|: attained by x* on the worst mode; any x* gives at most it.
    lam = np.linspace(0.2, 1.0, 30)
    values, derivatives = polynomials_and_derivatives(np.full(40, 1.9), lam)
    modes = jacobian_ratio_modes(values, derivatives, lam)
    report = burn_in_report(modes, values)
    worst = np.asarray(report["series"]["jacobian_ratio"])
    rng = np.random.default_rng(0)
    for x_star in rng.normal(size=(20, lam.size)):
        ratio = jacobian_errors(np.full(40, 1.9), lam, x_star) / np.linalg.norm(x_star / lam)
        assert np.all(ratio <= worst * (1 + 1e-12))
    t = 7
    i = int(np.argmax(np.abs(modes[t])))
    single = jacobian_errors(np.full(40, 1.9), lam, np.eye(lam.size)[i]) / (1 / lam[i])
    assert single[t] == pytest.approx(worst[t], rel=1e-12)
    # closed form for GD, per mode: (1 − u)^{t−1} (1 + (t − 1) u), u = hλ
    u = 1.9 * lam
    np.testing.assert_allclose(modes[t], (1 - u) ** (t - 1) * (1 + (t - 1) * u), rtol=1e-10, atol=1e-14)


def test_chebyshev_method_burns_in_and_converges_at_q():
    result = run(dict(problem="unrolling", n=60, iterations=120, step="chebyshev"))
    s = result.scalars
    assert result.status == "FINISHED", result.reason
    assert s["burn_in_length"] > 0 and s["jacobian_peak_ratio"] > 2.0
    assert s["q"] < s["rate"] < s["q"] * 1.02  # (2/(1+q^{2K}))^{1/K} q → q
    gd = run(dict(problem="unrolling", n=60, iterations=120, step="2/(mu+L)")).scalars
    assert s["jacobian_peak_index"] < gd["jacobian_peak_index"]  # √κ against κ
