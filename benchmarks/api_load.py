"""`study serve` under load: 16 concurrent clients on a finished 2,000-run sweep (issue 11).

Builds the finished sweep fast and without Ray: one real record of a tiny DUGD run (n = 16, mode
expected, T = 8) is computed once, then written through study.recording.writer.TrackingWriter once per
point of the issue's grid (T in {2,3,4,6,8,12,16,24} x 25 condition numbers from 2 to 10,000 x
10 seeds) with that point's parameters and run key, into a fresh SQLite store. root_error is
scaled per point (synthetic, deterministic) so the grouped answer is not one constant.
Then starts `study serve` on a loopback port against that store (bearer token, as
benchmarks/api_overhead.py does) and runs `--clients` threads, each with its own httpx client, for
`--seconds`, alternating
    GET /sweeps/NAME                                               (status)
    GET /sweeps/NAME/results?group_by=T,kappa&metric=root_error    (grouped results)

    .venv/bin/python benchmarks/api_load.py [--seeds 10] [--clients 16] [--seconds 20]

Prints the single-client latency of each endpoint (cold: the service's first answer, computed
from the store; warm: the median of later ones, a kept answer plus a parent-run check every 2 s), then total requests/s, p50 / p99 latency and the count of non-200 answers under load.
Targets (issue 11): >= 100 requests/s and p99 <= 0.5 s with 16 clients.
Note: `study serve` starts its own local Ray on startup (the service needs one); no run uses it.
"""

from __future__ import annotations

import argparse
import math
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

TOKEN = "benchmark-token"
KAPPAS = [round(2 * (5000 ** (index / 24)), 3) for index in range(25)]  # 2 .. 10,000, log-spaced
DEPTHS = [2, 3, 4, 6, 8, 12, 16, 24]
TINY = {"problem": "dugd", "mode": "expected", "n": 16, "T": 8, "kappa": 30, "batches_per_generation": 20,
        "eval_samples": 200}


def sweep_text(name: str, seeds: int) -> str:
    import yaml

    return yaml.safe_dump({
        "name": name, "seeds": list(range(seeds)),
        "parameters": {**TINY, "T": DEPTHS, "kappa": KAPPAS},
    }, sort_keys=False)


def build_sweep(uri: str, name: str, seeds: int) -> tuple[int, float]:
    """A finished sweep in the store: every grid point logged with one real record. (runs, seconds)"""
    from study.spec.loading import load_sweep
    from study.recording.writer import TrackingWriter
    from workers.run import run

    sweep = load_sweep(sweep_text(name, seeds))
    record = run({**TINY, "seed": 0}).as_record()
    points = sweep.expand()
    started = time.perf_counter()
    writer = TrackingWriter(sweep, uri)
    writer.start_sweep()
    for point in points:
        # Synthetic but deterministic: the error grows with kappa and shrinks with depth.
        scale = math.log10(point.params["kappa"]) / math.sqrt(point.params["T"]) * (1 + 0.01 * point.params["seed"])
        scalars = {**record["scalars"], "root_error": record["scalars"]["root_error"] * scale}
        writer.log_run({**record, "params": point.params, "scalars": scalars}, point.run_key)
    writer.end_sweep("FINISHED", {})
    assert writer.close(120), writer.outage
    assert not writer.rejected, writer.rejected[:3]
    return len(points), time.perf_counter() - started


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_serve(uri: str, base: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    log = (base / "serve.log").open("wb")
    env = {**os.environ, "STUDY_API_TOKEN": TOKEN, "PYTHONPATH": str(REPO), "RAY_USAGE_STATS_ENABLED": "0"}
    process = subprocess.Popen(
        [sys.executable, "-m", "study.cli", "serve", "--host", "127.0.0.1", "--port", str(port), "--tracking-uri", uri],
        cwd=str(base), env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"study serve exited ({process.returncode}):\n{(base / 'serve.log').read_text()[-3000:]}")
        try:
            if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                return process, url
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    stop(process)
    raise TimeoutError(f"study serve not healthy after 180 s:\n{(base / 'serve.log').read_text()[-3000:]}")


def stop(process: subprocess.Popen) -> None:
    """SIGTERM the service's process group (its own local Ray included), SIGKILL what stays."""
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            pass
    try:
        os.killpg(process.pid, signal.SIGKILL)  # Ray processes started by the service share its group
    except ProcessLookupError:
        pass
    process.wait(5)


def percentile(samples: list[float], fraction: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(fraction * len(ordered)) - 1))]


