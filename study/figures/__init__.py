"""Per-run figures, their panels and the figure budget (no MLflow, no Optuna)."""
