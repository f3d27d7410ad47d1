"""The figures and numbers of docs/reproductions.md: one section per seed-paper result.

Every number comes from the public numerics (workers.run, workers.chebyshev, workers.metrics,
workers.unrolling, workers.psor, workers.descending); this script only runs them and draws.
Figures go to docs/reproductions/<section>-*.png; the tables are printed as Markdown.

    .venv/bin/python benchmarks/reproductions.py                  # every section (a few minutes)
    .venv/bin/python benchmarks/reproductions.py chgd unrolling   # some of them
Sections: paper-dugd, dugd-kappa, chgd, psor-jacobi, psor-ista, du-psor, unrolling, unrolling-envelope,
theory, descending.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from study.plots import log_axis, new_figure, to_png  # noqa: E402
from workers import chebyshev as cheb  # noqa: E402
from workers import metrics  # noqa: E402
from workers.chgd import chgd_polynomials, chgd_problem  # noqa: E402
from workers.dugd_run import compare as compare_schedule  # noqa: E402
from workers.descending import evaluate_steps, train_descending  # noqa: E402
from workers.fixed_point import jacobi_problem  # noqa: E402
from workers.psor import error_curve, scheme_omegas  # noqa: E402
from workers.run import run  # noqa: E402
from workers.specs import ChgdSpec, DugdSpec  # noqa: E402
from workers.spectra import build_problem  # noqa: E402
from workers.unrolling import jacobian_errors, max_abs_derivative, polynomials_and_derivatives  # noqa: E402

OUT = REPO / "docs" / "reproductions"


def save(figure, name: str) -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / name).write_bytes(to_png(figure))
    print(f"wrote docs/reproductions/{name}")


def table(header: list[str], rows: list[list[object]]) -> None:
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for row in rows:
        print("| " + " | ".join(_cell(value) for value in row) + " |")
    print()


def _cell(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


# ---------------------------------------------------------------- DUGD: the paper's table and the notebook

NOTEBOOK_DUGD = REPO / "benchmarks" / "data" / "DUGD_LMS_example.json"  # its printout, transcribed


def notebook_dugd() -> dict:
    """DUGD_LMS_example.ipynb's printed learned γ_t (T = 25) and MSE curves (DUGD, GD), t = 0..25."""
    return json.loads(NOTEBOOK_DUGD.read_text())


def _mean_std(values: list[float]) -> str:
    """mean ± std (ddof 1, as `study results`), to the std's second significant digit."""
    mean, std = float(np.mean(values)), float(np.std(values, ddof=1))
    decimals = max(0, 1 - int(math.floor(math.log10(std)))) if std > 0 else 3
    return f"{mean:.{decimals}f} ± {std:.{decimals}f}"


