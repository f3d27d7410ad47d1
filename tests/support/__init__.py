"""Helpers shared by the tests: browser, cluster topology, SLURM, reliability (crashes, stores), MLflow, figures, the CLI."""
