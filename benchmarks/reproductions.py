"""The figures and numbers of docs/reproductions.md: one section per seed-paper result.

Every number comes from the public numerics (workers.run, workers.chebyshev, workers.metrics,
workers.unrolling, workers.psor, workers.descending); this script only runs them and draws.
Figures go to docs/reproductions/<section>-*.png; the tables are printed as Markdown.

    .venv/bin/python benchmarks/reproductions.py                  # every section (a few minutes)
    .venv/bin/python benchmarks/reproductions.py chgd unrolling   # some of them
Sections: paper-dugd, dugd-kappa, chgd, psor-jacobi, psor-ista, du-psor, unrolling, unrolling-envelope,
theory, descending, lista-descending.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from repro_common import save, table  # noqa: E402 - the helpers every section module shares
from study.figures.run_figures import log_axis, new_figure  # noqa: E402
from workers.chgd import chgd_polynomials, chgd_problem  # noqa: E402
from workers.descending import evaluate_steps, train_descending  # noqa: E402
from workers.run import run  # noqa: E402
from workers.specs import ChgdSpec, DugdSpec  # noqa: E402
from workers.spectra import build_problem  # noqa: E402
from repro_dugd import paper_dugd, theory  # noqa: E402
from repro_unrolling import unrolling, unrolling_envelope  # noqa: E402
from repro_lista import lista_descending  # noqa: E402
from repro_psor import du_psor, psor_ista, psor_jacobi  # noqa: E402


# ---------------------------------------------------------------- DUGD: default init over a κ grid

KAPPA_GRID = (1.2, 1.5, 3.0, 10.0, 30.0, 100.0, 1e3, 1e4)


def dugd_kappa() -> None:
    """The issue's probe grid: n = 16, T ∈ {2,4,8,16}, 8 κ, 2 seeds; default settings vs the paper's 0.3."""
    for init in ("auto", 0.3):
        failed: dict[float, int] = {}
        started = time.perf_counter()
        for kappa in KAPPA_GRID:
            for T in (2, 4, 8, 16):
                for seed in (0, 1):
                    result = run(dict(problem="dugd", n=16, T=T, kappa=kappa, seed=seed, init=init))
                    failed[kappa] = failed.get(kappa, 0) + (result.status != "FINISHED")
        print(f"init={init}: {sum(failed.values())} of {8 * len(KAPPA_GRID)} FAILED "
              f"({time.perf_counter() - started:.0f} s); by kappa: {failed}")


# ---------------------------------------------------------------- CHGD_MSE

# CHGD_MSE.ipynb's printout (row label t+1 is the value after t steps), columns Cheby, GD, MOM, CH-semi.
NOTEBOOK = {
    1: (326.443325, 240.1553, 656.11795, 174.1863125),
    16: (1.2804416015625, 16.2915578125, 3.0543365234375, 0.2749321044921875),
    32: (0.004065361404418945, 4.319415234375, 0.007021243286132813, 0.0007754480361938477),
    41: (0.00037255804538726805, 2.3426919921875, 0.000208907151222229, 2.4855896830558776e-05),
}
NOTEBOOK_CURVES = ("chebyshev", "gd", "heavy_ball_notebook", "semi_iterative_notebook")
CHGD_LABELS = {
    "chebyshev": "CHGD (T = 16)", "gd": "GD 2/(λmin+λmax)", "heavy_ball": "heavy ball (x₋₁ = x₀)",
    "heavy_ball_notebook": "heavy ball, notebook (x₋₁ = 0)", "semi_iterative": "CSI, optimal (centred)",
    "semi_iterative_uncentred": "CSI, notebook recurrence", "semi_iterative_notebook": "CSI, notebook's plotted value",
}


def monte_carlo_error(polynomial: np.ndarray, samples: int = 10_000) -> float:
    """Standard error of the notebook's mean of ‖x_t‖² over `samples` draws, x0 ~ N(1, I) in eigen
    coordinates: each mode is P_t(λ_i)·X_i with X_i ~ N(1, 1), Var(X²) = E X⁴ − (E X²)² = 10 − 4 = 6."""
    return math.sqrt(6.0 * float(np.sum(polynomial**4)) / samples)


def chgd() -> None:
    spec = ChgdSpec(n=300, m=450, matrix_seed=32, T=16, iterations=64, x0_basis="eigen")
    result = run(spec.model_dump())
    curves = {name[len("error_curve_"):]: np.asarray(values) for name, values in result.series.items()
              if name.startswith("error_curve_")}
    polynomials = chgd_polynomials(chgd_problem(spec), 16, 64)
    rows = []
    for t in (1, 16, 32, 41):
        for column, name in enumerate(NOTEBOOK_CURVES):
            ours, printed = curves[name][t], NOTEBOOK[t][column]
            z = (printed - ours) / monte_carlo_error(polynomials[name][t])
            rows.append([t, name, ours, printed, f"{100 * (printed / ours - 1):+.1f}%", f"{z:+.1f}"])
    print("CHGD_MSE, x0_basis=eigen: ours (exact) vs the notebook's printout (10,000 samples)")
    table(["t", "curve", "ours", "notebook", "notebook/ours − 1", "z (MC std errors)"], rows)
    others = [[t] + [curves[name][t] for name in ("heavy_ball", "semi_iterative", "semi_iterative_uncentred")]
              for t in (1, 16, 32, 41, 48)]
    table(["t", "heavy_ball", "semi_iterative", "semi_iterative_uncentred"], others)

    figure = new_figure(7.6, 4.6)
    axes = figure.add_subplot(1, 1, 1)
    steps = np.arange(65)
    for name, label in CHGD_LABELS.items():
        style = "--" if name in ("heavy_ball_notebook", "semi_iterative_uncentred") else "-"
        axes.plot(steps, curves[name], style, label=label, linewidth=1.3)
    for column, name in enumerate(NOTEBOOK_CURVES):
        points = sorted(NOTEBOOK)
        axes.plot(points, [NOTEBOOK[t][column] for t in points], "kx", markersize=6,
                  label="notebook printout" if column == 0 else None)
    log_axis(axes)
    axes.set_xlabel("iteration t")
    axes.set_ylabel("E‖x_t − x*‖²")
    axes.set_title("CHGD_MSE: n=300, m=450, seed 32, T=16, x0 in eigen coordinates")
    axes.grid(True, alpha=0.3)
    axes.legend(fontsize=7, loc="lower left")
    save(figure, "chgd-error_curves.png")


# ---------------------------------------------------------------- descending constraints

DESCENDING = dict(T=8, eps=0.05, init="random", lr=0.02, epochs=60, batches_per_epoch=10, dual_lr=0.5, seed=0)


def descending() -> None:
    problem = build_problem(DugdSpec(n=300, m=600, matrix_seed=12))  # the paper's matrix
    other = build_problem(DugdSpec(n=300, m=600, matrix_seed=13))  # another matrix of the family
    T = DESCENDING["T"]
    trained = {label: train_descending(problem.eigenvalues, constrained=constrained, **DESCENDING)
               for label, constrained in (("constrained ε=0.05", True), ("unconstrained", False))}
    probes = {
        "nominal": dict(eigenvalues=problem.eigenvalues),
        "matrix_seed 13": dict(eigenvalues=other.eigenvalues),
        "iterate noise 0.1": dict(eigenvalues=problem.eigenvalues, noise=0.1),
        "4T layers": dict(eigenvalues=problem.eigenvalues, layers=4 * T),
    }
    rows, evaluated = [], {}
    for label, outcome in trained.items():
        for probe, kwargs in probes.items():
            ratios, mse = evaluate_steps(outcome.steps, samples=4000, seed=5, **kwargs)
            evaluated[(label, probe)] = mse
            rows.append([label, probe, float(ratios.max()), int(np.sum(ratios >= 1.0)),
                         int(np.sum(np.diff(mse) > 0)), mse[T], mse[-1]])
    print(f"Descending constraints on the paper's matrix (n=300, m=600, seed 12), T = {T}, held-out 4000 samples")
    table(["training", "test", "max descent ratio", "ascending layers (ratio ≥ 1)", "layers where MSE rises",
           f"MSE at t = {T}", "MSE at the last layer"], rows)
    figure = new_figure(9.6, 7.2)
    for index, probe in enumerate(probes):
        axes = figure.add_subplot(2, 2, index + 1)
        for label in trained:
            axes.plot(evaluated[(label, probe)], marker=".", linewidth=1.1, label=label)
        log_axis(axes)
        axes.set_title(probe, fontsize=9)
        axes.grid(True, alpha=0.3)
        if index >= 2:
            axes.set_xlabel("layer t")
        if index % 2 == 0:
            axes.set_ylabel("MSE ‖x_t − x‖²/n")
        axes.legend(fontsize=7)
    figure.subplots_adjust(hspace=0.35, top=0.93)
    save(figure, "descending.png")


SECTIONS: dict[str, Callable[[], None]] = {
    "paper-dugd": paper_dugd, "dugd-kappa": dugd_kappa, "chgd": chgd, "psor-jacobi": psor_jacobi, "psor-ista": psor_ista,
    "du-psor": du_psor, "unrolling": unrolling, "unrolling-envelope": unrolling_envelope, "theory": theory,
    "descending": descending,
}
SECTIONS["lista-descending"] = lista_descending  # §6, after the DUGD variant


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sections", nargs="*", help=", ".join(SECTIONS) + " (default: all)")
    chosen = parser.parse_args().sections or list(SECTIONS)
    unknown = [name for name in chosen if name not in SECTIONS]
    if unknown:
        parser.error(f"section: got {unknown[0]!r}, expected one of {', '.join(SECTIONS)}")
    for name in chosen:
        started = time.perf_counter()
        print(f"## {name}\n")
        SECTIONS[name]()
        print(f"({name}: {time.perf_counter() - started:.1f} s)\n")


if __name__ == "__main__":
    main()
