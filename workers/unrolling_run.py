"""run_unrolling(spec) -> Result: the `unrolling` problem, the curse of unrolling as a run (Scieur et al.,
domain.md §6). The numerics are workers/unrolling.py's; this module picks the schedule and the matrix."""

from __future__ import annotations

import numpy as np

from workers.chebyshev import constant_step_rate, q_factor
from workers.chgd import chgd_problem
from workers.result import Result
from workers.specs import UnrollingSpec
from workers.unrolling import burn_in_report, jacobian_ratio_modes, minimax_jacobian_modes, polynomials_and_derivatives


def gd_step(step: float | str, lambda_min: float, lambda_max: float) -> float:
    """GD's constant step h for an UnrollingSpec.step: a number is h·L; the names are 1/L, 1.5/L, 1.9/L, 2/(μ+L)."""
    named = {"1/L": 1.0 / lambda_max, "1.5/L": 1.5 / lambda_max, "1.9/L": 1.9 / lambda_max,
             "2/(mu+L)": 2.0 / (lambda_min + lambda_max)}
    return named[step] if isinstance(step, str) else float(step) / lambda_max


def run_unrolling(spec: UnrollingSpec) -> Result:
    """J_t/J_0 for t = 0..iterations of GD with the spec's step (or the Chebyshev method) on the spec's
    spectrum, with its burn-in, peak and asymptotic rate (domain.md §6)."""
    problem = chgd_problem(spec)  # CHGD's matrix rule: without m and kappa, m = 3n/2
    lam, low, high = problem.eigenvalues, problem.lambda_min, problem.lambda_max
    scalars: dict[str, float] = {"lambda_min": low, "lambda_max": high, "kappa_realized": problem.kappa_realized}
    if spec.step == "chebyshev":
        values, ratios = minimax_jacobian_modes(lam, spec.iterations)
        # the minimax polynomial's worst case 1/C_t decays like 2q^t: its per-step rate tends to q
        scalars["rate"] = float(np.max(np.abs(values[-1])) ** (1.0 / spec.iterations))
    else:
        h = gd_step(spec.step, low, high)
        values, derivatives = polynomials_and_derivatives(np.full(spec.iterations, h), lam)
        ratios = jacobian_ratio_modes(values, derivatives, lam)
        scalars.update(step_size=h, step_times_lambda_max=h * high, rate=float(np.max(np.abs(1.0 - h * lam))))
    report = burn_in_report(ratios, values)
    scalars.update(report["scalars"])
    scalars.update(q=q_factor(problem.kappa_realized), rate_constant=constant_step_rate(problem.kappa_realized))
    return Result(params={}, scalars=scalars, series=report["series"], info=problem.facts())


__all__ = ["gd_step", "run_unrolling"]
