"""DUGD with descending constraints, trained primal–dual (Hadou et al.; domain.md §7.3).

Written over the eigenbasis of A: with x ~ N(0, I), x_0 = 0 and noiseless y, the error of sample b
after t layers is e_{t,i} = P_t(λ_i)·(−z_{b,i}), z ~ N(0, I). Distances ‖x_t − x‖ are invariant under
the orthogonal change of basis, so per-sample ratios and the MSE are exactly those of the full model.

Constraint per layer (distance form, a batch mean of per-sample ratios, as RobustUnrolling's default):
    c_t = mean_b(‖e_t‖ / ‖e_{t−1}‖) − (1 − ε) ≤ 0,  t = 1..T.
Lagrangian per mini-batch: MSE(x_T, x) + Σ_t ν_t c_t with ν detached; Adam on γ every mini-batch;
once per epoch ν_t ← max(0, ν_t + η_ν ĉ_t) with ĉ_t on a fixed held-out batch (no grad, no noise).

Defaults. RobustUnrolling uses η_ν = 1e-3 over 5000 epochs. Here 60 epochs of 10 mini-batches
(600 Adam steps, lr 0.02: about a second of CPU for n = 100, T = 8) need η_ν = 0.5 for the
constraints to bind in time: with η_ν = 0.05 ν stays ~0.02 and layers still violate at the end
(measured on the (100, 200) Gaussian instance, ε = 0.1). Unconstrained training is the same code
with ν frozen at 0.
"""

from __future__ import annotations

import math
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator

import numpy as np
import torch
from numpy.typing import ArrayLike, NDArray

Array = NDArray[np.float64]


@dataclass
class DescendingOutcome:
    """What one primal–dual training returns. Ratios and MSEs are held-out, noise-free, float64."""

    steps: Array  # |γ_t| in layer order
    duals: Array  # ν_t, t = 1..T
    dual_history: Array  # (epochs, T): ν after each epoch's dual step
    slack_history: Array  # (epochs, T): held-out ĉ_t before each dual step
    descent_ratios: Array  # (T,): mean_b ‖e_t‖/‖e_{t−1}‖ on held-out samples
    violating_layers: int  # layers with descent ratio > 1 − ε
    mse: float  # held-out ‖x_T − x‖² / n, mean over samples
    mse_curve: Array  # (T+1,): the same for t = 0..T
    epsilon: float
    constrained: bool

    def result_fields(self) -> tuple[dict[str, float], dict[str, list[float]]]:
        """(scalars, series) under stable names, for merging into a DUGD Result."""
        scalars = {
            "descent_ratio_max": float(self.descent_ratios.max()),
            "violating_layers": float(self.violating_layers),
            "mse_descending": self.mse,
            "dual_max": float(self.duals.max()),
        }
        series = {
            "learned_steps": self.steps.tolist(),
            "descent_ratio": self.descent_ratios.tolist(),
            "dual": self.duals.tolist(),
            "mse_curve_descending": self.mse_curve.tolist(),
            "dual_max_history": self.dual_history.max(axis=1).tolist(),
            "slack_max_history": self.slack_history.max(axis=1).tolist(),
        }
        return scalars, series


def _errors(
    gammas: torch.Tensor, lam: torch.Tensor, z: torch.Tensor, noise: float, generator: torch.Generator | None
) -> list[torch.Tensor]:
    """e_0..e_T (each (batch, n)). With noise > 0, layers t < T get e_t += noise·(‖e_t‖/√n)·ξ, the
    scale detached. This noise model is ours: relative to the error, so it does not vanish as e_t
    shrinks. RobustUnrolling's LISTA adds ξ·log‖∇f‖ instead (workers/lista.py)."""
    errors = [-z]
    steps = torch.abs(gammas)
    for t in range(steps.shape[0]):
        e = (1.0 - steps[t] * lam) * errors[-1]
        if noise > 0 and t < steps.shape[0] - 1:
            scale = torch.linalg.vector_norm(e, dim=1, keepdim=True).detach() / math.sqrt(lam.shape[0])
            e = e + noise * scale * torch.randn(e.shape, generator=generator, dtype=e.dtype)
        errors.append(e)
    return errors


def _ratios(errors: list[torch.Tensor]) -> torch.Tensor:
    """mean_b ‖e_t‖/‖e_{t−1}‖ for t = 1..T."""
    norms = torch.stack([torch.linalg.vector_norm(e, dim=1) for e in errors])
    return (norms[1:] / norms[:-1]).mean(dim=1)


