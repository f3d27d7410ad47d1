"""Fixed-point problems for PSOR (domain.md §5): Jacobi on an SPD system and ISTA on LASSO.

A problem carries its map f (torch, float64, on row-vector batches), its fixed point x* and the
real eigenvalues of B = I − J, J = ∂f(x*), which set the local rate of x ← x + ω(f(x) − x).
Instances are rebuilt from `matrix_seed` with numpy's `default_rng` (PCG64).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch
from numpy.typing import NDArray

Array = NDArray[np.float64]

# FISTA stops when an update moves x by less than this (relative); the support solve then polishes x*.
_FISTA_TOL = 1e-14
_FISTA_MAX_ITERATIONS = 50_000


@dataclass(frozen=True)
class FixedPointProblem:
    """f(x) for x of shape (batch, n), its fixed point and the spectrum of B = I − ∂f(x*)."""

    name: str
    apply: Callable[[torch.Tensor], torch.Tensor]
    x_star: Array
    eigenvalues: Array  # of B = I − J, real, ascending
    facts: dict[str, float] = field(default_factory=dict)
    # Nonlinear maps: the active set of an output f(x) (ISTA: the signs of the prox output), which
    # fixes the map's local affine piece; None for an affine map, whose linearisation holds everywhere.
    active_set: Callable[[torch.Tensor], torch.Tensor] | None = None
    # Affine maps: the fixed point for a right-hand side r (rows of shape (batch, n)), x*(r); the
    # error dynamics do not depend on r, which is how DU-Book's "x0 = 0, fresh rhs" start is drawn.
    solve: Callable[[Array], Array] | None = None

    @property
    def n(self) -> int:
        return int(self.x_star.shape[0])

    @property
    def lambda_min(self) -> float:
        return float(self.eigenvalues[0])

    @property
    def lambda_max(self) -> float:
        return float(self.eigenvalues[-1])


def jacobi_matrix(n: int, matrix_seed: int, entry_std: float = 0.03, shift: float = 1.0) -> Array:
    """P = MᵀM + shift·I with M_ij ~ N(0, entry_std²), n×n: Jacobi.ipynb's diagonally dominant SPD
    matrix (shift 1, std 0.03); DU-PSOR-Jacobi.ipynb's is shift 0.15, std 0.05."""
    rng = np.random.default_rng(matrix_seed)
    M = rng.normal(0.0, entry_std, size=(n, n))
    return M.T @ M + shift * np.eye(n)


def jacobi_problem(P: Array, q: Array | None = None) -> FixedPointProblem:
    """Jacobi iteration f(x) = D^{-1}(q − (P − D)x) for P x = q, P SPD.

    B = I − ∂f = D^{-1}P is similar to the SPD D^{-1/2} P D^{-1/2}, so its eigenvalues are real and
    computed from that symmetric form (eigvalsh, float64). q = None means q = 0, x* = 0.
    """
    P = np.asarray(P, dtype=np.float64)
    n = P.shape[0]
    q = np.zeros(n) if q is None else np.asarray(q, dtype=np.float64)
    diagonal = np.diag(P).copy()
    scale = 1.0 / np.sqrt(diagonal)
    eigenvalues = np.linalg.eigvalsh(scale[:, None] * P * scale[None, :])
    x_star = np.zeros(n) if not np.any(q) else np.linalg.solve(P, q)
    off_diagonal = torch.from_numpy(P - np.diag(diagonal))
    inverse_diagonal = torch.from_numpy(1.0 / diagonal)
    rhs = torch.from_numpy(q)

    def apply(x: torch.Tensor) -> torch.Tensor:
        return (rhs - x @ off_diagonal) * inverse_diagonal  # P symmetric: (Off x)ᵀ = xᵀ Off

    def solve(rhs: Array) -> Array:
        return np.linalg.solve(P, np.asarray(rhs).T).T

    # ‖P_T(B)‖₂ ≤ sqrt(d_max/d_min) ρ(P_T(B)): the Euclidean norm is D^{1/2}-similar to the symmetric case.
    norm_equivalence = float(np.sqrt(diagonal.max() / diagonal.min()))
    return FixedPointProblem("jacobi", apply, x_star, eigenvalues, {"norm_equivalence": norm_equivalence},
                             solve=solve)


