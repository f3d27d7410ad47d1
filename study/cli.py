"""The `study` command. Thin: parses arguments and delegates to the study modules."""

from __future__ import annotations

import json
import sys
from typing import Any

import typer
import yaml
from pydantic import ValidationError

from study.errors import StudyInputError, describe_validation_error

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Deep-unfolding study service.")


@app.callback()
def _root() -> None:
    """Deep-unfolding study service: sweeps of DUGD / PSOR runs on Ray, tracked in MLflow."""


def fail(lines: list[str] | str, code: int = 2) -> None:
    """Print one line per error to stderr and exit (2 for bad input)."""
    for line in [lines] if isinstance(lines, str) else lines:
        typer.echo(f"error: {line}", err=True)
    raise typer.Exit(code)


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
            table.add_row(key, f"{value:.6g}")
        for key, values in result.series.items():
            shown = ", ".join(f"{v:.4g}" for v in values[:8]) + (" ..." if len(values) > 8 else "")
            table.add_row(key, f"[{shown}]")
        if result.reason:
            table.add_row("reason", result.reason)
        Console().print(table)
    if result.status != "FINISHED":
        raise typer.Exit(1)


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
    from study.api import serve as run_service

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
