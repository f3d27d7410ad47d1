"""Panels of the per-run figures: functions that draw one view of a Result dict onto given axes.

Each `draw_*(axes, result) -> bool` draws what the result has and returns False when it lacks the data,
so a figure can hide that panel. Numbers come from the Result or from workers.chebyshev / workers.metrics;
nothing here re-derives a formula. study.figures.run_figures assembles the panels into figures.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping
from typing import Any

import numpy as np
from matplotlib.ticker import FuncFormatter, LogLocator, MaxNLocator, NullLocator

from workers import chebyshev, metrics

Array = np.ndarray
_GRID_POINTS = 1500  # |P_T| on [λ_min, λ_max]: smooth at this width, still a few ms


# ---------------------------------------------------------------- reading a Result dict and axes helpers


def _plain_label(value: float, _position: int) -> str:
    return f"{value:.3g}"


def log_axis(axes: Any, which: str = "y") -> None:
    """Log scale with plain '1e-05' labels at 1-2-5 ticks and no minor ticks.

    Matplotlib's default log axis (mathtext labels, ~30 minor Tick objects) costs more than the rest of
    the figure together; this keeps one figure at a few tens of ms.
    """
    axis = axes.yaxis if which == "y" else axes.xaxis
    low, high = (axes.dataLim.y0, axes.dataLim.y1) if which == "y" else (axes.dataLim.x0, axes.dataLim.x1)
    (axes.set_yscale if which == "y" else axes.set_xscale)("log")
    decades = np.log10(high / low) if 0 < low < high < np.inf else np.inf
    # Enough labelled ticks for the span: every digit under a decade, 1-2-5 over a few, powers beyond.
    subs = np.arange(1.0, 10.0) if decades < 1 else (1.0, 2.0, 5.0) if decades < 2.5 else (1.0,)
    axis.set_major_locator(LogLocator(base=10.0, subs=subs, numticks=8))
    axis.set_major_formatter(FuncFormatter(_plain_label))
    axis.set_minor_locator(NullLocator())


def integer_x(*axes: Any) -> None:
    """Layer / rank axes count whole steps."""
    for each in axes:
        each.xaxis.set_major_locator(MaxNLocator(integer=True))


def series(result: Mapping[str, Any], key: str) -> Array | None:
    """A float64 series of the flat Result dict, or None when absent, empty or not a list of numbers.

    Result.to_dict writes non-finite values as strings ('nan', 'inf'); float() reads them back.
    """
    values = result.get(key)
    if not isinstance(values, (list, tuple)) or not values:
        return None
    try:
        return np.array([float(v) for v in values], dtype=np.float64)
    except (TypeError, ValueError):
        return None


def scalar(result: Mapping[str, Any], key: str) -> float | None:
    value = result.get(key)
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def params_of(result: Mapping[str, Any]) -> Mapping[str, Any]:
    params = result.get("params")
    return params if isinstance(params, Mapping) else {}


def title_of(result: Mapping[str, Any], what: str) -> str:
    params = params_of(result)
    shown = [f"{k}={params[k]}" for k in ("n", "kappa", "T", "mode", "omega", "seed") if params.get(k) is not None]
    status = "" if result.get("status", "FINISHED") == "FINISHED" else f" [{result.get('status')}]"
    return f"{what}: " + ", ".join(shown) + status


def interval_of(result: Mapping[str, Any]) -> tuple[float, float] | None:
    low, high = scalar(result, "lambda_min"), scalar(result, "lambda_max")
    return (low, high) if low is not None and high is not None and 0 < low < high else None


def _depth(result: Mapping[str, Any]) -> int | None:
    learned = series(result, "learned_steps")
    if learned is not None:
        return len(learned)
    try:
        return int(params_of(result).get("T"))
    except (TypeError, ValueError):
        return None


def reference_steps(result: Mapping[str, Any]) -> dict[str, Array]:
    """Chebyshev steps of the run (first and second kind): from the Result, else from its λ_min, λ_max, T."""
    references: dict[str, Array] = {}
    interval, depth = interval_of(result), _depth(result)
    for key, label, rule in (
        ("chebyshev_steps", "Chebyshev (1st kind)", chebyshev.chebyshev_steps),
        ("second_kind_steps", "Chebyshev (2nd kind)", chebyshev.second_kind_steps),
    ):
        steps = series(result, key)
        if steps is None and interval is not None and depth:
            steps = rule(*interval, depth)
        if steps is not None:
            references[label] = steps
    optimal = series(result, "optimal_steps")
    if optimal is not None:
        references["MSE-optimal"] = optimal
    return references


def eigenvalues_of(result: Mapping[str, Any]) -> Array | None:
    """The problem's exact eigenvalues, rebuilt from params by workers.spectra when it is available.

    The Result does not carry them; rebuilding is deterministic from the seeds. Any failure (module
    missing, spec the builder rejects) just means no eigenvalue marks on the plot.
    """
    try:
        from workers.run import parse_spec
        from workers.spectra import build_problem

        problem = build_problem(parse_spec(params_of(result)))
    except Exception:  # noqa: BLE001 - marks are optional decoration
        return None
    for name in ("eigenvalues", "eigs", "spectrum"):
        values = getattr(problem, name, None)
        if values is None and isinstance(problem, Mapping):
            values = problem.get(name)
        if values is not None:
            try:
                return np.sort(np.asarray(values, dtype=np.float64).ravel())
            except (TypeError, ValueError):
                return None
    return None


_STYLE = {
    "learned": dict(color="C3", marker="o", linestyle="-", markersize=4, zorder=3),
    "Chebyshev (1st kind)": dict(color="C0", marker="s", linestyle="--", markersize=3.5),
    "Chebyshev (2nd kind)": dict(color="C2", marker="^", linestyle=":", markersize=3.5),
    "MSE-optimal": dict(color="C4", marker="x", linestyle="-.", markersize=4),
}


# ---------------------------------------------------------------- panels (draw on given axes)


def _step_curves(result: Mapping[str, Any], labels: Collection[str] | None = None) -> dict[str, Array]:
    learned = series(result, "learned_steps")
    curves = ({"learned": learned} if learned is not None else {}) | reference_steps(result)
    return {k: v for k, v in curves.items() if labels is None or k in labels}


def draw_steps_by_layer(axes: Any, result: Mapping[str, Any]) -> bool:
    """Learned steps in layer order, with the Chebyshev steps in natural (increasing) order."""
    curves = _step_curves(result)
    if not curves:
        return False
    for label in ("learned", "Chebyshev (1st kind)"):
        if label in curves:
            steps = curves[label]
            shown = "Chebyshev, natural order" if label != "learned" else label
            axes.plot(np.arange(1, len(steps) + 1), steps, **_STYLE[label], label=shown)
    axes.set(xlabel="layer t", ylabel="step γ_t", title="layer order")
    integer_x(axes)
    axes.legend(fontsize=7)
    return True


def draw_steps_overlay(axes: Any, result: Mapping[str, Any], labels: Collection[str] | None = None) -> bool:
    """The papers' overlay: steps sorted descending, learned beside Chebyshev (1st, 2nd kind), log y.
    `labels` keeps only those schedules."""
    curves = _step_curves(result, labels)
    if not curves:
        return False
    for label, steps in curves.items():
        ranked = np.sort(np.abs(steps))[::-1]
        axes.plot(np.arange(1, len(ranked) + 1), ranked, **_STYLE.get(label, {}), label=label)
    axes.set(xlabel="rank k (descending)", ylabel="step γ_(k)", title="sorted overlay")
    log_axis(axes)
    integer_x(axes)
    axes.legend(fontsize=7)
    return True


def draw_roots(axes: Any, result: Mapping[str, Any]) -> bool:
    """Root space: sorted 1/γ against the Chebyshev nodes, with λ_min and λ_max marked."""
    curves = _step_curves(result)
    if not curves:
        return False
    for label, steps in curves.items():
        roots = np.sort(1.0 / np.abs(steps))
        axes.plot(np.arange(1, len(roots) + 1), roots, **_STYLE.get(label, {}), label=f"{label}: 1/γ")
    interval = interval_of(result)
    if interval is not None:
        for edge, name in zip(interval, ("λ_min", "λ_max")):
            axes.axhline(edge, color="0.5", linewidth=0.8, linestyle=":")
            axes.annotate(name, (1, edge), fontsize=7, color="0.4", va="bottom")
    root_error = scalar(result, "root_error")
    subtitle = f" (root_error={root_error:.3g})" if root_error is not None else ""
    axes.set(xlabel="rank k (ascending)", ylabel="root 1/γ_(k)", title="roots" + subtitle)
    log_axis(axes)
    integer_x(axes)
    axes.legend(fontsize=7)
    return True


def draw_residual_polynomial(axes: Any, result: Mapping[str, Any], eigenvalues: Array | None = None,
                             labels: Collection[str] | None = None) -> bool:
    """|P_T(λ)| on [λ_min, λ_max] for learned and Chebyshev steps (log y), the bound, eigenvalues marked.
    `labels` keeps only those schedules (e.g. learned and first kind)."""
    interval, curves = interval_of(result), _step_curves(result, labels)
    if interval is None or not curves:
        return False
    grid = np.linspace(*interval, _GRID_POINTS)
    if eigenvalues is not None:  # the grid hits the eigenvalues too, so the curve passes through the marks
        grid = np.union1d(grid, eigenvalues[(eigenvalues >= interval[0]) & (eigenvalues <= interval[1])])
    tiny = np.finfo(np.float64).tiny
    for label, steps in curves.items():
        style = {k: v for k, v in _STYLE.get(label, {}).items() if k not in {"marker", "markersize"}}
        axes.plot(grid, np.maximum(np.abs(metrics.residual_polynomial(steps, grid)), tiny), **style, label=label)
    depth = _depth(result)
    if depth:
        bound = chebyshev.chebyshev_bound(interval[1] / interval[0], depth)
        axes.axhline(bound, color="C0", linewidth=0.8, alpha=0.6, label=f"Chebyshev bound {bound:.3g}")
    if eigenvalues is not None and "learned" in curves:
        values = np.maximum(np.abs(metrics.residual_polynomial(curves["learned"], eigenvalues)), tiny)
        axes.plot(eigenvalues, values, "|", color="k", markersize=8, alpha=0.6, label="eigenvalues (learned)")
    axes.set(xlabel="λ", ylabel="|P_T(λ)|", title="residual polynomial")
    log_axis(axes)
    axes.legend(fontsize=7)
    return True


# Curves are `<prefix>_<scheme>`; the bare prefix is the run's own schedule (DUGD's learned steps, or
# PSOR's chosen ω, which duplicates its error_curve_<omega> and is skipped there).
_SCHEME_LABELS = {
    "": "DUGD (analytic)",
    "empirical": "DUGD (empirical)",
    "gd": "GD, constant 2/(λ_min+λ_max)",
    "chebyshev": "Chebyshev (1st kind)",
    "second_kind": "Chebyshev (2nd kind)",
    "optimal": "MSE-optimal",
    "heavy_ball": "heavy ball (x₋₁ = x₀)",
    "heavy_ball_notebook": "heavy ball (x₋₁ = 0, notebook)",
    "semi_iterative": "Chebyshev semi-iterative (optimal)",
    "semi_iterative_uncentred": "semi-iterative, uncentred (η = 1/λ_max)",
    "semi_iterative_notebook": "semi-iterative as the notebook plots it (2t steps)",
    "plain": "plain (ω = 1)",
    "constant": "optimal constant ω",
    "learned": "learned ω",
}


def draw_curves(axes: Any, result: Mapping[str, Any], prefix: str, ylabel: str, title: str,
                own_curve: bool = True) -> bool:
    """Every series named `prefix` or `prefix_<scheme>` against t = 0, 1, ... (log y).
    `own_curve=False` leaves out the bare `prefix` series."""
    keys = [k for k in sorted(result) if k.startswith(prefix + "_") or (own_curve and k == prefix)]
    curves = {key: values for key in keys if (values := series(result, key)) is not None}
    if not curves:
        return False
    tiny = np.finfo(np.float64).tiny
    colors = iter(f"C{i}" for i in (0, 1, 2, 4, 5, 6, 7, 8, 9) * 2)  # C3 (red) is the learned schedule's
    for key, values in curves.items():
        scheme = key.removeprefix(prefix).removeprefix("_")
        shown = np.where(np.isfinite(values), np.maximum(np.abs(values), tiny), np.nan)
        primary = scheme in {"", "learned"}
        axes.plot(np.arange(len(values)), shown, label=_SCHEME_LABELS.get(scheme, scheme),
                  linewidth=2.2 if primary else 1.2, color="C3" if primary else next(colors))
    axes.set(xlabel="iteration t", ylabel=ylabel, title=title)
    log_axis(axes)
    integer_x(axes)
    axes.legend(fontsize=7)
    return True


def draw_mse_curves(axes: Any, result: Mapping[str, Any]) -> bool:
    """MSE against t = 0..T for DUGD and the baselines."""
    return draw_curves(axes, result, "mse_curve", "MSE", "MSE curves")


def draw_error_curves(axes: Any, result: Mapping[str, Any]) -> bool:
    """Error per scheme against the iteration: PSOR's ‖x_k − x*‖ (plain, constant SOR, Chebyshev-PSOR,
    learned) with the Chebyshev envelope e_0·bound^{k/T}; CHGD's ‖x_t‖² against GD and heavy ball."""
    problem = str(params_of(result).get("problem", ""))
    ylabel = "E‖x_t‖²" if problem == "chgd" else "‖x_k − x*‖"
    if not draw_curves(axes, result, "error_curve", ylabel, "error curves", own_curve=False):
        return False
    envelope = series(result, "chebyshev_bound_curve")
    if envelope is not None:
        axes.plot(np.arange(len(envelope)), envelope, color="0.4", linestyle="--", linewidth=0.9,
                  label="e₀ · bound^(k/T)")
        axes.legend(fontsize=7)
    return True


