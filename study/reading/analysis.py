"""What a finished sweep says beyond its table: the Pareto front of a multi-objective sweep, and which
parameter mattered (fANOVA importances), for search sweeps and grids alike. Their figures are in
study.report.sweep_figures (pareto_figure, importance_figure).

Public face:
    stored_sweep(sweep, tracking_uri=None) -> Sweep        the sweep file logged on its parent run
    point_means(frame, sweep, metrics) -> DataFrame        FINISHED runs averaged over seeds, per point
    pareto_front(frame, sweep) -> DataFrame                non-dominated points (means over seeds)
    importances(sweep, frame, tracking_uri=None, metric=None, optuna_storage=None) -> DataFrame

A point is one assignment of the varying parameters (a grid cell, a search trial); its value is the
mean over its FINISHED seeds, as Optuna is told for a search. Importances come from the sweep's own
Optuna study when it has one with finished trials, else from an in-memory study built from the
points (optuna.trial.create_trial + add_trials; distributions from the grid axes or the search space).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import optuna
import pandas as pd

from study.spec.loading import Metric, Sweep, load_sweep

IMPORTANCE_SEED = 0  # fANOVA fits a random forest: a fixed seed gives the same answer twice


def stored_sweep(sweep: str, tracking_uri: str | None = None) -> Sweep:
    """The sweep as submitted (its sweep.yaml on the parent run); raises SweepNotFound, LookupError."""
    from study.reading.results import SweepNotFound, parent_runs, sweep_file_text

    parents = parent_runs(tracking_uri, sweep)
    if parents.empty:
        raise SweepNotFound(f"sweep {sweep!r}: no such sweep in the tracking store")
    text = sweep_file_text(str(parents.iloc[-1]["run_id"]))
    if not text:
        raise LookupError(f"sweep {sweep!r}: its parent run has no sweep file, so its metrics and space are unknown")
    stored = load_sweep(text)
    # The tag names the sweep; a file submitted under another name (a copy) keeps its own inside.
    return stored if stored.name == sweep else stored.model_copy(update={"name": sweep})


def varying_parameters(frame: pd.DataFrame, sweep: Sweep) -> list[str]:
    return [name for name in sweep.varying_axes if name in frame.columns]


def point_means(frame: pd.DataFrame, sweep: Sweep, metrics: list[str]) -> pd.DataFrame:
    """One row per point (varying parameters): the mean of each metric over its FINISHED seeds, and
    `seeds`, how many. Points missing a metric (a run that never reported it) are left out."""
    params = varying_parameters(frame, sweep)
    missing = [m for m in metrics if m not in frame.columns]
    if missing:
        raise KeyError(f"metric: got {', '.join(missing)}, expected result fields of sweep {sweep.name}")
    finished = frame[frame["status"] == "FINISHED"].dropna(subset=metrics)
    if finished.empty:
        return pd.DataFrame(columns=[*params, *metrics, "seeds"])
    if not params:
        row = {**{m: finished[m].mean() for m in metrics}, "seeds": len(finished)}
        return pd.DataFrame([row])
    grouped = finished.groupby(params, dropna=False)
    table = grouped[metrics].mean()
    table["seeds"] = grouped.size()
    return table.reset_index()


def non_dominated(values: np.ndarray, goals: list[str]) -> np.ndarray:
    """Boolean mask of rows no other row dominates (at least as good in every objective, better in one)."""
    signed = np.where(np.array(goals) == "maximize", -1.0, 1.0) * np.asarray(values, dtype=float)
    keep = np.ones(len(signed), dtype=bool)
    for i, row in enumerate(signed):
        at_least_as_good = np.all(signed <= row, axis=1)
        better = np.any(signed < row, axis=1)
        keep[i] = not np.any(at_least_as_good & better)
    return keep


def pareto_front(frame: pd.DataFrame, sweep: Sweep, metrics: list[Metric] | None = None) -> pd.DataFrame:
    """The non-dominated points over the sweep's metrics (2 or more), sorted by the first."""
    metrics = metrics or sweep.metrics
    if len(metrics) < 2:
        raise ValueError(f"--pareto: sweep {sweep.name} has one metric ({metrics[0].name}), expected a sweep with "
                         "a metric list of 2 or more")
    names = [m.name for m in metrics]
    points = point_means(frame, sweep, names)
    if points.empty:
        return points
    front = points[non_dominated(points[names].to_numpy(), [m.goal for m in metrics])]
    return front.sort_values(names[0], ascending=metrics[0].goal == "minimize").reset_index(drop=True)


def _evaluator() -> Any:
    """fANOVA (needs scikit-learn); PED-ANOVA, which needs nothing more, where scikit-learn is missing."""
    try:
        import sklearn  # noqa: F401

        return optuna.importance.FanovaImportanceEvaluator(seed=IMPORTANCE_SEED)
    except ImportError:
        return optuna.importance.PedAnovaImportanceEvaluator()


