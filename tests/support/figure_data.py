"""Real Result dicts for figure and report tests, built from workers.chebyshev and workers.metrics.

A DUGD run is imitated by perturbing the Chebyshev steps of a real Gaussian-matrix spectrum; its MSE
curves are the analytic (1/n) Σ P_t(λ_i)² of each schedule. A PSOR run gets the closed-form error
norms ‖Π_k (I − ω_k B)‖-style curves of a diagonal B. Nothing here is a stand-in for a library.
"""

from __future__ import annotations

import numpy as np

from workers import chebyshev, metrics
from workers.result import Result


def gaussian_spectrum(n: int = 40, m: int = 80, matrix_seed: int = 12) -> np.ndarray:
    rng = np.random.default_rng(matrix_seed)
    matrix = rng.normal(0.0, 1.0 / np.sqrt(n), size=(m, n))
    return np.linalg.eigvalsh(matrix.T @ matrix)


def mse_curve(steps: np.ndarray, eigenvalues: np.ndarray) -> list[float]:
    """(1/n) Σ_i P_t(λ_i)² for t = 0..T (P_0 = 1)."""
    return [float(np.mean(metrics.residual_polynomial(steps[:t], eigenvalues) ** 2)) for t in range(len(steps) + 1)]


def dugd_result(T: int = 8, seed: int = 0, noise: float = 0.05, n: int = 40, kappa: float | None = None,
                status: str = "FINISHED") -> dict:
    eigenvalues = gaussian_spectrum(n=n)
    low, high = float(eigenvalues[0]), float(eigenvalues[-1])
    rng = np.random.default_rng(seed)
    first_kind = chebyshev.chebyshev_steps(low, high, T)
    learned = rng.permutation(first_kind * np.exp(noise * rng.normal(size=T)))
    second_kind = chebyshev.second_kind_steps(low, high, T)
    constant = np.full(T, chebyshev.optimal_constant_step(low, high))
    nodes = chebyshev.chebyshev_nodes(low, high, T)
    result = Result(
        params={"problem": "dugd", "n": n, "m": 2 * n, "kappa": kappa, "T": T, "seed": seed, "mode": "eigen"},
        status=status,
        scalars={
            "lambda_min": low,
            "lambda_max": high,
            "root_error": metrics.root_error(learned, nodes),
            "step_error": metrics.step_error(learned, first_kind),
            "rho": metrics.rho(learned, eigenvalues),
            "rho_chebyshev": metrics.rho(first_kind, eigenvalues),
        },
        series={
            "learned_steps": learned.tolist(),
            "chebyshev_steps": first_kind.tolist(),
            "second_kind_steps": second_kind.tolist(),
            "mse_curve": mse_curve(learned, eigenvalues),
            "mse_curve_gd": mse_curve(constant, eigenvalues),
            "mse_curve_chebyshev": mse_curve(first_kind, eigenvalues),
            "mse_curve_second_kind": mse_curve(second_kind, eigenvalues),
        },
    )
    return result.to_dict()


def psor_result(T: int = 4, iterations: int = 12, learned: bool = True) -> dict:
    eigenvalues = np.linspace(0.5, 3.0, 30)  # B = I − A, diagonal: e_k has closed form
    low, high = float(eigenvalues[0]), float(eigenvalues[-1])
    omega_chebyshev = chebyshev.chebyshev_steps(low, high, T)
    schedules = {
        "plain": np.ones(T),
        "constant": np.full(T, chebyshev.optimal_constant_step(low, high)),
        "chebyshev": omega_chebyshev,
    }
    if learned:
        schedules["learned"] = omega_chebyshev * np.array([1.05, 0.97, 1.02, 0.99][:T] + [1.0] * max(0, T - 4))
    curves = {}
    for name, omega in schedules.items():
        periodic = np.resize(omega, iterations)
        curves[f"error_curve_{name}"] = [
            float(np.linalg.norm(metrics.residual_polynomial(periodic[:k], eigenvalues))) for k in range(iterations + 1)
        ]
    series = {**curves, "chebyshev_omega": omega_chebyshev.tolist()}
    if learned:
        series["learned_omega"] = schedules["learned"].tolist()
    return Result(params={"problem": "psor", "n": 30, "T": T, "omega": "learned" if learned else "chebyshev"},
                  scalars={"lambda_min": low, "lambda_max": high}, series=series).to_dict()