def _omegas(result: Mapping[str, Any]) -> dict[str, Array]:
    found = {"learned": series(result, "learned_omega"), "Chebyshev (1st kind)": series(result, "chebyshev_omega")}
    return {label: values for label, values in found.items() if values is not None}


def draw_omega_by_layer(axes: Any, result: Mapping[str, Any]) -> bool:
    omegas = _omegas(result)
    if not omegas:
        return False
    for label, values in omegas.items():
        axes.plot(np.arange(1, len(values) + 1), values, **_STYLE[label], label=label)
    axes.set(xlabel="k (mod T)", ylabel="ω_k", title="layer order")
    integer_x(axes)
    axes.legend(fontsize=7)
    return True


def draw_omega_overlay(axes: Any, result: Mapping[str, Any]) -> bool:
    """Learned ω sorted descending against the Chebyshev-PSOR ω (log y)."""
    omegas = _omegas(result)
    if not omegas:
        return False
    for label, values in omegas.items():
        ranked = np.sort(values)[::-1]
        axes.plot(np.arange(1, len(ranked) + 1), ranked, **_STYLE[label], label=label)
    axes.set(xlabel="rank (descending)", ylabel="ω_(k)", title="sorted overlay")
    log_axis(axes)
    integer_x(axes)
    axes.legend(fontsize=7)
    return True
