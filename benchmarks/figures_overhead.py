"""How much do per-run figures add to a sweep's wall time?

Runs configs/quick.yaml through study.coordinator.submit with figures off and on (alternating, each into
a fresh SQLite MLflow store, each with its own fresh local Ray as `study submit` does), prints every wall
time, the medians and their ratio, and the machine load. Also prints the CPU cost of rendering one run's
figures in-process next to the cost of the run itself.

    .venv/bin/python benchmarks/figures_overhead.py [--repeats 2] [--sweep configs/quick.yaml]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")


def load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def sweep_wall(sweep_file: str, figures: bool) -> tuple[float, int]:
    from study.coordinator import submit
    from study.spec import load_sweep

    with tempfile.TemporaryDirectory(prefix="figbench-") as directory:
        uri = f"sqlite:///{Path(directory) / 'mlflow.db'}"
        os.environ["STUDY_SPOOL_DIR"] = str(Path(directory) / "spool")
        started = time.perf_counter()
        summary = submit(load_sweep(sweep_file), tracking_uri=uri, figures=figures)
        wall = time.perf_counter() - started
        from mlflow import MlflowClient

        from study.results import load_results

        frame = load_results(summary.sweep, uri)
        client = MlflowClient(uri)
        with_figures = sum(bool(client.list_artifacts(run_id, "figures")) for run_id in frame["run_id"])
    return wall, with_figures


def per_run_cpu(sweep_file: str) -> tuple[float, float]:
    """CPU seconds of one run of the sweep and of rendering its summary.png (both warm, in this process);
    prints the CPU time of each full-size figure too (best of 3)."""
    from study import plots
    from study.spec import load_sweep
    from workers.run import run
    from workers.result import Result

    point = load_sweep(sweep_file).expand()[-1].params
    record = run(point).as_record()
    plots.record_figures(record)  # warm: imports, font cache
    started = time.process_time()
    record = run(point).as_record()
    run_cpu = time.process_time() - started
    started = time.process_time()
    plots.record_figures(record)
    summary_cpu = time.process_time() - started
    flat = Result.from_dict(record).to_dict()
    for name in plots.run_figures(flat):
        costs = []
        for _ in range(3):
            started = time.process_time()
            plots.run_figures(flat, only={name})
            costs.append(time.process_time() - started)
        print(f"  {name}: {min(costs) * 1000:.0f} ms CPU")
    return run_cpu, summary_cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sweep", default="configs/quick.yaml")
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    print(f"load before: {load()}  (2 cores; other helpers may be running)")
    run_cpu, figure_cpu = per_run_cpu(args.sweep)
    print(f"one run: {run_cpu * 1000:.0f} ms CPU; its summary.png (made in the sweep): {figure_cpu * 1000:.0f} ms CPU "
          f"({figure_cpu / run_cpu:.0%} of the run)")
    walls: dict[bool, list[float]] = {False: [], True: []}
    for repeat in range(args.repeats):
        for figures in (False, True):
            wall, logged = sweep_wall(args.sweep, figures)
            walls[figures].append(wall)
            print(f"repeat {repeat}: figures={'on ' if figures else 'off'} wall {wall:6.2f} s, "
                  f"runs with figures/ artifacts: {logged}, load {load()}")
    off, on = statistics.median(walls[False]), statistics.median(walls[True])
    print(f"median wall: off {off:.2f} s, on {on:.2f} s; figures add {on / off - 1:+.1%}")


if __name__ == "__main__":
    main()
