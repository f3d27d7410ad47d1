"""`python -m study.cli`."""

from study.cli.main import app

if __name__ == "__main__":
    app()
