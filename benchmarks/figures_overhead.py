"""How much do per-run figures add to a sweep's wall time?

Runs configs/quick.yaml through study.scheduling.coordinator.submit with figures off and on (alternating; each in
a fresh Python process with a fresh SQLite MLflow store and its own local Ray, as `study submit` does).
Prints every submit() wall time and the CPU time of that process tree (coordinator, Ray, its workers;
sampled with psutil), the medians and their ratios, and the machine load. On a shared 2-core host the
wall time swings by ±25 % with other people's load; the CPU time does not, so both are shown. Also
prints the CPU cost of one run's figures next to the cost of the run itself.

    .venv/bin/python benchmarks/figures_overhead.py [--repeats 2] [--sweep configs/quick.yaml]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil

os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")


def load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


class TreeCPU:
    """CPU seconds of this process and every descendant (Ray's GCS, raylet, workers), sampled every
    0.1 s with psutil: Ray's workers are not waited for by us, so getrusage(RUSAGE_CHILDREN) misses them."""

    def __init__(self) -> None:
        self.seen: dict[int, float] = {}
        self.total = 0.0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._poll, daemon=True)

    def _poll(self) -> None:
        me = psutil.Process()
        while not self.stop.wait(0.1):
            for process in me.children(recursive=True):
                try:
                    times = process.cpu_times()
                except psutil.Error:
                    continue
                self.seen[process.pid] = times.user + times.system

    def __enter__(self) -> "TreeCPU":
        self.own_before = sum(psutil.Process().cpu_times()[:2])
        self.thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop.set()
        self.thread.join()
        self.total = sum(self.seen.values()) + sum(psutil.Process().cpu_times()[:2]) - self.own_before


def measured_in_subprocess(sweep_file: str, figures: bool) -> tuple[float, float, int, float]:
    """(submit wall s, CPU s of the sweep's process tree, runs given figures in the sweep, wall s of the
    `study figures` stage afterwards) of one sweep in a fresh process."""
    done = subprocess.run([sys.executable, __file__, "--sweep", sweep_file, "--one", "on" if figures else "off"],
                          capture_output=True, text=True, check=True)
    wall, cpu, logged, stage_s = done.stdout.strip().splitlines()[-1].split()
    return float(wall), float(cpu), int(logged), float(stage_s)


def sweep_wall(sweep_file: str, figures: bool) -> tuple[float, float, int, float]:
    from study.scheduling.coordinator import submit
    from study.spec.loading import load_sweep

    with tempfile.TemporaryDirectory(prefix="figbench-") as directory:
        uri = f"sqlite:///{Path(directory) / 'mlflow.db'}"
        os.environ["STUDY_SPOOL_DIR"] = str(Path(directory) / "spool")
        sweep = load_sweep(sweep_file)
        with TreeCPU() as tree:
            started = time.perf_counter()
            summary = submit(sweep, tracking_uri=uri, figures=figures)
            wall = time.perf_counter() - started
        from mlflow import MlflowClient

        from study.reading.results import load_results

        frame = load_results(summary.sweep, uri)
        client = MlflowClient(uri)
        with_figures = sum(bool(client.list_artifacts(run_id, "figures")) for run_id in frame["run_id"])
        stage_s = 0.0
        if figures:  # the separate stage for the runs the sweep left without figures
            from study.report.backfill import log_sweep_figures

            started = time.perf_counter()
            log_sweep_figures(summary.sweep, uri)
            stage_s = time.perf_counter() - started
    return wall, tree.total, with_figures, stage_s


def per_run_cpu(sweep_file: str) -> tuple[float, float]:
    """CPU seconds of one run of the sweep and of rendering its summary.png (both warm, in this process);
    prints the CPU time of each full-size figure too (best of 3)."""
    from study.figures import run_figures as plots
    from study.spec.loading import load_sweep
    from workers.run import run
    from workers.result import Result

    point = load_sweep(sweep_file).expand()[-1].params
    record = run(point).as_record()
    plots.record_figures(record, min_run_s=0.0)  # warm: imports, font cache
    started = time.process_time()
    record = run(point).as_record()
    run_cpu = time.process_time() - started
    started = time.process_time()
    plots.record_figures(record, min_run_s=0.0)
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
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--one", choices=["on", "off"], help=argparse.SUPPRESS)  # the child process
    parser.add_argument("--min-run-s", type=float, help="override study.figures.budget.MIN_RUN_S_FOR_FIGURES (0: render beside every run)")
    args = parser.parse_args()
    if args.min_run_s is not None:
        os.environ["STUDY_MIN_RUN_S_FOR_FIGURES"] = str(args.min_run_s)  # read by study.figures.budget in the Ray tasks
    if args.one:
        wall, cpu, logged, stage_s = sweep_wall(args.sweep, args.one == "on")
        print(f"{wall:.3f} {cpu:.3f} {logged} {stage_s:.3f}")
        return
    print(f"load before: {load()}  (2 cores; other helpers may be running)")
    run_cpu, figure_cpu = per_run_cpu(args.sweep)
    print(f"one run: {run_cpu * 1000:.0f} ms CPU; its summary.png (made in the sweep): {figure_cpu * 1000:.0f} ms CPU "
          f"({figure_cpu / run_cpu:.0%} of the run)")
    walls: dict[bool, list[float]] = {False: [], True: []}
    cpus: dict[bool, list[float]] = {False: [], True: []}
    for repeat in range(args.repeats):
        for figures in (False, True):
            wall, cpu, logged, stage_s = measured_in_subprocess(args.sweep, figures)
            walls[figures].append(wall)
            cpus[figures].append(cpu)
            stage = f", then `study figures` {stage_s:5.2f} s" if figures else ""
            print(f"repeat {repeat}: figures={'on ' if figures else 'off'} submit wall {wall:6.2f} s, "
                  f"process-tree CPU {cpu:6.2f} s, runs given figures in the sweep: {logged:3d}{stage}, load {load()}")
    off, on = statistics.median(walls[False]), statistics.median(walls[True])
    cpu_off, cpu_on = statistics.median(cpus[False]), statistics.median(cpus[True])
    print(f"median submit wall: off {off:.2f} s, on {on:.2f} s: figures add {on / off - 1:+.1%}")
    print(f"median CPU: off {cpu_off:.2f} s, on {cpu_on:.2f} s: figures add {cpu_on / cpu_off - 1:+.1%} "
          f"({cpu_on - cpu_off:.2f} CPU s; spread over 2 cores that is {(cpu_on - cpu_off) / 2 / off:+.1%} of the wall)")


if __name__ == "__main__":
    main()
