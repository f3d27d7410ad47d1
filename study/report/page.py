"""`study report SWEEP`: one self-contained HTML page with its PNGs, also logged on the sweep's parent run.

Public face:
    build_report(sweep, out_dir, metric="root_error", x="T", y="kappa", panel="n",
                 tracking_uri=None, log_to_mlflow=True) -> Report
    swept_axes(frame, order=()) -> list[str]

The page holds the sweep file and its counts, the aggregated table (exactly study.reading.results.aggregate over
the swept axes, in the cells `study results` prints: mean ± std (count), study.reading.query.compact_cells),
heatmaps of the metric, the metric against each swept axis, the step overlays of the runs with the
largest and smallest metric, and the failures with reasons.
Every piece of text goes through html.escape (pandas escapes its tables itself).
"""

from __future__ import annotations

import html
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import mlflow
import pandas as pd
import yaml
from mlflow import MlflowClient

import study.mlflow_names as names

from study.figures import run_figures as plots

from study.report import sweep_figures as sweep_plots
from study.reading.query import Query, column_text, compact_cells
from study.reading.results import aggregate, load_results, parent_runs, pruned_mask, sweep_file_text
from workers.specs import SPEC_CLASSES

REPORT_ARTIFACT_DIR = "report"
# Parameter names come from the spec models, the single source of them; `seed` is the replicate axis.
PARAMETER_NAMES = list(dict.fromkeys(["problem", *(n for cls in SPEC_CLASSES.values() for n in cls.model_fields)]))
REPLICATE_AXIS = "seed"
OVERLAYS = ("steps.png", "roots.png", "omega.png", "error_curves.png")  # per-run figures shown for extremes


@dataclass
class Report:
    """Where the page went and what it shows (for the CLI line and for tests)."""

    index: Path
    figures: list[Path] = field(default_factory=list)
    table: pd.DataFrame | None = None
    swept: list[str] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)
    parent_run_id: str | None = None


def swept_axes(frame: pd.DataFrame, order: Sequence[str] = ()) -> list[str]:
    """Parameters that take more than one value across the sweep's runs, seeds excluded.

    `order` (the sweep file's parameter order) decides the column order; other axes follow.
    """
    present = [name for name in PARAMETER_NAMES if name in frame.columns and name != REPLICATE_AXIS]
    varying = [name for name in present if frame[name].nunique(dropna=False) > 1]
    ranked = [name for name in order if name in varying]
    return ranked + [name for name in varying if name not in ranked]


def _sweep_parameter_order(sweep_text: str | None) -> list[str]:
    try:
        parameters = (yaml.safe_load(sweep_text or "") or {}).get("parameters") or {}
    except (yaml.YAMLError, AttributeError):
        return []
    return list(parameters) if isinstance(parameters, dict) else []


def _result_json(run_id: str) -> dict | None:
    try:
        return mlflow.artifacts.load_dict(f"runs:/{run_id}/{names.RESULT_ARTIFACT}")
    except Exception:  # noqa: BLE001 - a run that died before logging has no result.json
        return None


def _extremes(frame: pd.DataFrame, metric: str, count: int) -> list[tuple[str, pd.Series]]:
    """The `count` finished runs with the largest and the smallest finite metric, labelled."""
    if metric not in frame.columns:
        return []
    finished = frame[(frame["status"] == "FINISHED") & frame[metric].notna()]
    finished = finished[finished[metric].map(lambda v: math.isfinite(float(v)))].sort_values(metric)
    picked: list[tuple[str, pd.Series]] = []
    seen: set[str] = set()
    for label, rows in (("largest", finished.iloc[::-1].head(count)), ("smallest", finished.head(count))):
        for _, row in rows.iterrows():
            if row["run_id"] not in seen:
                seen.add(row["run_id"])
                picked.append((label, row))
    return picked


