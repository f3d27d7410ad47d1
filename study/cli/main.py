"""The `study` command. Thin: parses arguments and delegates to the study modules."""

from __future__ import annotations

import faulthandler
import json
import os
import signal
import sys
from pathlib import Path
from typing import Any

import typer
import yaml
from pydantic import ValidationError

from study.cli.output import emit, fail, plot_results, show_results, show_version
from study.errors import StudyInputError, describe_validation_error

os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # progress bars garble the terminal

EXIT_WRITES_PENDING = 75  # EX_TEMPFAIL: the store was down; the journal keeps the writes for a resubmission
app = typer.Typer(no_args_is_help=True, help="Deep-unfolding study service.")  # --install-completion: README


@app.callback()
def _root(version: bool = typer.Option(False, "--version", callback=show_version, is_eager=True,
                                       help="print the version and exit")) -> None:
    """Deep-unfolding study service: sweeps of DUGD / PSOR runs on Ray, tracked in MLflow."""
    # `kill -USR1 PID` prints every thread's stack to stderr: how to see where a stuck coordinator waits.
    try:
        faulthandler.register(signal.SIGUSR1, all_threads=True)
    except (AttributeError, ValueError):  # a stderr without a file descriptor (an in-process test runner)
        pass


def parse_assignments(assignments: list[str]) -> dict[str, Any]:
    """KEY=VALUE pairs; values are YAML scalars (safe_load), so n=300 is an int and init=random a string."""
    params: dict[str, Any] = {}
    errors = []
    for item in assignments:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            errors.append(f"{item}: got {item!r}, expected KEY=VALUE")
            continue
        try:
            value = yaml.safe_load(raw) if raw else None
        except yaml.YAMLError:
            value = raw
        if isinstance(value, (dict, list)) or value is None and raw:
            value = raw
        params[key] = value
    if errors:
        raise StudyInputError(errors)
    return params


@app.command("run-one")
def run_one(
    assignments: list[str] = typer.Argument(None, help="run parameters as KEY=VALUE"),
    as_json: bool = typer.Option(False, "--json", help="print the whole Result as JSON"),
) -> None:
    """Run one spec in-process (no Ray, no MLflow) and print its Result."""
    from workers.run import parse_spec, run

    try:
        spec = parse_spec(parse_assignments(assignments or []))
    except StudyInputError as error:
        fail(error.errors)
    except ValidationError as error:
        fail(describe_validation_error(error))
    result = run(spec)
    if as_json:
        typer.echo(json.dumps(result.to_dict(), indent=2))
    else:
        from rich.console import Console
        from rich.table import Table

        table = Table(title=f"{spec.problem} run: {result.status}")
        table.add_column("field")
        table.add_column("value")
        for key, value in result.scalars.items():
            table.add_row(key, "not reached" if value is None else f"{value:.6g}")
        for key, values in result.series.items():
            shown = ", ".join(f"{v:.4g}" for v in values[:8]) + (" ..." if len(values) > 8 else "")
            table.add_row(key, f"[{shown}]")
        if result.reason:
            table.add_row("reason", result.reason)
        Console().print(table)
    if result.status != "FINISHED":
        raise typer.Exit(1)


def _load_sweep_or_exit(file: str):
    from study.spec.loading import load_sweep

    try:
        return load_sweep(Path(file))
    except StudyInputError as error:
        fail(error.errors)


def _call_server(server: str, call):
    """Run a client call; the service's refusals become one-line errors (exit 2 for bad input)."""
    import httpx

    from study.client import ServiceError

    try:
        return call()
    except ServiceError as error:
        fail(error.lines, 2 if error.status_code in (404, 422) else 3 if error.status_code == 409 else 1)  # 3: sweep busy
    except httpx.HTTPError as error:
        fail(f"--server: got {server!r}, expected a reachable study service ({type(error).__name__}: {error})", 1)


@app.command("validate")
def validate(file: str = typer.Argument(..., help="sweep file (YAML or JSON)")) -> None:
    """Check a sweep file: every error one line (exit 2), or a summary of the runs it asks for."""
    from study.spec.checks import seed_note

    sweep = _load_sweep_or_exit(file)
    typer.echo(sweep.summary())
    note = seed_note(sweep)
    if note:
        typer.echo(note)