def paper_dugd() -> None:
    """configs/paper-dugd.yaml in-process (no Ray/MLflow): the §1 / README table, then T = 25 beside
    the notebook's printed steps and MSE curve, with the distance of every seed to it and between seeds."""
    from study.spec import load_sweep

    sweep = load_sweep((REPO / "configs" / "paper-dugd.yaml").read_text())
    by_T: dict[int, list] = {}
    started = time.perf_counter()
    for point in sweep.expand():
        by_T.setdefault(point.params["T"], []).append(run(point.params))
    print(f"configs/paper-dugd.yaml: {sum(map(len, by_T.values()))} runs in {time.perf_counter() - started:.0f} s")
    names = ("root_error", "step_error", "rho_ratio", "mse_ratio")
    table(["T", *names], [[T, *(_mean_std([r.scalars[k] for r in results]) for k in names)]
                          for T, results in sorted(by_T.items())])

    printed = notebook_dugd()
    theirs = np.asarray(printed["learned_gamma"])
    ours = {r.params["seed"]: np.asarray(r.series["learned_steps"]) for r in by_T[25]}
    problem = build_problem(DugdSpec(**{k: v for k, v in sweep.fixed.items() if k != "problem"}, T=25))
    own, _ = compare_schedule(problem, theirs, 25)
    print("The notebook's printed steps, evaluated exactly by our metrics on the rebuilt matrix:")
    table(["schedule", "root_error", "step_error", "ρ / ρ_Cheb", "MSE / MSE_Cheb", "MSE_25"],
          [["notebook (printed γ)", own["root_error"], own["step_error"], own["rho_ratio"], own["mse_ratio"], own["mse"]]]
          + [[f"ours, seed {seed}", r.scalars["root_error"], r.scalars["step_error"], r.scalars["rho_ratio"],
              r.scalars["mse_ratio"], r.scalars["mse"]] for seed, r in zip(ours, by_T[25])])
    chebyshev = cheb.chebyshev_steps(problem.lambda_min, problem.lambda_max, 25)
    rows = []
    for t in range(25):
        rows.append([t + 1, f"{theirs[t]:.4f}", *(f"{ours[s][t]:.4f}" for s in ours),
                     f"{np.sort(theirs)[::-1][t]:.4f}", *(f"{np.sort(ours[s])[::-1][t]:.4f}" for s in ours),
                     f"{np.sort(chebyshev)[::-1][t]:.4f}"])
    print("T = 25 learned steps: layer order (t), then sorted descending (rank t)")
    table(["t", "notebook", *(f"seed {s}" for s in ours), "notebook sorted", *(f"seed {s} sorted" for s in ours),
           "Chebyshev sorted"], rows)
    distances = []
    for label, a, b in ([(f"seed {s} vs notebook", ours[s], theirs) for s in ours]
                        + [(f"seed {s} vs seed {u}", ours[s], ours[u]) for s in ours for u in ours if s < u]):
        distances.append([label, float(metrics.layer_relative_differences(a, b).max()), metrics.layer_distance(a, b),
                          float(metrics.layer_relative_differences(np.sort(a), np.sort(b)).max()),
                          metrics.step_error(a, b)])
    print("Distances: max_t |γ_t − γ_ref,t|/γ_ref,t and ‖γ − γ_ref‖/‖γ_ref‖, in layer order and sorted")
    table(["pair", "max per layer", "relative L2", "max per rank (sorted)", "relative L2 (sorted)"], distances)

    curve = metrics.mse_curve(theirs, problem.eigenvalues)
    gd = metrics.mse_curve(np.full(25, cheb.optimal_constant_step(problem.lambda_min, problem.lambda_max)),
                           problem.eigenvalues)
    rows = [[t, printed["mse_dugd"][t], curve[t], *(by_T[25][i].series["mse_curve"][t] for i in range(len(ours))),
             printed["mse_gd"][t], gd[t]] for t in (0, 1, 2, 5, 10, 11, 15, 20, 22, 24, 25)]
    print("MSE_t: the notebook's printout (10,000 samples) beside the exact curves")
    table(["t", "notebook DUGD (printed)", "notebook γ, exact", *(f"ours seed {s}, exact" for s in ours),
           "notebook GD (printed)", "GD, exact"], rows)

    figure = new_figure(12.0, 3.8)
    axes = figure.add_subplot(1, 3, 1)
    layers = np.arange(1, 26)
    for seed, steps in ours.items():
        axes.plot(layers, steps, "o-", markersize=3, linewidth=0.8, alpha=0.8, label=f"ours, seed {seed}")
    axes.plot(layers, theirs, "kx", markersize=6, label="notebook (printed)")
    axes.set_xlabel("layer t")
    axes.set_ylabel("γ_t")
    axes.set_title("learned steps, layer order (T = 25)")
    axes.grid(True, alpha=0.3)
    axes.legend(fontsize=7)
    axes = figure.add_subplot(1, 3, 2)
    for seed, steps in ours.items():
        axes.plot(layers, np.sort(steps)[::-1], "o-", markersize=3, linewidth=0.8, alpha=0.8, label=f"ours, seed {seed}")
    axes.plot(layers, np.sort(theirs)[::-1], "kx", markersize=6, label="notebook (printed)")
    axes.plot(layers, np.sort(chebyshev)[::-1], "k--", linewidth=1, label="Chebyshev, T = 25")
    log_axis(axes)
    axes.set_xlabel("rank")
    axes.set_title("sorted descending")
    axes.grid(True, alpha=0.3)
    axes.legend(fontsize=7)
    axes = figure.add_subplot(1, 3, 3)
    t = np.arange(26)
    for i, seed in enumerate(ours):
        axes.plot(t, by_T[25][i].series["mse_curve"], linewidth=0.9, alpha=0.8, label=f"ours, seed {seed}")
    axes.plot(t, curve, "k-", linewidth=1.4, label="notebook γ, exact")
    axes.plot(t, printed["mse_dugd"], "kx", markersize=5, label="notebook DUGD (printed)")
    axes.plot(t, gd, "k:", linewidth=1, label="GD 2/(λmin+λmax), exact")
    axes.plot(t, printed["mse_gd"], "k+", markersize=5, label="notebook GD (printed)")
    log_axis(axes)
    axes.set_xlabel("iteration t")
    axes.set_ylabel("MSE ‖x_t − x‖²/n")
    axes.set_title("MSE curve")
    axes.grid(True, alpha=0.3)
    axes.legend(fontsize=6)
    save(figure, "paper-dugd-notebook.png")
    from study.plots import run_figures  # the README's T = 25 figures: seed 0's run, as `study run-one` draws them

    for name, png in run_figures(by_T[25][0].to_dict()).items():
        (REPO / "docs" / f"paper-dugd-T25-{name}").write_bytes(png)
        print(f"wrote docs/paper-dugd-T25-{name}")


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


