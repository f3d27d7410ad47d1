"""Metrics on hand-made inputs with known answers, and curves against direct recursions."""

import math

import numpy as np
import pytest

from workers import metrics


def test_tracking_metrics_on_hand_made_schedules():
    reference = np.array([0.5, 0.25, 1.0])
    assert metrics.root_error(reference[::-1], 1 / reference) == 0.0  # order does not matter
    assert metrics.step_error(2 * reference, reference) == pytest.approx(1.0)
    np.testing.assert_allclose(metrics.log_ratios(2 * reference, reference), math.log(2))
    assert metrics.max_abs_log_ratio([1.0, 0.25, 0.25], reference) == pytest.approx(math.log(2))
    # roots 1/γ = (2, 4, 1) against nodes (2, 4, 2): error |1−2| / ‖(2, 4, 2)‖
    assert metrics.root_error([0.5, 0.25, 1.0], [2.0, 4.0, 2.0]) == pytest.approx(1 / math.sqrt(24))
    with pytest.raises(ValueError, match="differ in length"):
        metrics.step_error([1.0], reference)


def test_residual_polynomials_and_mse_curve_by_hand():
    steps, lam = [0.5, 0.25], [1.0, 2.0]
    # P_1 = (0.5, 0), P_2 = (0.5·0.75, 0)
    np.testing.assert_allclose(metrics.residual_polynomials(steps, lam), [[1, 1], [0.5, 0.0], [0.375, 0.0]])
    np.testing.assert_allclose(metrics.mse_curve(steps, lam), [1.0, 0.125, 0.375**2 / 2])
    # two periods: the schedule repeats
    np.testing.assert_allclose(metrics.mse_curve(steps, lam, periods=2), metrics.mse_curve(steps * 2, lam))
    # periodic single step: (1 − γλ)^t
    np.testing.assert_allclose(metrics.residual_polynomials([0.1], [3.0], 4)[:, 0], 0.7 ** np.arange(5))
    np.testing.assert_allclose(metrics.error_curve([[1.0, 2.0], [3.0, 4.0]], [0.5, 2.0]), [8.5, 36.5])
    assert metrics.rho(steps, lam) == pytest.approx(0.375)
    assert metrics.sup_on_interval([0.5], 1.0, 3.0) == pytest.approx(0.5)
    assert metrics.rate(0.25, 2) == pytest.approx(0.5)


def test_mse_curve_matches_the_matrix_recursion():
    rng = np.random.default_rng(0)
    h = rng.normal(0, 1 / math.sqrt(6), (9, 6))
    a = h.T @ h
    steps = rng.uniform(0.1, 0.6, 5)
    x = np.eye(6)  # E‖x_t − x‖²/n over x ~ N(0, I) = ‖P_t(A)‖_F²/n: run every basis vector
    error, curve = -x, [1.0]
    for gamma in steps:
        error = error - gamma * a @ error
        curve.append(np.sum(error**2) / 6)
    np.testing.assert_allclose(metrics.mse_curve(steps, np.linalg.eigvalsh(a)), curve, rtol=1e-10)


def test_heavy_ball_polynomials_by_hand_and_against_the_recursion():
    # λ = 1, step 0.1, β = 0.5, x_{−1} = x_0: e1 = 0.9, e2 = 0.81 + 0.5(0.9 − 1) = 0.76
    values = metrics.heavy_ball_polynomials([1.0], 0.1, 0.5, 2)[:, 0]
    np.testing.assert_allclose(values, [1.0, 0.9, 0.76])
    # x_{−1} = 0 = x* (CHGD_MSE.ipynb): e1 = 0.9 + 0.5·1 = 1.4
    assert metrics.heavy_ball_polynomials([1.0], 0.1, 0.5, 1, previous_factor=0.0)[1, 0] == pytest.approx(1.4)
    lam, step, beta = np.array([0.3, 1.0, 2.5]), 0.4, 0.3
    previous, current, rows = np.ones(3), np.ones(3), [np.ones(3)]
    for _ in range(6):
        previous, current = current, current - step * lam * current + beta * (current - previous)
        rows.append(current)
    np.testing.assert_allclose(metrics.heavy_ball_polynomials(lam, step, beta, 6), rows, rtol=1e-14)


def test_descent_metrics_by_hand():
    curve = [4.0, 1.0, 4.0, 0.25]
    np.testing.assert_allclose(metrics.descent_ratios(curve), [0.5, 2.0, 0.25])
    assert metrics.ascending_layers(curve) == 1
    assert metrics.ascending_layers(curve, threshold=0.45) == 2
    assert metrics.peak_intermediate_mse(curve) == 4.0
    assert metrics.peak_intermediate_mse([1.0, 0.5]) is None  # no intermediate layer: not reached, not 0
    assert metrics.contraction(curve) == pytest.approx((0.25 / 4.0) ** (1 / 6))


def test_ordering_metrics_by_hand():
    assert metrics.largest_step_position([0.1, -0.3, 0.2]) == 1  # |γ| as the recursion uses
    assert metrics.zigzag_changes([1, 3, 2, 4, 3]) == 3
    assert metrics.zigzag_changes([1, 2, 3, 4]) == 0
    assert metrics.zigzag_changes([1, 1, 2, 2, 1]) == 1  # flat steps carry no sign
    assert metrics.kendall_tau_increasing([1, 2, 3, 4]) == pytest.approx(1.0)
    assert metrics.kendall_tau_increasing([4, 3, 2, 1]) == pytest.approx(-1.0)
    assert metrics.kendall_tau_increasing([2, 2, 2]) is None  # undefined, not "no order"
    assert metrics.kendall_tau_increasing([1, 3, 2]) == pytest.approx(1 / 3)
    assert metrics.steps_above([0.1, 0.5, 0.7], 2 / 4.0) == 1
