"""Periodical SOR on fixed-point problems (domain.md §5): plain, constant, Chebyshev and learned ω.

x_{k+1} = x_k + ω_{k mod T} (f(x_k) − x_k). Near x*, e_{k+1} ≈ (I − ω_k B) e_k with B = I − ∂f(x*),
which is GD with "Hessian" B, so the Chebyshev steps on the eigenvalue range of B give Chebyshev-PSOR.
The iteration and its schedules live in workers/psor_iteration.py; this module builds the instance,
trains learned ω (deep-unfolded PSOR, DU-Book) and assembles a run's Result. Errors are float64.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from numpy.typing import NDArray

from workers import chebyshev, metrics
from workers.fixed_point import (FixedPointProblem, gram_problem, ista_problem, jacobi_matrix, jacobi_problem,
                                 lasso_instance)
from workers.psor_iteration import (REDUCTION, error_curve, gated_chebyshev, initial_points, iterations_to_reduction,
                                    period_contractions, relax, roundoff_floor, scheme_omegas)
from workers.result import Result
from workers.specs import PsorSpec

Array = NDArray[np.float64]
OnCheckpoint = Callable[[int, float], bool]  # (depth, loss after it) -> stop?

SCHEMES = ("plain", "constant", "chebyshev", "chebyshev_local", "learned")


@dataclass(frozen=True)
class Training:
    """A learned-ω training: ω in layer order after each depth d = 1..len(losses) (`snapshots[d-1]`;
    the last is the result), the loss of each depth's last Adam step, and each depth's loss on a fresh
    batch after its training (what DU-Book prints per depth)."""

    snapshots: list[Array]
    losses: Array
    depth_losses: Array

    @property
    def omega(self) -> Array:
        return self.snapshots[-1]

    def prefix(self, depth: int) -> "Training":
        """The training to `depth` (≤ its own): exactly what training to `depth` alone gives."""
        return Training(self.snapshots[:depth], self.losses[:depth], self.depth_losses[:depth])


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
    loss: str = "relative",
    on_checkpoint: Callable[[int, float], bool] | None = None,
) -> Training:
    """Deep-unfolded PSOR (DU-Book DU-PSOR): incremental depth d = 1..depth (past T the periodic ω
    is unrolled further), `steps_per_depth` Adam steps on mean_b ‖x_d − x*‖²/‖x_0 − x*‖² (loss
    "relative") or mean_b ‖x_d − x*‖² ("mse", DU-Book's norm(x − x̂)²/K) from fresh x0 (initial_points).

    One Adam is created once and never reset, so ω entries beyond the current depth keep their init
    until reached (domain.md §1.4), and depth d of a deeper training is the whole training to depth d.
    The fresh batch of depth d comes from its own stream ([seed, 3, d]), so it too is the same in every
    training that reaches d. on_checkpoint(d, loss after depth d) -> stop?: True ends training after depth d.
    """
    if loss not in ("relative", "mse"):
        raise ValueError(f"omega_loss: got {loss!r}, expected relative or mse")
    generator = torch.Generator().manual_seed(seed)
    omegas = torch.full((T,), float(init), dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.Adam([omegas], lr=lr)

    def objective(errors: torch.Tensor) -> torch.Tensor:
        # Relative to the start: scale-free, so Adam's eps (1e-8) does not freeze ω in the local
        # regime where ‖x0 − x*‖ is tiny. DU-Book's is the plain mean squared error.
        return ((errors[-1] / errors[0]) ** 2).mean() if loss == "relative" else (errors[-1] ** 2).mean()

    snapshots, losses, depth_losses = [], [], []
    for d in range(1, depth + 1):
        for _ in range(steps_per_depth):
            z = torch.randn(batch_size, problem.n, generator=generator, dtype=torch.float64)
            x0 = torch.as_tensor(initial_points(problem, z.numpy(), x0_around, x0_scale))
            value = objective(relax(problem, omegas, x0, d))
            optimizer.zero_grad()
            value.backward()
            optimizer.step()
        losses.append(float(value.detach()))
        snapshots.append(np.abs(omegas.detach().numpy().copy()))
        fresh = np.random.default_rng([seed, 3, d]).normal(size=(batch_size, problem.n))
        with torch.no_grad():
            x0 = torch.as_tensor(initial_points(problem, fresh, x0_around, x0_scale))
            depth_losses.append(float(objective(relax(problem, omegas, x0, d))))
        if on_checkpoint is not None and d < depth and on_checkpoint(d, losses[-1]):
            break
    return Training(snapshots, np.asarray(losses), np.asarray(depth_losses))


def build_problem(spec: PsorSpec) -> FixedPointProblem:
    """The spec's instance, rebuilt from matrix_seed."""
    rhs = np.random.default_rng([spec.matrix_seed, 1]).normal(size=spec.n) if spec.rhs == "gaussian" else None
    if spec.fixed_point == "jacobi":
        return jacobi_problem(jacobi_matrix(spec.n, spec.matrix_seed, spec.entry_std, spec.jacobi_shift), rhs)
    if spec.fixed_point == "gram":
        return gram_problem(spec.n, spec.matrix_seed, rhs)
    m = spec.m if spec.m is not None else max(2, spec.n // 2)
    instance = lasso_instance(spec.n, m, spec.sparsity, spec.lam, spec.matrix_seed, spec.noise_std)
    return ista_problem(instance, spec.beta)


def instance_key(spec: PsorSpec) -> tuple:
    """The fields build_problem reads: specs with equal keys have the same instance."""
    return tuple(spec.model_dump(include={"fixed_point", "n", "matrix_seed", "entry_std", "jacobi_shift", "rhs",
                                          "m", "sparsity", "lam", "beta", "noise_std"}).items())


def training_key(spec: PsorSpec) -> tuple:
    """The fields train_omega reads, but its depth: specs with equal keys share a training's prefix."""
    return instance_key(spec) + tuple(spec.model_dump(include={
        "T", "seed", "lr", "batch_size", "steps_per_depth", "omega_init", "x0_around", "x0_scale", "omega_loss"}).items())


def learned_depth(spec: PsorSpec) -> int:
    return spec.train_depth if spec.train_depth is not None else spec.T


def train_spec(spec: PsorSpec, problem: FixedPointProblem, depth: int,
               on_checkpoint: Callable[[int, float], bool] | None = None) -> Training:
    """train_omega with the spec's protocol, to `depth`."""
    return train_omega(problem, spec.T, depth=depth, lr=spec.lr, batch_size=spec.batch_size,
                       steps_per_depth=spec.steps_per_depth, init=spec.omega_init, seed=spec.seed,
                       x0_around=spec.x0_around, x0_scale=spec.x0_scale, loss=spec.omega_loss,
                       on_checkpoint=on_checkpoint)


def run_psor(spec: PsorSpec, on_checkpoint: Callable[[int, float], bool] | None = None) -> Result:
    """One PSOR run: error curves of every scheme (plus learned when omega=learned), spectral radii
    per period against the Chebyshev bound, and for learned ω its distance to the Chebyshev ω.

    Never-reached events are None, not a number: first_roundoff_iteration when no iterate reaches
    the round-off floor, period_contraction_max when no complete period is above it,
    iterations_to_1e-8_<scheme> when e_k never reaches 1e-8·e_0. A run whose chosen curve ends above
    its start is FAILED ("diverged: ..."), with its curves kept. This is run_psor_many([spec])[0]."""
    return run_psor_many([spec], [on_checkpoint])[0]


def run_psor_many(specs: Sequence[PsorSpec], hooks: Sequence[OnCheckpoint | None] | None = None) -> list[Result]:
    """[run_psor(s, h) for s, h in zip(specs, hooks)], sharing work (issue 22): each distinct instance
    is built once (its spectrum, and for ISTA its LASSO solve), each fixed scheme's curve is computed
    once per (instance, T, starting points, iterations), and points whose learned-ω trainings differ
    only in train_depth train once, to the deepest, each taking its own depth's snapshot (depth d of
    an incremental training is the whole training to d). A hook that stops its point (KILLED) stops
    only that point; the shared training ends early only when no point still needs it. A point that
    raises is FAILED alone."""
    hooks = list(hooks) if hooks is not None else [None] * len(specs)
    problems: dict[tuple, FixedPointProblem | Exception] = {}
    for spec in specs:
        key = instance_key(spec)
        if key not in problems:
            try:
                problems[key] = build_problem(spec)
            except Exception as error:  # noqa: BLE001 - fails the points on this instance only
                problems[key] = error
    trainings: dict[tuple, Training | Exception] = {}
    stopped_at: dict[int, int] = {}
    families: dict[tuple, list[int]] = {}
    for index, spec in enumerate(specs):
        if spec.omega == "learned" and not isinstance(problems[instance_key(spec)], Exception):
            families.setdefault(training_key(spec), []).append(index)
    for key, members in families.items():
        depth = max(learned_depth(specs[i]) for i in members)

        def dispatch(d: int, loss: float, members: list[int] = members) -> bool:
            for i in members:
                if i not in stopped_at and d < learned_depth(specs[i]) and hooks[i] is not None and hooks[i](d, loss):
                    stopped_at[i] = d
            return all(i in stopped_at or learned_depth(specs[i]) <= d for i in members)

        try:
            trainings[key] = train_spec(specs[members[0]], problems[instance_key(specs[members[0]])], depth, dispatch)
        except Exception as error:  # noqa: BLE001 - fails this family only
            trainings[key] = error
    curves: dict[tuple, tuple] = {}
    results = []
    for index, spec in enumerate(specs):
        try:
            problem = problems[instance_key(spec)]
            if isinstance(problem, Exception):
                raise problem
            training = None
            if spec.omega == "learned":
                shared = trainings[training_key(spec)]
                if isinstance(shared, Exception):
                    raise shared
                training = shared.prefix(stopped_at.get(index, learned_depth(spec)))
            results.append(assemble(spec, problem, training, curves))
        except Exception as error:  # noqa: BLE001 - recorded, not swallowed
            results.append(Result(params={}, status="FAILED", reason=f"{type(error).__name__}: {error}"))
    return results


def unit_keys(spec: PsorSpec) -> tuple[tuple, tuple]:
    """(share_key, family_key) for workers.units.plan_units: points on one instance share its build;
    a family is what run_psor_many computes once: a learned-ω training (all its depths), or the fixed
    schemes' curves from one set of starting points."""
    family = training_key(spec) if spec.omega == "learned" else instance_key(spec) + tuple(spec.model_dump(
        include={"T", "seed", "eval_samples", "x0_around", "x0_scale", "iterations"}).items())
    return ("psor",) + instance_key(spec), family


def unit_work(spec: PsorSpec) -> float:
    """Relative compute: one fixed-scheme run is 1; training adds its Adam steps (40 ≈ one run)."""
    return 1.0 + (learned_depth(spec) * spec.steps_per_depth / 40 if spec.omega == "learned" else 0.0)


def assemble(spec: PsorSpec, problem: FixedPointProblem, training: Training | None,
             curves: dict[tuple, tuple] | None = None) -> Result:
    """The Result of `spec` on its built `problem`, given its training (omega=learned) to its depth.
    `curves` caches the fixed schemes' curves across the points of one run_psor_many call."""
    lambda_min, lambda_max = problem.lambda_min, problem.lambda_max
    if not lambda_min > 0:
        raise ValueError(f"B = I − J has lambda_min = {lambda_min:.3g} <= 0: no contraction")
    kappa = lambda_max / lambda_min
    T = spec.T
    names = ["plain", "constant", "chebyshev"] + (["chebyshev_local"] if spec.omega == "chebyshev_local" else [])
    schedules = {name: scheme_omegas(name, lambda_min, lambda_max, T) for name in names}
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
    if training is not None:
        depth = learned_depth(spec)
        learned, losses = training.omega, training.losses
        if len(losses) < depth:  # stopped from outside: the partial training curve, nothing compared
            reason = f"stopped after depth {len(losses)} of {depth} on request"
            return Result(params={}, status="KILLED", reason=reason, scalars={"stopped_at_depth": float(len(losses))},
                          series={"train_loss": losses.tolist(), "learned_omega": learned.tolist()})
        schedules["learned"] = learned
        series["learned_omega"] = learned.tolist()
        series["train_loss"] = losses.tolist()
        series["depth_loss"] = training.depth_losses.tolist()
        nodes = chebyshev.chebyshev_nodes(lambda_min, lambda_max, T)
        scalars["root_error"] = metrics.root_error(learned, nodes)
        scalars["step_error"] = metrics.step_error(learned, schedules["chebyshev"])
        scalars["max_abs_log_ratio"] = metrics.max_abs_log_ratio(learned, schedules["chebyshev"])
        scalars["train_depth"] = float(depth)

    # Same seeded starting points for every scheme; independent of the training stream.
    samples = np.random.default_rng([spec.seed, 2]).normal(size=(spec.eval_samples, problem.n))
    x0 = initial_points(problem, samples, spec.x0_around, spec.x0_scale)
    start_key = instance_key(spec) + (spec.T, spec.seed, spec.eval_samples, spec.x0_around, spec.x0_scale, spec.iterations)
    for name, omegas in schedules.items():
        cached = curves.get(start_key + (name,)) if curves is not None and name != "learned" else None
        if cached is None:
            if name == "chebyshev":
                gated = gated_chebyshev(problem, omegas, scalars["omega_constant"], x0, spec.iterations)
                cached = (gated.curve, gated.chebyshev_share, gated.restarts)
            else:
                cached = (error_curve(problem, omegas, x0, spec.iterations), None, None)
            if curves is not None and name != "learned":
                curves[start_key + (name,)] = cached
        curve = cached[0]
        if name == "chebyshev" and problem.active_set is not None:
            series["chebyshev_share"] = cached[1].tolist()
            scalars["chebyshev_restarts"] = cached[2]
        series[f"error_curve_{name}"] = curve.tolist()
        rho = metrics.rho(omegas, problem.eigenvalues)
        scalars[f"rho_{name}"] = rho
        scalars[f"rate_{name}"] = metrics.rate(rho, T)
        scalars[f"final_error_{name}"] = float(curve[-1])
        scalars[f"iterations_to_1e-8_{name}"] = iterations_to_reduction(curve)

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
    scalars["iterations_to_1e-8"] = scalars[f"iterations_to_1e-8_{spec.omega}"]
    scalars["sup_chebyshev"] = metrics.sup_on_interval(schedules["chebyshev"], lambda_min, lambda_max)
    scalars["period_contraction_max"] = float(contractions.max()) if contractions.size else None
    info = {"fixed_point": problem.name, "rng": "numpy default_rng(matrix_seed)", "omega_scheme": spec.omega}
    result = Result(params={}, scalars=scalars, series=series, info=info)
    if not chosen[-1] <= chosen[0]:  # also catches NaN
        result.status = "FAILED"
        result.reason = (f"diverged: omega={spec.omega} ends at error {chosen[-1]:.3g} after {spec.iterations} "
                         f"iterations, above the start's {chosen[0]:.3g}")
    return result


__all__ = [
    "REDUCTION",
    "SCHEMES",
    "Training",
    "assemble",
    "build_problem",
    "error_curve",
    "initial_points",
    "period_contractions",
    "relax",
    "roundoff_floor",
    "run_psor",
    "run_psor_many",
    "scheme_omegas",
    "train_omega",
    "unit_keys",
    "unit_work",
]
