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


# --- Error curves (domain.md §8 E): float64, analytic, for any schedule ----------------------------


def residual_polynomials(steps: ArrayLike, eigenvalues: ArrayLike, iterations: int | None = None) -> Array:
    """P_t(λ_i) for t = 0..K (rows) of GD with steps γ_{t mod T} (K = iterations, default T).

    A cumulative product over layers, so every prefix polynomial comes from one pass.
    """
    gammas = np.abs(np.asarray(steps, dtype=np.float64))
    lam = np.asarray(eigenvalues, dtype=np.float64)
    count = gammas.shape[0] if iterations is None else int(iterations)
    periodic = gammas[np.arange(count) % gammas.shape[0]]
    factors = 1.0 - np.multiply.outer(periodic, lam)  # (K, n)
    return np.vstack([np.ones((1, lam.shape[0])), np.cumprod(factors, axis=0)])


def error_curve(polynomials: ArrayLike, weights: ArrayLike) -> Array:
    """Σ_i w_i P_t(λ_i)² for every row t: the expected squared error when E[e_0,i²] = w_i
    in the eigenbasis. w_i = 1/n gives the DUGD MSE; sampled weights give an empirical curve."""
    values = np.asarray(polynomials, dtype=np.float64)
    return (values * values) @ np.asarray(weights, dtype=np.float64)


def mse_curve(steps: ArrayLike, eigenvalues: ArrayLike, periods: int = 1) -> Array:
    """(1/n) Σ_i P_t(λ_i)² for t = 0..periods·T: E‖x_t − x‖²/n from x_0 = 0, x ~ N(0, I)."""
    lam = np.asarray(eigenvalues, dtype=np.float64)
    count = periods * np.asarray(steps).shape[0]
    return error_curve(residual_polynomials(steps, lam, count), np.full(lam.shape[0], 1.0 / lam.shape[0]))


def momentum_polynomials(
    eigenvalues: ArrayLike, steps: ArrayLike, momenta: ArrayLike, previous_factor: float = 1.0
) -> Array:
    """P_t(λ_i), t = 0..K, of e_{t+1} = e_t − a_t λ e_t + b_t (e_t − e_{t−1}) with e_{−1} = c·e_0.

    Heavy ball: a_t = step, b_t = β. Chebyshev semi-iterative: a_t = ω_t η, b_t = ω_t − 1.
    c = previous_factor: 1 when x_{−1} = x_0, 0 when x_{−1} = x* (CHGD_MSE.ipynb starts s_{−1} = 0 = x*).
    """
    lam = np.asarray(eigenvalues, dtype=np.float64)
    a = np.asarray(steps, dtype=np.float64)
    b = np.asarray(momenta, dtype=np.float64)
    rows = [np.ones_like(lam)]
    previous = np.full_like(lam, previous_factor)
    for a_t, b_t in zip(a, b):
        current = rows[-1]
        rows.append(current - a_t * lam * current + b_t * (current - previous))
        previous = current
    return np.vstack(rows)


def heavy_ball_polynomials(
    eigenvalues: ArrayLike, step: float, momentum: float, iterations: int, previous_factor: float = 1.0
) -> Array:
    """Polyak heavy ball with constant (step, momentum), as momentum_polynomials."""
    return momentum_polynomials(
        eigenvalues, np.full(iterations, step), np.full(iterations, momentum), previous_factor
    )


def semi_iterative_polynomials(eigenvalues: ArrayLike, step: float, weights: ArrayLike) -> Array:
    """P_t(λ_i), t = 0..K, of the Chebyshev semi-iterative method with gradient step η and weights ω_t
    (workers.chebyshev.semi_iterative_weights): a_t = ω_t η, b_t = ω_t − 1. ω_0 = 1, so x_{−1} is unused."""
    omegas = np.asarray(weights, dtype=np.float64)
    return momentum_polynomials(eigenvalues, omegas * step, omegas - 1.0, previous_factor=0.0)


def semi_iterative_notebook_polynomials(eigenvalues: ArrayLike, step: float, weights: ArrayLike) -> Array:
    """What CHGD_MSE.ipynb plots for its semi-iterative curve at t: t semi-iterative steps, then t more
    plain GD steps of size ω_t η (the weight its loop holds after t updates), 2t gradient steps in all.

    Row t = P_t^{SI}(λ) (1 − ω_t η λ)^t; `weights` needs K + 1 entries for rows t = 0..K.
    """
    omegas = np.asarray(weights, dtype=np.float64)
    lam = np.asarray(eigenvalues, dtype=np.float64)
    count = omegas.shape[0] - 1
    semi = semi_iterative_polynomials(lam, step, omegas[:count])
    t = np.arange(count + 1, dtype=np.float64)[:, None]
    return semi * (1.0 - np.multiply.outer(omegas * step, lam)) ** t


