"""The curse of unrolling on quadratics (domain.md §6): how fast the Jacobian of the iterates converges.

For GD-like schedules x_{t+1} = x_t − γ_t (A x_t − b), x_0 = 0, and the ridge A(θ) = A + θI at θ = 0,
in the eigenbasis of A:

    (∂x_t − ∂x*)_i = [P_t(λ_i)/λ_i − P_t'(λ_i)] x*_i,   P_t'(λ) = −Σ_j γ_j Π_{s≠j}(1 − γ_s λ).

|γ| is used throughout, as in workers.metrics.residual_polynomial and the DUGD recursion.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray

Array = NDArray[np.float64]


def polynomials_and_derivatives(steps: ArrayLike, eigenvalues: ArrayLike) -> tuple[Array, Array]:
    """P_t(λ) and P_t'(λ) for t = 0..T at each λ; arrays of shape (T+1, len(λ)), float64.

    Product rule forward: P_{t+1} = (1 − γ_t λ) P_t, P'_{t+1} = (1 − γ_t λ) P'_t − γ_t P_t. Unrolled,
    P'_T = −Σ_j γ_j (Π_{s<j} f_s)(Π_{s>j} f_s): the prefix/suffix product sum, with no division, so
    it stays exact at the roots of P_T.
    """
    gammas = np.abs(np.asarray(steps, dtype=np.float64))
    lam = np.asarray(eigenvalues, dtype=np.float64)
    values = np.empty((gammas.size + 1, lam.size))
    derivatives = np.empty_like(values)
    values[0], derivatives[0] = 1.0, 0.0
    for t, gamma in enumerate(gammas):
        factor = 1.0 - gamma * lam
        derivatives[t + 1] = factor * derivatives[t] - gamma * values[t]
        values[t + 1] = factor * values[t]
    return values, derivatives


def residual_polynomial_derivative(steps: ArrayLike, eigenvalues: ArrayLike) -> Array:
    """P_T'(λ) at each λ."""
    return polynomials_and_derivatives(steps, eigenvalues)[1][-1]


def max_abs_derivative(steps: ArrayLike, lambda_min: float, lambda_max: float, points: int = 20001) -> float:
    """max over a dense grid on [λ_min, λ_max] (ends included) of |P_T'|.
    For Chebyshev steps this is 2T²ρ_T/(λ_max − λ_min), attained at the ends."""
    grid = np.linspace(lambda_min, lambda_max, points)
    return float(np.max(np.abs(residual_polynomial_derivative(steps, grid))))


def jacobian_errors(steps: ArrayLike, eigenvalues: ArrayLike, x_star: ArrayLike | None = None) -> Array:
    """J_t = ‖∂x_t − ∂x*‖ for t = 0..T, for the ridge derivative at θ = 0.

    `x_star` holds the coordinates of x* in the eigenbasis of A (same order as `eigenvalues`).
    When absent, J_t is the RMS over isotropic x* ~ N(0, I): sqrt(Σ_i (P_t(λ_i)/λ_i − P_t'(λ_i))²).
    J_0 = ‖A^{-1}x*‖ since ∂x_0 = 0 and ∂x* = −A^{-1}x*.
    """
    lam = np.asarray(eigenvalues, dtype=np.float64)
    if np.any(lam <= 0):
        raise ValueError("eigenvalues: expected all > 0 (A must be SPD for x* = A^{-1}b)")
    weights = np.ones_like(lam) if x_star is None else np.asarray(x_star, dtype=np.float64)
    values, derivatives = polynomials_and_derivatives(steps, lam)
    return np.linalg.norm((values / lam - derivatives) * weights, axis=1)


def curse_of_unrolling(
    steps: ArrayLike,
    eigenvalues: ArrayLike,
    *,
    lambda_min: float | None = None,
    lambda_max: float | None = None,
    x_star: ArrayLike | None = None,
    grid_points: int = 20001,
) -> dict[str, dict]:
    """Curse-of-unrolling report for one schedule, ready to merge into a Result.

    Returns {"scalars": {...}, "series": {"jacobian_error": [J_0..J_T]}} with scalars
    - max_abs_dpoly: max |P_T'| on [λ_min, λ_max] (the interval defaults to the eigenvalue range);
    - burn_in_index t_b = argmax_t J_t and jacobian_peak = J_{t_b};
    - jacobian_recovery_index: the first t ≥ max(t_b, 1) with J_t ≤ J_0, None if none within T;
    - jacobian_error_final = J_T and jacobian_error_ratio = J_T / J_0.
    """
    lam = np.asarray(eigenvalues, dtype=np.float64)
    low = float(lam.min()) if lambda_min is None else float(lambda_min)
    high = float(lam.max()) if lambda_max is None else float(lambda_max)
    errors = jacobian_errors(steps, lam, x_star)
    burn_in = int(np.argmax(errors))
    later = np.flatnonzero(errors[max(burn_in, 1):] <= errors[0])
    recovery = float(later[0] + max(burn_in, 1)) if later.size else None  # None: never recovers within T
    scalars = {
        "max_abs_dpoly": max_abs_derivative(steps, low, high, grid_points),
        "burn_in_index": float(burn_in),
        "jacobian_peak": float(errors[burn_in]),
        "jacobian_recovery_index": recovery,
        "jacobian_error_final": float(errors[-1]),
        "jacobian_error_ratio": float(errors[-1] / errors[0]),
    }
    return {"scalars": scalars, "series": {"jacobian_error": errors.tolist()}}


__all__ = [
    "curse_of_unrolling",
    "jacobian_errors",
    "max_abs_derivative",
    "polynomials_and_derivatives",
    "residual_polynomial_derivative",
]
