"""R5: runs that diverge (a huge lr on a DUGD run), raise, return NaN, or exceed the sweep's per-run
timeout are recorded FAILED with their reason, and the sweep finishes every other run."""

from __future__ import annotations

import time

import pytest

from tests.support.reliability import duplicate_keys

from tests.support.mlflow import children
from study.recording import layout as tracking
from study.scheduling.coordinator import submit
from study.spec.loading import load_sweep


@pytest.fixture(autouse=True)
def _local_spool(tmp_path, monkeypatch):
    monkeypatch.setenv("STUDY_SPOOL_DIR", str(tmp_path / "spool"))


def test_a_diverging_dugd_run_is_failed_with_its_reason(ray_local, mlflow_uri):
    # lr = 1000 drives the learned steps to ~1e3 while 2 / lambda_max is ~1: the error grows ~1e29-fold.
    sweep = load_sweep("name: diverge\nseeds: [0, 1]\nparameters: {problem: dugd, mode: expected, n: 16, T: 4, "
                       "batches_per_generation: 20, lr: [0.002, 1000]}\n")
    summary = submit(sweep, tracking_uri=mlflow_uri)
    assert (summary.status, summary.total, summary.finished, summary.failed) == ("FINISHED", 4, 2, 2)
    runs = children(mlflow_uri, "diverge")
    assert len(runs) == 4 and duplicate_keys(runs) == {}
    by_lr = {}
    for run in runs:
        by_lr.setdefault(run.data.params["lr"], []).append(run)
    assert all(r.info.status == "FINISHED" and r.data.metrics["contraction"] < 1 for r in by_lr["0.002"])
    for run in by_lr["1000.0"]:
        reason = run.data.tags[tracking.TAG_REASON]
        assert run.info.status == "FAILED" and reason.startswith("diverged: learned steps give MSE_T = "), reason
        # The numbers stay for inspection: MSE_T >= MSE_0 is what the reason says.
        assert run.data.metrics["contraction"] >= 1 and run.data.metrics["mse"] >= 1e3


def test_raising_nan_and_timed_out_runs_fail_with_reasons_and_the_rest_finish(ray_local, mlflow_uri):
    sweep = load_sweep("name: mixed-faults\ntimeout_s: 2.5\nparameters: {problem: probe, work_s: [0.02, 20], "
                       "fail: [none, raise, nan], x: [0, 1]}\n")
    started = time.monotonic()
    summary = submit(sweep, tracking_uri=mlflow_uri)
    assert time.monotonic() - started < 60  # six 20 s runs cut at 2.5 s on 2 slots
    assert (summary.status, summary.total, summary.finished, summary.failed, summary.cancelled) == ("FINISHED", 12, 2, 10, 0)
    runs = children(mlflow_uri, "mixed-faults")
    assert len(runs) == 12 and duplicate_keys(runs) == {}
    outcomes: dict[tuple[str, str], list[tuple[str, str | None]]] = {}
    for run in runs:
        key = (run.data.params["work_s"], run.data.params["fail"])
        outcomes.setdefault(key, []).append((run.info.status, run.data.tags.get(tracking.TAG_REASON)))
    assert outcomes[("0.02", "none")] == [("FINISHED", None)] * 2
    assert outcomes[("0.02", "raise")] == [("FAILED", "RuntimeError: probe asked to fail (seed=0)")] * 2
    assert [(status, reason.split(":")[0]) for status, reason in outcomes[("0.02", "nan")]] == [("FAILED", "non-finite result")] * 2
    for fail in ("none", "raise", "nan"):
        assert outcomes[("20.0", fail)] == [("FAILED", "timeout after 2.5 s")] * 2
    parent = tracking.parent_run(sweep, mlflow_uri)
    assert parent.info.status == "FINISHED" and parent.data.metrics["runs_failed"] == 10
