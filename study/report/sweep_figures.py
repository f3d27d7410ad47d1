"""Sweep-level figures (matplotlib, Agg) from study.reading.results frames: heatmaps and metric-by-axis lines.

Public face:
    heatmap_figure(frame, metric, x, y, panel) -> Figure       mean over seeds, one panel per value of `panel`
    metric_lines_figure(table, axis, metric) -> Figure          an aggregate() table: mean ± std against `axis`
    metric_by_axis_figure(frame, metric, axis, swept) -> Figure  the same from the raw frame, lines per other axes
    pareto_figure(points, front, metrics) -> Figure              study.reading.analysis's points and front, first two metrics
    importance_figure(table, title) -> Figure                    study.reading.analysis.importances as bars

All numbers come from study.reading.results.aggregate, so a figure shows exactly what `study results` prints.
Axes that are missing from the frame, or hold a single value, collapse to one row / column / panel.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.colors import LogNorm, Normalize
from matplotlib.figure import Figure

from study.spec.objectives import Metric
from study.figures.run_figures import integer_x, log_axis, new_figure
from study.reading.results import aggregate

_ALL = "(all)"
MAX_LINES = 10  # beyond this many combinations of the other axes, plot the marginal mean instead
_ANNOTATE_CELLS = 80


def ordered(values: Sequence[Any]) -> list[Any]:
    """Distinct values, numbers first in numeric order, then strings (MLflow params may mix them)."""
    distinct = list(dict.fromkeys(values))
    return sorted(distinct, key=lambda v: (isinstance(v, str), v if not isinstance(v, str) else 0, str(v)))


def _label(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _with_axes(frame: pd.DataFrame, axes: Sequence[str | None]) -> tuple[pd.DataFrame, list[str]]:
    """The frame with a constant column standing in for each missing axis; NaN values shown as '—'."""
    frame = frame.copy()
    names = []
    for index, axis in enumerate(axes):
        if axis is None or axis not in frame.columns:
            axis = f"_axis{index}"
            frame[axis] = _ALL
        elif frame[axis].isna().any():
            frame[axis] = frame[axis].astype(object).where(frame[axis].notna(), "—")
        names.append(axis)
    return frame, names


def _is_positive_spread(values: np.ndarray) -> bool:
    finite = values[np.isfinite(values)]
    return finite.size > 0 and finite.min() > 0 and finite.max() / finite.min() >= 10


def heatmap_figure(frame: pd.DataFrame, metric: str, x: str | None = "T", y: str | None = "kappa",
                   panel: str | None = "n") -> Figure:
    """Heatmap of the metric's mean over seeds on (x, y), one panel per value of `panel`."""
    work, (x_col, y_col, panel_col) = _with_axes(frame, [x, y, panel])
    keys = list(dict.fromkeys([x_col, y_col, panel_col]))  # x == y or panel == x collapse to fewer keys
    table = aggregate(work, keys, [metric])
    means = table[f"{metric}_mean"].to_numpy(dtype=np.float64)
    xs, ys, panels = ordered(table[x_col]), ordered(table[y_col]), ordered(table[panel_col])
    norm = (LogNorm if _is_positive_spread(means) else Normalize)(*_limits(means))
    columns = min(len(panels), 3)
    rows = math.ceil(len(panels) / columns)
    figure = new_figure(2.2 + 3.2 * columns, 0.8 + 2.9 * rows)
    figure.subplots_adjust(left=0.1, right=0.9, bottom=0.12, top=0.86, wspace=0.35, hspace=0.45)
    grid = np.atleast_1d(figure.subplots(rows, columns, squeeze=False)).ravel()
    image = None
    for axes, value in zip(grid, panels):
        cells = table[table[panel_col] == value].set_index([y_col, x_col])[f"{metric}_mean"]
        matrix = np.full((len(ys), len(xs)), np.nan)
        for (y_value, x_value), mean in cells.items():
            matrix[ys.index(y_value), xs.index(x_value)] = mean
        image = axes.imshow(matrix, origin="lower", aspect="auto", cmap="viridis", norm=norm)
        axes.set_xticks(range(len(xs)), [_label(v) for v in xs], fontsize=8)
        axes.set_yticks(range(len(ys)), [_label(v) for v in ys], fontsize=8)
        axes.set(xlabel=x or "", ylabel=y or "",
                 title=f"{panel} = {_label(value)}" if panel_col == panel else "")
        if matrix.size <= _ANNOTATE_CELLS:
            for (row, column), mean in np.ndenumerate(matrix):
                if np.isfinite(mean):
                    axes.text(column, row, f"{mean:.2g}", ha="center", va="center", fontsize=7, color="w")
    for axes in grid[len(panels):]:
        axes.set_visible(False)
    if image is not None:
        figure.colorbar(image, ax=list(grid[: len(panels)]), fraction=0.05, pad=0.03)
    figure.suptitle(f"{metric}: mean over seeds", fontsize=10)
    return figure


