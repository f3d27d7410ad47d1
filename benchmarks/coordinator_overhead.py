"""Coordinator overhead on probe runs (busy CPU for work_s seconds each), logged to a fresh SQLite MLflow.

Prints, for each sweep, the wall time over the ideal (sum of the runs' compute / worker slots):
- `scheduled`: until the last result came back to the coordinator;
- `logged`: until the last child run was in MLflow too (adds the writer's final flush).
Then runs per second on tiny (zero-work) runs, and the coordinator's peak RSS growth over them.

    .venv/bin/python benchmarks/coordinator_overhead.py                 # full: 1000x0.2 s, 200x2 s, 10000 tiny
    .venv/bin/python benchmarks/coordinator_overhead.py --quick         # 100x0.2 s, 20x2 s, 1000 tiny
Targets: ratio <= 1.10 (0.2 s runs), <= 1.03 (2 s runs), RSS growth < 100 MB.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import psutil  # noqa: E402
import ray  # noqa: E402

from study.scheduling.coordinator import submit  # noqa: E402
from study.spec.loading import load_sweep  # noqa: E402


def probe_sweep(name: str, runs: int, work_s: float):
    return load_sweep(f"name: {name}\nparameters: {{problem: probe, work_s: {work_s}, x: {list(range(runs))}}}")


def overhead(uri: str, runs: int, work_s: float, slots: int) -> None:
    summary = submit(probe_sweep(f"bench-{runs}x{work_s:g}", runs, work_s), tracking_uri=uri)
    ideal = summary.compute_s / slots
    print(
        f"{runs:5d} runs x {work_s:g} s: ideal {ideal:7.1f} s | scheduled {summary.scheduled_s:7.1f} s "
        f"(ratio {summary.scheduled_s / ideal:.3f}) | logged {summary.wall_s:7.1f} s (ratio {summary.wall_s / ideal:.3f}) "
        f"| {summary.tasks} tasks, {summary.failed} failed",
        flush=True,
    )


def tiny(uri: str, runs: int) -> None:
    process = psutil.Process()
    baseline = process.memory_info().rss
    peak = [baseline]

    def sample(_progress) -> None:
        peak[0] = max(peak[0], process.memory_info().rss)

    summary = submit(probe_sweep(f"bench-tiny-{runs}", runs, 0.0), tracking_uri=uri, on_progress=sample)
    peak[0] = max(peak[0], process.memory_info().rss)
    print(
        f"{runs} tiny runs: {runs / summary.scheduled_s:7.0f} runs/s scheduled ({summary.tasks} tasks), "
        f"{runs / summary.wall_s:5.1f} runs/s logged to MLflow ({summary.wall_s:.1f} s); "
        f"peak RSS growth {(peak[0] - baseline) / 2**20:.1f} MB",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="10x fewer runs")
    parser.add_argument("--runs", type=int, help="runs of 0.2 s (default 1000, quick 100)")
    parser.add_argument("--long-runs", type=int, help="runs of 2 s (default 200, quick 20)")
    parser.add_argument("--tiny-runs", type=int, help="zero-work runs (default 10000, quick 1000)")
    parser.add_argument("--slots", type=int, default=2)
    parser.add_argument("--only", choices=["short", "long", "tiny"], action="append")
    args = parser.parse_args()
    scale = 10 if args.quick else 1
    only = set(args.only or ["short", "long", "tiny"])
    with tempfile.TemporaryDirectory() as directory:
        os.environ.setdefault("STUDY_SPOOL_DIR", str(Path(directory) / "spool"))
        uri = f"sqlite:///{directory}/mlflow.db"
        ray.init(num_cpus=args.slots, include_dashboard=False, log_to_driver=False, configure_logging=False)
        submit(probe_sweep("warm-up", 2 * args.slots, 0.0), tracking_uri=uri)  # create the store, start workers
        print(f"load: {os.getloadavg()}  cpus: {os.cpu_count()}  slots: {args.slots}", flush=True)
        if "short" in only:
            overhead(uri, args.runs or 1000 // scale, 0.2, args.slots)
        if "long" in only:
            overhead(uri, args.long_runs or 200 // scale, 2.0, args.slots)
        if "tiny" in only:
            tiny(uri, args.tiny_runs or 10_000 // scale)
        print(f"load: {os.getloadavg()}", flush=True)
        ray.shutdown()


if __name__ == "__main__":
    main()
