"""run_dugd(spec) -> Result: train, then compare the learned steps with every reference (domain.md §4, §8).

References: Chebyshev first-kind steps from the `edges` the spec selects (primary), from the MP edges
(`_mp`), second-kind steps (`_second_kind`, domain.md §2.5) and the MSE-optimal steps of this spectrum
(`_optimal`, L-BFGS). All curves and errors are float64.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from workers import chebyshev as cheb
from workers import metrics
from workers.dugd import OnCheckpoint, Training, TrainingConfig, resolved_init, train
# identical_across_seeds, unit_keys, unit_work: this problem's planning hooks (workers/units.py)
from workers.dugd_units import Problems, identical_across_seeds, instance_key, train_points, unit_keys, unit_work
from workers.optimal import optimal_steps
from workers.result import Result
from workers.specs import DugdSpec
from workers.spectra import Problem
from workers.unrolling import curse_of_unrolling

EMPIRICAL_SEED_STREAM = 4  # eval samples come from default_rng([seed, 4]), apart from training draws


def run_dugd_many(specs: Sequence[DugdSpec], hooks: Sequence[OnCheckpoint | None]) -> list[Result]:
    """run_dugd(spec, hook) for each point, sharing what the points share (workers/dugd_units.py):
    each instance's Problem and each (instance, T)'s references once, families trained once, batches
    as one array program. Each point fails alone (FAILED with its reason)."""
    problems, references = Problems(), _References()
    trainings = train_points(specs, hooks, problems)
    results = []
    for spec, hook, training in zip(specs, hooks, trainings):
        try:
            if isinstance(training, Exception):
                raise training
            results.append(_record(spec, hook, training, problems, references))
        except Exception as error:  # noqa: BLE001 - recorded, not swallowed
            results.append(Result(params={}, status="FAILED", reason=f"{type(error).__name__}: {error}"))
    return results


def run_dugd(spec: DugdSpec, on_checkpoint: OnCheckpoint | None = None) -> Result:
    """One point: run_dugd_many([spec], [on_checkpoint])[0]. on_checkpoint(generation, prefix MSE) ->
    stop? (workers.dugd.OnCheckpoint): a run told to stop comes back KILLED with its partial training
    curves and no comparison (primal-dual training reports no checkpoints)."""
    return run_dugd_many([spec], [on_checkpoint])[0]


class _References:
    """reference_part(problem, T) once per (instance, T, edges) of a run_many call."""

    def __init__(self) -> None:
        self._made: dict[tuple, tuple[dict, dict]] = {}

    def get(self, spec: DugdSpec, problem: Problem) -> tuple[dict, dict]:
        key = (instance_key(spec), spec.T)
        if key not in self._made:
            self._made[key] = reference_part(problem, spec.T)
        return self._made[key]


def _record(spec: DugdSpec, hook: OnCheckpoint | None, training: Training | None, problems: Problems,
            references: _References) -> Result:
    """A point's Result from its Training (None: dense or descending, trained here alone)."""
    problem = problems.get(spec)
    if spec.descent_eps is not None:
        return _run_descending(problem, spec, references.get(spec, problem))
    if training is None:
        training = train(problem, TrainingConfig.from_spec(spec), hook)
    if training.stopped_at is not None:
        return stopped_result(training)
    scalars, series = compare(problem, training.steps, spec.T, references.get(spec, problem))
    series["mse_curve_empirical"] = empirical_mse_curve(problem, training.steps, spec, training.device)
    scalars["mse_empirical"] = series["mse_curve_empirical"][-1]
    _add_training(scalars, series, training)
    info = {
        **problem.facts(),
        "mode": spec.mode,
        "training": spec.training,
        "dtype": training.dtype,
        "device": training.device,
        "optimizer_reset": False,
        "initial_step": resolved_init(spec.init, problem),  # what init=auto chose (or the number / "random")
    }
    if spec.mode == "eigen":
        info["eigen_sampling"] = "chi-square weights"
    return _failed_if_diverged(Result(params={}, scalars=scalars, series=series, info=info))


def stopped_result(training: Training) -> Result:
    """A run stopped from outside after generation S: what it trained so far, no comparison."""
    scalars: dict[str, float | None] = {}
    series: dict[str, list[float]] = {}
    _add_training(scalars, series, training)
    scalars["stopped_at_generation"] = float(training.stopped_at)
    reason = f"stopped after generation {training.stopped_at} of {training.gamma_by_generation.shape[1]} on request"
    info = {"device": training.device, "dtype": training.dtype}
    return Result(params={}, status="KILLED", reason=reason, scalars=scalars, series=series, info=info)


