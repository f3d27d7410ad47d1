"""Reproduction sections §3 and §4: Chebyshev-PSOR on Jacobi and on ISTA, and deep-unfolded PSOR
(DU-PSOR-Jacobi and DU-PSOR.ipynb's map) beside the authors' printouts; `benchmarks/reproductions.py
psor-jacobi psor-ista du-psor` calls them."""

from __future__ import annotations

import numpy as np

from repro_common import REPO, save, table
from study.figures.run_figures import log_axis, new_figure
from workers import chebyshev as cheb
from workers import metrics
from workers.fixed_point import jacobi_problem
from workers.psor import build_problem as build_psor_problem
from workers.psor import error_curve, initial_points, relax, scheme_omegas
from workers.run import run
from workers.specs import PsorSpec


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
    # omega=chebyshev_local runs record the gated curve (error_curve_chebyshev) beside their own.
    local = run({**ISTA, "x0_around": "fixed_point", "x0_scale": 1e-6, "omega": "chebyshev_local"})
    far = run({**ISTA, "x0_around": "origin", "omega": "chebyshev_local"})
    rows = []
    for label, result in (("near x* (x* + 1e-6·N(0, I))", local), ("from the origin (x0 ~ N(0, I))", far)):
        s = result.scalars
        rows.append([label, s["final_error_plain"], s["final_error_constant"], s["final_error_chebyshev"],
                     s["final_error_chebyshev_local"], s["iterations_to_1e-8_constant"],
                     s["iterations_to_1e-8_chebyshev"], s["iterations_to_1e-8_chebyshev_local"],
                     s["chebyshev_restarts"]])
    s = far.scalars
    print(f"ISTA (LASSO n=512, m=256, 10% support, λ=0.2), T = 8, 200 iterations, matrix_seed 0: κ of I − J = "
          f"{s['kappa_realized']:.4g}, bound {s['chebyshev_bound']:.4g}; omega=chebyshev_local from the origin: "
          f"{far.status} ({far.reason})")
    table(["start", "final plain", "final constant", "final Chebyshev (gated)", "final Chebyshev (local)",
           "k to 1e-8 constant", "k to 1e-8 gated", "k to 1e-8 local", "rejected periods per x0 (gated)"], rows)
    figure = new_figure(9.6, 3.8)
    for column, (title, result) in enumerate((("near x*", local), ("from the origin", far))):
        axes = figure.add_subplot(1, 2, column + 1)
        for name, label in (("plain", "plain"), ("constant", "constant SOR"), ("chebyshev", "Chebyshev, gated"),
                            ("chebyshev_local", "Chebyshev, periodic from k = 0")):
            if f"error_curve_{name}" in result.series:
                axes.plot(result.series[f"error_curve_{name}"], linewidth=1.1, label=label)
        if column == 0:
            axes.plot(result.series["chebyshev_bound_curve"], "k:", label="e₀·bound^(k/T)")
            axes.set_ylim(bottom=1e-17)  # below float64 round-off the bound is off the chart
        else:
            share = np.asarray(result.series["chebyshev_share"])
            twin = axes.twinx()
            twin.plot(np.arange(1, len(share) + 1), share, color="0.6", linewidth=0.8, label="share on Chebyshev ω")
            twin.set_ylim(0, 1.05)
            twin.set_ylabel("share of x0 on Chebyshev ω", fontsize=7)
        log_axis(axes)
        axes.set_xlabel("iteration k")
        axes.set_title(f"ISTA, {title}")
        axes.grid(True, alpha=0.3)
        axes.legend(fontsize=7, loc="lower left")
    figure.axes[0].set_ylabel("‖x_k − x*‖")
    figure.tight_layout()
    save(figure, "psor-ista-error_curves.png")


# ---------------------------------------------------------------- deep-unfolded PSOR

