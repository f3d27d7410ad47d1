"""Writer throughput against K client threads on a tracking server (issue 11, item 2).

Starts the topology's store half as local processes on loopback: PostgreSQL (initdb into a temp dir,
run as `postgres` when root, since initdb refuses root) and `mlflow server` on it with 4 workers.
Then, per K, writes `--runs` tiny DUGD child runs through study.recording.writer.TrackingWriter(sweep, URL,
threads=K), a fresh sweep name per K; and the same runs against the PostgreSQL URI directly
(postgresql+psycopg2://, the writer's bulk SQL path, one writer) for comparison. No Ray: one real
record (n = 16, mode expected, T = 8) is computed once and logged under distinct parameters and
run keys, so the figures are the write cost only.

    .venv/bin/python benchmarks/write_threads.py [--runs 300] [--threads 1,2,4,8] [--rounds 2]
        [--server-workers 4] [--auth off|deployed|uncached]

--auth runs the server with MLflow's basic-auth app as docker-compose.yml does (deploy/mlflow-auth.ini),
or with that file's credential cache off, to show what a password check per request costs.

The clock runs from the first log_run to the writer's close (every child run and the parent's end
in the store); the parent exists before it starts. A 20-run warm-up sweep goes first. Rounds run
the K sequence alternately forward and backward, so drift in the machine's load hits every K
alike; the summary gives the median and the best per K. On a loaded host prefer many short
rounds (e.g. --runs 100 --rounds 6). Each figure also gives the CPU milliseconds per run spent
by this process (client + writer threads), the mlflow server (all its workers) and PostgreSQL
(all its backends): on a CPU-bound host K cannot help. Every process started here is stopped by
PID at the end, also on errors.
"""

from __future__ import annotations

import argparse
import os
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import psutil

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
BIN = Path(sys.executable).parent  # the venv's console scripts: mlflow
os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")  # one "View run at" line per run otherwise
PG_BIN = Path("/usr/lib/postgresql/15/bin")

TINY = {"problem": "dugd", "mode": "expected", "n": 16, "T": 8, "kappa": 30, "batches_per_generation": 20,
        "eval_samples": 200}


# ---- processes (the approach of tests/support/topology.py, copied: benchmarks do not import tests/) -------