def gram_problem(n: int, matrix_seed: int, b: Array | None = None) -> FixedPointProblem:
    """DU-PSOR.ipynb's affine map f(x) = Ax + b with A = GᵀG/‖GᵀG‖_F, G_ij ~ N(0, 1), n×n.

    A is symmetric PSD with ‖A‖₂ ≤ ‖A‖_F = 1 (Julia's norm(A) of a matrix is Frobenius), so the
    eigenvalues of B = I − A lie in [1 − λ_max(A), 1]. b = None means b = 0, x* = 0.
    """
    G = np.random.default_rng(matrix_seed).normal(size=(n, n))
    A = G.T @ G
    A = A / np.linalg.norm(A)
    B = np.eye(n) - A
    b = np.zeros(n) if b is None else np.asarray(b, dtype=np.float64)
    x_star = np.linalg.solve(B, b) if np.any(b) else np.zeros(n)
    A_t, b_t = torch.from_numpy(A), torch.from_numpy(b)

    def apply(x: torch.Tensor) -> torch.Tensor:
        return x @ A_t + b_t  # A symmetric

    def solve(rhs: Array) -> Array:
        return np.linalg.solve(B, np.asarray(rhs).T).T

    return FixedPointProblem("gram", apply, x_star, np.linalg.eigvalsh(B), solve=solve)


def soft_threshold(u: torch.Tensor, threshold: float) -> torch.Tensor:
    """S_θ(u) = sign(u) max(|u| − θ, 0)."""
    return torch.sign(u) * torch.clamp(torch.abs(u) - threshold, min=0.0)


@dataclass(frozen=True)
class LassoInstance:
    """min_x ½‖y − H̃x‖² + lam‖x‖₁ with a planted sparse x."""

    H: Array
    y: Array
    x_planted: Array
    lam: float


def lasso_instance(
    n: int, m: int, sparsity: float, lam: float, matrix_seed: int, noise_std: float = 0.0
) -> LassoInstance:
    """H̃_ij ~ N(0, 1/m); x planted on round(sparsity·n) random coordinates with N(0, 1) values."""
    rng = np.random.default_rng(matrix_seed)
    H = rng.normal(0.0, 1.0 / np.sqrt(m), size=(m, n))
    support_size = max(1, int(round(sparsity * n)))
    x_planted = np.zeros(n)
    x_planted[rng.choice(n, size=support_size, replace=False)] = rng.normal(size=support_size)
    y = H @ x_planted + noise_std * rng.normal(size=m)
    return LassoInstance(H, y, x_planted, lam)


def lasso_kkt_violation(instance: LassoInstance, x: Array) -> float:
    """Largest violation of the LASSO optimality conditions, relative to lam:
    g = H̃ᵀ(y − H̃x) must equal lam·sign(x_i) on the support and satisfy |g_j| ≤ lam off it."""
    g = instance.H.T @ (instance.y - instance.H @ x)
    on = x != 0
    on_violation = np.max(np.abs(g[on] - instance.lam * np.sign(x[on])), initial=0.0)
    off_violation = np.max(np.abs(g[~on]) - instance.lam, initial=0.0)
    return float(max(on_violation, off_violation, 0.0) / instance.lam)


