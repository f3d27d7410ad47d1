"""A store that is slow is not a store that is down (issue 11, item 3).

- A real `mlflow server` behind a loopback proxy that delays every request: the sweep's runs are
  done long before their writes, the coordinator waits while the writes make progress, shows how
  many are left, and ends FINISHED with everything in the store and no journal left.
- The server killed for good near the end: `study submit` exits 75 (not 0), names the cause,
  keeps the journal, and the parent run does not claim FINISHED. Once the server is back, a
  resubmission replays the journal, removes it, and adds no duplicate.
"""

from __future__ import annotations

import socket
import threading
import time

from tests.support.reliability import MlflowServer, duplicate_keys, study_process

from tests.support.mlflow import children
import study.mlflow_names as names
from study.reading import results
from study.recording import layout as tracking
from study.scheduling.coordinator import submit
from study.spec.loading import load_sweep
from tests.support.topology import free_port

RUNS = 24


class ThrottledProxy:
    """TCP proxy on loopback that holds each client->server chunk for `delay_s` (one thread per connection)."""

    def __init__(self, target_port: int, delay_s: float):
        self.target_port, self.delay_s = target_port, delay_s
        self.port = free_port()
        self._listener = socket.create_server(("127.0.0.1", self.port))
        self._closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            try:
                server = socket.create_connection(("127.0.0.1", self.target_port))
            except OSError:
                client.close()
                continue
            threading.Thread(target=self._pipe, args=(client, server, self.delay_s), daemon=True).start()
            threading.Thread(target=self._pipe, args=(server, client, 0.0), daemon=True).start()

    @staticmethod
    def _pipe(source: socket.socket, sink: socket.socket, delay_s: float) -> None:
        try:
            while chunk := source.recv(65536):
                if delay_s:
                    time.sleep(delay_s)
                sink.sendall(chunk)
        except OSError:
            pass
        finally:
            for end in (source, sink):
                try:
                    end.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def close(self) -> None:
        self._closed = True
        self._listener.close()


def test_a_slow_store_ends_finished_with_every_write_in_it(ray_local, tmp_path, monkeypatch):
    monkeypatch.setenv("STUDY_SPOOL_DIR", str(tmp_path / "spool"))
    monkeypatch.setenv("STUDY_FLUSH_TIMEOUT_S", "1")  # an outage would give up after 1 s; slowness must not
    server = MlflowServer(tmp_path / "server").start()
    proxy = ThrottledProxy(server.port, delay_s=0.25)
    uri = f"http://127.0.0.1:{proxy.port}"
    pending_seen: list[tuple[int, float | None]] = []

    def on_progress(progress):
        if progress.writes_pending:
            pending_seen.append((progress.writes_pending, progress.writes_eta_s))

    try:
        sweep = load_sweep(f"name: slow-store\nparameters: {{problem: probe, x: {list(range(RUNS))}}}\n")
        summary = submit(sweep, tracking_uri=uri, on_progress=on_progress, figures=False)
        assert summary.status == "FINISHED" and summary.spool is None and summary.outage is None
        assert summary.finished == RUNS and summary.rejected_writes == []
        runs = children(server.uri, "slow-store")
        assert len(runs) == RUNS and not duplicate_keys(runs) and {r.info.status for r in runs} == {"FINISHED"}
        assert tracking.parent_run(sweep, server.uri).info.status == "FINISHED"
        assert not list((tmp_path / "spool").glob("*.jsonl"))
        # The writes outlasted the runs, and the progress line said how many were left.
        assert pending_seen and max(count for count, _ in pending_seen) >= 2
        assert any(eta is not None for _, eta in pending_seen)
        # The results table came through the server's artifact store too, and agrees with the runs.
        from_table, from_store = results.load_results("slow-store", server.uri), results.load_results("slow-store", server.uri, from_store=True)
        assert len(from_table) == RUNS and sorted(from_table["run_id"]) == sorted(from_store["run_id"])
        assert tracking.parent_run(sweep, server.uri).data.metrics[names.METRIC_RESULTS_ROWS] == RUNS
    finally:
        proxy.close()
        server.kill()


def test_an_outage_at_the_end_exits_75_names_the_cause_and_replays_once(ray_local, tmp_path):
    spool = tmp_path / "spool"
    # The holder cannot release its lease on a store that is down: the resubmission waits out the lease.
    env = {"STUDY_SPOOL_DIR": str(spool), "STUDY_FLUSH_TIMEOUT_S": "2", "STUDY_TRACKING_BACKOFF_MAX_S": "0.5",
           "STUDY_LEASE_TTL_S": "6"}
    server = MlflowServer(tmp_path / "server").start()
    sweep_file = tmp_path / "outage.yaml"
    sweep_file.write_text(f"name: end-outage\nparameters: {{problem: probe, work_s: 0.3, x: {list(range(12))}}}\n")
    # Both coordinators join the session's Ray instead of each starting a local one (seconds each).
    address = ray_local.get_runtime_context().gcs_address
    args = ["submit", str(sweep_file), "--tracking-uri", server.uri, "--no-figures", "--address", address]
    try:
        process = study_process(args, tmp_path, env)
        deadline = time.monotonic() + 180
        while len(children(server.uri, "end-outage")) < 2 and time.monotonic() < deadline:
            time.sleep(0.2)
        server.kill()
        out, err = process.communicate(timeout=300)
        assert process.returncode == 75, (process.returncode, out[-2000:], err[-2000:])
        last = [line for line in out.splitlines() if line.startswith("error:")]
        assert last and "None" not in last[0] and "tracking store unreachable" in last[0], out
        assert "Connection" in last[0] or "Max retries" in last[0], last[0]  # the cause, by name
        assert list(spool.glob("*.jsonl"))
        server.start()  # same port, same store
        assert tracking.parent_run("end-outage", server.uri).info.status == "RUNNING"  # not a claim of FINISHED
        again = study_process([*args, "--wait"], tmp_path, env)
        out, err = again.communicate(timeout=300)
        assert again.returncode == 0, (out[-2000:], err[-2000:])
        runs = children(server.uri, "end-outage")
        assert len([r for r in runs if r.info.status == "FINISHED"]) == 12 and not duplicate_keys(runs)
        assert tracking.parent_run("end-outage", server.uri).info.status == "FINISHED"
        left = {path.name: path.read_text()[:1500] for path in spool.glob("*.jsonl")}
        assert not left, left  # the replayed journal is gone, and nothing was refused
    finally:
        server.kill()
