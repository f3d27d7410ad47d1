"""The coordinator on a real local Ray with a real SQLite MLflow store: landing, resume, failures,
timeouts, cancel, and the `study submit` command (exit 0 / 130)."""

from __future__ import annotations

import json
import re
import signal
import threading
import time
from pathlib import Path

import pytest
from mlflow import MlflowClient

from tests.support.reliability import study_process

from tests.support.mlflow import children
from study.recording import layout as tracking
from study.scheduling.coordinator import submit
from study.spec.loading import load_sweep

@pytest.fixture(scope="module")
def store(tmp_path_factory) -> str:
    """One SQLite store for the module (creating MLflow's tables costs seconds); sweeps differ by name."""
    return f"sqlite:///{tmp_path_factory.mktemp('mlflow') / 'mlflow.db'}"


@pytest.fixture(autouse=True)
def _local_spool(tmp_path, monkeypatch):
    monkeypatch.setenv("STUDY_SPOOL_DIR", str(tmp_path / "spool"))
    monkeypatch.setenv("STUDY_TRACKING_BACKOFF_MAX_S", "1")


def grid(name: str, xs: list[float], extra: str = "", seeds: str = "[0, 1]") -> str:
    return f"name: {name}\nseeds: {seeds}\nparameters: {{problem: probe, x: {json.dumps(xs)}{extra}}}\n"


def test_grid_lands_every_run_once_with_tags_params_and_artifacts(ray_local, store):
    sweep = load_sweep(grid("land", [0.0, 1.0, 2.0, 3.0]))
    summary = submit(sweep, tracking_uri=store)
    assert (summary.status, summary.total, summary.finished, summary.failed, summary.skipped) == ("FINISHED", 8, 8, 0, 0)
    assert summary.best == pytest.approx(0.0) and summary.best_params["x"] == 1.0

    runs = children(store, "land")
    parent = tracking.parent_run(sweep, store)
    assert parent.info.status == "FINISHED"
    assert parent.data.tags[tracking.TAG_KIND] == "sweep" and parent.data.tags[tracking.TAG_METHOD] == "grid"
    assert parent.data.params["parameters.x"] == "[0.0, 1.0, 2.0, 3.0]"
    assert parent.data.metrics["runs_finished"] == 8
    expected = {p.run_key: p for p in sweep.expand()}
    assert sorted(r.data.tags[tracking.TAG_RUN_KEY] for r in runs) == sorted(expected)
    client = MlflowClient(store)
    for run in runs:
        tags, point = run.data.tags, expected[run.data.tags[tracking.TAG_RUN_KEY]]
        assert run.info.status == "FINISHED"
        assert tags[tracking.TAG_PARENT] == parent.info.run_id and tags[tracking.TAG_SWEEP_ID] == "land"
        assert tags[tracking.TAG_PROBLEM] == "probe" and tags[tracking.TAG_ATTEMPT] == "1"
        assert tags[tracking.TAG_NODE] == ray_local.get_runtime_context().get_node_id()
        assert run.data.params == {k: str(v) for k, v in point.params.items()}
        closed_form = (point.params["x"] - 1.0) ** 2 + 0.01 * point.params["seed"]
        assert run.data.metrics["value"] == pytest.approx(closed_form, abs=1e-12)
        # The probe's curve is not one a researcher charts: it is in result.json, not in metric rows.
        assert client.get_metric_history(run.info.run_id, "curve") == []
    artifact = json.loads(Path(client.download_artifacts(runs[0].info.run_id, tracking.RESULT_ARTIFACT)).read_text())
    closed_form = (expected[runs[0].data.tags[tracking.TAG_RUN_KEY]].params["x"] - 1.0) ** 2 + 0.01 * expected[runs[0].data.tags[tracking.TAG_RUN_KEY]].params["seed"]
    assert artifact["status"] == "FINISHED" and artifact["curve"] == pytest.approx([closed_form, closed_form / 2])
    sweep_file = client.download_artifacts(parent.info.run_id, tracking.SWEEP_FILE_ARTIFACT)
    assert Path(sweep_file).read_text() == sweep.source_text