# --- Per-layer descent (domain.md §8 F) --------------------------------------------------------------


def descent_ratios(curve: ArrayLike) -> Array:
    """r_t = √(MSE_t / MSE_{t−1}) for t = 1..T."""
    values = np.asarray(curve, dtype=np.float64)
    return np.sqrt(values[1:] / values[:-1])


def ascending_layers(curve: ArrayLike, threshold: float = 1.0) -> int:
    """Number of layers with r_t > threshold (1 − ε for a descent margin ε)."""
    return int(np.sum(descent_ratios(curve) > threshold))


def peak_intermediate_mse(curve: ArrayLike) -> float | None:
    """max over the intermediate layers t = 1..T−1 of MSE_t (None when T = 1: there is no such layer)."""
    values = np.asarray(curve, dtype=np.float64)
    return float(np.max(values[1:-1])) if values.shape[0] > 2 else None


def contraction(curve: ArrayLike) -> float:
    """Realised per-step contraction (MSE_T / MSE_0)^(1/(2T)) (domain.md §8 G)."""
    values = np.asarray(curve, dtype=np.float64)
    return float((values[-1] / values[0]) ** (1.0 / (2 * (values.shape[0] - 1))))


# --- Ordering structure (domain.md §4.2 item 4, 5) ---------------------------------------------------


def largest_step_position(steps: ArrayLike) -> int:
    """Layer index (0-based) of the largest |γ_t|."""
    return int(np.argmax(np.abs(np.asarray(steps, dtype=np.float64))))


def zigzag_changes(steps: ArrayLike) -> int:
    """Number of sign changes of Δγ_t: 0 for a monotone schedule, T−2 for a perfect zig-zag."""
    signs = np.sign(np.diff(np.abs(np.asarray(steps, dtype=np.float64))))
    signs = signs[signs != 0]
    return int(np.sum(signs[1:] != signs[:-1]))


def kendall_tau_increasing(steps: ArrayLike) -> float | None:
    """Kendall τ of |γ_t| against layer order: +1 increasing (natural Chebyshev order), −1 decreasing.
    None when undefined (one layer, or all steps equal), not 0, which would read as "no order"."""
    from scipy.stats import kendalltau

    gammas = np.abs(np.asarray(steps, dtype=np.float64))
    if gammas.shape[0] < 2:
        return None
    tau = kendalltau(np.arange(gammas.shape[0]), gammas).statistic
    return float(tau) if np.isfinite(tau) else None


def steps_above(steps: ArrayLike, limit: float) -> int:
    """Count of |γ_t| > limit; with limit 2/λ_max these steps amplify the top modes locally."""
    return int(np.sum(np.abs(np.asarray(steps, dtype=np.float64)) > limit))


# --- Training trajectory and schedule distances (issue 23) -----------------------------------------


def rho_by_generation(gamma_by_generation: ArrayLike, eigenvalues: ArrayLike, depths: ArrayLike) -> Array:
    """ρ(W) of the trained prefix after each generation: max_i |P_d(λ_i)| with γ_0..γ_{d−1} of that
    generation's row and d its depth (incremental training: d = g; full: d = T). Float64, exact spectrum."""
    rows = np.asarray(gamma_by_generation, dtype=np.float64)
    return np.array([rho(row[: int(depth)], eigenvalues) for row, depth in zip(rows, depths)])


def layer_relative_differences(steps: ArrayLike, reference_steps: ArrayLike) -> Array:
    """|γ_t − γ_ref,t| / γ_ref,t per layer, in layer order (not sorted)."""
    gammas = np.abs(np.asarray(steps, dtype=np.float64))
    reference = np.abs(np.asarray(reference_steps, dtype=np.float64))
    _same_length(gammas, reference)
    return np.abs(gammas - reference) / reference


def layer_distance(steps: ArrayLike, reference_steps: ArrayLike) -> float:
    """‖γ − γ_ref‖₂ / ‖γ_ref‖₂ in layer order: step_error without sorting."""
    gammas = np.abs(np.asarray(steps, dtype=np.float64))
    reference = np.abs(np.asarray(reference_steps, dtype=np.float64))
    _same_length(gammas, reference)
    return float(np.linalg.norm(gammas - reference) / np.linalg.norm(reference))