# ---------------------------------------------------------------- Chebyshev-PSOR on Jacobi

def authors_jacobi_matrix() -> np.ndarray:
    """Jacobi.ipynb's own P = MᵀM + I: torch.manual_seed(0), M = torch.normal(0, 0.03) (512×512, float32)."""
    import torch

    torch.manual_seed(0)
    M = torch.normal(torch.zeros(512, 512), 0.03)
    return (M.t() @ M + torch.eye(512)).double().numpy()


def psor_jacobi() -> None:
    problem = jacobi_problem(authors_jacobi_matrix())
    low, high = problem.lambda_min, problem.lambda_max
    kappa = high / low
    print(f"authors' matrix rebuilt: lambda_max(B) = {high:.6f} (notebook 1.921623706817627), "
          f"lambda_min(B) = {low:.6f} (notebook 0.676575243473053), kappa = {kappa:.6f} (2.8402217275249186), "
          f"omega_SOR = {cheb.optimal_constant_step(low, high):.6f} (0.7697639935449304)")
    x0 = np.random.default_rng(0).normal(size=(100, 512))
    curves = {name: error_curve(problem, scheme_omegas(name, low, high, 8), x0, 25)
              for name in ("plain", "constant", "chebyshev")}
    bound = cheb.chebyshev_bound(kappa, 8)
    rows = [[name, metrics.rho(scheme_omegas(name, low, high, 8), problem.eigenvalues),
             curves[name][8] / curves[name][0], curves[name][24] / curves[name][16], curves[name][25]]
            for name in curves]
    print(f"authors' matrix, T = 8, mean of 100 x0 ~ N(0, I); Chebyshev bound 2q^T/(1+q^2T) = {bound:.4g}")
    table(["scheme", "ρ over one period", "e_8/e_0", "e_24/e_16", "e_25"], rows)

    seeds = []
    for matrix_seed in (0, 1, 2):
        s = run(dict(problem="psor", fixed_point="jacobi", n=512, T=8, iterations=25, matrix_seed=matrix_seed,
                     omega="chebyshev")).scalars
        seeds.append([matrix_seed, s["lambda_min"], s["lambda_max"], s["kappa_realized"], s["omega_constant"],
                      s["final_error_plain"], s["final_error_constant"], s["final_error_chebyshev"],
                      s["period_contraction_max"], s["chebyshev_bound"]])
    print("configs/psor-jacobi.yaml matrices (numpy default_rng), seed 0 of x0:")
    table(["matrix_seed", "λ_min(B)", "λ_max(B)", "κ", "ω_SOR", "e_25 plain", "e_25 constant", "e_25 Chebyshev",
           "max period contraction", "bound"], seeds)

    figure = new_figure(6.4, 4.2)
    axes = figure.add_subplot(1, 1, 1)
    k = np.arange(26)
    for name, marker in (("plain", "s"), ("constant", "^"), ("chebyshev", "o")):
        axes.plot(k, curves[name], marker=marker, markersize=3, linewidth=1, label=name)
    axes.plot(k, curves["chebyshev"][0] * bound ** (k / 8), "k:", label="e₀·bound^(k/T)")
    log_axis(axes)
    axes.set_xlabel("iteration k")
    axes.set_ylabel("‖x_k − x*‖ (mean of 100 x₀)")
    axes.set_title("Jacobi.ipynb's 512×512 matrix, T = 8")
    axes.grid(True, alpha=0.3)
    axes.legend(fontsize=8)
    save(figure, "psor-jacobi-error_curves.png")