# DU-Book, Chapter_4/DU-PSOR-Jacobi.ipynb: the loss on a fresh batch after each depth, as printed.
DU_PSOR_JACOBI_PRINTED = {
    1: [58.88592905204855, 10.80233642878337, 2.1061575704635955, 0.46474997285182157, 0.10075643731122674,
        0.022397434659464876, 0.004929085981303238, 0.0012727780787192122, 0.0004162650640554195,
        0.00012128724122358357, 3.7444466295906106e-5, 1.3157795659670971e-5, 4.3304997364200514e-6,
        1.365356379046435e-6, 4.022642883752432e-7, 1.3359918212179945e-7, 4.524748655711977e-8,
        1.8690225299818607e-8, 4.490573130599046e-9, 1.867184468678741e-9],
    2: [59.619981672240286, 4.699405349558019, 0.6490166630170612, 0.07761611105139142, 0.010345602526146936,
        0.0012844819806714953, 0.00017654849902913052, 2.1206862534429768e-5, 2.553518261015595e-6,
        3.5229555721272896e-7, 4.648027024986047e-8, 6.103585628049838e-9, 8.894923322756602e-10,
        1.173127503458512e-10, 1.7378275394011272e-11, 2.0568372316778953e-12, 3.032142710179767e-13,
        3.896969058806574e-14, 5.087145356881238e-15, 7.064278433550123e-16],
    8: [58.011346931141176, 5.117762718577962, 0.36329771723349935, 0.05338577468439309, 0.0038532857763167528,
        0.00019791548624654198, 1.383195117727136e-5, 1.4227495874843228e-6, 2.1042200054253064e-7,
        1.4998725865835526e-8, 1.2773048013660327e-9, 3.438249987480199e-10, 1.8176193223229967e-11,
        9.657290636915143e-13, 9.81348391208562e-14, 1.2566357139249713e-14, 2.6086596077469136e-15,
        8.05495789258787e-17, 1.1810387601943408e-17, 2.7435806323244485e-18],
}
# DU-Book, Chapter_4/DU-PSOR.ipynb: printed ω_opt = 2/(λ_min+λ_max), learned ω and per-depth losses.
DU_PSOR_PRINTED_OMEGA_SOR = 1.605401322031494
DU_PSOR_PRINTED = {
    2: ([2.8119328406116093, 1.089404942355889],
        [7.504138049096805, 1.0184745124247474, 0.2795406670787668, 0.062407077536770134, 0.015638055019806422,
         0.002783360584717569, 0.0006755635469424806, 0.00013474466897259518, 3.023955761604132e-5,
         6.215041411149789e-6]),
    4: ([3.6653837470030894, 1.0300149009802693, 1.2921825119180372, 2.0167870492569273],
        [7.811608174764314, 1.225961390855475, 0.10098109994711532, 0.014695151765045357, 0.004801718625916657,
         0.00044809873723672953, 4.628086450289233e-5, 7.604699925557764e-6, 6.181776096393104e-6,
         1.9455561304723324e-7]),
}


def _config(name: str) -> dict:
    import yaml

    document = yaml.safe_load((REPO / "configs" / name).read_text())
    return {key: value for key, value in document["parameters"].items() if not isinstance(value, list)}


def mse_after_training(spec: dict, omegas: list[float], iterations: int, samples: int = 1000) -> np.ndarray:
    """mean ‖x_k − x*‖², k = 0..iterations, from DU-Book's start (x0 = 0, fresh rhs): its comp_mse_DUPSOR."""
    import torch

    problem = build_psor_problem(PsorSpec(**{k: v for k, v in spec.items() if k != "problem"}))
    x0 = initial_points(problem, np.random.default_rng(11).normal(size=(samples, problem.n)), "random_rhs", 1.0)
    with torch.no_grad():
        errors = relax(problem, torch.tensor(omegas, dtype=torch.float64), torch.tensor(x0), iterations)
    return (errors**2).mean(dim=1).numpy()


