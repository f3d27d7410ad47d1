"""docs/reproductions.md section 5 (Scieur et al., the curse of unrolling): the burn-in against the
asymptotic rate (configs/curse-of-unrolling.yaml), and the derivative term under its closed-form
envelope. Run through benchmarks/reproductions.py (sections unrolling, unrolling-envelope)."""

from __future__ import annotations

import math

import numpy as np
from repro_common import REPO, save, table

from study.figures.run_figures import log_axis, new_figure
from workers import chebyshev as cheb
from workers.chgd import chgd_problem
from workers.run import run
from workers.specs import ChgdSpec
from workers.unrolling import jacobian_errors, max_abs_derivative, polynomials_and_derivatives


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
    from study.spec.loading import load_sweep

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
