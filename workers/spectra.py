"""Problem instances: the spectrum of A = H̃ᵀH̃ and, for `dense` mode, a factor H̃ (domain.md §1.1, §2.3).

Families (`spectrum`):
- `gaussian`: the authors' matrix, bit for bit. np.random.seed(matrix_seed);
  H = np.random.normal(0, 1/sqrt(n), (n, m)) (std 1/sqrt(m) under normalization 1/m); A = H Hᵀ.
  m: given; else from kappa through the MP relation; else 2n (the authors' 300×600).
- `uniform`, `loguniform`, `mp`: deterministic eigenvalue sets with exactly the prescribed kappa
  (DEFAULT_KAPPA when neither kappa nor m is given; kappa_MP(n, m) when only m is). Their edges are
  pinned to the MP edges of the aspect ratio n/m = q², q = (√κ−1)/(√κ+1), under the run's
  normalization: [(1−q)², (1+q)²] for 1/m (mean eigenvalue of the MP law 1) and that times m/n = 1/q²
  for 1/n. So every family with the same kappa and normalization shares [λ_min, λ_max], and
  mp_lower/mp_upper equal λ_min/λ_max exactly. Their factor is H̃ = diag(√λ) Qᵀ with a Haar Q drawn
  from matrix_seed, so H̃ᵀH̃ = Q diag(λ) Qᵀ.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray
from scipy.integrate import cumulative_trapezoid
from scipy.stats import ortho_group

Array = NDArray[np.float64]
Spectrum = Literal["gaussian", "mp", "uniform", "loguniform"]
Normalization = Literal["1/n", "1/m"]

DEFAULT_KAPPA = 100.0  # synthetic families without kappa or m


@dataclass(frozen=True, eq=False)
class Problem:
    """One instance: exact eigenvalues of A (float64, ascending) and the facts a run records."""

    eigenvalues: Array
    n: int
    m: int | None  # None for synthetic families built from kappa alone
    aspect: float  # n/m whose MP law sets mp_lower/mp_upper
    spectrum: Spectrum
    normalization: Normalization
    matrix_seed: int
    edges: Literal["exact", "mp"] = "exact"
    _gaussian_h: Array | None = field(default=None, repr=False)  # authors' H (n×m), gaussian only

    @property
    def lambda_min(self) -> float:
        return float(self.eigenvalues[0])

    @property
    def lambda_max(self) -> float:
        return float(self.eigenvalues[-1])

    @property
    def kappa_realized(self) -> float:
        return self.lambda_max / self.lambda_min

    @property
    def mp_lower(self) -> float:
        return mp_edges(self.aspect, self.normalization)[0]

    @property
    def mp_upper(self) -> float:
        return mp_edges(self.aspect, self.normalization)[1]

    @property
    def kappa_mp(self) -> float:
        return self.mp_upper / self.mp_lower

    @property
    def reference_edges(self) -> tuple[float, float]:
        """(λ_min, λ_max) that feed the Chebyshev reference, chosen by `edges`."""
        if self.edges == "mp":
            return self.mp_lower, self.mp_upper
        return self.lambda_min, self.lambda_max

    def factor(self) -> Array:
        """H̃ with H̃ᵀH̃ = A: (m×n) for gaussian (the authors' Hᵀ), else diag(√λ) Qᵀ (n×n)."""
        if self._gaussian_h is not None:
            return self._gaussian_h.T
        return np.sqrt(self.eigenvalues)[:, None] * self._haar().T

    def eigenvectors(self) -> Array:
        """Q with A = Q diag(eigenvalues) Qᵀ (columns in the order of `eigenvalues`)."""
        if self._gaussian_h is not None:
            h = self._gaussian_h
            return np.linalg.eigh(h @ h.T)[1]
        return self._haar()

    def facts(self) -> dict[str, Any]:
        return {"spectrum": self.spectrum, "normalization": self.normalization, "m": self.m, "edges": self.edges}

    def _haar(self) -> Array:
        return ortho_group.rvs(self.n, random_state=np.random.RandomState(self.matrix_seed))


def mp_edges(aspect: float, normalization: Normalization) -> tuple[float, float]:
    """Marchenko–Pastur edges for n/m = aspect: (1 ∓ √aspect)² under 1/m, times m/n under 1/n."""
    root = math.sqrt(aspect)
    scale = 1.0 if normalization == "1/m" else 1.0 / aspect
    return scale * (1.0 - root) ** 2, scale * (1.0 + root) ** 2


def kappa_mp(n: int, m: float) -> float:
    """κ_MP = ((1 + √(n/m)) / (1 − √(n/m)))²."""
    root = math.sqrt(n / m)
    return ((1.0 + root) / (1.0 - root)) ** 2


def aspect_for_kappa(kappa: float) -> float:
    """n/m whose MP law has condition number kappa: √(n/m) = q = (√κ−1)/(√κ+1)."""
    q = (math.sqrt(kappa) - 1.0) / (math.sqrt(kappa) + 1.0)
    return q * q


def m_for_kappa(n: int, kappa: float) -> int:
    """Smallest m with κ_MP(n, m) <= kappa: m = ceil(n / q²)."""
    return math.ceil(n / aspect_for_kappa(kappa))


def gaussian_matrix(n: int, m: int, matrix_seed: int, normalization: Normalization = "1/n") -> Array:
    """The authors' H (n×m): legacy RandomState(seed).normal(0, std, (n, m)), identical to np.random.seed."""
    std = 1.0 / np.sqrt(n) if normalization == "1/n" else 1.0 / np.sqrt(m)
    return np.random.RandomState(matrix_seed).normal(0, std, (n, m))


def build_problem(spec: Any) -> Problem:
    """Problem for a DugdSpec / ChgdSpec (uses n, m, kappa, spectrum, normalization, matrix_seed, edges)."""
    common = dict(n=spec.n, spectrum=spec.spectrum, normalization=spec.normalization,
                  matrix_seed=spec.matrix_seed, edges=spec.edges)
    if spec.spectrum == "gaussian":
        if spec.m is not None and spec.kappa is not None:
            raise ValueError(f"m and kappa: got m={spec.m}, kappa={spec.kappa}, expected only one for spectrum gaussian")
        m = spec.m or (m_for_kappa(spec.n, spec.kappa) if spec.kappa is not None else 2 * spec.n)
        if m <= spec.n:
            raise ValueError(f"m: got {m}, expected m > n = {spec.n} (A must be nonsingular)")
        h = gaussian_matrix(spec.n, m, spec.matrix_seed, spec.normalization)
        eigenvalues = np.linalg.eigvalsh(h @ h.T)
        return Problem(eigenvalues=eigenvalues, m=m, aspect=spec.n / m, _gaussian_h=h, **common)
    if spec.kappa is not None:
        kappa = float(spec.kappa)
    elif spec.m is not None:
        if spec.m <= spec.n:
            raise ValueError(f"m: got {spec.m}, expected m > n = {spec.n}")
        kappa = kappa_mp(spec.n, spec.m)
    else:
        kappa = DEFAULT_KAPPA
    aspect = aspect_for_kappa(kappa)
    lower, upper = mp_edges(aspect, spec.normalization)
    eigenvalues = synthetic_eigenvalues(spec.spectrum, spec.n, lower, upper)
    return Problem(eigenvalues=eigenvalues, m=spec.m, aspect=aspect, **common)


def synthetic_eigenvalues(spectrum: Spectrum, n: int, lower: float, upper: float) -> Array:
    """n ascending eigenvalues with the first exactly `lower` and the last exactly `upper`."""
    if spectrum == "uniform":
        values = np.linspace(lower, upper, n)
    elif spectrum == "loguniform":
        values = np.geomspace(lower, upper, n)
    elif spectrum == "mp":
        values = mp_quantiles(n, lower, upper)
    else:
        raise ValueError(f"spectrum: got {spectrum!r}, expected gaussian, mp, uniform or loguniform")
    values = np.asarray(values, dtype=np.float64)
    values[0], values[-1] = lower, upper  # pin the edges exactly (kappa exact)
    return values


def mp_quantiles(n: int, lower: float, upper: float, grid: int = 20001) -> Array:
    """Eigenvalues at the quantile levels k/(n−1), k = 0..n−1, of the MP density on [lower, upper].

    f(λ) ∝ √((upper−λ)(λ−lower)) / λ (no atom since n < m). With λ = λ₊ − λ₋ cos θ the density in θ
    is ∝ sin²θ / λ(θ), smooth on [0, π], so a trapezoid CDF on a fine θ grid is accurate.
    """
    plus, minus = (upper + lower) / 2, (upper - lower) / 2
    theta = np.linspace(0.0, np.pi, grid)
    lam = plus - minus * np.cos(theta)
    cdf = cumulative_trapezoid(np.sin(theta) ** 2 / lam, theta, initial=0.0)
    cdf /= cdf[-1]
    levels = np.linspace(0.0, 1.0, n)
    return plus - minus * np.cos(np.interp(levels, cdf, theta))
