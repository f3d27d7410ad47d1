"""A sweep costs the distinct work it contains (issue 22): sweeps that share work against the part of
them that is distinct, each through the real CLI (`study submit FILE`) on a fresh SQLite store, as a
new user runs them (local Ray started by the CLI, default figures).

    .venv/bin/python benchmarks/distinct_work.py --part orchestration           # all ratios + the paper grid
    .venv/bin/python benchmarks/distinct_work.py --part orchestration --quick   # without the 375-point grid
    .venv/bin/python benchmarks/distinct_work.py --part orchestration --only depth,latency

Orchestration ratios (each pair measured back to back in one invocation; targets from issue 22):
- depth: the depth grid (n=300, T=1..25, kappa {10,100}, seeds {0,1}: 100 points, eigen) / its four
  T=25 points (target <= 1.3);
- kappa_seed: 50 kappa x seed points (n=300, T=8, eigen) / one of them (target <= 1.5);
- tiny: the 2,000-point tiny grid of benchmarks/scale.py / a one-point sweep of it (target <= 2);
- latency: a one-point sweep's overhead (CLI wall minus the run's own wall_s) / a process doing
  `import ray; ray.init(); ray.shutdown()` (target <= 1.5), with where the seconds go;
- paper: the paper-scale grid (n=300, T=1..25, kappa {3,10,30,100,300}, 3 seeds: 375 points), reported.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))

ORCHESTRATION_PARTS = ("depth", "kappa_seed", "tiny", "latency", "paper")


def _sweep_file(directory: Path, name: str, parameters: dict, seeds: list[int]) -> Path:
    path = directory / f"{name}.yaml"
    path.write_text(yaml.safe_dump({"name": name, "seeds": seeds, "parameters": parameters}, sort_keys=False))
    return path


def timed_submit(name: str, parameters: dict, seeds: list[int]) -> tuple[float, Path, str]:
    """`study submit` of a one-off sweep on a fresh store: (wall seconds, store directory, output)."""
    directory = Path(tempfile.mkdtemp(prefix=f"distinct-{name}-"))
    path = _sweep_file(directory, name, parameters, seeds)
    env = {**os.environ, "STUDY_SPOOL_DIR": str(directory / "spool"), "STUDY_TIMING": "1"}
    command = [sys.executable, "-m", "study.cli", "submit", str(path), "--tracking-uri",
               f"sqlite:///{directory / 'mlflow.db'}"]
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, env=env, cwd=directory)
    wall = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"{name}: study submit exited {done.returncode}: {done.stderr[-2000:]}")
    return wall, directory, done.stdout + done.stderr


def child_runs(directory: Path, name: str) -> tuple[int, int, float]:
    """(child runs, distinct run keys, sum of their wall_s) in the sweep's store."""
    from mlflow import MlflowClient

    from study import tracking

    uri = f"sqlite:///{directory / 'mlflow.db'}"
    client = MlflowClient(uri)
    runs = list(tracking.sweep_runs(client, tracking.experiment_id(client, name, uri), name))
    keys = {run.data.tags[tracking.TAG_RUN_KEY] for run in runs}
    return len(runs), len(keys), sum(float(run.data.metrics.get("wall_s", 0.0)) for run in runs)


def _ratio(label: str, big: tuple[str, dict, list[int]], small: tuple[str, dict, list[int]], target: float) -> None:
    big_wall, big_dir, _ = timed_submit(*big)
    small_wall, small_dir, _ = timed_submit(*small)
    runs, keys, _ = child_runs(big_dir, big[0])
    ratio = big_wall / small_wall
    verdict = "met" if ratio <= target else "MISSED"
    print(f"{label}: {big_wall:.1f} s ({runs} child runs, {keys} distinct keys) / {small_wall:.1f} s "
          f"= {ratio:.2f}x (target <= {target}: {verdict})", flush=True)


EIGEN_300 = {"problem": "dugd", "n": 300, "mode": "eigen"}


