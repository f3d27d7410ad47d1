"""A sweep costs the distinct work it contains (issue 22). Parts, chosen with --part:

- `numerics`: per-step cost of batched DUGD training (workers/batched.py) against batch size
  (1, 8, 50, 500) at n = 300, T = 25, on one core: µs per run-step (one Adam step of one run), in
  `expected` (float64, no draws) and `eigen` (float32, each run's χ² weights drawn as in the one-run
  path), over the incremental protocol (mean depth 13) and at full depth 25. Target: ≤ 5 µs per
  run-step in a batch of 50. The χ² draws alone are timed too: they bound `eigen` from below.
  Times are the process's CPU time (time.process_time, one BLAS thread): on a shared, oversubscribed
  machine wall time mostly measures the wait for a core.

    OPENBLAS_NUM_THREADS=1 .venv/bin/python benchmarks/distinct_work.py --part numerics [--steps 20]

- `numerics-before`: the same protocol through the one-run `workers.dugd.train` of another checkout
  (e.g. `git archive c56311e workers | tar -x -C /tmp/before`), CPU µs per step, in a subprocess:

    OPENBLAS_NUM_THREADS=1 .venv/bin/python benchmarks/distinct_work.py --part numerics-before --checkout /tmp/before

- `orchestration`: whole sweeps against the distinct work in them, each through the real CLI
  (`study submit FILE`) on a fresh SQLite store, as a new user runs them (local Ray started by the CLI,
  default figures).

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

    from study.recording import layout as tracking

    uri = f"sqlite:///{directory / 'mlflow.db'}"
    client = MlflowClient(uri)
    runs = list(tracking.sweep_runs(client, tracking.experiment_id(client, name, uri), name))
    keys = {run.data.tags[tracking.TAG_RUN_KEY] for run in runs}
    return len(runs), len(keys), sum(float(run.data.metrics.get("wall_s", 0.0)) for run in runs)


def _ratio(label: str, big: tuple[str, dict, list[int]], small: tuple[str, dict, list[int]], target: float) -> None:
    big_wall, big_dir, big_output = timed_submit(*big)
    small_wall, small_dir, _ = timed_submit(*small)
    runs, keys, big_compute = child_runs(big_dir, big[0])
    _, _, small_compute = child_runs(small_dir, small[0])
    ratio = big_wall / small_wall
    verdict = "met" if ratio <= target else "MISSED"
    print(f"{label}: {big_wall:.1f} s ({runs} child runs, {keys} distinct keys) / {small_wall:.1f} s "
          f"= {ratio:.2f}x (target <= {target}: {verdict}); the runs' own wall_s summed: {big_compute:.1f} s / "
          f"{small_compute:.2f} s", flush=True)
    for line in re.findall(r"^timing: .*$", big_output, flags=re.M):  # the larger sweep's phases
        print("  " + line, flush=True)


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

BATCHES = (1, 8, 50, 500)


def _per_run_step(mode: str, training: str, runs: int, steps: int, problems: list) -> float:
    """µs per run-step of one batched training of `runs` runs (κ and seed vary across the batch)."""
    from workers.batched import NumpyBackend, train_batch
    from workers.dugd import TrainingConfig, batch_run

    dtype = "float64" if mode == "expected" else "float32"
    config = TrainingConfig(T=25, mode=mode, training=training, batches_per_generation=steps, dtype=dtype)
    batch = [batch_run(problems[r % len(problems)], TrainingConfig(**{**config.__dict__, "seed": r}), None)
             for r in range(runs)]
    started = time.process_time()
    train_batch(batch, config.depths(), steps, mode, NumpyBackend(dtype))
    elapsed = time.process_time() - started
    return elapsed / (runs * steps * len(config.depths())) * 1e6


def numerics_part(steps: int = 20) -> None:
    """Print µs per run-step against batch size (see the module docstring)."""
    import numpy as np

    from workers.specs import DugdSpec
    from workers.spectra import build_problem

    problems = [build_problem(DugdSpec(n=300, kappa=kappa)) for kappa in (10.0, 30.0, 100.0)]
    print(f"n=300 T=25, {steps} Adam steps per generation x 25 generations; "
          f"OPENBLAS_NUM_THREADS={os.environ.get('OPENBLAS_NUM_THREADS', 'unset')}")
    print(f"{'mode':<9}{'training':<13}" + "".join(f"{f'batch {b}':>12}" for b in BATCHES) + "   (CPU us per run-step)")
    for mode in ("expected", "eigen"):
        for training in ("incremental", "full"):
            cells = []
            for runs in BATCHES:
                scaled = max(2, steps * 8 // runs) if runs < 8 else max(2, steps * 50 // max(runs, 50))
                cells.append(_per_run_step(mode, training, runs, scaled, problems))
            print(f"{mode:<9}{training:<13}" + "".join(f"{c:12.2f}" for c in cells))
    rng = np.random.default_rng(0)
    started = time.process_time()
    rng.chisquare(200, (steps * 25 * 8, 300))
    draw = (time.process_time() - started) / (steps * 25 * 8) * 1e6
    print(f"chi-square draws alone (batch_size 200, n=300): {draw:.2f} us per run-step (a floor for eigen)")


_BEFORE = """
import sys, time
from workers.dugd import TrainingConfig, train
from workers.specs import DugdSpec
from workers.spectra import build_problem
problem = build_problem(DugdSpec(n=300, kappa=30.0))
for mode in ("expected", "eigen"):
    for training in ("incremental", "full"):
        config = TrainingConfig(T=25, mode=mode, training=training, batches_per_generation={steps})
        started = time.process_time()
        train(problem, config)
        print(f"{{mode:<9}}{{training:<13}}{{(time.process_time() - started) / (25 * {steps}) * 1e6:12.1f}}", flush=True)
"""


def numerics_before(checkout: str, steps: int = 20) -> None:
    """CPU µs per step of one run through `checkout`'s workers.dugd.train (n=300, κ=30, T=25)."""
    print(f"one run through {checkout}/workers (CPU us per step)")
    env = {**os.environ, "PYTHONPATH": checkout}
    subprocess.run([sys.executable, "-c", _BEFORE.format(steps=steps)], env=env, cwd=checkout, check=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--part", choices=["orchestration", "numerics", "numerics-before"], default="orchestration")
    parser.add_argument("--only", default=",".join(ORCHESTRATION_PARTS), help="orchestration parts, comma-separated")
    parser.add_argument("--quick", action="store_true", help="skip the 375-point paper grid")
    parser.add_argument("--steps", type=int, default=20, help="Adam steps per generation (numerics)")
    parser.add_argument("--checkout", help="numerics-before: a checkout (or its workers/ extracted) to time")
    args = parser.parse_args()
    if args.part == "orchestration":
        only = [part for part in args.only.split(",") if part]
        unknown = sorted(set(only) - set(ORCHESTRATION_PARTS))
        if unknown:
            parser.error(f"--only: got {','.join(unknown)}, expected some of {','.join(ORCHESTRATION_PARTS)}")
        orchestration(only, args.quick)
    elif args.part == "numerics":
        numerics_part(args.steps)
    else:
        numerics_before(args.checkout, args.steps)


if __name__ == "__main__":
    main()