def test_resubmission_adds_nothing_and_an_extended_grid_adds_only_new_points(ray_local, store):
    first = submit(load_sweep(grid("resume", [0.0, 1.0])), tracking_uri=store)
    assert first.finished == 4
    again = submit(load_sweep(grid("resume", [0.0, 1.0])), tracking_uri=store)
    assert (again.total, again.skipped, again.finished) == (4, 4, 0)
    assert len(children(store, "resume")) == 4
    extended = submit(load_sweep(grid("resume", [0.0, 1.0, 5.0])), tracking_uri=store)
    assert (extended.total, extended.skipped, extended.finished) == (6, 4, 2)
    runs = children(store, "resume")
    assert len(runs) == 6 and len({r.data.tags[tracking.TAG_RUN_KEY] for r in runs}) == 6
    assert len([r for r in tracking.sweep_runs(MlflowClient(store), runs[0].info.experiment_id, "resume", kind="sweep")]) == 1


def test_raising_and_nan_runs_fail_with_reason_while_others_finish(ray_local, store):
    sweep = load_sweep(grid("faults", [0.0, 2.0], ", fail: [none, raise, nan]", seeds="[3]"))
    summary = submit(sweep, tracking_uri=store)
    assert (summary.status, summary.finished, summary.failed) == ("FINISHED", 2, 4)
    by_fail = {}
    for run in children(store, "faults"):
        by_fail.setdefault(run.data.params["fail"], []).append(run)
    assert all(r.info.status == "FINISHED" and tracking.TAG_REASON not in r.data.tags for r in by_fail["none"])
    assert all(r.info.status == "FAILED" for r in by_fail["raise"] + by_fail["nan"])
    assert all(r.data.tags[tracking.TAG_REASON] == "RuntimeError: probe asked to fail (seed=3)" for r in by_fail["raise"])
    assert all(r.data.tags[tracking.TAG_REASON].startswith("non-finite result: value=nan") for r in by_fail["nan"])
    # Failed runs are re-run on resubmission (attempt 2); finished ones are not.
    again = submit(sweep, tracking_uri=store)
    assert (again.skipped, again.finished, again.failed) == (2, 0, 4)
    attempts = sorted(r.data.tags[tracking.TAG_ATTEMPT] for r in children(store, "faults") if r.data.params["fail"] != "none")
    assert attempts == ["1"] * 4 + ["2"] * 4


def test_a_run_over_its_timeout_is_cancelled_and_failed(ray_local, store):
    sweep = load_sweep("name: slow\ntimeout_s: 1.0\nparameters: {problem: probe, work_s: [0.05, 30]}")
    started = time.monotonic()
    summary = submit(sweep, tracking_uri=store)
    assert time.monotonic() - started < 15
    assert (summary.finished, summary.failed) == (1, 1)
    reasons = {r.data.params["work_s"]: (r.info.status, r.data.tags.get(tracking.TAG_REASON)) for r in children(store, "slow")}
    assert reasons == {"0.05": ("FINISHED", None), "30.0": ("FAILED", "timeout after 1 s")}


def test_units_group_tiny_runs(ray_local, store):
    sweep = load_sweep(grid("tiny", [float(i) for i in range(60)], seeds="[0]"))
    summary = submit(sweep, tracking_uri=store)
    assert summary.finished == 60 and len(children(store, "tiny")) == 60
    # The grid is planned into units (about four per slot, workers.units.plan_units): far fewer tasks than runs.
    assert summary.tasks < 20


def test_cancel_leaves_a_consistent_state_and_resume_completes(ray_local, store):
    sweep = load_sweep(grid("cancel", [float(i) for i in range(12)], ", work_s: 0.3", seeds="[0]"))
    cancel = threading.Event()

    def on_progress(progress):
        if progress.done >= 3:
            cancel.set()

    summary = submit(sweep, tracking_uri=store, on_progress=on_progress, cancel_event=cancel)
    assert summary.status == "KILLED" and summary.cancelled > 0
    assert summary.finished + summary.cancelled == 12
    runs = children(store, "cancel")
    assert len(runs) == summary.finished and all(r.info.status == "FINISHED" for r in runs)
    assert tracking.parent_run(sweep, store).info.status == "KILLED"
    resumed = submit(sweep, tracking_uri=store)
    assert (resumed.status, resumed.skipped, resumed.finished) == ("FINISHED", summary.finished, summary.cancelled)
    assert len(children(store, "cancel")) == 12
    assert tracking.parent_run(sweep, store).info.status == "FINISHED"


