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
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

from workers.batched import NumpyBackend, train_batch  # noqa: E402
from workers.dugd import TrainingConfig, batch_run  # noqa: E402
from workers.specs import DugdSpec  # noqa: E402
from workers.spectra import build_problem  # noqa: E402

BATCHES = (1, 8, 50, 500)


def _per_run_step(mode: str, training: str, runs: int, steps: int, problems: list) -> float:
    """µs per run-step of one batched training of `runs` runs (κ and seed vary across the batch)."""
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
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", choices=["numerics", "numerics-before"], default="numerics")
    parser.add_argument("--steps", type=int, default=20, help="Adam steps per generation (numerics)")
    parser.add_argument("--checkout", help="numerics-before: a checkout (or its workers/ extracted) to time")
    args = parser.parse_args()
    if args.part == "numerics":
        numerics_part(args.steps)
    elif args.part == "numerics-before":
        numerics_before(args.checkout, args.steps)


if __name__ == "__main__":
    main()
