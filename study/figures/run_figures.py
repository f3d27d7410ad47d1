"""Per-run figures (matplotlib, Agg): pure functions of a Result dict, no MLflow inside.

Public face:
    run_figures(result_dict, only=None) -> dict[str, bytes]   file name -> PNG, dispatching on params.problem
    summary_figures(result_dict) -> dict[str, bytes]          {'summary.png': ...}: the one a sweep renders per run
    record_figures(record) -> dict[str, str]                  the same, base64, for a Ray task's JSON record
    to_png(figure) -> bytes                                   render and release a figure
    steps_figure / roots_figure / residual_polynomial_figure / mse_curves_figure   DUGD (and CHGD)
    error_curves_figure / omega_figure                                            PSOR
The panels themselves (draw_* on given axes) live in study.figures.panels.

Figures are built on `matplotlib.figure.Figure` directly, never through pyplot: pyplot keeps a global
figure registry that is neither thread-safe nor freed without plt.close, and Ray workers render
concurrently. Every number shown is taken from the Result or from workers.chebyshev / workers.metrics.
"""

from __future__ import annotations

import base64
import functools
import io
from collections.abc import Callable, Collection, Mapping, Sequence
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from study.figures.budget import MIN_RUN_S_FOR_FIGURES, worth_rendering
from study.figures.panels import (  # noqa: F401 - series, reference_steps, log_axis, integer_x are public here too
    Array,
    draw_error_curves,
    draw_mse_curves,
    draw_omega_by_layer,
    draw_omega_overlay,
    draw_residual_polynomial,
    draw_roots,
    draw_steps_by_layer,
    draw_steps_overlay,
    eigenvalues_of,
    integer_x,
    interval_of,
    log_axis,
    params_of,
    reference_steps,
    scalar,
    series,
    title_of,
)

DPI = 90


# ---------------------------------------------------------------- rendering


def new_figure(width: float = 6.4, height: float = 4.0) -> Figure:
    # Fixed margins: constrained/tight layout measures every tick label and costs ~5x the drawing.
    figure = Figure(figsize=(width, height), dpi=DPI)
    figure.subplots_adjust(left=0.14 * 6.4 / width, right=0.98, bottom=0.12, top=0.86, wspace=0.28)
    FigureCanvasAgg(figure)
    return figure


