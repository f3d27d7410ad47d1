"""The record path alone: N tiny DUGD child runs through study.recording.writer.TrackingWriter into a fresh
store, then read back with study.reading.results.load_results. No Ray: one real record (n = 16, mode
expected, T = 8) is computed once and logged N times under distinct run keys, so the figures are
the MLflow write and read cost only.

    .venv/bin/python benchmarks/record_path.py                   # 2,000 runs, SQLite, charted curves
    .venv/bin/python benchmarks/record_path.py --curves all      # every curve as metrics (the old volume)
    .venv/bin/python benchmarks/record_path.py --runs 100000     # the 100,000-run synthetic store
    .venv/bin/python benchmarks/record_path.py --uri http://127.0.0.1:5000 --threads 1,2,4,8

Prints write ms per child, store KB per child (mlflow.db growth; artifacts beside it counted apart)
and the read latency from the results table and from search_runs (in-process), and of `study
results` in a fresh process beside the import of mlflow and pandas alone.
Targets (issue 11): <= 5 ms and <= 20 KB per tiny child on SQLite; results of 2,000 runs <= 1 s,
of 100,000 runs <= 10 s.
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

TINY = {"problem": "dugd", "mode": "expected", "n": 16, "T": 8, "kappa": 30, "batches_per_generation": 20,
        "eval_samples": 200}


def sweep_text(name: str, runs: int, curves: str) -> str:
    import yaml

    return yaml.safe_dump({"name": name, "tracking": {"curves": curves},
                           "parameters": {**TINY, "matrix_seed": list(range(runs))}}, sort_keys=False)


def directory_bytes(path: Path) -> int:
    return sum(file.stat().st_size for file in path.rglob("*") if file.is_file())


def tiny_record() -> dict:
    from workers.run import run

    return run({**TINY, "matrix_seed": 0}).as_record()


def write(uri: str, runs: int, curves: str, threads: int | None, name: str, record: dict) -> float:
    """Seconds from the first log_run to the writer's close (everything in the store)."""
    from study.spec.loading import load_sweep
    from study.recording.writer import TrackingWriter

    sweep = load_sweep(sweep_text(name, runs, curves))
    writer = TrackingWriter(sweep, uri, threads=threads)
    started = time.perf_counter()
    writer.start_sweep()  # as the coordinator does: the parent run, and its (trusted, empty) results table
    for index in range(runs):
        writer.log_run({**record, "params": {**record["params"], "matrix_seed": index}}, f"{index:016x}")
    writer.end_sweep("FINISHED", {})
    assert writer.close(60), writer.outage
    assert not writer.rejected, writer.rejected[:3]
    return time.perf_counter() - started


def read(uri: str, name: str, expected: int) -> tuple[float, float | None]:
    from study.reading import results

    started = time.perf_counter()
    frame = results.load_results(name, uri)
    table_s = time.perf_counter() - started
    assert len(frame) == expected, len(frame)
    if expected > 20_000:
        return table_s, None  # search_runs over 100,000 runs takes minutes; not worth the wait
    started = time.perf_counter()
    assert len(results.load_results(name, uri, from_store=True)) == expected
    return table_s, time.perf_counter() - started


def cli_read(uri: str, name: str) -> tuple[float, float]:
    """`study results` as a user runs it (a fresh process), beside `python -c "import mlflow, pandas"`."""
    import subprocess

    def timed(*command: str) -> float:
        started = time.perf_counter()
        subprocess.run(command, capture_output=True, check=True)
        return time.perf_counter() - started

    study = str(Path(sys.executable).with_name("study"))
    imports_s = timed(sys.executable, "-c", "import mlflow, pandas")
    return timed(study, "results", name, "--group-by", "T,kappa", "--format", "json", "--tracking-uri", uri), imports_s


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=2000)
    parser.add_argument("--curves", choices=["charted", "all"], default="charted")
    parser.add_argument("--uri", help="a tracking server (default: a fresh SQLite store)")
    parser.add_argument("--threads", default="", help="comma-separated writer thread counts (server stores)")
    args = parser.parse_args()
    os.environ.setdefault("STUDY_SPOOL_DIR", tempfile.mkdtemp(prefix="spool-"))
    import mlflow  # noqa: F401 - import outside the timings

    record = tiny_record()  # imports torch and the numerics before any memory or time is measured

    for threads in [int(t) for t in args.threads.split(",") if t] or [None]:
        with tempfile.TemporaryDirectory() as directory:
            uri = args.uri or f"sqlite:///{directory}/mlflow.db"
            name = f"record-{args.curves}-{threads or 1}-{int(time.time())}"
            if not args.uri:
                from mlflow import MlflowClient

                MlflowClient(uri).search_experiments()  # create the tables outside the timing
            db = Path(directory) / "mlflow.db"
            before = db.stat().st_size if db.exists() else 0
            rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
            seconds = write(uri, args.runs, args.curves, threads, name, record)
            rss_growth = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 - rss_before
            table_s, store_s = read(uri, name, args.runs)
            command_s, imports_s = cli_read(uri, name)
            line = (f"{args.runs} runs, curves {args.curves}, threads {threads or 'default'}: "
                    f"write {1000 * seconds / args.runs:.2f} ms per child ({args.runs / seconds:.0f} runs/s)")
            if not args.uri:
                artifacts = directory_bytes(Path(directory) / "mlruns")
                line += (f", store {(db.stat().st_size - before) / args.runs / 1024:.1f} KB per child"
                         f" (+ {artifacts / args.runs / 1024:.1f} KB artifacts)")
            line += f"; writer peak RSS growth {rss_growth:.0f} MB; read: table {table_s:.2f} s"
            if store_s is not None:
                line += f", search_runs {store_s:.2f} s"
            line += (f"; `study results --group-by T,kappa --format json` {command_s:.2f} s, "
                     f"`import mlflow, pandas` {imports_s:.2f} s (+{command_s - imports_s:.2f} s)")
            print(line, flush=True)


if __name__ == "__main__":
    main()
