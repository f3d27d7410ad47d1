"""How the `study` command prints what it read: one-line errors, the results table (compact in a
terminal, every field in a file), CSV / JSON / Parquet output, and the `--plot` PNG. study.cli parses
the arguments and reads; this module only shows."""

from __future__ import annotations

import os
import sys
from typing import Any

import typer


def show_version(value: bool) -> None:
    """`study --version`: the installed package's version, then exit."""
    if not value:
        return
    from importlib.metadata import PackageNotFoundError, version

    try:
        installed = version("deep-unfolding-study")
    except PackageNotFoundError:  # run from a checkout that was never pip-installed
        installed = "unknown (not installed; pip install -e .)"
    typer.echo(f"study {installed}")
    raise typer.Exit()


def fail(lines: list[str] | str, code: int = 2) -> None:
    """Print one line per error to stderr and exit (2 for bad input)."""
    for line in [lines] if isinstance(lines, str) else lines:
        typer.echo(f"error: {line}", err=True)
    raise typer.Exit(code)


def emit(frame: Any, fmt: str, output: str | None, title: str) -> None:
    """Write a DataFrame as a rich table, CSV, JSON or Parquet (to stdout, or to -o FILE)."""
    if fmt == "parquet":
        if not output:
            fail("--format parquet: got no -o FILE, expected an output file for binary output")
        frame.to_parquet(output, index=False)
    elif fmt in {"csv", "json"}:
        text = frame.to_csv(index=False) if fmt == "csv" else frame.to_json(orient="records", indent=2)
        if output:
            with open(output, "w", encoding="utf-8") as handle:
                handle.write(text)
        else:
            typer.echo(text)
    else:
        from rich.console import Console
        from rich.table import Table

        table = Table(title=title)
        for column in frame.columns:
            table.add_column(str(column), justify="right", min_width=len(str(column)))
        for row in frame.itertuples(index=False):
            table.add_row(*[f"{v:.4g}" if isinstance(v, float) else str(v) for v in row])
        Console(width=max(100, 14 * len(frame.columns))).print(table)
        if output:
            frame.to_csv(output, index=False)
    if output:
        typer.echo(f"wrote {output}", err=True)


def show_results(table: Any, query: Any, sweep: str, fmt: str, output: str | None, wide: bool) -> None:
    """The default table is compact (`mean ± std (count)`, fits the terminal); --wide, --runs and the
    file formats keep every field. A line names the varying axes the groups pooled over."""
    from study.reading.query import POOLED_COLUMN, compact_cells

    selection = f" where {query.where_text}" if query.where else ""
    if query.runs:  # a run without a reason shows an empty cell, not nan
        shown = table.astype(object).where(table.notna(), "") if fmt == "table" else table
        return emit(shown, fmt, output, f"{sweep}: runs{selection}")
    title = f"{sweep}: mean ± std (count) by {', '.join(query.group_by) or 'all'}{selection}"
    pooled = table[POOLED_COLUMN].iloc[0] if POOLED_COLUMN in table.columns and len(table) else None
    if fmt != "table" or wide:
        emit(table.drop(columns=[POOLED_COLUMN]) if pooled and fmt == "table" else table, fmt, output, title)
    else:
        from rich import box
        from rich.console import Console
        from rich.table import Table

        cells = compact_cells(table, query)
        shown = Table(title=title, box=box.SIMPLE_HEAD, pad_edge=False)
        for column in cells.columns:
            shown.add_column(str(column), justify="right", no_wrap=column in query.group_by)
        for row in cells.itertuples(index=False):
            shown.add_row(*row)
        # The terminal's width (or $COLUMNS); written to a pipe or file, the table's own width.
        width = None if os.environ.get("COLUMNS") or sys.stdout.isatty() else 10_000
        Console(width=width).print(shown)
        if output:
            table.to_csv(output, index=False)
            typer.echo(f"wrote {output}", err=True)
    if pooled and fmt == "table":
        typer.echo(f"pooled over: {pooled}; add to --group-by or pick with --where to keep apart")


def plot_results(table: Any, sweep: str, axis: str, group_by: list[str], metrics: list[str], output: str | None) -> None:
    """`results --plot AXIS`: the (first) metric's mean ± std against AXIS, one line per other group."""
    from study.figures.run_figures import to_png
    from study.report.sweep_figures import metric_lines_figure

    if axis not in group_by:
        fail(f"--plot: got {axis!r}, expected one of the --group-by axes ({', '.join(group_by) or 'none given'})")
    path = f"{output.rsplit('.', 1)[0]}.png" if output and not output.endswith(".png") else output
    path = path or f"{sweep}_{metrics[0]}_by_{axis}.png"
    with open(path, "wb") as handle:
        handle.write(to_png(metric_lines_figure(table, axis, metrics[0], title=f"{sweep}: {metrics[0]} by {axis}")))
    typer.echo(f"wrote {path}", err=True)