# ---------------------------------------------------------------- Chebyshev-PSOR on ISTA

ISTA = dict(problem="psor", fixed_point="ista", n=512, m=256, sparsity=0.1, lam=0.2, T=8, iterations=200,
            matrix_seed=0, omega="chebyshev")


def psor_ista() -> None:
    local = run({**ISTA, "x0_around": "fixed_point", "x0_scale": 1e-6})
    far = run({**ISTA, "x0_around": "origin"})
    rows = []
    for label, result in (("local (x* + 1e-6·N(0, I))", local), ("global (x0 ~ N(0, I))", far)):
        s = result.scalars
        rows.append([label, s["kappa_realized"], s["chebyshev_bound"], s["final_error_plain"],
                     s["final_error_constant"], s["final_error_chebyshev"], s["first_roundoff_iteration"]])
    print("ISTA (LASSO n=512, m=256, 10% support, λ=0.2), T = 8, 200 iterations, matrix_seed 0")
    table(["start", "κ of I − J", "bound", "final plain", "final constant", "final Chebyshev",
           "first round-off k (Chebyshev)"], rows)
    figure = new_figure(9.6, 3.8)
    for column, (title, result) in enumerate((("local regime", local), ("from the origin", far))):
        axes = figure.add_subplot(1, 2, column + 1)
        for name in ("plain", "constant", "chebyshev"):
            axes.plot(result.series[f"error_curve_{name}"], linewidth=1.1, label=name)
        if column == 0:
            axes.plot(result.series["chebyshev_bound_curve"], "k:", label="e₀·bound^(k/T)")
            axes.set_ylim(bottom=1e-17)  # below float64 round-off the bound is off the chart
        log_axis(axes)
        axes.set_xlabel("iteration k")
        axes.set_title(f"ISTA, {title}")
        axes.grid(True, alpha=0.3)
        axes.legend(fontsize=7)
    figure.axes[0].set_ylabel("‖x_k − x*‖")
    save(figure, "psor-ista-error_curves.png")


# ---------------------------------------------------------------- deep-unfolded PSOR

DU_PSOR = dict(problem="psor", fixed_point="jacobi", n=512, T=8, iterations=25, omega="learned", matrix_seed=0)


def du_psor() -> None:
    result = run(DU_PSOR)
    s, series = result.scalars, result.series
    print("Deep-unfolded PSOR on Jacobi (n=512, T=8, incremental depth 1..8, 40 Adam steps each, lr 0.01)")
    table(["scheme", "ρ over one period", "per-step rate", "e_25"],
          [[name, s[f"rho_{name}"], s[f"rate_{name}"], s[f"final_error_{name}"]]
           for name in ("plain", "constant", "chebyshev", "learned")])
    print(f"root_error (learned vs Chebyshev nodes) = {s['root_error']:.4f}, step_error = {s['step_error']:.4f}, "
          f"max |log ratio| = {s['max_abs_log_ratio']:.4f}")
    print("learned ω (layer order):", np.round(series["learned_omega"], 4).tolist())
    print("Chebyshev ω (natural order):", np.round(series["chebyshev_omega"], 4).tolist())
    figure = new_figure(9.6, 3.8)
    axes = figure.add_subplot(1, 2, 1)
    ranks = np.arange(1, 9)
    axes.plot(ranks, np.sort(series["learned_omega"])[::-1], "o-", label="learned ω, sorted")
    axes.plot(ranks, np.sort(series["chebyshev_omega"])[::-1], "s--", label="Chebyshev ω, sorted")
    axes.set_xlabel("rank")
    axes.set_ylabel("ω")
    axes.set_title("learned vs Chebyshev relaxation factors")
    axes.grid(True, alpha=0.3)
    axes.legend(fontsize=8)
    axes = figure.add_subplot(1, 2, 2)
    for name in ("plain", "constant", "chebyshev", "learned"):
        axes.plot(series[f"error_curve_{name}"], linewidth=1.1, label=f"{name} (ρ = {s[f'rho_{name}']:.2g})")
    log_axis(axes)
    axes.set_xlabel("iteration k")
    axes.set_ylabel("‖x_k − x*‖")
    axes.set_title("error curves, T = 8")
    axes.grid(True, alpha=0.3)
    axes.legend(fontsize=7)
    save(figure, "du-psor.png")


