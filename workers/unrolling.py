"""The curse of unrolling on quadratics (domain.md §6): how fast the Jacobian of the iterates converges.

For GD-like schedules x_{t+1} = x_t − γ_t (A x_t − b), x_0 = 0, and the ridge A(θ) = A + θI at θ = 0,
in the eigenbasis of A:

    (∂x_t − ∂x*)_i = [P_t(λ_i)/λ_i − P_t'(λ_i)] x*_i,   P_t'(λ) = −Σ_j γ_j Π_{s≠j}(1 − γ_s λ).

|γ| is used throughout, as in workers.metrics.residual_polynomial and the DUGD recursion.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray

from workers.chebyshev import chebyshev_steps

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


# ---------------------------------------------------------------- the `unrolling` problem (issue 23)


def jacobian_ratio_modes(values: Array, derivatives: Array, eigenvalues: ArrayLike) -> Array:
    """Per mode and t, (∂x_t − ∂x*)_i / (∂x_0 − ∂x*)_i = P_t(λ_i) − λ_i P_t'(λ_i) (x_0 = 0, ridge at θ = 0):
    dividing [P_t/λ − P_t'] x*_i by its t = 0 value x*_i/λ_i. Rows t, columns modes."""
    return values - np.asarray(eigenvalues, dtype=np.float64) * derivatives


def minimax_jacobian_modes(eigenvalues: ArrayLike, iterations: int) -> tuple[Array, Array]:
    """The Chebyshev method (the degree-t minimax polynomial at every t, domain.md §2.2): rows t = 0..K of
    P_t(λ_i) and of the per-mode Jacobian ratio P_t − λP_t', each from the degree-t Chebyshev steps."""
    lam = np.asarray(eigenvalues, dtype=np.float64)
    values, ratios = np.ones((iterations + 1, lam.size)), np.ones((iterations + 1, lam.size))
    for t in range(1, iterations + 1):
        p, d = polynomials_and_derivatives(chebyshev_steps(float(lam.min()), float(lam.max()), t), lam)
        values[t], ratios[t] = p[-1], p[-1] - lam * d[-1]
    return values, ratios


def burn_in_report(ratios: Array, values: Array) -> dict[str, dict]:
    """From per-mode Jacobian ratios and iterate polynomials (rows t = 0..K), the curse-of-unrolling record.

    J_t/J_0 := max over x* of ‖∂x_t − ∂x*‖ / ‖∂x_0 − ∂x*‖ = max_i |P_t(λ_i) − λ_i P_t'(λ_i)| (worst case);
    `_rms` the same for isotropic ∂x_0 − ∂x* (RMS over modes). Scalars: burn_in_length, the last t with
    J_t > J_0 (0: none, the error falls at once); jacobian_peak_ratio and jacobian_peak_index (argmax);
    jacobian_rate, the measured tail rate (J_K/J_{K/2})^{1/(K − K/2)}; the final ratios."""
    worst = np.max(np.abs(ratios), axis=1)
    rms = np.sqrt(np.mean(ratios * ratios, axis=1))
    iterate = np.max(np.abs(values), axis=1)
    K = worst.size - 1
    half = K // 2
    scalars: dict[str, float] = {}
    for suffix, curve in (("", worst), ("_rms", rms)):
        above = np.flatnonzero(curve[1:] > curve[0] * (1 + 1e-12))
        scalars[f"burn_in_length{suffix}"] = float(above[-1] + 1) if above.size else 0.0
        scalars[f"jacobian_peak_ratio{suffix}"] = float(curve.max())
        scalars[f"jacobian_peak_index{suffix}"] = float(np.argmax(curve))
        scalars[f"jacobian_ratio_final{suffix}"] = float(curve[-1])
    scalars["jacobian_rate"] = float((worst[K] / worst[half]) ** (1.0 / (K - half))) if K > half else float("nan")
    scalars["iterate_ratio_final"] = float(iterate[-1])
    series = {"jacobian_ratio": worst.tolist(), "jacobian_ratio_rms": rms.tolist(), "iterate_ratio": iterate.tolist()}
    return {"scalars": scalars, "series": series}


__all__ = [
    "burn_in_report",
    "jacobian_ratio_modes",
    "minimax_jacobian_modes",
    "curse_of_unrolling",
    "jacobian_errors",
    "max_abs_derivative",
    "polynomials_and_derivatives",
    "residual_polynomial_derivative",
]