def _distribution(sweep: Sweep, name: str, values: pd.Series) -> optuna.distributions.BaseDistribution:
    """From the search space, or from a grid axis: numbers as a Float / Int range, anything else categorical."""
    dist = sweep.distributions.get(name)
    if dist is not None and dist.distribution != "categorical":
        if dist.distribution == "int_uniform":
            return optuna.distributions.IntDistribution(int(dist.min), int(dist.max))
        return optuna.distributions.FloatDistribution(dist.min, dist.max, log=dist.distribution == "log_uniform")
    choices = list(dist.values) if dist is not None else list(sweep.axes.get(name, values.dropna().unique()))
    numeric = [c for c in choices if isinstance(c, (int, float)) and not isinstance(c, bool)]
    if len(numeric) == len(choices) and len(set(numeric)) > 1:
        if all(isinstance(c, int) for c in numeric):
            return optuna.distributions.IntDistribution(min(numeric), max(numeric))
        return optuna.distributions.FloatDistribution(float(min(numeric)), float(max(numeric)))
    return optuna.distributions.CategoricalDistribution([c if isinstance(c, (int, float, str)) else str(c) for c in choices])


def points_study(frame: pd.DataFrame, sweep: Sweep, metric: Metric) -> optuna.Study:
    """An in-memory study holding one COMPLETE trial per finished point (mean over seeds)."""
    params = varying_parameters(frame, sweep)
    points = point_means(frame, sweep, [metric.name])
    distributions = {name: _distribution(sweep, name, frame[name]) for name in params}
    study = optuna.create_study(direction=metric.goal)
    trials = []
    for row in points.itertuples(index=False):
        values = dict(zip(points.columns, row))
        chosen = {name: _native(values[name], distributions[name]) for name in params}
        trials.append(optuna.trial.create_trial(params=chosen, distributions=distributions, value=float(values[metric.name])))
    study.add_trials(trials)
    return study


def _native(value: Any, distribution: optuna.distributions.BaseDistribution) -> Any:
    if isinstance(distribution, optuna.distributions.IntDistribution):
        return int(value)
    if isinstance(distribution, optuna.distributions.FloatDistribution):
        return float(value)
    return value.item() if hasattr(value, "item") else value


def _search_study(sweep: Sweep, tracking_uri: str | None, optuna_storage: str | None) -> optuna.Study | None:
    from study.scheduling.search import open_storage
    from study.recording.layout import resolve_tracking_uri

    try:
        storage = open_storage(resolve_tracking_uri(tracking_uri), optuna_storage)
        return optuna.load_study(study_name=sweep.name, storage=storage)
    except (KeyError, ValueError, OSError):  # no such study in that storage
        return None


def importances(sweep: Sweep, frame: pd.DataFrame, tracking_uri: str | None = None, metric: str | None = None,
                optuna_storage: str | None = None) -> tuple[pd.DataFrame, str]:
    """(table of parameter, importance sorted high to low and summing to 1, where it came from)."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    metrics = {m.name: (index, m) for index, m in enumerate(sweep.metrics)}
    name = metric or sweep.metric.name
    index, chosen = metrics.get(name, (None, Metric(name=name, goal=sweep.metric.goal)))
    params = varying_parameters(frame, sweep)
    if len(params) < 1:
        raise ValueError(f"--importance: sweep {sweep.name} varies no parameter, expected at least one")
    study = _search_study(sweep, tracking_uri, optuna_storage) if sweep.is_search and index is not None else None
    finished = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,)) if study else []
    if len(finished) >= 2:
        source = f"Optuna study {sweep.name} ({len(finished)} complete trials)"
        target = (lambda trial: trial.values[index]) if sweep.is_multi_objective else None
    else:
        study = points_study(frame, sweep, chosen)
        finished = study.trials
        source = f"{len(finished)} finished points (mean over seeds)"
        target = None
    if len(finished) < 2:
        raise ValueError(f"--importance: sweep {sweep.name} has {len(finished)} finished point(s), expected at least 2")
    scores = optuna.importance.get_param_importances(study, evaluator=_evaluator(), target=target, normalize=True)
    table = pd.DataFrame({"parameter": list(scores), "importance": [float(v) for v in scores.values()]})
    for missing in (p for p in params if p not in scores):  # fixed within the finished trials
        table.loc[len(table)] = [missing, 0.0]
    total = table["importance"].sum()
    if total > 0 and not math.isclose(total, 1.0):
        table["importance"] = table["importance"] / total
    return table.sort_values("importance", ascending=False).reset_index(drop=True), f"{name}: {source}"


__all__ = ["importances", "non_dominated", "pareto_front", "point_means", "points_study", "stored_sweep"]
