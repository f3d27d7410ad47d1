"""The exact expected loss of a step schedule, its gradient, and the MSE-optimal schedule (domain.md §2.5).

L(γ) = Σ_i w_i P(λ_i)², P(λ) = Π_t (1 − |γ_t| λ); w_i = 1/n is the DUGD expected loss (domain.md §1.3).
The optimum is found by L-BFGS over log-roots u_t = log(1/γ_t), started at the Chebyshev nodes.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.optimize import minimize

from workers.chebyshev import chebyshev_nodes

Array = NDArray[np.float64]


def loss_and_gradient(steps: Array, eigenvalues: Array, weights: Array) -> tuple[float, Array]:
    """L and ∂L/∂γ_t (through |γ_t|, as the recursion uses it) in float64.

    ∂L/∂|γ_t| = −Σ_i 2 w_i λ_i P_i Π_{s≠t}(1 − |γ_s|λ_i). The leave-one-out products come from
    P_i / (1 − |γ_t|λ_i), exact unless a root sits exactly on an eigenvalue; then prefix/suffix
    products are used instead. This is the hot loop of `expected` training: keep it lean.
    """
    factors = 1.0 - eigenvalues[:, None] * np.abs(steps)
    poly = factors.prod(axis=1)
    weighted = 2.0 * weights * eigenvalues * poly
    if factors.all():
        grad = (weighted * poly) @ np.reciprocal(factors, out=factors)
    else:  # a root sits exactly on an eigenvalue
        grad = weighted @ leave_one_out(factors)
    grad *= -np.sign(steps)
    return float(weights @ (poly * poly)), grad


def log_loss_and_gradient(log_roots: Array, eigenvalues: Array, log_weights: Array) -> tuple[float, Array]:
    """log L and ∂ log L/∂u_t for γ_t = e^{−u_t}, computed in log space so deep schedules
    (L ~ 1e-30) and wild line-search points neither underflow nor overflow.

    log L = logsumexp_i(log w_i + 2 Σ_t log|1 − λ_i γ_t|); ∂/∂u_t = Σ_i π_i 2λ_iγ_t / (1 − λ_iγ_t),
    π = softmax of the same terms.
    """
    steps = np.exp(-np.clip(log_roots, -700.0, 700.0))
    factors = 1.0 - eigenvalues[:, None] * steps
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        terms = log_weights + np.log(np.square(factors)).sum(axis=1)
        top = terms.max()
        share = np.exp(terms - top)
        total = share.sum()
        share *= 2.0 * eigenvalues / total
        grad = (share @ np.reciprocal(factors)) * steps
    return float(top + np.log(total)), np.nan_to_num(grad, nan=0.0, posinf=0.0, neginf=0.0)


def leave_one_out(factors: Array) -> Array:
    """Π_{s≠t} factors[:, s] without division (prefix × suffix cumulative products)."""
    ones = np.ones((factors.shape[0], 1))
    prefix = np.cumprod(np.hstack([ones, factors[:, :-1]]), axis=1)
    suffix = np.cumprod(np.hstack([ones, factors[:, :0:-1]]), axis=1)[:, ::-1]
    return prefix * suffix


def optimal_steps(
    eigenvalues: ArrayLike,
    T: int,
    weights: ArrayLike | None = None,
    edges: tuple[float, float] | None = None,
    max_iterations: int = 300,
) -> Array:
    """MSE-optimal steps for this spectrum (increasing order): argmin Σ_i w_i P_T(λ_i)².

    Minimises log L over log-roots with L-BFGS-B (scipy), from the Chebyshev nodes of `edges`
    (default: the exact extreme eigenvalues). log L keeps the objective O(1) at any depth.
    """
    lam = np.asarray(eigenvalues, dtype=np.float64)
    w = np.full(lam.shape[0], 1.0 / lam.shape[0]) if weights is None else np.asarray(weights, dtype=np.float64)
    lower, upper = edges if edges is not None else (float(lam.min()), float(lam.max()))

    log_weights = np.log(w)
    start = np.log(chebyshev_nodes(lower, upper, T))
    found = minimize(log_loss_and_gradient, start, args=(lam, log_weights), jac=True, method="L-BFGS-B",
                     options={"maxiter": max_iterations, "ftol": 1e-15, "gtol": 1e-10})
    return np.sort(np.exp(-found.x))
