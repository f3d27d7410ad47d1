"""Points per second of a 10,000-point DUGD grid through workers.run.run_many, on the CPU and on CUDA
when one is visible (issue 22 item 7). At most ~3 minutes.

Grid: n = 100, T = 10, mode eigen (float32), 100 Adam steps per generation; κ: 20 values in [10, 1000],
lr: 5 values in [1e-3, 1e-2], seeds 0..99 (20 × 5 × 100 = 10,000 points; all share n and the protocol's
shape, so they form one batch). Measured on an evenly spaced subsample of --points points run as one
unit, and extrapolated linearly to 10,000 (training is one batch: its cost grows linearly with the
points; so do the records). Printed: points/s for the whole call and for training alone (records are
float64 numpy on the CPU whatever the device: they bound the GPU figure).

    OPENBLAS_NUM_THREADS=1 .venv/bin/python benchmarks/gpu_units.py [--points 500]
"""

from __future__ import annotations

import argparse
import itertools
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

from workers.dugd_units import Problems, train_points  # noqa: E402
from workers.run import parse_spec, run_many  # noqa: E402

GRID_POINTS = 10_000


def grid(device: str) -> list[dict]:
    kappas = np.geomspace(10.0, 1000.0, 20)
    lrs = np.geomspace(1e-3, 1e-2, 5)
    return [dict(problem="dugd", n=100, T=10, mode="eigen", batches_per_generation=100, eval_samples=1000,
                 kappa=float(k), lr=float(lr), seed=s, device=device)
            for k, lr, s in itertools.product(kappas, lrs, range(100))]


def measure(device: str, points: int) -> None:
    specs = grid(device)
    assert len(specs) == GRID_POINTS
    sample = specs[:: GRID_POINTS // points][:points]
    run_many(sample[:2])  # warm-up: imports, and the CUDA context
    started = time.perf_counter()
    train_points([parse_spec(s) for s in sample], [None] * len(sample), Problems())
    training = time.perf_counter() - started
    started, cpu = time.perf_counter(), time.process_time()
    results = run_many(sample)
    whole, cpu = time.perf_counter() - started, time.process_time() - cpu
    finished = sum(r.status == "FINISHED" for r in results)
    print(f"{device:<5} {len(sample)} points in {whole:.1f} s wall, {cpu:.1f} s CPU ({finished} FINISHED): "
          f"{len(sample) / whole:.0f} points/s wall ({len(sample) / cpu:.0f} per CPU-second) -> 10,000 points "
          f"in ~{GRID_POINTS / len(sample) * whole:.0f} s; training alone {len(sample) / training:.0f} points/s "
          f"({training:.1f} s)", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, default=500, help="subsample size (run as one unit)")
    args = parser.parse_args()
    measure("cpu", args.points)
    try:
        import torch

        cuda = torch.cuda.is_available()
    except ImportError:
        cuda = False
    if cuda:
        measure("cuda", args.points)
    else:
        print("cuda  not visible: no GPU figure")


if __name__ == "__main__":
    main()