def to_png(figure: Figure, dpi: int = DPI) -> bytes:
    """PNG bytes of the figure; the figure is dropped afterwards (no pyplot registry holds it)."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=dpi)
    figure.clear()
    return buffer.getvalue()


# ---------------------------------------------------------------- figures


Panel = Callable[[Any, Mapping[str, Any]], bool]


def panels_figure(result: Mapping[str, Any], panels: Sequence[Panel], what: str, columns: int = 2,
                  width: float = 4.8, height: float = 3.8) -> Figure | None:
    """A figure of the given panels, or None when none of them has data (panels without data are hidden)."""
    rows = -(-len(panels) // columns) if len(panels) > 1 else 1
    columns = min(columns, len(panels))
    figure = new_figure(width * columns, height * rows)
    if rows > 1:
        figure.subplots_adjust(top=0.92, hspace=0.32, bottom=0.07)
    grid = np.atleast_1d(figure.subplots(rows, columns, squeeze=False)).ravel()
    drawn = [draw(axes, result) for axes, draw in zip(grid, panels)]
    if not any(drawn):
        figure.clear()
        return None
    for axes, ok in zip(grid, [*drawn, *[False] * (len(grid) - len(drawn))]):
        axes.set_visible(ok)
    figure.suptitle(title_of(result, what), fontsize=10)
    return figure


def steps_figure(result: Mapping[str, Any]) -> Figure | None:
    """Learned steps in layer order; and sorted descending beside the Chebyshev steps, log axis."""
    return panels_figure(result, [draw_steps_by_layer, draw_steps_overlay], "steps")


def roots_figure(result: Mapping[str, Any]) -> Figure | None:
    """Root space: sorted 1/γ against the Chebyshev nodes, with the interval [λ_min, λ_max]."""
    return panels_figure(result, [draw_roots], "roots", width=6.4, height=4.0)


def residual_polynomial_figure(result: Mapping[str, Any], eigenvalues: Array | None = None) -> Figure | None:
    """|P_T(λ)| on [λ_min, λ_max] for learned and Chebyshev steps (log y), eigenvalues marked
    (rebuilt from the run's parameters when not given)."""
    if eigenvalues is None and interval_of(result) is not None:
        eigenvalues = eigenvalues_of(result)
    draw = functools.partial(draw_residual_polynomial, eigenvalues=eigenvalues)
    return panels_figure(result, [draw], "residual polynomial", width=6.4, height=4.0)


def mse_curves_figure(result: Mapping[str, Any]) -> Figure | None:
    """MSE against t = 0..T for DUGD and the baselines (log y)."""
    return panels_figure(result, [draw_mse_curves], "MSE curves", width=6.4, height=4.0)


def error_curves_figure(result: Mapping[str, Any]) -> Figure | None:
    """‖x_k − x*‖ per scheme (plain, constant SOR, Chebyshev-PSOR, learned), log y."""
    return panels_figure(result, [draw_error_curves], "error curves", width=6.4, height=4.0)


def omega_figure(result: Mapping[str, Any]) -> Figure | None:
    """Learned ω in layer order and sorted, against the Chebyshev-PSOR ω."""
    return panels_figure(result, [draw_omega_by_layer, draw_omega_overlay], "relaxation factors")


# Fewer curves and legend entries than the full figures: text is most of matplotlib's drawing time.
_SUMMARY_OVERLAY = functools.partial(draw_steps_overlay, labels=("learned", "Chebyshev (1st kind)", "Chebyshev (2nd kind)"))
_SUMMARY_POLYNOMIAL = functools.partial(draw_residual_polynomial, labels=("learned", "Chebyshev (1st kind)"))
SUMMARY_DPI = 72


def summary_figure(result: Mapping[str, Any]) -> Figure | None:
    """The per-run artifact made during a sweep: the two panels the MLflow UI cannot draw from the
    step-indexed metrics, in one PNG (every panel costs about as much as the run of a quick sweep).
    DUGD: sorted overlay and |P_T| against the bound; CHGD: error curves and |P_T|; PSOR: error curves
    and sorted ω."""
    problem = str(params_of(result).get("problem", "dugd"))
    if problem == "psor":
        return panels_figure(result, [draw_error_curves, draw_omega_overlay], "PSOR run")
    if problem in ("probe", "unrolling"):  # unrolling: its J_t/J_0 curve is charted in MLflow (CHARTED_CURVES)
        return None
    if problem == "chgd":
        return panels_figure(result, [draw_error_curves, _SUMMARY_POLYNOMIAL], "CHGD run")
    return panels_figure(result, [_SUMMARY_OVERLAY, _SUMMARY_POLYNOMIAL], "DUGD run")


# ---------------------------------------------------------------- dispatch

FigureMaker = Callable[[Mapping[str, Any]], "Figure | None"]
_DUGD: dict[str, FigureMaker] = {
    "steps.png": steps_figure,
    "roots.png": roots_figure,
    "residual_polynomial.png": residual_polynomial_figure,
    "mse_curves.png": mse_curves_figure,
}
_PSOR: dict[str, FigureMaker] = {"error_curves.png": error_curves_figure, "omega.png": omega_figure}
_CHGD: dict[str, FigureMaker] = {
    "steps.png": steps_figure,
    "residual_polynomial.png": residual_polynomial_figure,
    "error_curves.png": error_curves_figure,
}
FIGURES_BY_PROBLEM: dict[str, dict[str, FigureMaker]] = {"dugd": _DUGD, "chgd": _CHGD, "psor": _PSOR, "unrolling": {}, "probe": {}}


def run_figures(result: Mapping[str, Any], only: Collection[str] | None = None) -> dict[str, bytes]:
    """Every figure a run supports (or those named in `only`), as {file name: PNG bytes}.

    Dispatches on params.problem (DUGD when absent). A figure whose series are missing is skipped,
    so a FAILED result without series gives {} and a partial one gives what it can.
    """
    problem = params_of(result).get("problem", "dugd")
    makers = FIGURES_BY_PROBLEM.get(str(problem), _DUGD | _PSOR)
    pngs: dict[str, bytes] = {}
    for name, make in makers.items():
        if only is not None and name not in only:
            continue
        figure = make(result)
        if figure is not None:
            pngs[name] = to_png(figure)
    return pngs


SUMMARY_PNG = "summary.png"


def summary_figures(result: Mapping[str, Any]) -> dict[str, bytes]:
    """{'summary.png': PNG} for a run with data, else {}: what a sweep renders per run (see summary_figure)."""
    figure = summary_figure(result)
    return {SUMMARY_PNG: to_png(figure, SUMMARY_DPI)} if figure is not None else {}


def record_figures(record: Mapping[str, Any], min_run_s: float = MIN_RUN_S_FOR_FIGURES) -> dict[str, str]:
    """The per-run figures of a transport record (Result.as_record()), base64-encoded so that the record
    stays JSON (the coordinator's writer may spool it to disk). Called inside the Ray task; {} for runs
    shorter than `min_run_s`, whose figures would cost more than the share the sweep allows
    (study.figures.budget)."""
    from workers.result import Result

    if not worth_rendering(record, min_run_s):
        return {}
    pngs = summary_figures(Result.from_dict(dict(record)).to_dict())
    return {name: base64.b64encode(png).decode("ascii") for name, png in pngs.items()}


def decode_figures(encoded: Mapping[str, str]) -> dict[str, bytes]:
    return {name: base64.b64decode(text) for name, text in encoded.items()}
