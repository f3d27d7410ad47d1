"""The `study` command in-process."""

from __future__ import annotations

from typer.testing import CliRunner

from study.cli import app


def invoke(*args: str):
    """The real `study` typer app in-process (a subprocess per call costs seconds of imports)."""
    return CliRunner().invoke(app, list(args))
