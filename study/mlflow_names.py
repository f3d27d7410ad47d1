"""Every MLflow tag, artifact and sweep-level metric name the service writes or reads, defined once.

This module imports nothing heavy (no mlflow, no pandas), so readers such as `study results` and the
HTTP service can use the names without paying for the tracking client.

Tags on an experiment the service writes to: TAG_EXPERIMENT_KIND = EXPERIMENT_KIND_RUNS (unless set).
Tags on a sweep's parent run: TAG_SWEEP_ID (= sweep name), TAG_KIND = KIND_SWEEP, TAG_METHOD, and
the provenance: TAG_GIT_COMMIT / TAG_GIT_DIRTY (in a git checkout), TAG_VERSIONS and one
TAG_VERSION_PREFIX + package tag per package; on a server store, TAG_LEASE_PREFIX +
holder id while a coordinator runs the sweep (study.scheduling.lease).
Tags on a child run: TAG_PARENT, TAG_SWEEP_ID, TAG_KIND = KIND_RUN, TAG_RUN_KEY, TAG_PROBLEM,
TAG_ATTEMPT, TAG_NODE, TAG_GIT_COMMIT / TAG_GIT_DIRTY, TAG_VERSIONS, and TAG_TRIAL / TAG_REASON
when they apply.
"""

from __future__ import annotations

# MLflow's own tags.
TAG_PARENT = "mlflow.parentRunId"
TAG_RUN_NAME = "mlflow.runName"
TAG_GIT_COMMIT = "mlflow.source.git.commit"
# On the experiment: without it MLflow 3's UI opens an experiment in its GenAI view (traces, prompts).
TAG_EXPERIMENT_KIND = "mlflow.experimentKind"
EXPERIMENT_KIND_RUNS = "custom_model_development"

# Ours.
TAG_SWEEP_ID = "study.sweep_id"
TAG_KIND = "study.kind"
TAG_METHOD = "study.method"
TAG_RUN_KEY = "study.run_key"
TAG_PROBLEM = "study.problem"
TAG_REASON = "study.reason"
TAG_TRIAL = "study.trial"
TAG_NODE = "study.node"
TAG_ATTEMPT = "study.attempt"
TAG_GIT_DIRTY = "study.git_dirty"  # "true" when tracked files differ from the commit
TAG_VERSIONS = "study.versions"  # compact: "torch=2.13.0 numpy=... ray=... mlflow=... optuna=... deep-unfolding-study=..."
TAG_VERSION_PREFIX = "study.version."  # + package name, on the parent run
# + holder id, on the parent run of a server store: one coordinator's claim on the sweep (study.scheduling.lease).
TAG_LEASE_PREFIX = "study.lease."

# Values of TAG_KIND.
KIND_SWEEP = "sweep"
KIND_RUN = "run"

# Artifacts.
SWEEP_FILE_ARTIFACT = "sweep.yaml"
RESULT_ARTIFACT = "result.json"
FIGURES_ARTIFACT_DIR = "figures"

# A child run stopped by a pruning decision: status KILLED, TAG_REASON = pruned_reason(step, value).
PRUNED_REASON_PREFIX = "pruned at step "
# The result series holding a problem's checkpoint values, step k at index k-1 (what runs report to
# a pruner): dugd, the exact expected MSE of the trained prefix after each generation; psor (learned
# omega), the training loss after each depth.
CHECKPOINT_SERIES = {"dugd": "expected_loss", "psor": "train_loss"}


def pruned_reason(step: int, value: float) -> str:
    return f"{PRUNED_REASON_PREFIX}{step} (value {value:.6g})"


def is_pruned_reason(reason: object) -> bool:
    return isinstance(reason, str) and reason.startswith(PRUNED_REASON_PREFIX)


# Metrics of the parent run.
METRIC_RUNS_FINISHED = "runs_finished"
METRIC_RUNS_FAILED = "runs_failed"
METRIC_RUNS_PRUNED = "runs_pruned"
METRIC_BEST_PREFIX = "best_"
METRIC_RESULTS_ROWS = "results_rows"  # rows in the sweep's results table (study.recording.results_table)

# The sweep's results table: Parquet parts among the parent run's artifacts.
RESULTS_TABLE_DIR = "results"
TAG_RESULTS_GENERATION = "study.results_generation"  # which set of parts is current

# The step-indexed curves logged as MLflow metrics (what a researcher charts in the UI); every other
# curve of a Result stays in its result.json artifact unless the sweep file says `tracking: {curves: all}`.
CHARTED_CURVES = frozenset({
    "learned_steps", "chebyshev_steps",  # DUGD: learned vs Chebyshev step sizes (layer order)
    "mse_curve", "mse_curve_chebyshev",  # DUGD: MSE after t steps, learned vs Chebyshev
    "error_curve", "chebyshev_bound_curve", "learned_omega", "chebyshev_omega",  # PSOR
    "error_curve_chebyshev", "error_curve_gd",  # CHGD against its baseline
    "jacobian_ratio",  # unrolling: worst-case J_t/J_0, the curse of unrolling's burn-in
    # rho_by_generation stays in result.json beside validation_loss (T rows per DUGD run: the write budget)
})