@contextmanager
def one_thread() -> Iterator[None]:
    """Tensors here are ~batch × n ≈ 2e4 numbers: intra-op threads only add contention (measured
    2.5 s vs 13 s for the default training on a loaded 2-core host). Restores the setting after."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def _initial_steps(init: float | str | None, lam: Array, T: int, rng: np.random.Generator) -> Array:
    if init is None:
        return np.full(T, 1.0 / lam.max())  # every layer descends: a feasible start
    if init == "random":  # 1/λ_max · U(0.5, 1.5): distinct steps that all start by descending
        return rng.uniform(0.5, 1.5, size=T) / lam.max()
    return np.full(T, float(init))


def train_descending(
    eigenvalues: ArrayLike,
    *,
    T: int,
    eps: float = 0.05,
    init: float | str | None = "random",
    lr: float = 0.02,
    batch_size: int = 200,
    epochs: int = 60,
    batches_per_epoch: int = 10,
    dual_lr: float = 0.5,
    noise: float = 0.0,
    seed: int = 0,
    heldout_samples: int = 2000,
    constrained: bool = True,
) -> DescendingOutcome:
    """Primal–dual training of T-layer DUGD with descending constraints on the spectrum of A.

    init: a step for every layer, "random" (1/λ_max · U(0.5, 1.5): breaks the permutation
    symmetry of full-depth training, domain.md §1.6), or None (1/λ_max). constrained=False freezes ν at 0.
    """
    with one_thread():
        return _train(
            np.asarray(eigenvalues, dtype=np.float64), T, eps, init, lr, batch_size, epochs,
            batches_per_epoch, dual_lr, noise, seed, heldout_samples, constrained,
        )


def _train(
    lam_np: Array, T: int, eps: float, init: float | str | None, lr: float, batch_size: int, epochs: int,
    batches_per_epoch: int, dual_lr: float, noise: float, seed: int, heldout_samples: int, constrained: bool,
) -> DescendingOutcome:
    n = lam_np.shape[0]
    generator = torch.Generator().manual_seed(seed)
    heldout_generator = torch.Generator().manual_seed(seed + 1_000_003)
    lam = torch.as_tensor(lam_np)
    gammas = torch.tensor(_initial_steps(init, lam_np, T, np.random.default_rng(seed)), requires_grad=True)
    duals = torch.zeros(T, dtype=torch.float64)
    optimizer = torch.optim.Adam([gammas], lr=lr)
    heldout = torch.randn(heldout_samples, n, generator=heldout_generator, dtype=torch.float64)
    target = 1.0 - eps
    dual_history, slack_history = [], []
    for _ in range(epochs):
        for _ in range(batches_per_epoch):
            z = torch.randn(batch_size, n, generator=generator, dtype=torch.float64)
            errors = _errors(gammas, lam, z, noise, generator)
            lagrangian = (errors[-1] ** 2).mean() + torch.dot(duals, _ratios(errors) - target)
            optimizer.zero_grad()
            lagrangian.backward()
            optimizer.step()
        with torch.no_grad():
            slack = _ratios(_errors(gammas, lam, heldout, 0.0, None)) - target
        if constrained:
            duals = torch.clamp(duals + dual_lr * slack, min=0.0)
        slack_history.append(slack.numpy().copy())
        dual_history.append(duals.numpy().copy())
    with torch.no_grad():
        errors = _errors(gammas, lam, heldout, 0.0, None)
        ratios = _ratios(errors).numpy()
        mse_curve = np.array([float((e**2).mean()) for e in errors])
    return DescendingOutcome(
        steps=np.abs(gammas.detach().numpy()),
        duals=duals.numpy(),
        dual_history=np.asarray(dual_history),
        slack_history=np.asarray(slack_history),
        descent_ratios=ratios,
        violating_layers=int(np.sum(ratios > target)),
        mse=float(mse_curve[-1]),
        mse_curve=mse_curve,
        epsilon=eps,
        constrained=constrained,
    )


def evaluate_steps(
    steps: ArrayLike, eigenvalues: ArrayLike, *, layers: int | None = None, noise: float = 0.0,
    samples: int = 2000, seed: int = 0,
) -> tuple[Array, Array]:
    """Trained steps run on a test problem: (descent ratios mean_b ‖e_t‖/‖e_{t−1}‖, t = 1..L; MSE curve
    ‖x_t − x‖²/n averaged over samples, t = 0..L), float64, no gradient.

    Robustness probes (after Hadou et al.): `eigenvalues` of another matrix of the family; `noise` > 0 adds
    our relative perturbation e_t += noise·(‖e_t‖/√n)·ξ at layers t < L (not theirs, see _errors); `layers` > T runs the schedule on,
    repeated periodically (γ_{t mod T}), as CHGD repeats Chebyshev steps.
    """
    base = np.abs(np.asarray(steps, dtype=np.float64))
    depth = base.size if layers is None else int(layers)
    if depth < 1:
        raise ValueError(f"layers: got {layers}, expected >= 1")
    schedule = torch.as_tensor(np.resize(base, depth))  # np.resize repeats the period
    lam = torch.as_tensor(np.asarray(eigenvalues, dtype=np.float64))
    generator = torch.Generator().manual_seed(seed)
    with one_thread(), torch.no_grad():
        z = torch.randn(samples, lam.shape[0], generator=generator, dtype=torch.float64)
        errors = _errors(schedule, lam, z, noise, generator)
        ratios = _ratios(errors).numpy()
        mse_curve = np.array([float((e**2).mean()) for e in errors])
    return ratios, mse_curve


__all__ = ["DescendingOutcome", "evaluate_steps", "one_thread", "train_descending"]
