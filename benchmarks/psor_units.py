"""What run_psor_many shares (issue 22), as measured ratios: one run per point against one call.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/psor_units.py

1. ISTA (n = 512, m = 256, T = 8, 200 iterations), the four fixed schemes of one point: the LASSO solve
   and the fixed schemes' curves are computed once instead of four times.
2. DU-PSOR-Jacobi's protocol (configs/du-psor.yaml, T = 2), train_depth 2, 5, 10, 20: one training to
   depth 20 instead of four (incremental depth: depth d of it is the training to d).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from workers.psor import run_psor, run_psor_many  # noqa: E402
from workers.specs import PsorSpec  # noqa: E402


def compare(label: str, specs: list[PsorSpec]) -> None:
    started = time.perf_counter()
    for spec in specs:
        run_psor(spec)
    alone = time.perf_counter() - started
    started = time.perf_counter()
    run_psor_many(specs)
    together = time.perf_counter() - started
    print(f"{label}: one run per point {alone:.2f} s, run_psor_many {together:.2f} s, ratio {alone / together:.2f}")


def main() -> None:
    compare("ISTA, 4 fixed schemes", [PsorSpec(fixed_point="ista", n=512, m=256, T=8, iterations=200, omega=omega)
                                      for omega in ("plain", "constant", "chebyshev", "chebyshev_local")])
    protocol = dict(fixed_point="jacobi", n=32, jacobi_shift=0.15, entry_std=0.05, x0_around="random_rhs",
                    omega="learned", omega_loss="mse", batch_size=100, steps_per_depth=50, lr=0.01, T=2, iterations=20)
    compare("DU-PSOR-Jacobi T = 2, train_depth 2/5/10/20", [PsorSpec(**protocol, train_depth=depth) for depth in (2, 5, 10, 20)])


if __name__ == "__main__":
    main()