@app.command("submit")
def submit(
    file: str = typer.Argument(..., help="sweep file (YAML or JSON)"),
    tracking_uri: str = typer.Option(None, "--tracking-uri", help="MLflow store (default: MLFLOW_TRACKING_URI or sqlite:///mlflow.db)"),
    address: str = typer.Option(None, "--address", help="Ray cluster to join (default: RAY_ADDRESS or a local Ray)"),
    optuna_storage: str = typer.Option(None, "--optuna-storage", help="RDB URL or journal file (search methods)"),
    max_in_flight: int = typer.Option(None, "--max-in-flight", min=1, help="Ray tasks in flight (default 2 x slots)"),
    figures: bool = typer.Option(True, "--figures/--no-figures", help="summary.png beside runs >= 2 s (others: study figures)"),
    server: str = typer.Option(None, "--server", envvar="STUDY_SERVER", help="send it to `study serve` at URL and follow it"),
    wait: bool = typer.Option(False, "--wait", help="if another coordinator runs this sweep, wait for it, then resume"),
) -> None:
    """Run a sweep on Ray with a live progress line; resubmitting resumes it. Ctrl-C cancels (exit 130).
    Exit 3 when another coordinator runs the sweep on this store (one line says who; see --wait)."""
    import threading

    sweep = _load_sweep_or_exit(file)  # nothing is submitted or written while the file has errors
    from study.spec.checks import seed_note

    for note in [*sweep.notes, seed_note(sweep)]:  # e.g. a grid ignores its pruner; seeds that change nothing
        if note:
            typer.echo(note, err=True)
    if server:  # the service runs it; token from $STUDY_API_TOKEN
        from study.client import submit_to_server

        if wait:
            fail(f"--wait: got it with --server {server!r}, expected it only for a local coordinator (the service answers 409)")
        raise typer.Exit(_call_server(server, lambda: submit_to_server(server, sweep.source_text, echo=typer.echo)))
    import time

    imports_started = time.monotonic()
    from study.scheduling import lease
    from study.recording import parent_run as sweep_start
    from study.recording import layout as tracking
    from study.scheduling.coordinator import submit as submit_sweep
    from study.cli.progress import ProgressLine, summary_text

    imports_s = time.monotonic() - imports_started

    try:  # before the progress line: a refusal is one line
        held = lease.acquire(sweep, tracking.resolve_tracking_uri(tracking_uri), wait=wait,
                             on_wait=lambda line: typer.echo(line, err=True))
    except lease.SweepBusy as busy:
        fail(str(busy), 3)
    except sweep_start.SweepStartRefused as refused:
        fail(str(refused), 1)

    cancel = threading.Event()

    def on_interrupt(signum, frame):  # first Ctrl-C: stop cleanly; second: the default (abort)
        cancel.set()
        signal.signal(signal.SIGINT, signal.default_int_handler)

    signal.signal(signal.SIGINT, on_interrupt)
    try:
        with ProgressLine(sweep.metric.name) as progress:
            summary = submit_sweep(sweep, tracking_uri=tracking_uri, ray_address=address, optuna_storage=optuna_storage,
                                   max_in_flight=max_in_flight, on_progress=progress, cancel_event=cancel,
                                   figures=figures, held=held)
    except sweep_start.SweepStartRefused as refused:
        fail(str(refused), 1)
    typer.echo(summary_text(summary, sweep.metric.name))
    if os.environ.get("STUDY_TIMING"):  # where a sweep's seconds went (benchmarks/distinct_work.py reads these)
        import ray

        shutdown_started = time.monotonic()
        ray.shutdown()  # what the exit would do anyway (a local Ray stops with this process)
        phases = {"imports: MLflow, Ray": imports_s, **summary.phases, "ray shutdown": time.monotonic() - shutdown_started}
        for phase, seconds in phases.items():
            typer.echo(f"timing: {phase}: {seconds:.2f} s", err=True)
    if summary.status == "KILLED":
        raise typer.Exit(130)
    if summary.spool:  # the runs are done but the store did not take them all: not a success
        raise typer.Exit(EXIT_WRITES_PENDING)
TRACKING_URI = typer.Option(None, "--tracking-uri", envvar="MLFLOW_TRACKING_URI", help="MLflow store (default: ./mlflow.db)")


def _split(text: str) -> list[str]:
    return [item.strip() for item in text.split(",") if item.strip()]


FORMATS = {"table", "csv", "json", "parquet"}
SERVER = typer.Option(None, "--server", envvar="STUDY_SERVER", help="URL of a `study serve` service")