def reference_part(problem: Problem, T: int) -> tuple[dict[str, float | None], dict[str, np.ndarray]]:
    """What compare() reports that depends on the instance and T alone: the problem's facts, the
    reference schedules, their curves, bounds and curse-of-unrolling metrics."""
    lam = problem.eigenvalues
    low, high = problem.reference_edges
    kappa = high / low
    series: dict[str, np.ndarray] = {
        "chebyshev_steps": cheb.chebyshev_steps(low, high, T),
        "chebyshev_steps_mp": cheb.chebyshev_steps(problem.mp_lower, problem.mp_upper, T),
        "second_kind_steps": cheb.second_kind_steps(low, high, T),
        "optimal_steps": optimal_steps(lam, T, edges=(problem.lambda_min, problem.lambda_max)),
    }
    gd_step = cheb.optimal_constant_step(problem.lambda_min, problem.lambda_max)
    heavy_step, momentum = cheb.heavy_ball_parameters(problem.lambda_min, problem.lambda_max)
    uniform = np.full(lam.shape[0], 1.0 / lam.shape[0])
    series.update({
        "mse_curve_gd": metrics.mse_curve(np.full(T, gd_step), lam),
        "mse_curve_chebyshev": metrics.mse_curve(series["chebyshev_steps"], lam),
        "mse_curve_second_kind": metrics.mse_curve(series["second_kind_steps"], lam),
        "mse_curve_optimal": metrics.mse_curve(series["optimal_steps"], lam),
        # x_{−1} = x_0 = 0: the first heavy-ball step is a plain GD step
        "mse_curve_heavy_ball": metrics.error_curve(
            metrics.heavy_ball_polynomials(lam, heavy_step, momentum, T, previous_factor=1.0), uniform
        ),
    })
    rho_chebyshev = metrics.rho(series["chebyshev_steps"], lam)
    scalars: dict[str, float | None] = {
        "lambda_min": problem.lambda_min,
        "lambda_max": problem.lambda_max,
        "kappa_realized": problem.kappa_realized,
        "mp_lower": problem.mp_lower,
        "mp_upper": problem.mp_upper,
        "kappa_mp": problem.kappa_mp,
        "lambda_min_reference": low,
        "lambda_max_reference": high,
        "rho_chebyshev": rho_chebyshev,
        "chebyshev_bound": cheb.chebyshev_bound(kappa, T),
        "rate_chebyshev": metrics.rate(rho_chebyshev, T),
        "rate_bound": cheb.chebyshev_rate(kappa, T),
        "q": cheb.q_factor(kappa),
        "rate_constant": cheb.constant_step_rate(kappa),
    }
    unrolling = curse_of_unrolling(series["chebyshev_steps"], lam, lambda_min=problem.lambda_min,
                                   lambda_max=problem.lambda_max)
    scalars.update({f"{k}_chebyshev": v for k, v in unrolling["scalars"].items()})
    series.update({f"{k}_chebyshev": np.asarray(v) for k, v in unrolling["series"].items()})
    return scalars, series


def compare(problem: Problem, steps: np.ndarray, T: int,
            reference: tuple[dict, dict] | None = None) -> tuple[dict[str, float], dict[str, list[float]]]:
    """Every tracking, operator, curve, descent and ordering metric of a learned schedule
    (reference: reference_part(problem, T), computed here when not given)."""
    lam = problem.eigenvalues
    reference_scalars, reference_series = reference if reference is not None else reference_part(problem, T)
    scalars: dict[str, float | None] = dict(reference_scalars)
    references = {"": "chebyshev_steps", "_mp": "chebyshev_steps_mp", "_second_kind": "second_kind_steps",
                  "_optimal": "optimal_steps"}
    for suffix, name in references.items():
        scalars[f"root_error{suffix}"] = metrics.root_error(steps, 1.0 / reference_series[name])
        scalars[f"step_error{suffix}"] = metrics.step_error(steps, reference_series[name])
        scalars[f"max_abs_log_ratio{suffix}"] = metrics.max_abs_log_ratio(steps, reference_series[name])

    chebyshev_steps = reference_series["chebyshev_steps"]
    rho = metrics.rho(steps, lam)
    scalars.update(
        rho=rho,
        rho_sup=metrics.sup_on_interval(steps, problem.lambda_min, problem.lambda_max),
        rho_ratio=rho / scalars["rho_chebyshev"],
        rate=metrics.rate(rho, T),
    )
    curves = {"mse_curve": metrics.mse_curve(steps, lam),
              **{name: reference_series[name] for name in reference_series if name.startswith("mse_curve_")}}
    for name, curve in curves.items():
        scalars[name.replace("_curve", "")] = float(curve[-1])
    scalars["mse_ratio"] = scalars["mse"] / scalars["mse_chebyshev"]
    scalars["optimality_gap"] = scalars["mse"] / scalars["mse_optimal"] - 1.0

    mse = curves["mse_curve"]
    ratios = metrics.descent_ratios(mse)
    scalars.update(
        max_descent_ratio=float(np.max(ratios)),
        ascending_layers=float(metrics.ascending_layers(mse)),
        peak_intermediate_mse=metrics.peak_intermediate_mse(mse),
        contraction=metrics.contraction(mse),
        largest_step_position=float(metrics.largest_step_position(steps)),
        zigzag_changes=float(metrics.zigzag_changes(steps)),
        kendall_tau=metrics.kendall_tau_increasing(steps),
        steps_above_2_over_lambda_max=float(metrics.steps_above(steps, 2.0 / problem.lambda_max)),
        largest_step_times_lambda_min=float(np.max(steps) * problem.lambda_min),
    )
    learned = curse_of_unrolling(steps, lam, lambda_min=problem.lambda_min, lambda_max=problem.lambda_max)
    scalars.update(learned["scalars"])
    series = {
        **learned["series"],
        **{name: values for name, values in reference_series.items() if not name.startswith("mse_curve_")},
        "learned_steps": steps,
        "log_ratios": metrics.log_ratios(steps, chebyshev_steps),
        "descent_ratios": ratios,
        **curves,
    }
    return scalars, {name: [float(v) for v in values] for name, values in series.items()}