def du_psor() -> None:
    """DU-PSOR-Jacobi.ipynb's protocol (configs/du-psor.yaml), matrix_seed 0: T = 1, 2, 8, trained to
    depth 20 (as the notebook) and to depth T only."""
    base = {**_config("du-psor.yaml"), "matrix_seed": 0, "seed": 0}
    runs = {(T, depth): run({**base, "T": T, "train_depth": depth}) for T in (1, 2, 8) for depth in (20, T)}
    s0 = runs[(1, 20)].scalars
    print(f"DU-PSOR-Jacobi protocol (n=32, P = 0.15 I + MᵀM, M = 0.05·N(0,1), batch 100, 50 Adam steps per depth, "
          f"lr 0.01), matrix_seed 0: λ(B) in [{s0['lambda_min']:.4f}, {s0['lambda_max']:.4f}], κ = {s0['kappa_realized']:.4f}")
    rows = []
    for (T, depth), result in runs.items():
        s = result.scalars
        rows.append([T, depth, np.round(result.series["learned_omega"], 3).tolist(),
                     np.round(result.series["chebyshev_omega"], 3).tolist(), s["rho_learned"], s["rho_chebyshev"],
                     s["rho_constant"], s["rho_learned"] / s["rho_chebyshev"],
                     mse_after_training(base | {"T": T}, result.series["learned_omega"], 20)[20]])
    table(["T", "trained to depth", "learned ω (layer order)", "Chebyshev ω", "ρ learned (per period)", "ρ Chebyshev",
           "ρ constant SOR", "ρ ratio", "MSE at depth 20"], rows)
    print("Loss on a fresh batch after each depth's training (trained to depth 20): notebook (its matrix) / ours")
    table(["depth"] + [f"T = {T} notebook / ours" for T in (1, 2, 8)],
          [[d + 1] + [f"{DU_PSOR_JACOBI_PRINTED[T][d]:.3g} / {runs[(T, 20)].series['depth_loss'][d]:.3g}"
                      for T in (1, 2, 8)] for d in (0, 1, 2, 4, 9, 14, 19)])

    figure = new_figure(12.8, 3.8)
    axes = figure.add_subplot(1, 3, 1)
    for column, T in enumerate((1, 2, 8)):
        depths = np.arange(1, 21)
        axes.plot(depths, DU_PSOR_JACOBI_PRINTED[T], "--", color=f"C{column}", linewidth=1, label=f"notebook T = {T}")
        axes.plot(depths, runs[(T, 20)].series["depth_loss"], "o-", color=f"C{column}", markersize=3, linewidth=1,
                  label=f"ours T = {T}")
    log_axis(axes)
    axes.set(xlabel="depth d", ylabel="loss after training depth d", title="loss per depth (fresh batch)")
    axes.grid(True, alpha=0.3)
    axes.legend(fontsize=6)
    axes = figure.add_subplot(1, 3, 2)
    t = np.arange(21)
    for column, T in enumerate((1, 2, 8)):
        result = runs[(T, 20)]
        axes.plot(t[1:], mse_after_training(base | {"T": T}, result.series["learned_omega"], 20)[1:], "o-",
                  color=f"C{column}", markersize=3, linewidth=1, label=f"DU-PSOR T = {T}")
        q = result.scalars["rho_learned"] ** (2 / T)  # the notebook's "theory": q^t, q = ρ^(2/T)
        axes.plot(t[1:], q ** t[1:], ":", color=f"C{column}", linewidth=1, label=f"theory q^t, T = {T}")
    axes.plot(t[1:], mse_after_training(base | {"T": 1}, [1.0], 20)[1:], "k--", linewidth=1, label="Jacobi (ω = 1)")
    log_axis(axes)
    axes.set(xlabel="iteration t", ylabel="mean squared error", title="after training to depth 20")
    axes.grid(True, alpha=0.3)
    axes.legend(fontsize=6)
    axes = figure.add_subplot(1, 3, 3)
    for column, T in enumerate((2, 8)):
        for depth, style in ((20, "o-"), (T, "x:")):
            values = np.sort(runs[(T, depth)].series["learned_omega"])
            axes.plot(np.arange(1, T + 1), values, style, color=f"C{column + 1}", markersize=4, linewidth=1,
                      label=f"learned T = {T}, to depth {depth}")
        axes.plot(np.arange(1, T + 1), np.sort(runs[(T, 20)].series["chebyshev_omega"]), "s--", color="k",
                  markersize=3, linewidth=0.8, label="Chebyshev ω" if T == 8 else None)
    axes.set(xlabel="rank", ylabel="ω (sorted)", title="learned vs Chebyshev ω")
    axes.grid(True, alpha=0.3)
    axes.legend(fontsize=6)
    save(figure, "du-psor.png")
    du_psor_gram()


def du_psor_gram() -> None:
    """DU-PSOR.ipynb's 8×8 map (configs/du-psor-gram.yaml): printed ω beside ours and the Chebyshev ω."""
    base = {**_config("du-psor-gram.yaml"), "seed": 0}
    # Their interval, from their printed ω_SOR alone: λ_min + λ_max = 2/ω_SOR, with λ_max(I − A) ≈ 1
    # (A = GᵀG/‖GᵀG‖_F has λ_min(A) ≈ 0 for an 8×8 Gaussian G; ours 0.99996 on matrix_seed 489).
    implied_min = 2 / DU_PSOR_PRINTED_OMEGA_SOR - 1.0
    rows = []
    for matrix_seed in (489, 0, 1, 2):
        for T in (2, 4):
            result = run({**base, "T": T, "matrix_seed": matrix_seed})
            s = result.scalars
            rows.append([matrix_seed, T, s["omega_constant"], s["lambda_min"],
                         np.round(result.series["learned_omega"], 3).tolist(),
                         np.round(np.sort(result.series["chebyshev_omega"])[::-1], 3).tolist(),
                         s["rho_learned"], s["rho_chebyshev"], result.series["depth_loss"][-1]])
    for T, (printed, losses) in DU_PSOR_PRINTED.items():
        rows.append(["notebook", T, DU_PSOR_PRINTED_OMEGA_SOR, f"≈ {implied_min:.4f}", np.round(printed, 3).tolist(),
                     np.round(np.sort(cheb.chebyshev_steps(implied_min, 1.0, T))[::-1], 3).tolist(),
                     "", "", losses[-1]])
    print("DU-PSOR.ipynb protocol (n=8, A = GᵀG/‖GᵀG‖_F, batch 50, 40 Adam steps per depth, depth 1..10, lr 0.1)")
    table(["matrix_seed", "T", "ω_SOR", "λ_min(I − A)", "learned ω (layer order)", "Chebyshev ω (sorted, desc.)",
           "ρ learned", "ρ Chebyshev", "loss after depth 10"], rows)

