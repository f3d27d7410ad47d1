"""The figures and numbers of docs/reproductions.md: one section per seed-paper result.

Every number comes from the public numerics (workers.run, workers.chebyshev, workers.metrics,
workers.unrolling, workers.psor, workers.descending); this script only runs them and draws.
Figures go to docs/reproductions/<section>-*.png; the tables are printed as Markdown.

    .venv/bin/python benchmarks/reproductions.py                  # every section (a few minutes)
    .venv/bin/python benchmarks/reproductions.py chgd unrolling   # some of them
Sections: dugd-kappa, chgd, psor-jacobi, psor-ista, du-psor, unrolling, descending.
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

from study.plots import log_axis, new_figure, to_png  # noqa: E402
from study.spec import load_sweep  # noqa: E402
from workers import chebyshev as cheb  # noqa: E402
from workers import metrics  # noqa: E402
from workers.chgd import chgd_polynomials, chgd_problem  # noqa: E402
from workers.descending import evaluate_steps, train_descending  # noqa: E402
from workers.fixed_point import jacobi_problem  # noqa: E402
from workers.lista import BETAS, OOD_LEVELS  # noqa: E402
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


def unrolling() -> None:
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
    save(figure, "unrolling.png")


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


# ---------------------------------------------------------------- descending constraints on LISTA

LISTA_CONFIG = REPO / "configs" / "lista-descending.yaml"
LISTA_MODELS = {"unconstrained": "LISTA", "noisy": "LISTA trained with noise", "constrained": "constrained LISTA"}


def lista_descending() -> None:
    """configs/lista-descending.yaml run point by point in-process (the page's size), then drawn."""
    points = load_sweep(LISTA_CONFIG).expand()
    results: dict[str, list] = {model: [] for model in LISTA_MODELS}
    for point in points:
        result = run(point.params)
        if result.status != "FINISHED":
            raise SystemExit(f"lista run failed: {result.reason}")
        results[point.params["model"]].append(result)
    first = results["constrained"][0]
    print(f"LISTA, {len(points) // 3} training seeds per model, n = {first.params['n']}, "
          f"m = {first.info['code_length']}, L = {first.params['layers']}, test signals {first.params['test_samples']}; "
          "mean ± std over seeds of the test mean ‖y_L − z*‖ (z*: ISTA targets)")

    def cell(model: str, read: Callable) -> str:
        values = np.array([read(result) for result in results[model]])
        return f"{values.mean():.3g} ± {values.std():.2g}"

    table(["model", "nominal", *(f"β = {beta:g}" for beta in BETAS), "β = 10 / nominal", "max descent ratio (noisy)"],
          [[LISTA_MODELS[model], cell(model, lambda r: r.scalars["final_distance"]),
            *(cell(model, lambda r, i=i: r.series["distance_by_beta"][i]) for i in range(len(BETAS))),
            cell(model, lambda r: r.scalars["distance_beta_10"] / r.scalars["final_distance"]),
            cell(model, lambda r: max(r.series["descent_ratio_noisy"]))] for model in LISTA_MODELS])
    print("Out of distribution: inputs clip(x + p·ξ, 0, 1); distance of y_L to the clean z* (their figure) "
          "and, in brackets, to the ISTA target of the perturbed input")
    table(["model", *(f"p = {level:g}" for level in OOD_LEVELS)],
          [[LISTA_MODELS[model], *(cell(model, lambda r, i=i: r.series["distance_by_ood"][i]) + " ("
                                   + cell(model, lambda r, i=i: r.series["distance_to_shifted_optimum_by_ood"][i]) + ")"
                                   for i in range(len(OOD_LEVELS)))] for model in LISTA_MODELS])
    figure = new_figure(13.0, 3.6)
    panels = [figure.add_subplot(1, 3, index + 1) for index in range(3)]
    for model, label in LISTA_MODELS.items():
        curves = {name: np.array([result.series[name] for result in results[model]])
                  for name in ("distance_curve", "distance_by_beta", "distance_by_ood")}
        for axes, name, x in ((panels[0], "distance_curve", np.arange(curves["distance_curve"].shape[1])),
                              (panels[1], "distance_by_beta", np.array(BETAS)),
                              (panels[2], "distance_by_ood", np.array(OOD_LEVELS))):
            axes.errorbar(x, curves[name].mean(axis=0), yerr=curves[name].std(axis=0), marker=".", capsize=2,
                          linewidth=1.1, label=label)
    panels[1].set_xscale("log")
    for axes in panels[:2]:
        log_axis(axes)
    for axes, title, xlabel in ((panels[0], "per layer, nominal test", "layer l"),
                                (panels[1], "perturbed layers (start and outputs × β)", "β"),
                                (panels[2], "perturbed inputs, distance to the clean z*", "p")):
        axes.set_title(title, fontsize=9)
        axes.set_xlabel(xlabel)
        axes.grid(True, alpha=0.3)
        axes.legend(fontsize=7)
    panels[0].set_ylabel("mean ‖y − z*‖")
    save(figure, "lista-descending.png")


SECTIONS: dict[str, Callable[[], None]] = {
    "dugd-kappa": dugd_kappa, "chgd": chgd, "psor-jacobi": psor_jacobi, "psor-ista": psor_ista,
    "du-psor": du_psor, "unrolling": unrolling, "descending": descending,
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
