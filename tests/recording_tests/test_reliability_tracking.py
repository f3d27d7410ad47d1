"""R3: the tracking server dies mid-sweep. A real `mlflow server` (HTTP on a free loopback port,
SQLite backend, --workers 1) is SIGKILLed while a sweep logs to it, then started again on the same
port. The coordinator keeps running the sweep, says so on the progress line, spools every result
locally, retries with backoff, and replays the spool once the server answers: exact final counts."""

from __future__ import annotations

import threading
import time

from tests.support.reliability import MlflowServer, duplicate_keys

from tests.support.mlflow import children
from study.recording import layout as tracking
from study.scheduling.coordinator import submit
from study.cli.progress import render
from study.spec.loading import load_sweep

TOTAL = 80


def test_tracking_server_outage_is_reported_spooled_and_replayed(ray_local, tmp_path, monkeypatch):
    spool_dir = tmp_path / "spool"
    monkeypatch.setenv("STUDY_SPOOL_DIR", str(spool_dir))
    monkeypatch.setenv("STUDY_TRACKING_BACKOFF_MAX_S", "1")
    server = MlflowServer(tmp_path).start()
    sweep = load_sweep(f"name: server-outage\nparameters: {{problem: probe, work_s: 0.1, x: {list(range(TOTAL))}}}\n")
    lines: list[str] = []  # the progress lines, as `study submit` prints them
    outage_seen = threading.Event()
    killed_at_done: list[int] = []
    during_outage: dict[str, int] = {}

    def on_progress(progress) -> None:
        lines.append(render(progress, "value").plain)
        if progress.done >= 15 and not killed_at_done:
            killed_at_done.append(progress.done)
            server.kill()  # mid-sweep: some children landed, most are still to come
        if progress.outage and not outage_seen.is_set():
            outage_seen.set()
            threading.Thread(target=restart_later, daemon=True).start()

    def restart_later() -> None:
        time.sleep(2.0)  # a few backoff rounds against a dead port
        spooled = [path for path in spool_dir.glob("*.jsonl")]
        during_outage["spool_lines"] = sum(len(path.read_text().splitlines()) for path in spooled)
        server.start()  # same port, same SQLite backend

    try:
        summary = submit(sweep, tracking_uri=server.uri, on_progress=on_progress)
        assert outage_seen.is_set() and killed_at_done
        outage_lines = [line for line in lines if "warning: tracking store unreachable since" in line]
        assert outage_lines and all("results spooled to" in line for line in outage_lines)
        assert during_outage["spool_lines"] >= 1  # results waited on local disk while the server was down
        assert (summary.status, summary.finished, summary.failed) == ("FINISHED", TOTAL, 0)
        assert summary.spool is None and summary.outage is None and summary.rejected_writes == []

        runs = children(server.uri, "server-outage")
        assert len(runs) == TOTAL and duplicate_keys(runs) == {}
        assert {r.data.tags[tracking.TAG_RUN_KEY] for r in runs} == {p.run_key for p in sweep.expand()}
        assert all(r.info.status == "FINISHED" for r in runs)
        parent = tracking.parent_run(sweep, server.uri)
        assert parent.info.status == "FINISHED" and parent.data.metrics["runs_finished"] == TOTAL
        assert not list(spool_dir.glob("*.jsonl"))  # everything replayed, the journal is gone
    finally:
        server.kill()
