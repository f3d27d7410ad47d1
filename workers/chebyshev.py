"""Chebyshev step sizes, the minimax bound and the baselines' step rules (domain.md §2).

Every formula here is written once; runs, metrics and plots call these functions.
All functions work in float64 numpy.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

Array = NDArray[np.float64]


def chebyshev_nodes(lambda_min: float, lambda_max: float, T: int) -> Array:
    """First-kind Chebyshev nodes on [lambda_min, lambda_max], k = 0..T-1, decreasing.

    r_k = λ₊ + λ₋ cos((2k+1)π / (2T)); these are the roots of the minimax residual polynomial.
    """
    _check_interval(lambda_min, lambda_max, T)
    plus, minus = (lambda_max + lambda_min) / 2, (lambda_max - lambda_min) / 2
    k = np.arange(T, dtype=np.float64)
    return plus + minus * np.cos((2 * k + 1) * np.pi / (2 * T))


def chebyshev_steps(lambda_min: float, lambda_max: float, T: int) -> Array:
    """γ_k = 1 / r_k in natural order (increasing, from ≈1/λ_max to ≈1/λ_min)."""
    return 1.0 / chebyshev_nodes(lambda_min, lambda_max, T)


def second_kind_nodes(lambda_min: float, lambda_max: float, T: int) -> Array:
    """Zeros of U_T mapped to the interval: λ₊ + λ₋ cos(kπ/(T+1)), k = 1..T (domain.md §2.5)."""
    _check_interval(lambda_min, lambda_max, T)
    plus, minus = (lambda_max + lambda_min) / 2, (lambda_max - lambda_min) / 2
    k = np.arange(1, T + 1, dtype=np.float64)
    return plus + minus * np.cos(k * np.pi / (T + 1))


def second_kind_steps(lambda_min: float, lambda_max: float, T: int) -> Array:
    """MSE-optimal steps for the MP law in the large-n limit, increasing order."""
    return 1.0 / second_kind_nodes(lambda_min, lambda_max, T)


def q_factor(kappa: float) -> float:
    """q = (√κ − 1)/(√κ + 1): the asymptotic per-step rate of Chebyshev steps."""
    root = np.sqrt(kappa)
    return float((root - 1) / (root + 1))


def chebyshev_bound(kappa: float, T: int) -> float:
    """max over [λ_min, λ_max] of |P_T^Ch| = 1/C_T((κ+1)/(κ−1)) = 2q^T / (1 + q^{2T})."""
    q = q_factor(kappa)
    return float(2 * q**T / (1 + q ** (2 * T)))


def chebyshev_rate(kappa: float, T: int) -> float:
    """Per-step rate of T-periodic Chebyshev GD: chebyshev_bound^(1/T)."""
    return chebyshev_bound(kappa, T) ** (1.0 / T)


def optimal_constant_step(lambda_min: float, lambda_max: float) -> float:
    """γ = 2/(λ_min + λ_max), the best constant GD step."""
    return 2.0 / (lambda_min + lambda_max)


def constant_step_rate(kappa: float) -> float:
    """(κ − 1)/(κ + 1): per-step rate of GD with the optimal constant step."""
    return (kappa - 1) / (kappa + 1)


def heavy_ball_parameters(lambda_min: float, lambda_max: float) -> tuple[float, float]:
    """(step, momentum) of Polyak's heavy ball: β = q², step 4/(√L + √μ)²."""
    momentum = q_factor(lambda_max / lambda_min) ** 2
    step = 4.0 / (np.sqrt(lambda_max) + np.sqrt(lambda_min)) ** 2
    return float(step), float(momentum)


def semi_iterative_weights(kappa: float, iterations: int) -> Array:
    """ω_1..ω_K of the Chebyshev semi-iterative method (CHGD_MSE.ipynb), with η = 1/λ_max.

    ρ = 1 − 1/κ, ω_1 = 2/(2 − ρ²), ω_{k+1} = 1/(1 − ρ² ω_k / 4).
    The update is x_{k+1} = ω_k (x_k − η∇f(x_k) − x_{k−1}) + x_{k−1}; with ω_0 = 1 for the first step.
    """
    rho = 1.0 - 1.0 / kappa
    weights = np.empty(iterations, dtype=np.float64)
    omega = 1.0
    for k in range(iterations):
        if k == 0:
            omega = 1.0
        elif k == 1:
            omega = 2.0 / (2.0 - rho**2)
        else:
            omega = 1.0 / (1.0 - rho**2 * omega / 4.0)
        weights[k] = omega
    return weights


def _check_interval(lambda_min: float, lambda_max: float, T: int) -> None:
    if not (0 < lambda_min < lambda_max) or not np.isfinite(lambda_max):
        raise ValueError(f"need 0 < lambda_min < lambda_max, got ({lambda_min}, {lambda_max})")
    if T < 1:
        raise ValueError(f"T must be >= 1, got {T}")