class _Page:
    """An HTML page under construction; every text goes through html.escape."""

    def __init__(self, title: str):
        self.parts = [
            "<!DOCTYPE html>",
            '<html lang="en"><head><meta charset="utf-8">',
            f"<title>{html.escape(title)}</title>",
            "<style>body{font-family:sans-serif;margin:2em;max-width:1200px}"
            "table{border-collapse:collapse;font-size:13px}td,th{border:1px solid #ccc;padding:2px 6px;text-align:right}"
            "pre{background:#f4f4f4;padding:1em;overflow:auto}img{max-width:100%}figure{margin:1em 0}"
            ".failed{color:#a00}</style></head><body>",
        ]

    def heading(self, text: str, level: int = 2) -> None:
        self.parts.append(f"<h{level}>{html.escape(text)}</h{level}>")

    def paragraph(self, text: str, css: str | None = None) -> None:
        attribute = f' class="{css}"' if css else ""
        self.parts.append(f"<p{attribute}>{html.escape(text)}</p>")

    def code(self, text: str) -> None:
        self.parts.append(f"<pre>{html.escape(text)}</pre>")

    def table(self, frame: pd.DataFrame, css: str | None = None) -> None:
        self.parts.append(frame.to_html(index=False, escape=True, na_rep="—", float_format=lambda v: f"{v:.6g}",
                                        classes=css))

    def image(self, name: str, caption: str) -> None:
        source = html.escape(name, quote=True)
        self.parts.append(f'<figure><img src="{source}" alt="{html.escape(caption, quote=True)}">'
                          f"<figcaption>{html.escape(caption)}</figcaption></figure>")

    def html(self) -> str:
        return "\n".join([*self.parts, "</body></html>", ""])


def _save(out_dir: Path, name: str, png: bytes, written: list[Path]) -> str:
    path = out_dir / name
    path.write_bytes(png)
    written.append(path)
    return name


def _safe_name(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in text)