def test_cli_submit_uses_the_default_store_in_the_cwd_and_exits_0(ray_local, tmp_path):
    (tmp_path / "s.yaml").write_text(grid("cli", [0.0, 1.0], ", fail: [none, raise]", seeds="[0]"))
    address = ray_local.get_runtime_context().gcs_address
    done = study_process(["submit", "s.yaml", "--address", address], tmp_path)
    out, err = done.communicate(timeout=120)
    assert done.returncode == 0, err
    assert "runs: 4 total, 2 finished, 2 failed, 0 skipped" in out
    assert len(children(f"sqlite:///{tmp_path / 'mlflow.db'}", "cli")) == 4


def test_cli_ctrl_c_cancels_and_exits_130(ray_local, tmp_path, store):
    (tmp_path / "s.yaml").write_text(grid("interrupt", [float(i) for i in range(40)], ", work_s: 0.5", seeds="[0]"))
    address = ray_local.get_runtime_context().gcs_address
    process = study_process(["submit", "s.yaml", "--address", address, "--tracking-uri", store], tmp_path)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and len(children(store, "interrupt")) < 2:
        time.sleep(0.2)
    # SIGUSR1 prints every thread's stack (faulthandler) and the sweep goes on.
    process.send_signal(signal.SIGUSR1)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and "Current thread" not in process.output()[1]:
        time.sleep(0.1)
    time.sleep(0.5)  # the other threads' stacks follow
    stacks = process.output()[1]
    assert process.poll() is None and "Current thread" in stacks
    assert re.search(r'study/recording/writer\.py", line \d+ in _loop', stacks), stacks[-3000:]  # the writer thread, too
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=60)
    assert process.returncode == 130, err
    runs = children(store, "interrupt")
    assert 2 <= len(runs) < 40 and all(r.info.status == "FINISHED" for r in runs)
    assert tracking.parent_run("interrupt", store).info.status == "KILLED"
    assert "KILLED" in out


def test_progress_line_shows_counts_eta_best_and_outage():
    from study.scheduling.coordinator import Progress
    from study.cli.progress import render

    line = render(Progress(total=10, done=3, running=2, failed=1, skipped=4, eta_s=75, best=0.125, outage=None), "root_error").plain
    assert line == "3/6 done  2 running  1 failed  4 skipped  ETA 1m15s  best root_error 0.125"
    down = render(Progress(10, 3, 2, 1, 4, None, None, "tracking store unreachable since 12:00:00"), "root_error").plain
    assert down.endswith("ETA ?\nwarning: tracking store unreachable since 12:00:00")


def _kill_one_chunk_worker() -> bool:
    """SIGKILL a Ray worker of this test session's own cluster while it runs a chunk."""
    import psutil

    for process in psutil.Process().children(recursive=True):
        try:
            if "ray::run_unit" in " ".join(process.cmdline()):
                process.kill()
                return True
        except psutil.NoSuchProcess:
            continue
    return False


@pytest.mark.parametrize("retries", [1, 0])
def test_a_dead_worker_is_retried_up_to_max_retries(ray_local, store, retries):
    sweep = load_sweep(grid(f"dead-worker-{retries}", [0.0, 1.0], ", work_s: 1.5", seeds="[0]") + f"max_retries: {retries}\n")
    killed = []

    def on_progress(progress):
        if progress.running and not killed:
            deadline = time.monotonic() + 10  # workers may still be starting (e.g. after a cancel)
            while not _kill_one_chunk_worker() and time.monotonic() < deadline:
                time.sleep(0.05)
            killed.append(time.monotonic() < deadline)

    summary = submit(sweep, tracking_uri=store, on_progress=on_progress)
    assert killed == [True]
    if retries:
        assert (summary.finished, summary.failed) == (2, 0)
    else:
        assert (summary.finished, summary.failed) == (1, 1)
        reasons = [r.data.tags.get(tracking.TAG_REASON) for r in children(store, sweep.name) if r.info.status == "FAILED"]
        assert len(reasons) == 1 and reasons[0].startswith("task failed: ")
