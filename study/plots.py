"""Per-run figures (matplotlib, Agg): pure functions of a Result dict, no MLflow inside.

Public face:
    run_figures(result_dict) -> dict[str, bytes]     file name -> PNG bytes, dispatching on params.problem
    result_figures(result) -> dict[str, bytes]       the same for a workers.result.Result (the Ray-task wrapper)
    to_png(figure) -> bytes                          render and release a figure
    steps_figure / roots_figure / residual_polynomial_figure / mse_curves_figure   DUGD (and CHGD) panels
    error_curves_figure / omega_figure                                            PSOR panels

Figures are built on `matplotlib.figure.Figure` directly, never through pyplot: pyplot keeps a global
figure registry that is neither thread-safe nor freed without plt.close, and Ray workers render
concurrently. Every number shown is taken from the Result or from workers.chebyshev / workers.metrics.
"""

from __future__ import annotations

import io
import math
from collections.abc import Callable, Collection, Mapping
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, LogLocator, NullLocator

from workers import chebyshev, metrics

Array = np.ndarray
DPI = 90
_GRID_POINTS = 1500  # |P_T| on [λ_min, λ_max]: smooth at this width, still a few ms


# ---------------------------------------------------------------- helpers


def new_figure(width: float = 6.4, height: float = 4.0) -> Figure:
    # Fixed margins: constrained/tight layout measures every tick label and costs ~5x the drawing.
    figure = Figure(figsize=(width, height), dpi=DPI)
    figure.subplots_adjust(left=0.12 * 6.4 / width, right=0.98, bottom=0.12, top=0.86, wspace=0.25)
    FigureCanvasAgg(figure)
    return figure


def _plain_label(value: float, _position: int) -> str:
    return f"{value:.3g}"


def log_axis(axes: Any, which: str = "y") -> None:
    """Log scale with plain '1e-05' labels at 1-2-5 ticks and no minor ticks.

    Matplotlib's default log axis (mathtext labels, ~30 minor Tick objects) costs more than the rest of
    the figure together; this keeps one figure at a few tens of ms.
    """
    axis = axes.yaxis if which == "y" else axes.xaxis
    (axes.set_yscale if which == "y" else axes.set_xscale)("log")
    axis.set_major_locator(LogLocator(base=10.0, subs=(1.0, 2.0, 5.0), numticks=8))
    axis.set_major_formatter(FuncFormatter(_plain_label))
    axis.set_minor_locator(NullLocator())