def single_client(url: str, paths: list[str], repeats: int = 20) -> dict[str, tuple[float, float]]:
    """Per path: (first answer, median of the next `repeats`) in seconds, one client, answers kept."""
    figures = {}
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=120) as http:
        for path in paths:
            samples = []
            for _ in range(repeats + 1):
                started = time.perf_counter()
                http.get(path).raise_for_status()
                samples.append(time.perf_counter() - started)
            figures[path] = (samples[0], statistics.median(samples[1:]))
    return figures


def load(url: str, paths: list[str], clients: int, seconds: float) -> tuple[list[float], int, int, float]:
    """(latencies, total, non-200, elapsed) of `clients` threads looping over `paths` for `seconds`."""
    latencies: list[float] = []
    counts = {"total": 0, "bad": 0}
    lock = threading.Lock()
    barrier = threading.Barrier(clients + 1)
    stop_at = [0.0]

    def client(offset: int) -> None:
        mine, bad = [], 0
        with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=60) as http:
            barrier.wait()
            index = offset
            while time.monotonic() < stop_at[0]:
                started = time.perf_counter()
                try:
                    ok = http.get(paths[index % len(paths)]).status_code == 200
                except httpx.HTTPError:
                    ok = False
                mine.append(time.perf_counter() - started)
                bad += not ok
                index += 1
        with lock:
            latencies.extend(mine)
            counts["total"] += len(mine)
            counts["bad"] += bad

    threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(clients)]
    for thread in threads:
        thread.start()
    stop_at[0] = time.monotonic() + seconds
    started = time.perf_counter()
    barrier.wait()
    for thread in threads:
        thread.join()
    return latencies, counts["total"], counts["bad"], time.perf_counter() - started


def load_average() -> str:
    return ", ".join(f"{value:.2f}" for value in os.getloadavg())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=10, help="seeds per grid point (10: 2,000 runs)")
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=20.0)
    args = parser.parse_args()
    base = Path(tempfile.mkdtemp(prefix="api-load-"))
    os.environ["STUDY_SPOOL_DIR"] = str(base / "spool")
    uri = f"sqlite:///{base / 'mlflow.db'}"
    name = "api-load"
    process = None
    try:
        from mlflow import MlflowClient

        MlflowClient(uri).search_experiments()  # create the tables
        runs, build_s = build_sweep(uri, name, args.seeds)
        print(f"built finished sweep {name}: {runs} runs in {build_s:.1f} s (load average {load_average()})", flush=True)
        process, url = start_serve(uri, base)
        paths = [f"/sweeps/{name}", f"/sweeps/{name}/results?group_by=T,kappa&metric=root_error"]
        cold = {}
        with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=120) as http:
            for path in paths:  # the first answers are computed from the store, later ones kept
                started = time.perf_counter()
                answer = http.get(path)
                cold[path] = time.perf_counter() - started
                answer.raise_for_status()
                if path == paths[0]:
                    status = answer.json()
                else:
                    grouped = answer.json()
        assert status.get("total") == runs and status.get("done") == runs, status
        assert len(grouped) == len(DEPTHS) * len(KAPPAS), len(grouped)
        figures = single_client(url, paths)
        print(f"single client (load average {load_average()}):")
        for path, (_, warm) in figures.items():
            print(f"  GET {path:<60} cold {1e3 * cold[path]:7.1f} ms   warm median {1e3 * warm:6.1f} ms")
        latencies, total, bad, elapsed = load(url, paths, args.clients, args.seconds)
        print(f"{args.clients} clients for {elapsed:.1f} s (load average {load_average()}): "
              f"{total / elapsed:.0f} requests/s, p50 {1e3 * percentile(latencies, 0.5):.1f} ms, "
              f"p99 {1e3 * percentile(latencies, 0.99):.1f} ms, max {1e3 * max(latencies):.1f} ms, "
              f"{total} requests, {bad} not 200")
        print("targets: >= 100 requests/s, p99 <= 500 ms")
    finally:
        if process is not None:
            stop(process)
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
