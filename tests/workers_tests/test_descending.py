"""Descending constraints for DUGD (domain.md §7.3), trained primal–dual over the eigenbasis."""

from __future__ import annotations

import numpy as np
import pytest

from workers.descending import train_descending
from workers.metrics import residual_polynomial

RATIO_TOL = 0.01  # held-out mean ratio over 2000 samples; primal–dual ends near, not exactly at, the boundary
MSE_FACTOR = 2.0  # constrained MSE ≤ MSE_FACTOR × unconstrained MSE (measured ≈ 0.9–1.15)


@pytest.fixture(scope="module")
def spectrum() -> np.ndarray:
    # The authors' recipe at (n, m) = (100, 200): H entries N(0, 1/n), A = H Hᵀ, κ ≈ 30.
    rng = np.random.default_rng(12)
    H = rng.normal(0.0, 1.0 / np.sqrt(100), size=(100, 200))
    return np.linalg.eigvalsh(H @ H.T)


@pytest.fixture(scope="module")
def trained(spectrum):
    settings = dict(T=8, eps=0.05, seed=0, epochs=60, batches_per_epoch=10, heldout_samples=2000)
    return (
        train_descending(spectrum, constrained=True, **settings),
        train_descending(spectrum, constrained=False, **settings),
    )


def test_constrained_layers_all_descend_on_heldout_samples(trained):
    constrained, unconstrained = trained
    assert constrained.descent_ratios.shape == (8,)
    assert np.all(constrained.descent_ratios <= 1 - 0.05 + RATIO_TOL), constrained.descent_ratios
    # Without the constraint the same training leaves an ascending layer: the constraint did the work.
    assert unconstrained.violating_layers >= 1 and unconstrained.descent_ratios.max() > 1.0
    assert constrained.mse <= MSE_FACTOR * unconstrained.mse


def test_dual_and_slack_histories(trained):
    constrained, unconstrained = trained
    assert constrained.dual_history.shape == constrained.slack_history.shape == (60, 8)
    assert np.all(constrained.dual_history >= 0) and constrained.dual_history.max() > 0
    assert np.all(unconstrained.dual_history == 0)
    # Projected dual ascent: ν_e = max(0, ν_{e−1} + η ĉ_e), η = 0.5.
    previous = np.vstack([np.zeros(8), constrained.dual_history[:-1]])
    np.testing.assert_allclose(
        constrained.dual_history, np.maximum(0, previous + 0.5 * constrained.slack_history), atol=1e-12
    )
    scalars, series = constrained.result_fields()
    assert scalars["violating_layers"] == float(constrained.violating_layers)
    assert len(series["dual_max_history"]) == 60


def test_heldout_mse_matches_analytic_expectation(spectrum, trained):
    constrained, _ = trained
    # E‖x_T − x‖²/n = (1/n) Σ_i P_T(λ_i)²; 2000 samples give ≈ 3% relative standard error at most.
    for t in (0, 4, 8):
        analytic = np.mean(residual_polynomial(constrained.steps[:t], spectrum) ** 2)
        assert constrained.mse_curve[t] == pytest.approx(analytic, rel=0.1)


def test_eigenbasis_distances_equal_dense_gd_distances(spectrum):
    # ‖x_t − x‖ is invariant under the orthogonal change of basis the training relies on.
    rng = np.random.default_rng(3)
    Q, _ = np.linalg.qr(rng.normal(size=(100, 100)))
    A = Q @ np.diag(spectrum) @ Q.T
    z = rng.normal(size=100)
    x, x_t = Q @ z, np.zeros(100)
    steps = [0.1, 0.5, 0.3]
    for t, gamma in enumerate(steps, start=1):
        x_t = x_t - gamma * (A @ x_t - A @ x)  # GD on ½‖H̃x_t − y‖² with y = H̃x
        eigen = residual_polynomial(steps[:t], spectrum) * (-z)
        assert np.linalg.norm(x_t - x) == pytest.approx(np.linalg.norm(eigen), rel=1e-10)
