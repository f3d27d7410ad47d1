"""Wall time of the three DUGD training modes on the authors' protocol, on one core.

Protocol: n=300, m=600, matrix_seed=12, T=25, incremental, 500 Adam steps per generation (12,500 in all).
`eigen` and `expected` run the whole protocol. `dense` runs the same generations with fewer batches
each (--dense-batches) and is extrapolated linearly to 500 per generation: each generation's cost is
per-step cost × batches, so this is a measured fraction, scaled. Targets: eigen >= 50x faster than
dense, expected >= 1,000x faster than dense, eigen under 10 s.

    .venv/bin/python benchmarks/training_modes.py [--dense-batches 4] [--repeats 3]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from workers.dugd import TrainingConfig, train  # noqa: E402
from workers.specs import DugdSpec  # noqa: E402
from workers.spectra import build_problem  # noqa: E402


def timed(problem, config: TrainingConfig, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        train(problem, config)
        best = min(best, time.perf_counter() - started)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dense-batches", type=int, default=4, help="dense batches per generation (measured)")
    parser.add_argument("--repeats", type=int, default=3, help="best of this many runs (eigen, expected)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    problem = build_problem(DugdSpec(n=300, m=600, matrix_seed=12))
    protocol = TrainingConfig(T=25, batches_per_generation=500)
    train(problem, TrainingConfig(T=2, mode="dense", batches_per_generation=2))  # warm torch up

    print(f"load before: {os.getloadavg()[0]:.2f} (1-min load average, 2 cores), torch threads: 1")
    dense_fraction = timed(problem, TrainingConfig(T=25, mode="dense", batches_per_generation=args.dense_batches), 1)
    dense = dense_fraction * 500 / args.dense_batches
    eigen = timed(problem, TrainingConfig(**{**protocol.__dict__, "mode": "eigen"}), args.repeats)
    eigen64 = timed(problem, TrainingConfig(**{**protocol.__dict__, "mode": "eigen", "dtype": "float64"}), 1)
    expected = timed(problem, TrainingConfig(**{**protocol.__dict__, "mode": "expected"}), args.repeats)
    print(f"dense    float32: {dense:9.2f} s  (extrapolated from {25 * args.dense_batches} measured steps, "
          f"{dense_fraction:.2f} s, x{500 / args.dense_batches:.0f})")
    print(f"eigen    float32: {eigen:9.3f} s  full protocol (target < 10 s)")
    print(f"eigen    float64: {eigen64:9.3f} s  full protocol")
    print(f"expected float64: {expected:9.3f} s  full protocol (numpy, analytic gradient)")
    print(f"ratio dense/eigen:    {dense / eigen:8.0f}x  (target >= 50x)")
    print(f"ratio dense/expected: {dense / expected:8.0f}x  (target >= 1,000x)")
    print(f"load after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