# ---------------------------------------------------------------- curse of unrolling

def unrolling_curves(eigenvalues: np.ndarray, iterations: int) -> dict[str, dict[str, np.ndarray]]:
    """For GD (2/(μ+L) and 1/L) and the Chebyshev method (degree-t minimax steps for each t):
    iterate error ‖P_t(A)x*‖, Jacobian error J_t, derivative term ‖P_t'(A)x*‖ (RMS over x* ~ N(0, I))
    and the predicted envelope of the derivative term, max_[μ,L] |P_t'| · √n."""
    lam = np.asarray(eigenvalues)
    low, high, n = float(lam.min()), float(lam.max()), lam.size
    out: dict[str, dict[str, np.ndarray]] = {}
    for name, h in (("gd", cheb.optimal_constant_step(low, high)), ("gd_small", 1.0 / high)):
        values, derivatives = polynomials_and_derivatives(np.full(iterations, h), lam)
        rho = max(abs(1 - h * low), abs(1 - h * high))
        t = np.arange(iterations + 1)
        out[name] = {
            "iterate": np.linalg.norm(values, axis=1),
            "jacobian": jacobian_errors(np.full(iterations, h), lam),
            "derivative": np.linalg.norm(derivatives, axis=1),
            "predicted": t * h * rho ** np.maximum(t - 1, 0) * math.sqrt(n),  # max |P_t'| = t h ρ^{t−1}
        }
    chebyshev = {key: np.zeros(iterations + 1) for key in ("iterate", "jacobian", "derivative", "predicted")}
    chebyshev["iterate"][0], chebyshev["jacobian"][0] = math.sqrt(n), float(np.linalg.norm(1 / lam))
    kappa = high / low
    for t in range(1, iterations + 1):
        steps = cheb.chebyshev_steps(low, high, t)
        values, derivatives = polynomials_and_derivatives(steps, lam)
        chebyshev["iterate"][t] = np.linalg.norm(values[-1])
        chebyshev["jacobian"][t] = jacobian_errors(steps, lam)[-1]
        chebyshev["derivative"][t] = np.linalg.norm(derivatives[-1])
        chebyshev["predicted"][t] = 2 * t**2 / (high - low) * cheb.chebyshev_bound(kappa, t) * math.sqrt(n)
    out["chebyshev"] = chebyshev
    return out