class Started:
    """One process started here (in its own session), stopped by PID with what it forked."""

    def __init__(self, name: str, argv: list[str], log_dir: Path, env: dict[str, str] | None = None,
                 user: str | None = None, stop_signal: int = signal.SIGTERM):
        self.name, self.log_path, self.stop_signal = name, log_dir / f"{name}.log", stop_signal
        self.process = subprocess.Popen(argv, cwd=str(log_dir), env={**os.environ, **(env or {})},
                                        stdout=self.log_path.open("wb"), stderr=subprocess.STDOUT,
                                        stdin=subprocess.DEVNULL, start_new_session=True, user=user)

    def log_tail(self) -> str:
        return self.log_path.read_text(errors="replace")[-3000:] if self.log_path.exists() else ""

    def stop(self) -> None:
        try:
            descendants = psutil.Process(self.process.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            descendants = []
        if self.process.poll() is None:
            self.process.send_signal(self.stop_signal)
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        for child in descendants:  # what the graceful stop left behind (mlflow's workers)
            try:
                child.kill()
            except psutil.NoSuchProcess:
                pass


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_until(check, timeout_s: float, what: str, started: Started) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if started.process.poll() is not None:
            raise RuntimeError(f"{what}: exited ({started.process.returncode})\n{started.log_tail()}")
        try:
            if check():
                return
        except Exception:  # noqa: BLE001 - not up yet
            pass
        time.sleep(0.3)
    raise TimeoutError(f"{what}: not ready after {timeout_s} s\n{started.log_tail()}")


def start_postgres(processes: list[Started], scratch: list[Path]) -> int:
    """initdb + postgres on a free loopback port, databases `mlflow` (the server's) and `direct`."""
    user = "postgres" if os.geteuid() == 0 else None
    pg_dir = Path(tempfile.mkdtemp(prefix="bench-pg-"))  # right under /tmp, readable by `postgres`
    scratch.append(pg_dir)
    if user:
        shutil.chown(pg_dir, user)
    initdb = subprocess.run([str(PG_BIN / "initdb"), "-D", str(pg_dir / "data"), "-U", "postgres", "-A", "trust",
                             "--no-sync"], capture_output=True, text=True, user=user, cwd=str(pg_dir))
    if initdb.returncode != 0:
        raise RuntimeError(f"initdb failed: {initdb.stderr.strip()}")
    port = free_port()
    argv = [str(PG_BIN / "postgres"), "-D", str(pg_dir / "data"), "-p", str(port), "-k", str(pg_dir),
            "-c", "listen_addresses=127.0.0.1", "-c", "max_connections=100"]
    # SIGINT is PostgreSQL's "fast" shutdown: SIGTERM would wait for every client to leave.
    postgres = Started("postgres", argv, pg_dir, user=user, stop_signal=signal.SIGINT)
    processes.append(postgres)
    ready = [str(PG_BIN / "pg_isready"), "-h", "127.0.0.1", "-p", str(port), "-U", "postgres"]
    wait_until(lambda: subprocess.run(ready, capture_output=True).returncode == 0, 60, "postgres", postgres)
    for database in ("mlflow", "direct"):
        subprocess.run([str(PG_BIN / "psql"), "-h", "127.0.0.1", "-p", str(port), "-U", "postgres", "-q",
                        "-c", f"CREATE DATABASE {database}"], check=True, capture_output=True)
    return port


def auth_env(base: Path, cached: bool) -> dict[str, str]:
    """The basic-auth app as deployed (deploy/mlflow-auth.ini), its user database in `base`; with
    cached=False its credential cache off (every request checks the password hash). This process
    writes as the admin."""
    lines = []
    for line in (REPO / "deploy" / "mlflow-auth.ini").read_text().splitlines():
        if line.startswith("database_uri"):
            line = f"database_uri = sqlite:///{base / 'basic_auth.db'}"
        elif line.startswith("auth_cache_ttl_seconds") and not cached:
            line = "auth_cache_ttl_seconds = 0"
        lines.append(line)
    config = base / "mlflow-auth.ini"
    config.write_text("\n".join(lines) + "\n")
    password = secrets.token_urlsafe(18)
    os.environ.update(MLFLOW_TRACKING_USERNAME="admin", MLFLOW_TRACKING_PASSWORD=password)
    return {"MLFLOW_AUTH_CONFIG_PATH": str(config), "MLFLOW_AUTH_ADMIN_PASSWORD": password,
            "MLFLOW_FLASK_SERVER_SECRET_KEY": secrets.token_hex(16)}


def start_mlflow(processes: list[Started], base: Path, database_url: str, workers: int, auth: str) -> str:
    """auth: "off" (no auth app), "deployed" (deploy/mlflow-auth.ini as it is) or "uncached"
    (the same with its credential cache off)."""
    port = free_port()
    argv = [str(BIN / "mlflow"), "server", "--backend-store-uri", database_url, "--serve-artifacts",
            "--artifacts-destination", str(base / "mlartifacts"), "--host", "127.0.0.1", "--port", str(port),
            "--workers", str(workers), "--allowed-hosts", f"127.0.0.1:{port},localhost:{port}"]
    env = {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    if auth != "off":
        env.update(auth_env(base, cached=auth == "deployed"))
        argv += ["--app-name", "basic-auth"]
    server = Started("mlflow", argv, base, env=env)
    processes.append(server)
    url = f"http://127.0.0.1:{port}"
    wait_until(lambda: httpx.get(f"{url}/health", timeout=2).status_code == 200, 180, "mlflow server", server)
    return url


# ---- the measurement -------------------------------------------------------------------------------


def sweep_text(name: str, runs: int) -> str:
    import yaml

    return yaml.safe_dump({"name": name, "parameters": {**TINY, "matrix_seed": list(range(runs))}}, sort_keys=False)


def write(uri: str, record: dict, runs: int, threads: int, name: str) -> float:
    """Seconds from the first log_run to the writer's close (everything in the store)."""
    from study.spec.loading import load_sweep
    from study.recording.writer import TrackingWriter

    sweep = load_sweep(sweep_text(name, runs))
    writer = TrackingWriter(sweep, uri, threads=threads)
    writer.start_sweep()
    assert writer.close(60), writer.outage  # the parent exists before the clock starts
    writer = TrackingWriter(sweep, uri, threads=threads)
    started = time.perf_counter()
    for index in range(runs):
        writer.log_run({**record, "params": {**record["params"], "matrix_seed": index}}, f"{index:016x}")
    writer.end_sweep("FINISHED", {})
    assert writer.close(120), writer.outage
    elapsed = time.perf_counter() - started
    assert not writer.rejected, writer.rejected[:3]
    return elapsed


def request_cost(url: str, server: Started, count: int = 40) -> str:
    """Median latency and server CPU of one authenticated read (experiments/get-by-name), sequential."""
    username, password = os.environ.get("MLFLOW_TRACKING_USERNAME"), os.environ.get("MLFLOW_TRACKING_PASSWORD")
    with httpx.Client(auth=(username, password) if username else None, timeout=30) as client:
        def get() -> float:
            started = time.perf_counter()
            answer = client.get(f"{url}/api/2.0/mlflow/experiments/get-by-name", params={"experiment_name": "Default"})
            assert answer.status_code == 200, answer.text
            return time.perf_counter() - started

        get()
        cpu_before = cpu_seconds(server)
        latencies = [get() for _ in range(count)]
        cpu = cpu_seconds(server) - cpu_before
    return f"one read: median {1e3 * statistics.median(latencies):.1f} ms, server CPU {1e3 * cpu / count:.1f} ms"


def count_children(uri: str, name: str) -> int:
    from mlflow import MlflowClient

    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name(name)
    found = client.search_runs([experiment.experiment_id], "tags.`study.kind` = 'run'", max_results=5000)
    return len(found)


def cpu_seconds(started: Started) -> float:
    """User + system CPU of a started process and its descendants (mlflow's workers, PostgreSQL's
    backends): the live ones, plus the exited children the process has reaped (PostgreSQL's
    backends end with their connection)."""
    total = 0.0
    try:
        root = psutil.Process(started.process.pid)
        times = root.cpu_times()
        total += times.user + times.system + times.children_user + times.children_system
        for process in root.children(recursive=True):
            try:
                times = process.cpu_times()
                total += times.user + times.system
            except psutil.NoSuchProcess:
                pass
    except psutil.NoSuchProcess:
        pass
    return total


def cpu_now(processes: list[Started]) -> dict[str, float]:
    """CPU seconds so far: this process (client and writer threads) and each started server."""
    own = psutil.Process().cpu_times()
    return {"client": own.user + own.system, **{started.name: cpu_seconds(started) for started in processes}}


def load_average() -> str:
    return "/".join(f"{value:.1f}" for value in os.getloadavg())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=300)
    parser.add_argument("--threads", default="1,2,4,8", help="comma-separated writer thread counts")
    parser.add_argument("--rounds", type=int, default=2, help="K sequences, alternately forward and backward")
    parser.add_argument("--server-workers", type=int, default=4, help="mlflow server --workers")
    parser.add_argument("--auth", choices=["off", "deployed", "uncached"], default="off",
                        help="the server's basic-auth app: off, as deploy/mlflow-auth.ini has it, or with its credential cache off")
    args = parser.parse_args()
    counts = [int(t) for t in args.threads.split(",") if t]
    base = Path(tempfile.mkdtemp(prefix="write-threads-"))
    os.chdir(base)  # the direct PostgreSQL store puts its artifacts (results table) under ./mlruns
    os.environ["STUDY_SPOOL_DIR"] = str(base / "spool")
    processes: list[Started] = []
    scratch = [base]
    try:
        from workers.run import run

        record = run({**TINY, "matrix_seed": 0}).as_record()
        pg_port = start_postgres(processes, scratch)
        database = f"postgresql+psycopg2://postgres@127.0.0.1:{pg_port}"
        server = start_mlflow(processes, base, f"{database}/mlflow", args.server_workers, args.auth)
        stamp = int(time.time())
        print(f"mlflow server (auth {args.auth}) {request_cost(server, processes[-1])}", flush=True)
        write(server, record, 20, 4, f"warm-server-{stamp}")
        write(f"{database}/direct", record, 20, 1, f"warm-direct-{stamp}")
        print(f"{args.runs} tiny child runs per measurement; mlflow server --workers {args.server_workers} "
              f"(auth {args.auth}) on "
              f"PostgreSQL 15, loopback; 1/5/15-min load average before each figure", flush=True)
        figures: dict[str, list[float]] = {}
        for round_index in range(args.rounds):
            order = counts if round_index % 2 == 0 else counts[::-1]
            targets = [(f"server K={k}", f"k{k}", server, k) for k in order]
            targets.append(("postgresql direct (bulk SQL)", "direct", f"{database}/direct", 1))
            for label, slug, uri, threads in targets:
                load = load_average()
                name = f"threads-{slug}-{round_index}-{stamp}"
                cpu_before = cpu_now(processes)
                seconds = write(uri, record, args.runs, threads, name)
                cpu = {key: 1e3 * (value - cpu_before[key]) / args.runs for key, value in cpu_now(processes).items()}
                children = count_children(uri, name)
                assert children == args.runs, (label, children)
                figures.setdefault(label, []).append(seconds)
                print(f"  round {round_index + 1}  {label:<30} {args.runs / seconds:7.1f} runs/s "
                      f"{1e3 * seconds / args.runs:7.1f} ms per run; CPU ms per run: "
                      + ", ".join(f"{key} {value:.0f}" for key, value in cpu.items()) + f"   (load {load})", flush=True)
        print(f"over {args.rounds} rounds (ms per run: median, best):")
        for label, samples in figures.items():
            median, best = statistics.median(samples), min(samples)
            print(f"  {label:<30} median {args.runs / median:6.1f} runs/s {1e3 * median / args.runs:7.1f} ms per run;"
                  f"  best {args.runs / best:6.1f} runs/s {1e3 * best / args.runs:7.1f} ms per run")
        print(f"load average at the end: {load_average()}")
    finally:
        for started in reversed(processes):  # mlflow first, PostgreSQL last
            started.stop()
        for path in scratch:
            shutil.rmtree(path, ignore_errors=True)


if __name__ == "__main__":
    main()
