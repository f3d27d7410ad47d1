"""Thousands of tiny DUGD runs end to end on the embedded default (local Ray, a fresh SQLite store),
as issue 11 measured them: n = 16, mode expected, T in {2,3,4,6,8,12,16,24}, 25 condition numbers
from 2 to 10,000, batches_per_generation 20, eval_samples 200; seeds make up the count.

    .venv/bin/python benchmarks/scale.py                 # 2,000 runs (10 seeds)
    .venv/bin/python benchmarks/scale.py --seeds 50      # 10,000 runs

Prints wall / ideal (ideal = the runs' own wall_s summed / slots), the flush tail after the last
result, store KB per child, coordinator RSS growth (peak over the sweep, and over its second half
alone: a leak grows there, a warm-up does not; read before the benchmark loads the child runs back
to count them, which alone costs ~175 KB per run), child runs and distinct run keys in MLflow,
whether a journal was left, and `study results --group-by T,kappa,seed --format json` latency
beside `python -c "import mlflow, pandas"`.
Targets: wall <= 1.5 x ideal; results <= 1 s beyond the import (2,000 runs).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
for _threads in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ.setdefault(_threads, "1")
os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))

KAPPAS = [round(2 * (5000 ** (index / 24)), 3) for index in range(25)]  # 2 .. 10,000, log-spaced
DEPTHS = [2, 3, 4, 6, 8, 12, 16, 24]


def sweep_text(name: str, seeds: int, kappas: list[float] = KAPPAS) -> str:
    import yaml

    return yaml.safe_dump({
        "name": name, "seeds": list(range(seeds)),
        "parameters": {"problem": "dugd", "mode": "expected", "n": 16, "T": DEPTHS, "kappa": kappas,
                       "batches_per_generation": 20, "eval_samples": 200},
    }, sort_keys=False)


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def timed_command(*command: str) -> tuple[float, subprocess.CompletedProcess]:
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, check=True)
    return time.perf_counter() - started, done


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=10)
    args = parser.parse_args()
    directory = Path(tempfile.mkdtemp(prefix="scale-"))
    os.environ["STUDY_SPOOL_DIR"] = str(directory / "spool")
    uri = f"sqlite:///{directory / 'mlflow.db'}"
    name = f"scale-{len(DEPTHS) * len(KAPPAS) * args.seeds}"

    from mlflow import MlflowClient

    from study.recording import layout as tracking
    from study.scheduling.coordinator import submit
    from study.spec.loading import load_sweep

    MlflowClient(uri).search_experiments()  # the tables exist before the clock starts
    import ray

    ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False, configure_logging=False)
    slots = int(ray.cluster_resources()["CPU"])
    sweep = load_sweep(sweep_text(name, args.seeds))
    # A small warm-up sweep first: every module the coordinator imports is loaded before RSS is read.
    warm = load_sweep(sweep_text("scale-warm-up", 1, KAPPAS[:2]))
    submit(warm, tracking_uri=uri, figures=False)
    rss_before, db_before = rss_mb(), (directory / "mlflow.db").stat().st_size
    halfway: list[tuple[int, float]] = []

    def at_half(progress) -> None:
        if not halfway and progress.done >= progress.total // 2:
            halfway.append((progress.done, rss_mb()))

    started = time.perf_counter()
    summary = submit(sweep, tracking_uri=uri, figures=False, on_progress=at_half)
    wall = time.perf_counter() - started
    rss_after = rss_mb()  # before the checks below read every child run back into this process
    half_done, rss_half = halfway[0] if halfway else (0, rss_before)
    ideal = summary.compute_s / slots
    child_runs = list(tracking.sweep_runs(MlflowClient(uri), tracking.experiment_id(MlflowClient(uri), name, uri), name))
    keys = {run.data.tags[tracking.TAG_RUN_KEY] for run in child_runs}
    journal_left = any((directory / "spool").glob("*.jsonl")) if (directory / "spool").exists() else False
    store_kb = ((directory / "mlflow.db").stat().st_size - db_before) / 1024 / sweep.total_runs
    print(f"{sweep.total_runs} runs on {slots} slots: wall {wall:.1f} s, runs' own compute {summary.compute_s:.1f} s, "
          f"ideal {ideal:.1f} s, wall/ideal {wall / ideal:.2f} (target <= 1.5)")
    print(f"  results back after {summary.scheduled_s:.1f} s; flush tail {wall - summary.scheduled_s:.1f} s; "
          f"{summary.tasks} tasks; status {summary.status}; finished {summary.finished}, failed {summary.failed}")
    print(f"  MLflow: {len(child_runs)} child runs, {len(keys)} distinct run keys; journal left: {journal_left}; "
          f"warning: {summary.outage}")
    second_half = max(1, sweep.total_runs - half_done)
    print(f"  store growth {store_kb:.1f} KB per child; coordinator peak RSS growth {rss_after - rss_before:.0f} MB, "
          f"of which {rss_after - rss_half:.0f} MB over the second half ({1024 * (rss_after - rss_half) / second_half:.1f} KB "
          f"per run there)")
    study = str(Path(sys.executable).with_name("study"))
    import_s, _ = timed_command(sys.executable, "-c", "import mlflow, pandas")
    results_s, done = timed_command(study, "results", name, "--group-by", "T,kappa,seed", "--format", "json",
                                    "--tracking-uri", uri)
    rows = len(json.loads(done.stdout))
    print(f"  study results --group-by T,kappa,seed --format json: {rows} rows in {results_s:.2f} s; "
          f"import mlflow, pandas alone {import_s:.2f} s; difference {results_s - import_s:.2f} s (target <= 1)")


if __name__ == "__main__":
    main()
