"""Chebyshev step sizes, the minimax bound and the baselines' step rules (domain.md §2).

Every formula here is written once; runs, metrics and plots call these functions.
All functions work in float64 numpy.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray

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


def semi_iterative_weights(rho: float, iterations: int) -> Array:
    """ω_0..ω_{K-1} of the Chebyshev semi-iterative method (Golub–Varga) for an iteration matrix
    with spectrum in [−ρ, ρ]: ω_0 = 1, ω_1 = 2/(2 − ρ²), ω_{k+1} = 1/(1 − ρ² ω_k / 4).

    The update is x_{k+1} = x_k − ω_k η∇f(x_k) + (ω_k − 1)(x_k − x_{k−1}); ω_0 = 1 makes x_{−1} irrelevant.
    semi_iterative_parameters gives (η, ρ) for the optimal (centred) and the notebook's choices.
    """
    if not 0.0 <= rho < 1.0:
        raise ValueError(f"rho: expected 0 <= rho < 1, got {rho}")
    weights = np.empty(iterations, dtype=np.float64)
    omega = 1.0
    for k in range(iterations):
        if k == 1:
            omega = 2.0 / (2.0 - rho**2)
        elif k > 1:
            omega = 1.0 / (1.0 - rho**2 * omega / 4.0)
        weights[k] = omega
    return weights


def semi_iterative_parameters(lambda_min: float, lambda_max: float, centred: bool = True) -> tuple[float, float]:
    """(η, ρ) of the Chebyshev semi-iterative method on the spectrum [λ_min, λ_max].

    centred (optimal): η = 2/(λ_min + λ_max), so I − ηA has spectrum [−ρ, ρ] with ρ = (κ−1)/(κ+1);
    its error polynomial is then the minimax C_t((λ₊ − λ)/λ₋) / C_t(λ₊/λ₋) at every t.
    centred=False is CHGD_MSE.ipynb's choice: η = 1/λ_max, ρ = 1 − 1/κ. I − ηA then has spectrum
    [0, ρ], not [−ρ, ρ], so the recurrence is tuned to an interval twice too wide and converges slower.
    """
    _check_interval(lambda_min, lambda_max, 1)
    kappa = lambda_max / lambda_min
    if centred:
        return optimal_constant_step(lambda_min, lambda_max), constant_step_rate(kappa)
    return 1.0 / lambda_max, 1.0 - 1.0 / kappa


def chebyshev_first_kind(degree: int, x: ArrayLike) -> Array:
    """C_t(x): cos(t arccos x) for |x| ≤ 1, sign(x)^t cosh(t arccosh |x|) outside."""
    values = np.asarray(x, dtype=np.float64)
    inside = np.abs(values) <= 1.0
    out = np.empty_like(values)
    out[inside] = np.cos(degree * np.arccos(values[inside]))
    outside = values[~inside]
    out[~inside] = np.sign(outside) ** degree * np.cosh(degree * np.arccosh(np.abs(outside)))
    return out


def minimax_residual(eigenvalues: ArrayLike, lambda_min: float, lambda_max: float, degree: int) -> Array:
    """P_t^Ch(λ) = C_t((λ₊ − λ)/λ₋) / C_t(λ₊/λ₋): the degree-t polynomial with P(0) = 1 of least
    maximum on [λ_min, λ_max] (domain.md §2.2), the closed form of the optimal semi-iterative method."""
    _check_interval(lambda_min, lambda_max, max(degree, 1))
    plus, minus = (lambda_max + lambda_min) / 2, (lambda_max - lambda_min) / 2
    lam = np.asarray(eigenvalues, dtype=np.float64)
    return chebyshev_first_kind(degree, (plus - lam) / minus) / chebyshev_first_kind(degree, np.array(plus / minus))


def _check_interval(lambda_min: float, lambda_max: float, T: int) -> None:
    if not (0 < lambda_min < lambda_max) or not np.isfinite(lambda_max):
        raise ValueError(f"need 0 < lambda_min < lambda_max, got ({lambda_min}, {lambda_max})")
    if T < 1:
        raise ValueError(f"T must be >= 1, got {T}")
