"""Figures and the report on a real small sweep: study.scheduling.coordinator.submit on real local Ray, a real
SQLite MLflow store, then `study figures` and `study report` on what it logged."""

from __future__ import annotations

import io
import re
from pathlib import Path

import pandas as pd
import pytest
from mlflow import MlflowClient

coordinator = pytest.importorskip("study.scheduling.coordinator")  # spine's module; this test runs once it is merged
from study.spec.loading import load_sweep  # noqa: E402

from study.report import page as report  # noqa: E402
from study.report.backfill import log_sweep_figures  # noqa: E402
from tests.support.cli import invoke  # noqa: E402
from tests.support.images import png_size  # noqa: E402

SWEEP = """name: tiny-figures
seeds: [0, 1]
parameters:
  problem: dugd
  n: 16
  T: [2, 4]
  kappa: [5, 20]
  mode: expected
  init: 0.1
  batches_per_generation: 10
  eval_samples: 50
"""


def test_real_sweep_figures_and_report(ray_local, tmp_path, monkeypatch):
    monkeypatch.setenv("STUDY_SPOOL_DIR", str(tmp_path / "spool"))
    monkeypatch.setenv("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    summary = coordinator.submit(load_sweep(SWEEP), tracking_uri=uri, figures=True)
    assert (summary.finished, summary.failed) == (8, 0)

    stage = log_sweep_figures("tiny-figures", uri)
    assert stage.runs == 8 and stage.rendered + stage.skipped == 8 and stage.empty == 0
    client = MlflowClient(uri)
    made = report.build_report("tiny-figures", tmp_path / "report", tracking_uri=uri)
    for run_id in report.load_results("tiny-figures", uri)["run_id"]:
        names = {Path(a.path).name for a in client.list_artifacts(run_id, "figures")}
        assert "summary.png" in names
    assert made.swept == ["T", "kappa"] and made.counts["done"] == 8
    links = re.findall(r'src="([^"]+)"', made.index.read_text(encoding="utf-8"))
    assert "heatmap_root_error.png" in links and "by_T.png" in links and "by_kappa.png" in links
    for link in links:
        assert png_size((made.index.parent / link).read_bytes())[0] >= 400
    done = invoke("results", "tiny-figures", "--group-by", "T,kappa", "--metric", "root_error", "--format", "csv",
                  "--tracking-uri", uri)
    assert done.exit_code == 0, done.output
    pd.testing.assert_frame_equal(pd.read_csv(made.index.parent / "table.csv"), pd.read_csv(io.StringIO(done.stdout)),
                                  check_exact=True)
