"""What `study serve` costs over calling the coordinator directly.

Starts a local Ray (2 CPUs) here, `study serve` as a subprocess on it (SQLite MLflow store in a temp
dir), then measures:
  1. request latency: GET /healthz and GET /sweeps/{id} on a reused connection (median, p95);
  2. a sweep of N quick probe runs: POST -> state "finished" over HTTP, against
     study.scheduling.coordinator.submit() of the same sweep in this process (same Ray, its own store);
     both after a 2-run warm-up sweep, so imports and store creation are not counted.

    .venv/bin/python benchmarks/api_overhead.py [--runs 40]
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx
import ray

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from study.client import StudyClient  # noqa: E402
from study.scheduling.coordinator import submit  # noqa: E402
from study.spec.loading import load_sweep  # noqa: E402
from tests import topology  # noqa: E402

TOKEN = "benchmark-token"


def latency_ms(http: httpx.Client, path: str, repeats: int = 200) -> tuple[float, float]:
    samples = []
    for _ in range(repeats):
        started = time.perf_counter()
        http.get(path).raise_for_status()
        samples.append((time.perf_counter() - started) * 1e3)
    samples.sort()
    return statistics.median(samples), samples[int(0.95 * len(samples)) - 1]


def sweep_text(name: str, runs: int) -> str:
    return json.dumps({"name": name, "seeds": list(range(runs)), "parameters": {"problem": "probe", "work_s": 0.0}})


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=40)
    args = parser.parse_args()
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    base = Path(tempfile.mkdtemp(prefix="api-bench-"))
    managed, url = topology.start_study_serve(
        "serve", base, f"sqlite:///{base / 'api.db'}", ray.get_runtime_context().gcs_address, TOKEN
    )
    try:
        with StudyClient(url, token=TOKEN) as client:
            client.submit(sweep_text("warm-api", 2))  # both paths measured warm: imports, store, workers
            client.follow("warm-api", poll_s=0.05)
            started = time.perf_counter()
            client.submit(sweep_text("bench-api", args.runs))
            final = client.follow("bench-api", poll_s=0.05)
            api_s = time.perf_counter() - started
            assert final["state"] == "finished", final
        # One reused connection, as StudyClient keeps one (its httpx.Client is its own business).
        with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30) as http:
            health = latency_ms(http, "/healthz")
            status = latency_ms(http, "/sweeps/bench-api")

        direct_store = f"sqlite:///{base / 'direct.db'}"
        submit(load_sweep(sweep_text("warm-direct", 2) + "\n"), tracking_uri=direct_store)
        started = time.perf_counter()
        summary = submit(load_sweep(sweep_text("bench-direct", args.runs) + "\n"), tracking_uri=direct_store)
        direct_s = time.perf_counter() - started
        assert summary.status == "FINISHED", summary
    finally:
        managed.stop()
        ray.shutdown()
        shutil.rmtree(base, ignore_errors=True)

    print(f"GET /healthz            median {health[0]:.2f} ms   p95 {health[1]:.2f} ms")
    print(f"GET /sweeps/{{id}}        median {status[0]:.2f} ms   p95 {status[1]:.2f} ms")
    print(f"{args.runs} probe runs via HTTP   {api_s:.2f} s (POST to 'finished', polling every 50 ms)")
    print(f"{args.runs} probe runs direct     {direct_s:.2f} s (coordinator.submit in-process)")
    print(f"ratio HTTP / direct     {api_s / direct_s:.2f}")


if __name__ == "__main__":
    main()