def _limits(values: np.ndarray) -> tuple[float | None, float | None]:
    finite = values[np.isfinite(values)]
    return (float(finite.min()), float(finite.max())) if finite.size else (None, None)


def metric_lines_figure(table: pd.DataFrame, axis: str, metric: str, title: str | None = None) -> Figure:
    """Mean ± std (over seeds) of an aggregate() table against `axis`; one line per value of the other
    group-by columns. Numeric axes get a numeric x: log when it spans a decade, integer ticks when its
    values are whole numbers; others are categorical."""
    mean, std = f"{metric}_mean", f"{metric}_std"
    others = [c for c in table.columns if c not in {axis, "failed"} and not c.startswith(f"{metric}_")
              and not any(c.endswith(s) for s in ("_mean", "_std", "_count"))]
    figure = new_figure()
    axes = figure.subplots()
    numeric = pd.api.types.is_numeric_dtype(table[axis])
    positions = {v: i for i, v in enumerate(ordered(table[axis].dropna()))}
    groups = table.groupby(others, dropna=False, sort=True) if others else [((), table)]
    for key, group in groups:
        group = group.dropna(subset=[axis])
        x_values = group[axis].to_numpy(dtype=np.float64) if numeric else group[axis].map(positions).to_numpy()
        order = np.argsort(x_values)
        key = key if isinstance(key, tuple) else (key,)
        label = ", ".join(f"{name}={_label(value)}" for name, value in zip(others, key)) or metric
        axes.errorbar(x_values[order], group[mean].to_numpy()[order], yerr=group[std].fillna(0).to_numpy()[order],
                      marker="o", markersize=4, capsize=3, linewidth=1.2, label=label)
    x_all = table[axis].dropna().to_numpy(dtype=np.float64) if numeric else np.array([])
    if numeric and _is_positive_spread(x_all):  # spans a decade or more (kappa, lr): log
        log_axis(axes, "x")
    elif numeric and np.all(x_all == np.round(x_all)):  # whole numbers (T, n): no 4.5 layers
        integer_x(axes)
    if not numeric:
        axes.set_xticks(list(positions.values()), [_label(v) for v in positions])
    if _is_positive_spread(table[mean].to_numpy(dtype=np.float64)):
        log_axis(axes)
    axes.set(xlabel=axis, ylabel=f"{metric} (mean ± std over seeds)", title=title or f"{metric} by {axis}")
    if len(axes.get_lines()) > 1 or others:
        axes.legend(fontsize=7)
    return figure


def metric_by_axis_figure(frame: pd.DataFrame, metric: str, axis: str, swept: Sequence[str]) -> Figure:
    """The metric against one swept axis, error bars over seeds, one line per combination of the other
    swept axes (or their marginal mean when there are more than MAX_LINES combinations)."""
    others = [a for a in swept if a != axis]
    table = aggregate(frame, [axis, *others], [metric])
    if others and table[others].drop_duplicates().shape[0] > MAX_LINES:
        return metric_lines_figure(aggregate(frame, [axis], [metric]), axis, metric,
                                   title=f"{metric} by {axis} (mean ± std over seeds and other axes)")
    return metric_lines_figure(table, axis, metric)


def pareto_figure(points: pd.DataFrame, front: pd.DataFrame, metrics: list[Metric]) -> Figure:
    """Every finished point (mean over seeds) in the plane of the first two metrics, the front joined."""
    x, y = metrics[0].name, metrics[1].name
    figure = new_figure()
    axes = figure.subplots()
    axes.scatter(points[x], points[y], s=14, color="0.6", label=f"finished points ({len(points)})")
    ordered_front = front.sort_values(x)
    over = "" if len(metrics) == 2 else f" over all {len(metrics)} metrics"
    axes.plot(ordered_front[x], ordered_front[y], marker="o", color="C3", linewidth=1.2 if len(metrics) == 2 else 0,
              label=f"non-dominated{over} ({len(front)})", drawstyle="steps-post" if len(metrics) == 2 else "default")
    for axis, name in (("x", x), ("y", y)):
        values = points[name].to_numpy(dtype=float)
        if len(values) and np.all(values > 0) and values.max() / values.min() > 20:
            log_axis(axes, axis)
    axes.set(xlabel=f"{x} ({metrics[0].goal})", ylabel=f"{y} ({metrics[1].goal})", title=f"Pareto front: {x} vs {y}")
    axes.legend(fontsize=7)
    return figure


def importance_figure(table: pd.DataFrame, title: str) -> Figure:
    """Parameter importances (a table of parameter, importance) as horizontal bars, largest on top."""
    figure = new_figure(height=max(2.0, 0.5 + 0.35 * len(table)))
    axes = figure.subplots()
    shown = table.iloc[::-1]
    axes.barh(shown["parameter"].astype(str), shown["importance"], color="C0")
    axes.set(xlabel="importance (sums to 1)", xlim=(0, 1), title=title)
    return figure
