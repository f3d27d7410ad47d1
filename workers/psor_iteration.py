"""The PSOR iteration x_{k+1} = x_k + ω_k (f(x_k) − x_k) and its ω schedules (domain.md §5).

Periodic schedules (plain, constant, Chebyshev, learned) run through `relax`. On a nonlinear map the
Chebyshev factors hold only where the linearisation does, so the `chebyshev` scheme is gated by the
map's active set (`gated_chebyshev`); `chebyshev_local` is the periodic schedule from k = 0.
Every error is evaluated in float64.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from numpy.typing import NDArray

from workers import chebyshev
from workers.fixed_point import FixedPointProblem

Array = NDArray[np.float64]

# Errors below ROUNDOFF_RELATIVE · (e_0 + ‖x*‖) are at float64 round-off: iterates of size ~‖x*‖
# (and x* itself, for ISTA) carry absolute errors of about machine epsilon times that.
ROUNDOFF_RELATIVE = 1e-14
# The reduction e_k / e_0 whose first iteration is reported (iterations_to_1e-8_<scheme>).
REDUCTION = 1e-8


def roundoff_floor(curve: Array, x_star: Array) -> float:
    """The error level treated as float64 round-off for an error curve starting at curve[0]."""
    return float(ROUNDOFF_RELATIVE * (curve[0] + np.linalg.norm(x_star)))


def scheme_omegas(scheme: str, lambda_min: float, lambda_max: float, T: int) -> Array:
    """One period of relaxation factors for a fixed scheme (the learned one is trained instead).
    chebyshev and chebyshev_local share their factors; they differ in when the factors are used."""
    if scheme == "plain":
        return np.ones(T)
    if scheme == "constant":
        return np.full(T, chebyshev.optimal_constant_step(lambda_min, lambda_max))
    if scheme in ("chebyshev", "chebyshev_local"):
        return chebyshev.chebyshev_steps(lambda_min, lambda_max, T)
    raise ValueError(f"scheme: got {scheme!r}, expected one of plain, constant, chebyshev, chebyshev_local")


def relax(problem: FixedPointProblem, omegas: torch.Tensor, x0: torch.Tensor, iterations: int) -> torch.Tensor:
    """Run PSOR from x0 (batch, n) with ω_{k mod T}; returns ‖x_k − x*‖ per sample, shape (iterations+1, batch).

    Differentiable in `omegas` (|ω| is used, as DUGD uses |γ|, so metrics.rho describes the same map).
    """
    x_star = torch.as_tensor(problem.x_star, dtype=x0.dtype)
    magnitudes = torch.abs(omegas)
    x = x0
    errors = [torch.linalg.vector_norm(x - x_star, dim=1)]
    for k in range(iterations):
        x = x + magnitudes[k % magnitudes.shape[0]] * (problem.apply(x) - x)
        errors.append(torch.linalg.vector_norm(x - x_star, dim=1))
    return torch.stack(errors)


def error_curve(problem: FixedPointProblem, omegas: Array, x0: Array, iterations: int) -> Array:
    """Mean over samples of ‖x_k − x*‖, k = 0..iterations, float64."""
    with torch.no_grad():
        errors = relax(problem, torch.as_tensor(omegas, dtype=torch.float64), torch.as_tensor(x0), iterations)
    return errors.mean(dim=1).numpy()


@dataclass(frozen=True)
class GatedRun:
    """What gated Chebyshev-PSOR did: the mean error curve, the share of samples stepping with a
    Chebyshev factor at each iteration, and the rejected periods per sample (mean)."""

    curve: Array
    chebyshev_share: Array
    restarts: float


def gated_chebyshev(problem: FixedPointProblem, omegas: Array, safe_omega: float, x0: Array,
                    iterations: int) -> GatedRun:
    """Chebyshev-PSOR that uses its factors only where the linearisation at x* can hold.

    Per sample: step with `safe_omega` (the constant SOR factor) until the active set of f(x_k) has
    not changed for `window` iterations (first T), then run whole Chebyshev periods from a checkpoint.
    A period is rejected, and x restored to its checkpoint, when the active set changes inside it or
    the residual ‖f(x) − x‖ at its end exceeds the one at its start (above round-off); the sample then
    goes back to the safe factor with the window doubled. So the safe phase bounds what the Chebyshev phase can spoil.
    On an affine map (no active set) this is the periodic Chebyshev schedule from k = 0.
    """
    T = len(omegas)
    if problem.active_set is None:
        curve = error_curve(problem, omegas, x0, iterations)
        return GatedRun(curve, np.ones(iterations), 0.0)
    factors = torch.as_tensor(np.abs(omegas), dtype=torch.float64)
    x_star = torch.as_tensor(problem.x_star, dtype=torch.float64)
    x = torch.as_tensor(x0, dtype=torch.float64)
    batch = x.shape[0]
    phase = torch.full((batch,), -1, dtype=torch.long)  # index of the next Chebyshev factor; -1: safe
    taken = torch.zeros(batch, dtype=torch.long)  # Chebyshev steps since the checkpoint
    stable = torch.zeros(batch, dtype=torch.long)  # iterations without an active-set change
    window = torch.full((batch,), T, dtype=torch.long)
    restarts = torch.zeros(batch, dtype=torch.long)
    errors, share = [torch.linalg.vector_norm(x - x_star, dim=1)], []
    with torch.no_grad():
        fx = problem.apply(x)
        active = problem.active_set(fx)
        residual = torch.linalg.vector_norm(fx - x, dim=1)
        saved = (x, fx, active, residual)  # the checkpoint: where a rejected period restarts
        previous = active
        for _ in range(iterations):
            on = phase >= 0
            changed = (active != previous).any(dim=1)
            # Residual growth at float64 round-off is noise, not a failed period.
            grew = (taken == T) & (residual > saved[3]) & (saved[3] > ROUNDOFF_RELATIVE * torch.linalg.vector_norm(saved[0], dim=1))
            reject = on & (changed | grew)
            if reject.any():
                back = reject[:, None]
                x, fx = torch.where(back, saved[0], x), torch.where(back, saved[1], fx)
                active, residual = torch.where(back, saved[2], active), torch.where(reject, saved[3], residual)
                phase, window, restarts = phase.masked_fill(reject, -1), torch.where(reject, 2 * window, window), restarts + reject
            stable = torch.where(changed | reject, 0, stable + 1)
            checkpoint = (on & ~reject & (taken == T)) | ((phase < 0) & (stable >= window))
            phase, taken = phase.masked_fill(checkpoint & (phase < 0), 0), taken.masked_fill(checkpoint, 0)
            if checkpoint.any():
                keep = checkpoint[:, None]
                saved = (torch.where(keep, x, saved[0]), torch.where(keep, fx, saved[1]),
                         torch.where(keep, active, saved[2]), torch.where(checkpoint, residual, saved[3]))
            on = phase >= 0
            step = torch.where(on, factors[phase.clamp(min=0)], torch.full((batch,), float(safe_omega), dtype=torch.float64))
            x = x + step[:, None] * (fx - x)
            phase, taken = torch.where(on, (phase + 1) % T, phase), taken + on
            share.append(on.double().mean())
            errors.append(torch.linalg.vector_norm(x - x_star, dim=1))
            previous = active
            fx = problem.apply(x)
            active = problem.active_set(fx)
            residual = torch.linalg.vector_norm(fx - x, dim=1)
    curve = torch.stack(errors).mean(dim=1).numpy()
    return GatedRun(curve, torch.stack(share).numpy(), float(restarts.double().mean()))


def initial_points(problem: FixedPointProblem, samples: np.ndarray, around: str, scale: float) -> np.ndarray:
    """x0 for standard normal samples z of shape (batch, n): origin, 0 + scale·z; fixed_point,
    x* + scale·z; random_rhs (affine maps, DU-Book), x* − x*(scale·z): the error of x0 = 0 for the
    right-hand side scale·z (the error dynamics of an affine map do not depend on its rhs)."""
    if around == "random_rhs":
        if problem.solve is None:
            raise ValueError(f"x0_around: got 'random_rhs' for {problem.name}, expected a linear map (jacobi, gram)")
        return problem.x_star - problem.solve(scale * samples)
    base = problem.x_star if around == "fixed_point" else np.zeros(problem.n)
    return base + scale * samples


def period_contractions(curve: Array, T: int, floor: float) -> Array:
    """e_{(p+1)T} / e_{pT} for every complete period whose end is still above the round-off floor."""
    ends = np.arange(T, curve.shape[0], T)
    ratios = [curve[end] / curve[end - T] for end in ends if curve[end] > floor]
    return np.asarray(ratios, dtype=np.float64)


def iterations_to_reduction(curve: Array, reduction: float = REDUCTION) -> float | None:
    """First k with e_k ≤ reduction·e_0; None when the curve never gets there."""
    reached = curve <= reduction * curve[0]
    return float(np.argmax(reached)) if reached.any() else None


__all__ = [
    "REDUCTION",
    "ROUNDOFF_RELATIVE",
    "GatedRun",
    "error_curve",
    "gated_chebyshev",
    "initial_points",
    "iterations_to_reduction",
    "period_contractions",
    "relax",
    "roundoff_floor",
    "scheme_omegas",
]
