"""A sweep costs the distinct work it contains (issue 22). Parts, chosen with --part:

- `numerics`: per-step cost of batched DUGD training (workers/batched.py) against batch size
  (1, 8, 50, 500) at n = 300, T = 25, on one core: µs per run-step (one Adam step of one run), in
  `expected` (float64, no draws) and `eigen` (float32, each run's χ² weights drawn as in the one-run
  path), over the incremental protocol (mean depth 13) and at full depth 25. Target: ≤ 5 µs per
  run-step in a batch of 50. The χ² draws alone are timed too: they bound `eigen` from below.

    OPENBLAS_NUM_THREADS=1 .venv/bin/python benchmarks/distinct_work.py --part numerics [--steps 20]
"""

from __future__ import annotations

import argparse
import os
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
    started = time.perf_counter()
    train_batch(batch, config.depths(), steps, mode, NumpyBackend(dtype))
    elapsed = time.perf_counter() - started
    return elapsed / (runs * steps * len(config.depths())) * 1e6


def numerics_part(steps: int = 20) -> None:
    """Print µs per run-step against batch size (see the module docstring)."""
    problems = [build_problem(DugdSpec(n=300, kappa=kappa)) for kappa in (10.0, 30.0, 100.0)]
    print(f"n=300 T=25, {steps} Adam steps per generation x 25 generations; "
          f"OPENBLAS_NUM_THREADS={os.environ.get('OPENBLAS_NUM_THREADS', 'unset')}")
    print(f"{'mode':<9}{'training':<13}" + "".join(f"{f'batch {b}':>12}" for b in BATCHES) + "   (us per run-step)")
    for mode in ("expected", "eigen"):
        for training in ("incremental", "full"):
            cells = []
            for runs in BATCHES:
                scaled = max(2, steps * 8 // runs) if runs < 8 else max(2, steps * 50 // max(runs, 50))
                cells.append(_per_run_step(mode, training, runs, scaled, problems))
            print(f"{mode:<9}{training:<13}" + "".join(f"{c:12.2f}" for c in cells))
    rng = np.random.default_rng(0)
    started = time.perf_counter()
    rng.chisquare(200, (steps * 25, 300))
    draw = (time.perf_counter() - started) / (steps * 25) * 1e6
    print(f"chi-square draws alone (batch_size 200, n=300): {draw:.2f} us per run-step (a floor for eigen)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", choices=["numerics"], default="numerics")
    parser.add_argument("--steps", type=int, default=20, help="Adam steps per generation (numerics)")
    args = parser.parse_args()
    if args.part == "numerics":
        numerics_part(args.steps)


if __name__ == "__main__":
    main()
