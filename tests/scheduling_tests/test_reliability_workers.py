"""R1: Ray workers killed with SIGKILL while they run a sweep's tasks. The sweep runs on a Ray head
of its own (`ray start --head`, own temp dir and ports) under a `study submit` coordinator process;
the test kills busy workers of that cluster only. Ray retries the lost tasks (max_retries), and the
sweep ends with every run FINISHED exactly once in MLflow."""

from __future__ import annotations

import signal
import time

import pytest

from tests.support.reliability import RayHead, duplicate_keys, study_process

from tests.support.mlflow import children
from study.recording import layout as tracking
from study.spec.loading import load_sweep

KILLS = 4
RUNS = 200


@pytest.fixture(scope="module")
def ray_head():
    head = RayHead(num_cpus=2)
    yield head
    head.stop()


def test_sigkilled_workers_lose_no_run_and_duplicate_none(ray_head, tmp_path):
    xs = [float(i) for i in range(RUNS // 2)]
    text = f"name: killed-workers\nmax_retries: 10\nparameters: {{problem: probe, x: {xs}, work_s: [0.05, 0.1]}}\n"
    (tmp_path / "sweep.yaml").write_text(text)
    store = f"sqlite:///{tmp_path / 'mlflow.db'}"
    coordinator = study_process(["submit", "sweep.yaml", "--address", ray_head.address, "--tracking-uri", store], tmp_path,
                                env={**ray_head.env, "STUDY_SPOOL_DIR": str(tmp_path / "spool")})
    killed: list[int] = []
    try:
        deadline = time.monotonic() + 240
        while len(killed) < KILLS and coordinator.poll() is None and time.monotonic() < deadline:
            busy = [p for p in ray_head.running_chunk_workers() if p.pid not in killed]
            if not busy:
                time.sleep(0.05)
                continue
            time.sleep(0.15)  # mid-chunk: some runs of it are done, none reported
            try:
                busy[0].send_signal(signal.SIGKILL)
                killed.append(busy[0].pid)
            except Exception:  # noqa: BLE001 - it finished first; try the next one
                continue
            time.sleep(1.0)  # spread the kills over the sweep
        out, err = coordinator.communicate(timeout=300)
    finally:
        if coordinator.poll() is None:
            coordinator.kill()
    assert coordinator.returncode == 0, err[-3000:]
    assert len(killed) == KILLS, f"only {len(killed)} busy workers found to kill"
    assert f"runs: {RUNS} total, {RUNS} finished, 0 failed, 0 skipped" in out, out

    runs = children(store, "killed-workers")
    expected = {point.run_key for point in load_sweep(text).expand()}
    assert len(runs) == RUNS and duplicate_keys(runs) == {}
    assert {run.data.tags[tracking.TAG_RUN_KEY] for run in runs} == expected
    assert all(run.info.status == "FINISHED" for run in runs)
    assert all(run.data.tags[tracking.TAG_ATTEMPT] == "1" for run in runs)  # retried inside Ray, logged once
    assert tracking.parent_run("killed-workers", store).info.status == "FINISHED"


def test_a_depth_family_unit_whose_worker_is_sigkilled_is_retried_whole(ray_head, tmp_path):
    # 4 families (kappa x seed) of 6 depths each; a family trains once, at T = 6, in one unit.
    text = ("name: killed-unit\nmax_retries: 3\nseeds: [0, 1]\nparameters: {problem: dugd, n: 64, mode: eigen, "
            "batches_per_generation: 300, kappa: [10, 100], T: [1, 2, 3, 4, 5, 6]}\n")
    (tmp_path / "sweep.yaml").write_text(text)
    store = f"sqlite:///{tmp_path / 'mlflow.db'}"
    coordinator = study_process(["submit", "sweep.yaml", "--address", ray_head.address, "--tracking-uri", store,
                                 "--no-figures"], tmp_path, env={**ray_head.env, "STUDY_SPOOL_DIR": str(tmp_path / "spool")})
    killed = None
    try:
        deadline = time.monotonic() + 240
        while killed is None and coordinator.poll() is None and time.monotonic() < deadline:
            busy = ray_head.running_chunk_workers()
            if not busy:
                time.sleep(0.05)
                continue
            time.sleep(0.3)  # mid-unit: training, nothing returned yet
            try:
                busy[0].send_signal(signal.SIGKILL)
                killed = busy[0].pid
            except Exception:  # noqa: BLE001 - it finished first; try the next one
                continue
        out, err = coordinator.communicate(timeout=300)
    finally:
        if coordinator.poll() is None:
            coordinator.kill()
    assert coordinator.returncode == 0, err[-3000:]
    assert killed is not None, "no busy unit worker found to kill"
    assert "runs: 24 total, 24 finished, 0 failed, 0 skipped" in out, out
    runs = children(store, "killed-unit")
    assert len(runs) == 24 and duplicate_keys(runs) == {}
    assert {run.data.tags[tracking.TAG_RUN_KEY] for run in runs} == {p.run_key for p in load_sweep(text).expand()}
    assert all(run.info.status == "FINISHED" and run.data.tags[tracking.TAG_ATTEMPT] == "1" for run in runs)