def part_depth() -> None:
    _ratio("depth grid (100 points) / its four T=25 points",
           ("depth-grid", {**EIGEN_300, "T": list(range(1, 26)), "kappa": [10, 100]}, [0, 1]),
           ("depth-t25", {**EIGEN_300, "T": 25, "kappa": [10, 100]}, [0, 1]), 1.3)


def part_kappa_seed() -> None:
    kappas = [round(10 ** (1 + 2 * index / 9), 3) for index in range(10)]  # 10 .. 1000, log-spaced
    _ratio("50 kappa x seed points (T=8) / one of them",
           ("kappa-seed", {**EIGEN_300, "T": 8, "kappa": kappas}, list(range(5))),
           ("kappa-seed-one", {**EIGEN_300, "T": 8, "kappa": kappas[0]}, [0]), 1.5)


def part_tiny() -> None:
    from benchmarks.scale import DEPTHS, KAPPAS

    tiny = {"problem": "dugd", "mode": "expected", "n": 16, "batches_per_generation": 20, "eval_samples": 200}
    _ratio("2,000-point tiny grid / a one-point sweep of it",
           ("tiny-grid", {**tiny, "T": DEPTHS, "kappa": KAPPAS}, list(range(10))),
           ("tiny-one", {**tiny, "T": DEPTHS[-1], "kappa": KAPPAS[-1]}, [0]), 2.0)


def part_latency() -> None:
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import ray; ray.init(); ray.shutdown()"], check=True, capture_output=True)
    ray_s = time.perf_counter() - started
    wall, directory, output = timed_submit("one-point", {**EIGEN_300, "T": 8, "kappa": 100}, [0])
    _, _, run_s = child_runs(directory, "one-point")
    overhead = wall - run_s
    ratio = overhead / ray_s
    print(f"one-point sweep: wall {wall:.1f} s, run's wall_s {run_s:.2f} s, overhead {overhead:.1f} s; "
          f"`ray.init(); ray.shutdown()` {ray_s:.1f} s; overhead / ray = {ratio:.2f}x "
          f"(target <= 1.5: {'met' if ratio <= 1.5 else 'MISSED'})", flush=True)
    timings = re.findall(r"^timing: .*$", output, flags=re.M)  # STUDY_TIMING=1 breakdown, when the CLI gives one
    for line in timings:
        print("  " + line)
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import study.cli"], check=True)
    print(f"  `import study.cli` alone: {time.perf_counter() - started:.2f} s", flush=True)


def part_paper() -> None:
    wall, directory, _ = timed_submit("paper-grid", {**EIGEN_300, "T": list(range(1, 26)),
                                                     "kappa": [3, 10, 30, 100, 300]}, [0, 1, 2])
    runs, keys, run_s = child_runs(directory, "paper-grid")
    print(f"paper-scale grid (375 points): {wall:.1f} s end to end; {runs} child runs, {keys} distinct keys; "
          f"runs' own wall_s summed {run_s:.1f} s", flush=True)


def orchestration(only: list[str], quick: bool) -> None:
    print(f"load average at start: {os.getloadavg()}", flush=True)
    for part in only:
        if part == "paper" and quick:
            continue
        globals()[f"part_{part}"]()
        print(f"  (load average now: {os.getloadavg()[0]:.1f})", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--part", default="orchestration", help="orchestration | numerics")
    parser.add_argument("--only", default=",".join(ORCHESTRATION_PARTS), help="orchestration parts, comma-separated")
    parser.add_argument("--quick", action="store_true", help="skip the 375-point paper grid")
    args = parser.parse_args()
    if args.part == "orchestration":
        only = [part for part in args.only.split(",") if part]
        unknown = sorted(set(only) - set(ORCHESTRATION_PARTS))
        if unknown:
            parser.error(f"--only: got {','.join(unknown)}, expected some of {','.join(ORCHESTRATION_PARTS)}")
        orchestration(only, args.quick)
    elif args.part == "numerics" and "numerics" in globals():
        globals()["numerics"]()
    else:
        parser.error(f"--part: got {args.part!r}, expected orchestration or numerics")


if __name__ == "__main__":
    main()