@app.command()
def results(
    sweep: str = typer.Argument(..., help="sweep name"),
    group_by: str = typer.Option("", "--group-by", help="comma-separated parameters, e.g. T,kappa"),
    metric: str = typer.Option(None, "--metric", help="comma-separated result fields (default root_error; "
                               "with --importance, the sweep's metric)"),
    where: str = typer.Option("", "--where", help="select runs first: n=64,mode=eigen  kappa>=30  mode=eigen|dense"),
    runs: bool = typer.Option(False, "--runs", help="one row per run: parameters, seed, metrics, status, reason, run id"),
    wide: bool = typer.Option(False, "--wide", help="the table as separate _mean, _std and _count columns"),
    fmt: str = typer.Option("table", "--format", help="table | csv | json | parquet"),
    output: str = typer.Option(None, "-o", "--output", help="write to FILE"),
    tracking_uri: str = TRACKING_URI,
    plot: str = typer.Option(None, "--plot", help="also draw the metric against this group-by axis to a PNG"),
    from_store: bool = typer.Option(False, "--from-store", help="read every run from MLflow, not the sweep's results table"),
    pareto: bool = typer.Option(False, "--pareto", help="the non-dominated points of a multi-objective sweep"),
    importance: bool = typer.Option(False, "--importance", help="parameter importances (fANOVA) for the metric"),
    optuna_storage: str = typer.Option(None, "--optuna-storage", help="with --importance: the search's Optuna storage"),
    server: str = SERVER,
) -> None:
    """Aggregated results of a sweep: mean ± std (count) over seeds, failures, and the varying axes it pooled over."""
    from study.reading import query as query_module
    from study.reading import results as results_module

    if fmt not in FORMATS:
        fail(f"--format: got {fmt!r}, expected one of table, csv, json, parquet")
    if pareto or importance:
        if pareto and importance:
            fail("--pareto: got it with --importance, expected one of them at a time")
        if server:
            fail(f"--server: got {server!r}, expected no --server with --pareto / --importance (they read the store)")
        return _insight(sweep, tracking_uri, metric, pareto, optuna_storage, fmt, output)
    metric = metric or "root_error"
    try:
        query = query_module.parse_query(group_by, metric, where, runs, query_module.CLI_LABELS, require_metric=True)
    except StudyInputError as error:
        fail(error.errors)
    if plot and runs:
        fail(f"--plot: got {plot!r}, expected no --runs (the figure draws the aggregated table)")
    if server:  # the same table, computed by `study serve` (token from $STUDY_API_TOKEN)
        from study.client import results_frame_from_server

        table = _call_server(server, lambda: results_frame_from_server(
            server, sweep, query.group_by, query.metrics, where=query.where_text, runs=query.runs))
    else:
        try:
            table = query_module.answer(results_module.load_results(sweep, tracking_uri, from_store=from_store), query)
        except results_module.SweepNotFound as error:
            fail(str(error))
        except StudyInputError as error:
            fail(error.errors)
    show_results(table, query, sweep, fmt, output, wide)
    if plot:
        plot_results(table, sweep, plot, query.group_by, query.metrics, output)


def _insight(sweep: str, tracking_uri: str | None, metric: str | None, pareto: bool, optuna_storage: str | None,
             fmt: str, output: str | None) -> None:
    """`results --pareto` / `--importance`: study.reading.analysis over the stored sweep."""
    from study.reading import analysis as insight
    from study.reading.results import SweepNotFound, load_results

    try:
        stored = insight.stored_sweep(sweep, tracking_uri)
        frame = load_results(sweep, tracking_uri)
        if pareto:
            if metric:
                fail(f"--metric: got {metric!r}, expected none with --pareto (the front is over the sweep's metric list)")
            front = insight.pareto_front(frame, stored)
            goals = ", ".join(f"{m.name} ({m.goal})" for m in stored.metrics)
            return emit(front, fmt, output, f"{sweep}: {len(front)} non-dominated points over {goals}")
        table, source = insight.importances(stored, frame, tracking_uri, metric, optuna_storage)
        emit(table, fmt, output, f"{sweep}: parameter importance")
        if fmt == "table":
            typer.echo(f"fANOVA importance for {source}; sums to 1")
    except SweepNotFound as error:
        fail(str(error))
    except StudyInputError as error:
        fail(error.errors)
    except (LookupError, ValueError) as error:
        fail(str(error.args[0]) if error.args else str(error))


