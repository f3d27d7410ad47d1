"""run_chgd(spec) -> Result: Chebyshev-step GD against its baselines, no training (domain.md §2.6).

CHGD_MSE.ipynb protocol: x_0 ~ N(1, 1) per coordinate, x* = 0, metric E‖x_t‖² (not divided by n).
Every curve is Σ_i P_t(λ_i)² E[e_{0,i}²] in the eigenbasis of A = Q Λ Qᵀ, exact and float64 (the
notebook averaged 10,000 unseeded samples). Where x_0 lives (`x0_basis`):
- `eigen` (the notebook's): it iterates on A = diag(eig), so x_0 ~ N(1, I) is drawn in eigen
  coordinates and every mode has E[e_{0,i}²] = 1 + 1 = 2;
- `original`: x_0 ~ N(1, I) in the coordinates of H̃, so (Qᵀx_0)_i has mean (Qᵀ1)_i and
  E[e_{0,i}²] = (Qᵀ1)_i² + 1.

Curves (each polynomial recurrence lives in workers/metrics.py, each step rule in workers/chebyshev.py):
chebyshev (T-periodic), gd (2/(λ_min+λ_max)), heavy_ball (textbook x_{−1} = x_0), heavy_ball_notebook
(x_{−1} = 0 = x*, the notebook's start), semi_iterative (optimal centred Chebyshev semi-iteration),
semi_iterative_uncentred (the notebook's recurrence, η = 1/λ_max, ρ = 1 − 1/κ, t steps) and
semi_iterative_notebook (that recurrence plus its t extra GD steps: the value the notebook plots at t).
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

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


def initial_error_weights(problem: Problem, x0_basis: str = "original") -> np.ndarray:
    """E[(Qᵀx_0)_i²] for x_0 ~ N(1, I), in the order of problem.eigenvalues:
    2 in every mode when x_0 is drawn in eigen coordinates, (Qᵀ1)_i² + 1 when in the original ones."""
    if x0_basis == "eigen":
        return np.full(problem.n, 2.0)
    projected_ones = problem.eigenvectors().T @ np.ones(problem.n)
    return projected_ones**2 + 1.0


def chgd_polynomials(problem: Problem, T: int, iterations: int) -> dict[str, np.ndarray]:
    """P_t(λ_i), t = 0..iterations, of every method compared (rows t, columns the eigenvalues)."""
    lam = problem.eigenvalues
    low, high = problem.reference_edges
    heavy_step, momentum = cheb.heavy_ball_parameters(low, high)
    centred_step, centred_rho = cheb.semi_iterative_parameters(low, high, centred=True)
    notebook_step, notebook_rho = cheb.semi_iterative_parameters(low, high, centred=False)
    notebook_weights = cheb.semi_iterative_weights(notebook_rho, iterations + 1)
    return {
        "chebyshev": metrics.residual_polynomials(cheb.chebyshev_steps(low, high, T), lam, iterations),
        "gd": metrics.residual_polynomials([cheb.optimal_constant_step(low, high)], lam, iterations),
        "heavy_ball": metrics.heavy_ball_polynomials(lam, heavy_step, momentum, iterations, previous_factor=1.0),
        "heavy_ball_notebook": metrics.heavy_ball_polynomials(
            lam, heavy_step, momentum, iterations, previous_factor=0.0),
        "semi_iterative": metrics.semi_iterative_polynomials(
            lam, centred_step, cheb.semi_iterative_weights(centred_rho, iterations)),
        "semi_iterative_uncentred": metrics.semi_iterative_polynomials(
            lam, notebook_step, notebook_weights[:iterations]),
        "semi_iterative_notebook": metrics.semi_iterative_notebook_polynomials(lam, notebook_step, notebook_weights),
    }


def chgd_curves(problem: Problem, T: int, iterations: int, x0_basis: str = "eigen") -> dict[str, np.ndarray]:
    """E‖x_t‖², t = 0..iterations, for every method of chgd_polynomials."""
    weights = initial_error_weights(problem, x0_basis)
    return {name: metrics.error_curve(values, weights)
            for name, values in chgd_polynomials(problem, T, iterations).items()}


def run_chgd(spec: ChgdSpec) -> Result:
    problem = chgd_problem(spec)
    low, high = problem.reference_edges
    kappa = high / low
    curves = chgd_curves(problem, spec.T, spec.iterations, spec.x0_basis)
    scalars: dict[str, float | None] = {
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
    info = {**problem.facts(), "x0_basis": spec.x0_basis}
    return Result(params={}, scalars=scalars, series=series, info=info)


def run_chgd_many(specs: Sequence[ChgdSpec], hooks: Sequence[Any]) -> list[Result]:
    """run_chgd for each point (workers.run.run_many's batched handler): points that differ only in
    seed have the same record (nothing is drawn), so each distinct point is computed once. A point
    that raises fails alone."""
    done: dict[tuple, Result | Exception] = {}
    results = []
    for spec in specs:
        key = unit_keys(spec)
        if key not in done:
            try:
                done[key] = run_chgd(spec)
            except Exception as error:  # noqa: BLE001 - recorded, not swallowed
                done[key] = error
        outcome = done[key]
        results.append(copy.deepcopy(outcome) if isinstance(outcome, Result) else
                       Result(params={}, status="FAILED", reason=f"{type(outcome).__name__}: {outcome}"))
    return results


def identical_across_seeds(spec: ChgdSpec) -> bool:
    """Always: nothing in a CHGD run is drawn (every curve is an exact expectation)."""
    return True


def unit_keys(spec: ChgdSpec) -> tuple[tuple, tuple]:
    """(share_key, family_key) for workers.units.plan_units: one instance shares its spectrum; points
    differing only in seed are one family (the same record)."""
    params = spec.model_dump(mode="json")
    instance = tuple(params[k] for k in ("n", "m", "kappa", "spectrum", "normalization", "matrix_seed", "edges"))
    return ("chgd", *instance), tuple(sorted((k, v) for k, v in params.items() if k != "seed"))