def unrolling_envelope() -> None:
    """The derivative term ‖P_t'(A)x*‖ against its closed-form envelope (§5, second part)."""
    problem = chgd_problem(ChgdSpec(n=300, m=450, matrix_seed=32))  # κ = 88: burn-in long enough to see
    lam, iterations = problem.eigenvalues, 150
    low, high = problem.lambda_min, problem.lambda_max
    kappa = high / low
    curves = unrolling_curves(lam, iterations)
    rho_gd = cheb.constant_step_rate(kappa)
    q = cheb.q_factor(kappa)
    rows = []
    for name, predicted_peak in (("gd", 1 / math.log(1 / rho_gd)), ("gd_small", 1 / math.log(1 / (1 - low / high))),
                                 ("chebyshev", 2 / math.log(1 / q))):
        c = curves[name]
        rows.append([name, int(np.argmax(c["derivative"])), int(np.argmax(c["predicted"])), predicted_peak,
                     float(c["derivative"].max()), bool(np.all(c["derivative"] <= c["predicted"] * (1 + 1e-12))),
                     c["jacobian"][iterations] / c["jacobian"][0], c["iterate"][iterations] / c["iterate"][0]])
    print(f"Curse of unrolling on the CHGD matrix (κ = {kappa:.1f}), ridge derivative, x* ~ N(0, I) RMS")
    table(["method", "peak t of ‖P_t'(A)x*‖", "peak t of the envelope", "1/ln(1/ρ) or 2/ln(1/q)", "peak",
           "under the envelope", f"J_{iterations}/J_0", f"‖x_{iterations} − x*‖/‖x*‖"], rows)
    check = max_abs_derivative(cheb.chebyshev_steps(low, high, 16), low, high)
    closed = curves["chebyshev"]["predicted"][16] / math.sqrt(lam.size)
    print(f"max|P_16'| of Chebyshev steps on a grid {check:.6g} vs 2T²/(L−μ)/C_T {closed:.6g}")

    figure = new_figure(9.6, 3.8)
    labels = {"gd": "GD 2/(μ+L)", "gd_small": "GD 1/L", "chebyshev": "Chebyshev (degree t)"}
    axes = figure.add_subplot(1, 2, 1)
    for name, label in labels.items():
        line, = axes.plot(curves[name]["derivative"], linewidth=1.2, label=label)
        axes.plot(curves[name]["predicted"], ":", color=line.get_color(), linewidth=1)
    log_axis(axes)
    axes.set_xlabel("iteration t")
    axes.set_ylabel("‖P_t'(A) x*‖ (dotted: max|P_t'|·‖x*‖)")
    axes.set_title("derivative term: burn-in, then decay")
    axes.grid(True, alpha=0.3)
    axes.legend(fontsize=7)
    axes = figure.add_subplot(1, 2, 2)
    for name, label in labels.items():
        line, = axes.plot(curves[name]["jacobian"] / curves[name]["jacobian"][0], linewidth=1.2,
                          label=f"J_t/J_0, {label}")
        axes.plot(curves[name]["iterate"] / curves[name]["iterate"][0], "--", color=line.get_color(), linewidth=1)
    log_axis(axes)
    axes.set_xlabel("iteration t")
    axes.set_title("Jacobian error (solid) vs iterate error (dashed)")
    axes.grid(True, alpha=0.3)
    axes.legend(fontsize=7)
    save(figure, "unrolling-envelope.png")


UNROLLING_STEPS = ("1/L", "1.5/L", "1.9/L", "2/(mu+L)", "chebyshev")