@app.command()
def status(
    sweep: str = typer.Argument(None, help="sweep name (all sweeps when absent)"),
    tracking_uri: str = TRACKING_URI,
) -> None:
    """Run counts by state, for one sweep or for every sweep."""
    import pandas as pd

    from study.reading import results as results_module

    names = [sweep] if sweep else list(results_module.list_sweeps(tracking_uri)["sweep"])
    try:
        rows = [results_module.sweep_status(name, tracking_uri) for name in names]
    except results_module.SweepNotFound as error:
        fail(str(error))
    emit(pd.DataFrame(rows, columns=["sweep", "state", "runs", "finished", "failed", "pruned", "other"]), "table", None, "sweeps")


@app.command()
def sweeps(tracking_uri: str = TRACKING_URI, fmt: str = typer.Option("table", "--format")) -> None:
    """List every sweep in the tracking store."""
    from study.reading import results as results_module

    emit(results_module.list_sweeps(tracking_uri), fmt, None, "sweeps")


@app.command()
def report(
    sweep: str = typer.Argument(..., help="sweep name"),
    output: str = typer.Option(None, "-o", "--output", help="directory for index.html and its PNGs (default report-SWEEP)"),
    metric: str = typer.Option("root_error", "--metric", help="result field for the table, heatmaps and extremes"),
    x: str = typer.Option("T", "--x", help="heatmap x axis"),
    y: str = typer.Option("kappa", "--y", help="heatmap y axis"),
    panel: str = typer.Option("n", "--panel", help="one heatmap panel per value of this parameter"),
    tracking_uri: str = TRACKING_URI,
) -> None:
    """An HTML report of a sweep (with PNGs), also logged on the sweep's parent run under report/."""
    from study.report import page as report_module
    from study.reading.results import SweepNotFound

    try:
        made = report_module.build_report(sweep, output or f"report-{sweep}", metric, x, y, panel, tracking_uri)
    except SweepNotFound as error:
        fail(str(error))
    except KeyError as error:
        fail(str(error.args[0]))
    typer.echo(f"wrote {made.index} ({len(made.figures)} figures; {made.counts['done']} done, {made.counts['failed']} failed)")


@app.command()
def figures(
    sweep: str = typer.Argument(..., help="sweep name"),
    full: bool = typer.Option(False, "--all", help="every per-run figure, not only summary.png"),
    force: bool = typer.Option(False, "--force", help="re-render runs that already have figures"),
    processes: int = typer.Option(2, "--processes", min=1, help="rendering processes (niced)"),
    tracking_uri: str = TRACKING_URI,
) -> None:
    """Give every child run of a sweep its figures/ artifacts (runs too quick to render them in the sweep)."""
    from study.report.backfill import log_sweep_figures
    from study.reading.results import SweepNotFound

    try:
        stage = log_sweep_figures(sweep, tracking_uri, full=full, force=force, processes=processes)
    except SweepNotFound as error:
        fail(str(error))
    typer.echo(f"{sweep}: figures logged for {stage.rendered} runs; {stage.skipped} had them; "
               f"{stage.empty} with nothing to draw ({stage.runs} runs)")
@app.command("serve")
def serve(
    host: str = typer.Option("127.0.0.1", help="interface to bind (0.0.0.0 in a container)"),
    port: int = typer.Option(8000, help="port to listen on"),
    tracking_uri: str = typer.Option(None, "--tracking-uri", help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI)"),
    address: str = typer.Option(None, "--address", help="Ray cluster to run on (default: $RAY_ADDRESS, else local)"),
    optuna_storage: str = typer.Option(None, "--optuna-storage", help="Optuna storage URL for search sweeps"),
    max_in_flight: int = typer.Option(None, "--max-in-flight", help="runs in flight per sweep"),
    insecure: bool = typer.Option(False, "--insecure", help="serve without a token (never on a shared network)"),
) -> None:
    """Serve sweeps over HTTP (token from $STUDY_API_TOKEN); resumes unfinished sweeps on start."""
    from study.server.app import serve as run_service

    try:
        run_service(
            host=host, port=port, tracking_uri=tracking_uri, ray_address=address,
            optuna_storage=optuna_storage, insecure=insecure, max_in_flight=max_in_flight,
        )
    except StudyInputError as error:
        fail(error.errors)


def main() -> None:  # pragma: no cover - `python -m study.cli`
    app()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(app())
