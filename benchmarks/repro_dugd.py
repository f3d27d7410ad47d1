"""docs/reproductions.md sections 1 and 1b (Takabe & Wadayama): the paper's DUGD table beside the
notebook's printout, and the theory (ρ per generation, the Chebyshev rate against T). Run through
benchmarks/reproductions.py (sections paper-dugd, theory)."""

from __future__ import annotations

import json
import math
import time

import numpy as np
from repro_common import REPO, config_fixed, finish_axes, save, table

from study.figures.run_figures import log_axis, new_figure
from workers import chebyshev as cheb
from workers import metrics
from workers.dugd_run import compare as compare_schedule
from workers.run import run
from workers.specs import DugdSpec
from workers.spectra import build_problem


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
    from study.spec.loading import load_sweep

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
    from study.figures.run_figures import run_figures  # the README's T = 25 figures: seed 0's run, as `study run-one` draws them

    for name, png in run_figures(by_T[25][0].to_dict()).items():
        (REPO / "docs" / f"paper-dugd-T25-{name}").write_bytes(png)
        print(f"wrote docs/paper-dugd-T25-{name}")


# ---------------------------------------------------------------- Takabe & Wadayama's theory

THEORY_FULL = dict(problem="dugd", n=300, m=600, matrix_seed=12, T=16, training="full", init="random",
                   batch_size=10000, seed=0)


def theory() -> None:
    """(1) ρ(W) falls with the loss during training (full training at T = 16, and the paper's incremental
    protocol at T = 25); (2) the Chebyshev rate against T, with q and GD's rate."""
    full = run(THEORY_FULL)
    paper = run({**config_fixed("paper-dugd.yaml"), "T": 25, "seed": 0})
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
    finish_axes(axes, "generation (500 Adam steps each)", "full training, T = 16: ρ falls with the loss")
    axes = figure.add_subplot(1, 3, 2)
    axes.plot(depth, rho_paper, "o-", markersize=3, label="ρ, trained prefix (paper protocol)")
    axes.plot(depth, bound, "k--", linewidth=1, label="Chebyshev 2q^g/(1+q^{2g})")
    axes.plot(depth, gd**depth, "k:", linewidth=1, label="GD ((κ−1)/(κ+1))^g")
    finish_axes(axes, "generation g = depth", "incremental training, T = 25")
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