def to_png(figure: Figure) -> bytes:
    """PNG bytes of the figure; the figure is dropped afterwards (no pyplot registry holds it)."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=DPI)
    figure.clear()
    return buffer.getvalue()


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


def _params(result: Mapping[str, Any]) -> Mapping[str, Any]:
    params = result.get("params")
    return params if isinstance(params, Mapping) else {}


def _title(result: Mapping[str, Any], what: str) -> str:
    params = _params(result)
    shown = [f"{k}={params[k]}" for k in ("n", "kappa", "T", "mode", "omega", "seed") if params.get(k) is not None]
    status = "" if result.get("status", "FINISHED") == "FINISHED" else f" [{result.get('status')}]"
    return f"{what}: " + ", ".join(shown) + status


def _interval(result: Mapping[str, Any]) -> tuple[float, float] | None:
    low, high = scalar(result, "lambda_min"), scalar(result, "lambda_max")
    return (low, high) if low is not None and high is not None and 0 < low < high else None


def _depth(result: Mapping[str, Any]) -> int | None:
    learned = series(result, "learned_steps")
    if learned is not None:
        return len(learned)
    try:
        return int(_params(result).get("T"))
    except (TypeError, ValueError):
        return None


def reference_steps(result: Mapping[str, Any]) -> dict[str, Array]:
    """Chebyshev steps of the run (first and second kind): from the Result, else from its λ_min, λ_max, T."""
    references: dict[str, Array] = {}
    interval, depth = _interval(result), _depth(result)
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

        problem = build_problem(parse_spec(_params(result)))
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


# ---------------------------------------------------------------- DUGD / CHGD


def steps_figure(result: Mapping[str, Any]) -> Figure | None:
    """Learned steps in layer order; and sorted descending beside the Chebyshev steps, log axis."""
    learned = series(result, "learned_steps")
    references = reference_steps(result)
    if learned is None and not references:
        return None
    figure = new_figure(9.6, 4.0)
    by_layer, overlay = figure.subplots(1, 2)
    if learned is not None:
        by_layer.plot(np.arange(1, len(learned) + 1), learned, **_STYLE["learned"], label="learned")
    first_kind = references.get("Chebyshev (1st kind)")
    if first_kind is not None:
        by_layer.plot(np.arange(1, len(first_kind) + 1), first_kind, **_STYLE["Chebyshev (1st kind)"],
                      label="Chebyshev, natural order")
    by_layer.set(xlabel="layer t", ylabel="step γ_t", title="layer order")
    by_layer.legend(fontsize=8)
    curves = ({"learned": learned} if learned is not None else {}) | references
    for label, steps in curves.items():
        ranked = np.sort(np.abs(steps))[::-1]
        overlay.plot(np.arange(1, len(ranked) + 1), ranked, **_STYLE.get(label, {}), label=label)
    overlay.set(xlabel="rank k (descending)", ylabel="step γ_(k)", title="sorted overlay")
    log_axis(overlay)
    overlay.legend(fontsize=8)
    figure.suptitle(_title(result, "steps"), fontsize=10)
    return figure


def roots_figure(result: Mapping[str, Any]) -> Figure | None:
    """Root space: sorted 1/γ against the Chebyshev nodes, with the interval [λ_min, λ_max]."""
    learned = series(result, "learned_steps")
    references = reference_steps(result)
    if learned is None and not references:
        return None
    figure = new_figure()
    axes = figure.subplots()
    curves = ({"learned": learned} if learned is not None else {}) | references
    for label, steps in curves.items():
        roots = np.sort(1.0 / np.abs(steps))
        axes.plot(np.arange(1, len(roots) + 1), roots, **_STYLE.get(label, {}), label=f"{label}: 1/γ")
    interval = _interval(result)
    if interval is not None:
        for edge, name in zip(interval, ("λ_min", "λ_max")):
            axes.axhline(edge, color="0.5", linewidth=0.8, linestyle=":")
            axes.annotate(name, (1, edge), fontsize=7, color="0.4", va="bottom")
    root_error = scalar(result, "root_error")
    subtitle = f" (root_error={root_error:.3g})" if root_error is not None else ""
    axes.set(xlabel="rank k (ascending)", ylabel="root 1/γ_(k)", title="roots" + subtitle)
    log_axis(axes)
    axes.legend(fontsize=8)
    figure.suptitle(_title(result, "roots"), fontsize=10)
    return figure


def residual_polynomial_figure(result: Mapping[str, Any], eigenvalues: Array | None = None) -> Figure | None:
    """|P_T(λ)| on [λ_min, λ_max] for learned and Chebyshev steps (log y), eigenvalues marked."""
    interval = _interval(result)
    learned = series(result, "learned_steps")
    references = reference_steps(result)
    if interval is None or (learned is None and not references):
        return None
    if eigenvalues is None:
        eigenvalues = eigenvalues_of(result)
    grid = np.linspace(*interval, _GRID_POINTS)
    if eigenvalues is not None:  # the grid hits the eigenvalues too, so the curve passes through the marks
        grid = np.union1d(grid, eigenvalues[(eigenvalues >= interval[0]) & (eigenvalues <= interval[1])])
    tiny = np.finfo(np.float64).tiny
    figure = new_figure()
    axes = figure.subplots()
    curves = ({"learned": learned} if learned is not None else {}) | references
    for label, steps in curves.items():
        style = {k: v for k, v in _STYLE.get(label, {}).items() if k not in {"marker", "markersize"}}
        axes.plot(grid, np.maximum(np.abs(metrics.residual_polynomial(steps, grid)), tiny), **style, label=label)
    depth = _depth(result)
    if depth:
        bound = chebyshev.chebyshev_bound(interval[1] / interval[0], depth)
        axes.axhline(bound, color="C0", linewidth=0.8, alpha=0.6, label=f"Chebyshev bound {bound:.3g}")
    if eigenvalues is not None and learned is not None:
        values = np.maximum(np.abs(metrics.residual_polynomial(learned, eigenvalues)), tiny)
        axes.plot(eigenvalues, values, "|", color="k", markersize=8, alpha=0.6, label="eigenvalues (learned)")
    axes.set(xlabel="λ", ylabel="|P_T(λ)|", title="residual polynomial")
    log_axis(axes)
    axes.legend(fontsize=8)
    figure.suptitle(_title(result, "residual polynomial"), fontsize=10)
    return figure


_CURVE_LABELS = {
    "mse_curve": "DUGD (analytic)",
    "mse_curve_empirical": "DUGD (empirical)",
    "mse_curve_gd": "GD, constant 2/(λ_min+λ_max)",
    "mse_curve_chebyshev": "Chebyshev (1st kind)",
    "mse_curve_second_kind": "Chebyshev (2nd kind)",
    "mse_curve_heavy_ball": "heavy ball",
    "mse_curve_semi_iterative": "Chebyshev semi-iterative",
    "error_curve_plain": "plain (ω = 1)",
    "error_curve_constant": "optimal constant ω",
    "error_curve_chebyshev": "Chebyshev-PSOR",
    "error_curve_learned": "learned ω",
}


def _curves_figure(result: Mapping[str, Any], prefix: str, ylabel: str, what: str) -> Figure | None:
    curves = {key: series(result, key) for key in sorted(result) if key.startswith(prefix)}
    curves = {key: values for key, values in curves.items() if values is not None}
    if not curves:
        return None
    figure = new_figure()
    axes = figure.subplots()
    tiny = np.finfo(np.float64).tiny
    for index, (key, values) in enumerate(curves.items()):
        shown = np.where(np.isfinite(values), np.maximum(np.abs(values), tiny), np.nan)
        primary = key in {"mse_curve", "error_curve_learned"}
        axes.plot(np.arange(len(values)), shown, label=_CURVE_LABELS.get(key, key), linewidth=2.2 if primary else 1.2,
                  color="C3" if primary else f"C{index % 10 if index % 10 != 3 else 9}")
    axes.set(xlabel="iteration t", ylabel=ylabel, title=what)
    log_axis(axes)
    axes.legend(fontsize=8)
    figure.suptitle(_title(result, what), fontsize=10)
    return figure


def mse_curves_figure(result: Mapping[str, Any]) -> Figure | None:
    """MSE against t = 0..T for DUGD and the baselines (log y)."""
    return _curves_figure(result, "mse_curve", "MSE", "MSE curves")


# ---------------------------------------------------------------- PSOR


def error_curves_figure(result: Mapping[str, Any]) -> Figure | None:
    """‖x_k − x*‖ per scheme (plain, constant SOR, Chebyshev-PSOR, learned), log y."""
    return _curves_figure(result, "error_curve", "‖x_k − x*‖", "error curves")


def omega_figure(result: Mapping[str, Any]) -> Figure | None:
    """Learned ω in layer order and sorted, against the Chebyshev-PSOR ω."""
    learned, reference = series(result, "learned_omega"), series(result, "chebyshev_omega")
    if learned is None and reference is None:
        return None
    figure = new_figure(9.6, 4.0)
    by_layer, overlay = figure.subplots(1, 2)
    for label, values in (("learned", learned), ("Chebyshev (1st kind)", reference)):
        if values is None:
            continue
        by_layer.plot(np.arange(1, len(values) + 1), values, **_STYLE[label], label=label)
        ranked = np.sort(values)[::-1]
        overlay.plot(np.arange(1, len(ranked) + 1), ranked, **_STYLE[label], label=label)
    by_layer.set(xlabel="k (mod T)", ylabel="ω_k", title="layer order")
    overlay.set(xlabel="rank (descending)", ylabel="ω_(k)", title="sorted overlay")
    log_axis(overlay)
    by_layer.legend(fontsize=8)
    figure.suptitle(_title(result, "relaxation factors"), fontsize=10)
    return figure


# ---------------------------------------------------------------- dispatch

FigureMaker = Callable[[Mapping[str, Any]], "Figure | None"]
_DUGD: dict[str, FigureMaker] = {
    "steps.png": steps_figure,
    "roots.png": roots_figure,
    "residual_polynomial.png": residual_polynomial_figure,
    "mse_curves.png": mse_curves_figure,
}
_PSOR: dict[str, FigureMaker] = {"error_curves.png": error_curves_figure, "omega.png": omega_figure}
FIGURES_BY_PROBLEM: dict[str, dict[str, FigureMaker]] = {"dugd": _DUGD, "chgd": _DUGD, "psor": _PSOR, "probe": {}}


def run_figures(result: Mapping[str, Any], only: Collection[str] | None = None) -> dict[str, bytes]:
    """Every figure a run supports (or those named in `only`), as {file name: PNG bytes}.

    Dispatches on params.problem (DUGD when absent). A figure whose series are missing is skipped,
    so a FAILED result without series gives {} and a partial one gives what it can.
    """
    problem = _params(result).get("problem", "dugd")
    makers = FIGURES_BY_PROBLEM.get(str(problem), _DUGD | _PSOR)
    pngs: dict[str, bytes] = {}
    for name, make in makers.items():
        if only is not None and name not in only:
            continue
        figure = make(result)
        if figure is not None:
            pngs[name] = to_png(figure)
    return pngs


def result_figures(result: Any) -> dict[str, bytes]:
    """run_figures for a workers.result.Result: the wrapper a Ray task calls beside workers.run.run."""
    return run_figures(result.to_dict())
