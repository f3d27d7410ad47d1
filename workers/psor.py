"""Periodical SOR on fixed-point problems (domain.md §5): plain, constant, Chebyshev and learned ω.

x_{k+1} = x_k + ω_{k mod T} (f(x_k) − x_k). Near x*, e_{k+1} ≈ (I − ω_k B) e_k with B = I − ∂f(x*),
which is GD with "Hessian" B, so the Chebyshev steps on the eigenvalue range of B give Chebyshev-PSOR.
Every error is evaluated in float64.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from numpy.typing import NDArray

from workers import chebyshev, metrics
from workers.fixed_point import FixedPointProblem, ista_problem, jacobi_matrix, jacobi_problem, lasso_instance
from workers.result import Result
from workers.specs import PsorSpec

Array = NDArray[np.float64]

SCHEMES = ("plain", "constant", "chebyshev", "learned")
# Errors below ROUNDOFF_RELATIVE · (e_0 + ‖x*‖) are at float64 round-off: iterates of size ~‖x*‖
# (and x* itself, for ISTA) carry absolute errors of about machine epsilon times that.
ROUNDOFF_RELATIVE = 1e-14


def roundoff_floor(curve: Array, x_star: Array) -> float:
    """The error level treated as float64 round-off for an error curve starting at curve[0]."""
    return float(ROUNDOFF_RELATIVE * (curve[0] + np.linalg.norm(x_star)))


def scheme_omegas(scheme: str, lambda_min: float, lambda_max: float, T: int) -> Array:
    """One period of relaxation factors for a fixed scheme (the learned one is trained instead)."""
    if scheme == "plain":
        return np.ones(T)
    if scheme == "constant":
        return np.full(T, chebyshev.optimal_constant_step(lambda_min, lambda_max))
    if scheme == "chebyshev":
        return chebyshev.chebyshev_steps(lambda_min, lambda_max, T)
    raise ValueError(f"scheme: got {scheme!r}, expected one of plain, constant, chebyshev")


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


def initial_points(problem: FixedPointProblem, samples: np.ndarray, around: str, scale: float) -> np.ndarray:
    """x0 = (0 or x*) + scale·z for standard normal z of shape (batch, n)."""
    base = problem.x_star if around == "fixed_point" else np.zeros(problem.n)
    return base + scale * samples


def train_omega(
    problem: FixedPointProblem,
    T: int,
    *,
    depth: int,
    lr: float,
    batch_size: int,
    steps_per_depth: int,
    init: float,
    seed: int,
    x0_around: str = "origin",
    x0_scale: float = 1.0,
    on_checkpoint: Callable[[int, float], bool] | None = None,
) -> tuple[Array, Array]:
    """Deep-unfolded PSOR (DU-Book DU-PSOR): incremental depth d = 1..depth, `steps_per_depth` Adam
    steps on the loss mean_b ‖x_d − x*‖²/‖x_0 − x*‖² from fresh x0 (initial_points); ω periodic
    with period T.

    One Adam is created once and never reset, so ω entries beyond the current depth keep their init
    until reached (domain.md §1.4). Returns (ω in layer order, loss after each depth's last step).
    on_checkpoint(d, loss after depth d) -> stop?: True ends training after depth d (the losses then
    stop there too).
    """
    generator = torch.Generator().manual_seed(seed)
    omegas = torch.full((T,), float(init), dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.Adam([omegas], lr=lr)
    losses = []
    for d in range(1, depth + 1):
        for _ in range(steps_per_depth):
            z = torch.randn(batch_size, problem.n, generator=generator, dtype=torch.float64)
            x0 = torch.as_tensor(initial_points(problem, z.numpy(), x0_around, x0_scale))
            errors = relax(problem, omegas, x0, d)
            # Relative to the start: scale-free, so Adam's eps (1e-8) does not freeze ω in the
            # local regime where ‖x0 − x*‖ is tiny.
            loss = ((errors[-1] / errors[0]) ** 2).mean()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        losses.append(float(loss.detach()))
        if on_checkpoint is not None and d < depth and on_checkpoint(d, losses[-1]):
            break
    return np.abs(omegas.detach().numpy()), np.asarray(losses)


def build_problem(spec: PsorSpec) -> FixedPointProblem:
    """The spec's instance, rebuilt from matrix_seed."""
    if spec.fixed_point == "jacobi":
        P = jacobi_matrix(spec.n, spec.matrix_seed, spec.entry_std)
        q = None
        if spec.rhs == "gaussian":
            q = np.random.default_rng([spec.matrix_seed, 1]).normal(size=spec.n)
        return jacobi_problem(P, q)
    m = spec.m if spec.m is not None else max(2, spec.n // 2)
    instance = lasso_instance(spec.n, m, spec.sparsity, spec.lam, spec.matrix_seed, spec.noise_std)
    return ista_problem(instance, spec.beta)


def period_contractions(curve: Array, T: int, floor: float) -> Array:
    """e_{(p+1)T} / e_{pT} for every complete period whose end is still above the round-off floor."""
    ends = np.arange(T, curve.shape[0], T)
    ratios = [curve[end] / curve[end - T] for end in ends if curve[end] > floor]
    return np.asarray(ratios, dtype=np.float64)


def run_psor(spec: PsorSpec, on_checkpoint: Callable[[int, float], bool] | None = None) -> Result:
    """One PSOR run: error curves of every scheme (plus learned when omega=learned), spectral radii
    per period against the Chebyshev bound, and for learned ω its distance to the Chebyshev ω.

    Never-reached events are None, not a number: first_roundoff_iteration when no iterate reaches
    the round-off floor, period_contraction_max when no complete period is above it."""
    problem = build_problem(spec)
    lambda_min, lambda_max = problem.lambda_min, problem.lambda_max
    if not lambda_min > 0:
        raise ValueError(f"B = I − J has lambda_min = {lambda_min:.3g} <= 0: no contraction")
    kappa = lambda_max / lambda_min
    T = spec.T
    schedules = {name: scheme_omegas(name, lambda_min, lambda_max, T) for name in SCHEMES[:3]}
    scalars: dict[str, float | None] = {
        "lambda_min": lambda_min,
        "lambda_max": lambda_max,
        "kappa_realized": kappa,
        "chebyshev_bound": chebyshev.chebyshev_bound(kappa, T),
        "chebyshev_rate": chebyshev.chebyshev_rate(kappa, T),
        "q": chebyshev.q_factor(kappa),
        "constant_step_rate": chebyshev.constant_step_rate(kappa),
        "omega_constant": float(schedules["constant"][0]),
        **problem.facts,
    }
    series: dict[str, list[float]] = {"chebyshev_omega": schedules["chebyshev"].tolist()}
    if spec.omega == "learned":
        depth = spec.train_depth if spec.train_depth is not None else T
        learned, losses = train_omega(
            problem,
            T,
            depth=depth,
            lr=spec.lr,
            batch_size=spec.batch_size,
            steps_per_depth=spec.steps_per_depth,
            init=spec.omega_init,
            seed=spec.seed,
            x0_around=spec.x0_around,
            x0_scale=spec.x0_scale,
            on_checkpoint=on_checkpoint,
        )
        if len(losses) < depth:  # stopped from outside: the partial training curve, nothing compared
            reason = f"stopped after depth {len(losses)} of {depth} on request"
            return Result(params={}, status="KILLED", reason=reason, scalars={"stopped_at_depth": float(len(losses))},
                          series={"train_loss": losses.tolist(), "learned_omega": learned.tolist()})
        schedules["learned"] = learned
        series["learned_omega"] = learned.tolist()
        series["train_loss"] = losses.tolist()
        nodes = chebyshev.chebyshev_nodes(lambda_min, lambda_max, T)
        scalars["root_error"] = metrics.root_error(learned, nodes)
        scalars["step_error"] = metrics.step_error(learned, schedules["chebyshev"])
        scalars["max_abs_log_ratio"] = metrics.max_abs_log_ratio(learned, schedules["chebyshev"])
        scalars["train_depth"] = float(depth)

    # Same seeded starting points for every scheme; independent of the training stream.
    samples = np.random.default_rng([spec.seed, 2]).normal(size=(spec.eval_samples, problem.n))
    x0 = initial_points(problem, samples, spec.x0_around, spec.x0_scale)
    for name, omegas in schedules.items():
        curve = error_curve(problem, omegas, x0, spec.iterations)
        series[f"error_curve_{name}"] = curve.tolist()
        rho = metrics.rho(omegas, problem.eigenvalues)
        scalars[f"rho_{name}"] = rho
        scalars[f"rate_{name}"] = metrics.rate(rho, T)
        scalars[f"final_error_{name}"] = float(curve[-1])

    chosen = np.asarray(series[f"error_curve_{spec.omega}"])
    floor = roundoff_floor(chosen, problem.x_star)
    roundoff = chosen <= floor
    contractions = period_contractions(chosen, T, floor)
    series["error_curve"] = chosen.tolist()
    series["roundoff_mask"] = roundoff.astype(float).tolist()
    series["period_contraction"] = contractions.tolist()
    # The closed-form envelope e_0 · bound^{k/T} (exact at period ends for a symmetric B).
    steps = np.arange(spec.iterations + 1)
    series["chebyshev_bound_curve"] = (chosen[0] * scalars["chebyshev_bound"] ** (steps / T)).tolist()
    scalars["first_roundoff_iteration"] = float(np.argmax(roundoff)) if roundoff.any() else None
    scalars["rho"] = scalars[f"rho_{spec.omega}"]
    scalars["rate"] = scalars[f"rate_{spec.omega}"]
    scalars["final_error"] = float(chosen[-1])
    scalars["sup_chebyshev"] = metrics.sup_on_interval(schedules["chebyshev"], lambda_min, lambda_max)
    scalars["period_contraction_max"] = float(contractions.max()) if contractions.size else None
    info = {"fixed_point": problem.name, "rng": "numpy default_rng(matrix_seed)", "omega_scheme": spec.omega}
    return Result(params={}, scalars=scalars, series=series, info=info)


__all__ = [
    "SCHEMES",
    "build_problem",
    "error_curve",
    "initial_points",
    "period_contractions",
    "roundoff_floor", "relax", "run_psor", "scheme_omegas", "train_omega"]
