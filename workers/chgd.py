"""run_chgd(spec) -> Result: Chebyshev-step GD against its baselines, no training (domain.md §2.6).

CHGD_MSE.ipynb protocol: x_0 ~ N(1, 1) per coordinate, x* = 0, metric E‖x_t‖² (not divided by n).
With A = Q Λ Qᵀ, x_t = Q P_t(Λ) Qᵀ x_0, so E‖x_t‖² = Σ_i P_t(λ_i)² E[(Qᵀx_0)_i²], and
(Qᵀx_0)_i = (Qᵀ1)_i + (Qᵀξ)_i with ξ ~ N(0, I) gives E[(Qᵀx_0)_i²] = (Qᵀ1)_i² + 1.
Curves are float64 and analytic; the notebook averaged 10,000 samples instead.
"""

from __future__ import annotations

import numpy as np

from workers import chebyshev as cheb
from workers import metrics
from workers.result import Result
from workers.specs import ChgdSpec
from workers.spectra import Problem, build_problem
from workers.unrolling import curse_of_unrolling


def chgd_problem(spec: ChgdSpec) -> Problem:
    """build_problem, with the notebook's aspect m = 3n/2 when neither m nor kappa is given."""
    if spec.spectrum == "gaussian" and spec.m is None and spec.kappa is None:
        spec = spec.model_copy(update={"m": (3 * spec.n + 1) // 2})
    return build_problem(spec)


def initial_error_weights(problem: Problem) -> np.ndarray:
    """E[(Qᵀx_0)_i²] = (Qᵀ1)_i² + 1 for x_0 ~ N(1, I), in the order of problem.eigenvalues."""
    projected_ones = problem.eigenvectors().T @ np.ones(problem.n)
    return projected_ones**2 + 1.0


def chgd_curves(problem: Problem, T: int, iterations: int) -> dict[str, np.ndarray]:
    """E‖x_t‖², t = 0..iterations, for periodic Chebyshev, optimal constant GD, heavy ball, semi-iterative."""
    lam = problem.eigenvalues
    low, high = problem.reference_edges
    weights = initial_error_weights(problem)
    heavy_step, momentum = cheb.heavy_ball_parameters(low, high)
    omegas = cheb.semi_iterative_weights(high / low, iterations)
    polynomials = {
        "chebyshev": metrics.residual_polynomials(cheb.chebyshev_steps(low, high, T), lam, iterations),
        "gd": metrics.residual_polynomials([cheb.optimal_constant_step(low, high)], lam, iterations),
        # the notebook starts s_{−1} = 0 = x*, so e_{−1} = 0
        "heavy_ball": metrics.heavy_ball_polynomials(lam, heavy_step, momentum, iterations, previous_factor=0.0),
        # x_{k+1} = x_k − ω_k η ∇f + (ω_k − 1)(x_k − x_{k−1}), η = 1/λ_max; ω_0 = 1 makes e_{−1} irrelevant
        "semi_iterative": metrics.momentum_polynomials(lam, omegas / high, omegas - 1.0, previous_factor=0.0),
    }
    return {name: metrics.error_curve(values, weights) for name, values in polynomials.items()}


def run_chgd(spec: ChgdSpec) -> Result:
    problem = chgd_problem(spec)
    low, high = problem.reference_edges
    kappa = high / low
    curves = chgd_curves(problem, spec.T, spec.iterations)
    scalars: dict[str, float] = {
        "lambda_min": problem.lambda_min,
        "lambda_max": problem.lambda_max,
        "kappa_realized": problem.kappa_realized,
        "kappa_mp": problem.kappa_mp,
        "mp_lower": problem.mp_lower,
        "mp_upper": problem.mp_upper,
        "chebyshev_bound": cheb.chebyshev_bound(kappa, spec.T),
        "rate_bound": cheb.chebyshev_rate(kappa, spec.T),
        "q": cheb.q_factor(kappa),
        "rate_constant": cheb.constant_step_rate(kappa),
    }
    for name, curve in curves.items():
        scalars[f"error_{name}"] = float(curve[-1])
        scalars[f"rate_{name}"] = metrics.contraction(curve)  # (E‖x_K‖²/E‖x_0‖²)^(1/(2K))
    scalars["rho_chebyshev"] = metrics.rho(cheb.chebyshev_steps(low, high, spec.T), problem.eigenvalues)
    series = {f"error_curve_{name}": [float(v) for v in curve] for name, curve in curves.items()}
    series["chebyshev_steps"] = cheb.chebyshev_steps(low, high, spec.T).tolist()
    unrolling = curse_of_unrolling(
        series["chebyshev_steps"], problem.eigenvalues, lambda_min=problem.lambda_min, lambda_max=problem.lambda_max
    )
    scalars.update(unrolling["scalars"])
    series.update(unrolling["series"])
    return Result(params={}, scalars=scalars, series=series, info=problem.facts())
