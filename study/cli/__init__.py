"""The `study` command line. (`study.cli:app` is the console script; `python -m study.cli` runs it)."""

from study.cli.main import app

__all__ = ["app"]
