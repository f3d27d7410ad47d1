"""Every metric, defined once (domain.md §4.2, §8). Inputs are float64 numpy arrays.

Runs, results and plots all call these functions; nothing else re-derives a metric.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray

Array = NDArray[np.float64]


def residual_polynomial(steps: ArrayLike, eigenvalues: ArrayLike) -> Array:
    """P_T(λ) = Π_t (1 − γ_t λ) at each λ (float64). |γ| is used, as in the recursion."""
    gammas = np.abs(np.asarray(steps, dtype=np.float64))
    lam = np.asarray(eigenvalues, dtype=np.float64)
    return np.prod(1.0 - np.multiply.outer(lam, gammas), axis=-1)


def root_error(steps: ArrayLike, reference_nodes: ArrayLike) -> float:
    """Primary tracking metric: ‖sort(1/γ) − sort(nodes)‖₂ / ‖nodes‖₂ (root space)."""
    roots = np.sort(1.0 / np.abs(np.asarray(steps, dtype=np.float64)))
    nodes = np.sort(np.asarray(reference_nodes, dtype=np.float64))
    _same_length(roots, nodes)
    return float(np.linalg.norm(roots - nodes) / np.linalg.norm(nodes))


def step_error(steps: ArrayLike, reference_steps: ArrayLike) -> float:
    """The papers' sorted overlay as a number: ‖sort(γ) − sort(γ_ref)‖₂ / ‖γ_ref‖₂."""
    gammas = np.sort(np.abs(np.asarray(steps, dtype=np.float64)))
    reference = np.sort(np.asarray(reference_steps, dtype=np.float64))
    _same_length(gammas, reference)
    return float(np.linalg.norm(gammas - reference) / np.linalg.norm(reference))


def log_ratios(steps: ArrayLike, reference_steps: ArrayLike) -> Array:
    """Per-rank log(γ_(k) / γ_ref_(k)), both sorted descending."""
    gammas = np.sort(np.abs(np.asarray(steps, dtype=np.float64)))[::-1]
    reference = np.sort(np.asarray(reference_steps, dtype=np.float64))[::-1]
    _same_length(gammas, reference)
    return np.log(gammas / reference)


def max_abs_log_ratio(steps: ArrayLike, reference_steps: ArrayLike) -> float:
    """max_k |log(γ_(k) / γ_ref_(k))| over ranks."""
    return float(np.max(np.abs(log_ratios(steps, reference_steps))))


def rho(steps: ArrayLike, eigenvalues: ArrayLike) -> float:
    """Spectral radius of W_T = P_T(A): max_i |P_T(λ_i)| over the exact eigenvalues."""
    return float(np.max(np.abs(residual_polynomial(steps, eigenvalues))))


def sup_on_interval(steps: ArrayLike, lambda_min: float, lambda_max: float, points: int = 20001) -> float:
    """max over a dense grid on [λ_min, λ_max] of |P_T(λ)|."""
    grid = np.linspace(lambda_min, lambda_max, points)
    return float(np.max(np.abs(residual_polynomial(steps, grid))))


def rate(spectral_radius: float, T: int) -> float:
    """Per-step rate ρ(W_T)^(1/T) of the T-periodic schedule."""
    return float(spectral_radius ** (1.0 / T))


def _same_length(a: Array, b: Array) -> None:
    if a.shape != b.shape:
        raise ValueError(f"schedules differ in length: {a.shape[0]} vs {b.shape[0]}")