def lasso_solution(instance: LassoInstance, beta: float) -> Array:
    """x* by FISTA run to stagnation, then polished by solving the support equations exactly
    (H̃_SᵀH̃_S x_S = H̃_Sᵀy − lam·sign(x_S)) when that keeps the signs and the KKT conditions."""
    H, y, lam = instance.H, instance.y, instance.lam
    gram, correlation = H.T @ H, H.T @ y
    x = np.zeros(H.shape[1])
    z, momentum = x.copy(), 1.0
    for _ in range(_FISTA_MAX_ITERATIONS):
        u = z + beta * (correlation - gram @ z)
        x_next = np.sign(u) * np.maximum(np.abs(u) - beta * lam, 0.0)
        momentum_next = (1 + np.sqrt(1 + 4 * momentum**2)) / 2
        z = x_next + (momentum - 1) / momentum_next * (x_next - x)
        moved = np.linalg.norm(x_next - x)
        x, momentum = x_next, momentum_next
        if moved <= _FISTA_TOL * (1.0 + np.linalg.norm(x)):
            break
    support = np.flatnonzero(x)
    if 0 < support.size <= H.shape[0]:
        signs = np.sign(x[support])
        polished = np.zeros_like(x)
        polished[support] = np.linalg.solve(gram[np.ix_(support, support)], correlation[support] - lam * signs)
        if np.all(np.sign(polished[support]) == signs) and lasso_kkt_violation(
            instance, polished
        ) <= lasso_kkt_violation(instance, x):
            x = polished
    return x


def ista_problem(instance: LassoInstance, beta: float | None = None) -> FixedPointProblem:
    """Proximal gradient f(x) = S_θ(x + βH̃ᵀ(y − H̃x)), θ = β·lam, β = 1/λ_max(H̃ᵀH̃) by default.

    At x*, J = D_S(I − βH̃ᵀH̃) is block triangular, so the eigenvalues of B = I − J are 1
    (n − |S| times) and β·eig(H̃_SᵀH̃_S) (domain.md §5.3).
    """
    H = np.asarray(instance.H, dtype=np.float64)
    gram = H.T @ H
    beta = float(1.0 / np.linalg.eigvalsh(gram)[-1]) if beta is None else float(beta)
    x_star = lasso_solution(instance, beta)
    support = np.flatnonzero(x_star)
    n = H.shape[1]
    if support.size > H.shape[0]:
        raise ValueError(f"support size {support.size} exceeds m = {H.shape[0]}: B = I − J is singular")
    support_eigenvalues = beta * np.linalg.eigvalsh(gram[np.ix_(support, support)]) if support.size else np.array([])
    eigenvalues = np.sort(np.concatenate([np.ones(n - support.size), support_eigenvalues]))
    # How strictly the off-support coordinates sit inside the threshold: J is well defined when > 0.
    g = H.T @ (instance.y - H @ x_star)
    off = np.setdiff1d(np.arange(n), support)
    margin = float(np.min(instance.lam - np.abs(g[off])) / instance.lam) if off.size else 1.0
    planted = np.flatnonzero(instance.x_planted)
    facts = {
        "support_size": float(support.size),
        "planted_support_size": float(planted.size),
        "support_overlap": float(np.intersect1d(support, planted).size / max(planted.size, 1)),
        "kkt_violation": lasso_kkt_violation(instance, x_star),
        "off_support_margin": margin,
        "beta": beta,
        "threshold": beta * instance.lam,
    }
    gram_t, correlation_t = torch.from_numpy(gram), torch.from_numpy(H.T @ instance.y)
    threshold = beta * instance.lam

    def apply(x: torch.Tensor) -> torch.Tensor:
        return soft_threshold(x + beta * (correlation_t - x @ gram_t), threshold)

    return FixedPointProblem("ista", apply, x_star, eigenvalues, facts, active_set=torch.sign)


__all__ = [
    "FixedPointProblem",
    "LassoInstance",
    "gram_problem",
    "ista_problem",
    "jacobi_matrix",
    "jacobi_problem",
    "lasso_instance",
    "lasso_kkt_violation",
    "lasso_solution",
    "soft_threshold",
]