def unrolling() -> None:
    """The abstract's trade-off, headline first: configs/curse-of-unrolling.yaml's runs (the `unrolling`
    problem), J_t/J_0 worst case over x*, burn-in against the asymptotic rate."""
    from study.spec import load_sweep

    sweep = load_sweep((REPO / "configs" / "curse-of-unrolling.yaml").read_text())
    results = {(p.params["step"], p.params["kappa"]): run(p.params) for p in sweep.expand()}
    for kappa in dict.fromkeys(k for _, k in results):
        first = results[(UNROLLING_STEPS[0], kappa)].scalars
        K = len(results[(UNROLLING_STEPS[0], kappa)].series["jacobian_ratio"]) - 1
        print(f"unrolling, n = 300, kappa = {first['kappa_realized']:.1f} (λ in [{first['lambda_min']:.4g}, "
              f"{first['lambda_max']:.4g}]), {K} iterations; J_t/J_0 = max over x* (worst mode)")
        rows = []
        for step in UNROLLING_STEPS:
            s = results[(step, kappa)].scalars
            rows.append([step, s.get("step_times_lambda_max", "—"), f"{s['rate']:.5f}", int(s["burn_in_length"]),
                         s["jacobian_peak_ratio"], int(s["jacobian_peak_index"]), f"{s['jacobian_rate']:.5f}",
                         s["jacobian_ratio_final"], s["jacobian_peak_ratio_rms"], int(s["burn_in_length_rms"]),
                         s["iterate_ratio_final"]])
        table(["step", "h·L", "asymptotic rate max|1−hλ|", "burn-in: last t with J_t > J_0", "peak J_t/J_0",
               "at t", "measured tail rate of J_t", f"J_{K}/J_0", "peak, isotropic x*", "burn-in, isotropic x*",
               f"max|P_{K}|"], rows)

    # the trade-off over a fine grid of h·L on the κ = 88 matrix
    grid = np.round(np.arange(1.0, 1.981, 0.02), 3)
    fine = [run(dict(problem="unrolling", n=300, step=float(x), iterations=1000)).scalars for x in grid]
    figure = new_figure(10.4, 3.9)
    axes = figure.add_subplot(1, 2, 1)
    for step in UNROLLING_STEPS:
        curve = results[(step, None)].series["jacobian_ratio"]
        axes.plot(curve, linewidth=1.2, label=f"{'GD h = ' + step if step != 'chebyshev' else 'Chebyshev'}")
    axes.axhline(1.0, color="k", linewidth=0.6, linestyle=":")
    log_axis(axes)
    axes.set_ylim(bottom=1e-4)
    axes.set_xlabel("iteration t")
    axes.set_ylabel("J_t / J_0 (worst case over x*)")
    axes.set_title("the Jacobian error rises before it falls", fontsize=9)
    axes.grid(True, alpha=0.3)
    axes.legend(fontsize=7)
    axes = figure.add_subplot(1, 2, 2)
    axes.plot(grid, [s["burn_in_length"] for s in fine], "o-", markersize=3, color="C3", label="burn-in length")
    axes.set_xlabel("h·L")
    axes.set_ylabel("burn-in: last t with J_t > J_0", color="C3")
    axes.grid(True, alpha=0.3)
    twin = axes.twinx()
    twin.plot(grid, [s["rate"] for s in fine], "s-", markersize=3, color="C0", label="asymptotic rate")
    twin.set_ylabel("asymptotic rate max|1 − hλ|", color="C0")
    axes.set_title(f"κ = {fine[0]['kappa_realized']:.1f}: longer burn-in, faster rate", fontsize=9)
    figure.subplots_adjust(left=0.08, right=0.9, wspace=0.4)  # room for the twin axis' labels
    save(figure, "unrolling.png")


# ---------------------------------------------------------------- Takabe & Wadayama's theory

THEORY_FULL = dict(problem="dugd", n=300, m=600, matrix_seed=12, T=16, training="full", init="random",
                   batch_size=10000, seed=0)