def build_report(sweep: str, out_dir: str | Path, metric: str = "root_error", x: str | None = "T",
                 y: str | None = "kappa", panel: str | None = "n", tracking_uri: str | None = None,
                 log_to_mlflow: bool = True, extremes: int = 2) -> Report:
    """Write out_dir/index.html and its PNGs; log them on the sweep's parent run under report/."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    frame = load_results(sweep, tracking_uri)  # raises SweepNotFound; sets the tracking URI
    if metric not in frame.columns and (frame["status"] == "FINISHED").any():
        fields = sorted(c for c in frame.columns if c not in {"run_id", "run_key", "status", "reason", *PARAMETER_NAMES})
        raise KeyError(f"--metric: got {metric!r}, expected a result field of this sweep ({', '.join(fields)})")
    parent_id = str(parent_runs(tracking_uri, sweep).iloc[0]["run_id"])
    sweep_text = sweep_file_text(parent_id)
    swept = swept_axes(frame, _sweep_parameter_order(sweep_text))
    counts = {
        "runs": int(len(frame)),
        "done": int((frame["status"] == "FINISHED").sum()),
        "failed": int((frame["status"] == "FAILED").sum()),
    }
    pruned = int(pruned_mask(frame).sum())
    counts["other"] = counts["runs"] - counts["done"] - counts["failed"] - pruned
    if pruned:
        counts["pruned"] = pruned
    report = Report(index=out_dir / "index.html", swept=swept, counts=counts, parent_run_id=parent_id)
    page = _Page(f"Sweep report: {sweep}")
    page.heading(f"Sweep report: {sweep}", 1)
    page.paragraph(f"{counts['runs']} runs: {counts['done']} done, {counts['failed']} failed"
                   + (f", {counts['pruned']} pruned" if counts.get("pruned") else "")
                   + (f", {counts['other']} other" if counts["other"] else "")
                   + f". Metric: {metric}. Swept axes: {', '.join(swept) or 'none'}.")

    page.heading("Sweep file")
    if sweep_text:
        page.code(sweep_text)
    else:
        page.paragraph("(no sweep.yaml artifact on the parent run)")

    has_metric = metric in frame.columns and frame[metric].notna().any()
    page.heading(f"{metric}: mean, std and count over seeds")
    if has_metric:
        report.table = aggregate(frame, swept, [metric])
        report.table.to_csv(out_dir / "table.csv", index=False)
        page.paragraph(f"Same numbers as: study results {sweep} --group-by {','.join(swept)} --metric {metric}")
        # The cells `study results` prints (mean ± std (count), digits per column); table.csv keeps every digit.
        page.table(compact_cells(report.table, Query(group_by=swept, metrics=[metric])), css="results")
        _figures(page, frame, metric, x, y, panel, swept, out_dir, report.figures)
    else:
        page.paragraph(f"No run reported {metric}; nothing to aggregate or plot.")

    _insight_section(page, sweep, sweep_text, frame, metric, tracking_uri, out_dir, report.figures)

    page.heading(f"Runs with the largest and smallest {metric}")
    _extreme_runs(page, frame, metric, swept, extremes, out_dir, report.figures)

    page.heading("Failures")
    failures = frame[frame["status"] != "FINISHED"]
    if failures.empty:
        page.paragraph("No failed runs.")
    else:
        columns = ["run_key", *[c for c in [*swept, REPLICATE_AXIS] if c in failures], "status", "reason"]
        page.table(failures[columns])
    report.index.write_text(page.html(), encoding="utf-8")
    if log_to_mlflow:
        MlflowClient(tracking_uri).log_artifacts(parent_id, str(out_dir), artifact_path=REPORT_ARTIFACT_DIR)
    return report


def _figures(page: _Page, frame: pd.DataFrame, metric: str, x: str | None, y: str | None, panel: str | None,
             swept: list[str], out_dir: Path, written: list[Path]) -> None:
    page.heading(f"{metric} over {x} × {y}, one panel per {panel}")
    missing = [a for a in (x, y, panel) if a and a not in frame.columns]
    if missing:
        page.paragraph(f"Not in this sweep's parameters (shown as one row / column / panel): {', '.join(missing)}")
    name = _save(out_dir, f"heatmap_{_safe_name(metric)}.png",
                 plots.to_png(sweep_plots.heatmap_figure(frame, metric, x, y, panel)), written)
    page.image(name, f"{metric}, mean over seeds, by {x} and {y}, panels by {panel}")
    page.heading(f"{metric} against each swept axis")
    if not swept:
        page.paragraph("No parameter takes more than one value.")
    for axis in swept:
        figure = sweep_plots.metric_by_axis_figure(frame, metric, axis, swept)
        name = _save(out_dir, f"by_{_safe_name(axis)}.png", plots.to_png(figure), written)
        page.image(name, f"{metric} against {axis}, error bars: std over seeds")


def _insight_section(page: _Page, sweep: str, sweep_text: str | None, frame: pd.DataFrame, metric: str,
                     tracking_uri: str | None, out_dir: Path, written: list[Path]) -> None:
    """The Pareto front (2 or more metrics) and the parameter importances, when the sweep file is there."""
    from study.reading import analysis as insight
    from study.errors import StudyInputError
    from study.spec.loading import load_sweep

    try:
        stored = load_sweep(sweep_text) if sweep_text else None
    except StudyInputError:
        stored = None
    if stored is None:
        return
    if stored.is_multi_objective:
        names_ = [m.name for m in stored.metrics]
        page.heading(f"Pareto front: {', '.join(names_)}")
        try:
            front = insight.pareto_front(frame, stored)
            points = insight.point_means(frame, stored, names_)
        except (KeyError, ValueError) as error:
            page.paragraph(f"No front: {error.args[0] if error.args else error}")
        else:
            page.paragraph(f"Same points as: study results {sweep} --pareto ({len(front)} of {len(points)} points)")
            shown = front.assign(**{name: column_text(front[name]) for name in names_})
            page.table(shown)
            if len(points):
                name = _save(out_dir, "pareto.png", plots.to_png(sweep_plots.pareto_figure(points, front, stored.metrics)), written)
                page.image(name, f"{names_[0]} against {names_[1]}: finished points and the non-dominated ones")
    target = metric if metric in frame.columns else stored.metric.name
    page.heading(f"Which parameter mattered for {target}")
    try:
        table, source = insight.importances(stored, frame, tracking_uri, target)
    except (KeyError, ValueError) as error:
        page.paragraph(f"No importances: {error.args[0] if error.args else error}")
        return
    page.paragraph(f"fANOVA importances from {source}; same as: study results {sweep} --importance --metric {target}")
    page.table(table)
    name = _save(out_dir, f"importance_{_safe_name(target)}.png",
                 plots.to_png(sweep_plots.importance_figure(table, f"importance for {target}")), written)
    page.image(name, f"parameter importance for {target}")


def _extreme_runs(page: _Page, frame: pd.DataFrame, metric: str, swept: list[str], count: int, out_dir: Path,
                  written: list[Path]) -> None:
    picked = _extremes(frame, metric, count)
    if not picked:
        page.paragraph("No finished run with a finite value.")
    for label, row in picked:
        described = ", ".join(f"{a}={row[a]}" for a in [*swept, REPLICATE_AXIS] if a in row.index)
        page.heading(f"{label} {metric} = {float(row[metric]):.4g}: {described}", 3)
        page.paragraph(f"run {row['run_id']} (key {row['run_key']})")
        result = _result_json(str(row["run_id"]))
        pngs = plots.run_figures(result, only=OVERLAYS) if result else {}
        shown = [n for n in OVERLAYS if n in pngs]
        if not shown:
            page.paragraph("(no result.json artifact or no steps in it)")
        for figure_name in shown:
            name = _save(out_dir, f"{label}_{_safe_name(str(row['run_key']))}_{figure_name}", pngs[figure_name], written)
            page.image(name, f"{figure_name.removesuffix('.png')} of run {row['run_key']}")


__all__ = ["PARAMETER_NAMES", "Report", "build_report", "swept_axes"]