def empirical_mse_curve(problem: Problem, steps: np.ndarray, spec: DugdSpec, device: str) -> list[float]:
    """MSE_t over `eval_samples` fresh x ~ N(0, I), t = 0..T, in float64 (domain.md §1.4 evaluation).

    dense: the matrix recursion itself. eigen/expected: its exact eigenbasis equivalent,
    Σ_i P_t(λ_i)² mean_b z_bi²/n, with Σ_b z_bi² drawn as χ²(eval_samples).
    """
    rng = np.random.default_rng([spec.seed, EMPIRICAL_SEED_STREAM])
    if spec.mode != "dense":
        n, samples = problem.n, spec.eval_samples
        weights = rng.chisquare(samples, n) / (samples * n)
        return [float(v) for v in metrics.error_curve(metrics.residual_polynomials(steps, problem.eigenvalues), weights)]
    import torch

    h = torch.tensor(problem.factor().T, dtype=torch.float64, device=device)
    x = torch.tensor(rng.standard_normal((spec.eval_samples, problem.n)), dtype=torch.float64, device=device)
    y = x @ h
    s = torch.zeros_like(x)
    curve = [float((x * x).mean())]
    for gamma in steps:
        s = s - float(gamma) * ((s @ h - y) @ h.T)
        curve.append(float(((s - x) ** 2).mean()))
    return curve


def _add_training(scalars: dict[str, float], series: dict[str, list[float]], training: Training) -> None:
    scalars["final_validation_loss"] = float(training.validation_loss[-1])
    scalars["adam_steps"] = float(training.adam_steps)
    series["validation_loss"] = training.validation_loss.tolist()
    series["expected_loss"] = training.expected_loss.tolist()
    series["grad_norm"] = training.grad_norm.tolist()
    # γ at the end of every generation, row-major: entry g*T + t is layer t after generation g
    series["learned_steps_by_generation"] = np.abs(training.gamma_by_generation).ravel().tolist()


def _run_descending(problem: Problem, spec: DugdSpec, reference: tuple[dict, dict] | None = None) -> Result:
    """Primal-dual training with descending constraints (domain.md §7.3), then the same comparison."""
    from workers.descending import train_descending

    outcome = train_descending(
        problem.eigenvalues, T=spec.T, eps=spec.descent_eps, init=resolved_init(spec.init, problem), lr=spec.lr,
        batch_size=spec.batch_size, epochs=spec.descent_epochs, batches_per_epoch=spec.descent_batches_per_epoch,
        dual_lr=spec.dual_lr, noise=spec.descent_noise, seed=spec.seed,
    )
    scalars, series = compare(problem, outcome.steps, spec.T, reference)
    extra_scalars, extra_series = outcome.result_fields()
    scalars.update(extra_scalars)
    series.update({k: v for k, v in extra_series.items() if k != "learned_steps"})
    info = {**problem.facts(), "mode": "eigen", "training": "primal-dual", "dtype": "float64", "device": "cpu"}
    return _failed_if_diverged(Result(params={}, scalars=scalars, series=series, info=info))


def _failed_if_diverged(result: Result) -> Result:
    """Training that diverged (e.g. a huge lr) learns steps under which the error grows: MSE_T >= MSE_0,
    i.e. contraction >= 1. Such a run is FAILED with its reason; its numbers stay for inspection."""
    contraction = result.scalars.get("contraction", 0.0)
    if contraction >= 1.0:
        curve = result.series["mse_curve"]
        result.status = "FAILED"
        result.reason = f"diverged: learned steps give MSE_T = {curve[-1]:.3g} >= MSE_0 = {curve[0]:.3g} (contraction {contraction:.3g})"
    return result


__all__ = ["compare", "empirical_mse_curve", "identical_across_seeds", "reference_part", "run_dugd",
           "run_dugd_many", "stopped_result", "unit_keys", "unit_work"]