def theory() -> None:
    """(1) ρ(W) falls with the loss during training (full training at T = 16, and the paper's incremental
    protocol at T = 25); (2) the Chebyshev rate against T, with q and GD's rate."""
    full = run(THEORY_FULL)
    paper = run({**_config_fixed("paper-dugd.yaml"), "T": 25, "seed": 0})
    problem = build_problem(DugdSpec(n=300, m=600, matrix_seed=12))
    lam, n = problem.eigenvalues, problem.n
    kappa = problem.kappa_realized
    q, gd = cheb.q_factor(kappa), cheb.constant_step_rate(kappa)
    rho_full, loss_full = np.asarray(full.series["rho_by_generation"]), np.asarray(full.series["expected_loss"])
    init = np.random.default_rng([0, 1]).uniform(0.5, 1.5, 16) / float(np.mean(lam))  # workers.dugd.initial_gamma
    rho_init, loss_init = metrics.rho(init, lam), float(metrics.mse_curve(init, lam)[-1])
    rho_cheb16 = metrics.rho(cheb.chebyshev_steps(problem.lambda_min, problem.lambda_max, 16), lam)
    print(f"full training, T = 16, init random, the paper's lr/batches/batch (seed 0): ρ(W) and the loss per generation; "
          f"ρ of the Chebyshev steps {rho_cheb16:.4g}")
    table(["generation", "ρ(W_16)", "loss (1/n)Σ P²", "√loss ≤ ρ", "ρ ≤ √(n·loss)"],
          [[0, rho_init, loss_init, "yes" if math.sqrt(loss_init) <= rho_init else "NO",
            "yes" if rho_init <= math.sqrt(n * loss_init) else "NO"]]
          + [[g + 1, rho_full[g], loss_full[g], "yes" if math.sqrt(loss_full[g]) <= rho_full[g] else "NO",
              "yes" if rho_full[g] <= math.sqrt(n * loss_full[g]) else "NO"] for g in (0, 1, 3, 7, 11, 15)])
    rho_paper = np.asarray(paper.series["rho_by_generation"])
    depth = np.arange(1, 26)
    bound = np.array([cheb.chebyshev_bound(kappa, int(g)) for g in depth])
    print("the paper's protocol (incremental, T = 25, seed 0): ρ of the trained prefix at depth g")
    table(["g", "ρ (trained, depth g)", "Chebyshev 2q^g/(1+q^2g)", "GD ((κ−1)/(κ+1))^g"],
          [[g, rho_paper[g - 1], bound[g - 1], gd**g] for g in (1, 2, 4, 8, 12, 16, 20, 25)])

    Ts = np.arange(1, 65)
    closed = np.array([cheb.chebyshev_rate(kappa, int(T)) for T in Ts])
    measured = np.array([metrics.rate(metrics.rho(cheb.chebyshev_steps(problem.lambda_min, problem.lambda_max, int(T)), lam), int(T))
                         for T in Ts])
    print(f"Chebyshev rate against T on the paper's matrix (κ = {kappa:.2f}): q = {q:.5f}, GD (κ−1)/(κ+1) = {gd:.5f}")
    table(["T", "ρ(W_T)^{1/T}, exact spectrum", "closed form q(2/(1+q^2T))^{1/T}", "rate / q − 1", "GD rate"],
          [[int(T), f"{measured[T - 1]:.5f}", f"{closed[T - 1]:.5f}", f"{closed[T - 1] / q - 1:.4f}", f"{gd:.5f}"]
           for T in (1, 2, 4, 8, 16, 25, 32, 64)])

    figure = new_figure(12.0, 3.8)
    axes = figure.add_subplot(1, 3, 1)
    gens = np.arange(0, 17)
    axes.plot(gens, [rho_init, *rho_full], "o-", markersize=3, label="ρ(W_16)")
    axes.plot(gens, np.sqrt(n * np.array([loss_init, *loss_full])), "--", label="√(n·loss) (upper)")
    axes.plot(gens, np.sqrt([loss_init, *loss_full]), ":", label="√loss (lower)")
    axes.axhline(rho_cheb16, color="k", linewidth=0.8, label="ρ of Chebyshev steps")
    log_axis(axes)
    axes.set_xlabel("generation (500 Adam steps each)")
    axes.set_title("full training, T = 16: ρ falls with the loss", fontsize=9)
    axes.grid(True, alpha=0.3)
    axes.legend(fontsize=7)
    axes = figure.add_subplot(1, 3, 2)
    axes.plot(depth, rho_paper, "o-", markersize=3, label="ρ, trained prefix (paper protocol)")
    axes.plot(depth, bound, "k--", linewidth=1, label="Chebyshev 2q^g/(1+q^{2g})")
    axes.plot(depth, gd**depth, "k:", linewidth=1, label="GD ((κ−1)/(κ+1))^g")
    log_axis(axes)
    axes.set_xlabel("generation g = depth")
    axes.set_title("incremental training, T = 25", fontsize=9)
    axes.grid(True, alpha=0.3)
    axes.legend(fontsize=7)
    axes = figure.add_subplot(1, 3, 3)
    axes.plot(Ts, measured, "o", markersize=3, label="Chebyshev, ρ(W_T)^{1/T} on the spectrum")
    axes.plot(Ts, closed, "-", linewidth=1, label="Chebyshev bound q(2/(1+q^{2T}))^{1/T}")
    axes.axhline(q, color="k", linestyle="--", linewidth=1, label="lower bound q = (√κ−1)/(√κ+1)")
    axes.axhline(gd, color="k", linestyle=":", linewidth=1, label="GD (κ−1)/(κ+1)")
    axes.set_xscale("log")
    axes.set_xlabel("T")
    axes.set_ylabel("per-step rate")
    axes.set_title(f"rate against T, κ = {kappa:.1f}", fontsize=9)
    axes.grid(True, alpha=0.3)
    axes.legend(fontsize=7)
    save(figure, "theory.png")


def _config_fixed(name: str) -> dict:
    """A committed sweep file's fixed parameters (scalars), as a run's parameters."""
    from study.spec import load_sweep

    return dict(load_sweep((REPO / "configs" / name).read_text()).fixed)


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
