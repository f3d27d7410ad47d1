"""Batched DUGD training in the eigenbasis (`expected` and `eigen` modes): many runs as one array program.

The runs of a batch share n, T and the protocol's shape (mode, training, batches_per_generation,
dtype); each has its own eigenvalues, init, lr, batch size and seed. γ is a [runs, T] array:
- the loss is the sum of the runs' losses, so its gradient row r is run r's own gradient (analytic,
  workers.optimal's formula ∂L/∂|γ_t| = −Σ_i 2 w_i λ_i P_i Π_{s≠t}(1 − |γ_s|λ_i), no autograd);
- each run has its own Adam (its lr; one shared step counter, as torch keeps per tensor, and every run
  of a batch takes the same steps);
- `eigen` draws each run's χ² weights from its own generator default_rng([seed, 3]), a generation's
  (batches_per_generation, n) block at a time, in the same order whatever the batch;
- every operation is row-wise, so a run's numbers do not depend on the other runs of its batch
  (bitwise on the numpy backend: tests/workers_tests/test_units.py).

A run that stops (its checkpoint says so) leaves the batch at the end of that generation. Arithmetic is in
the runs' dtype (expected: float64; eigen: `dtype`, float32 by default as the torch path before it).
Backends: numpy on the CPU, torch for `device: cuda` (the same operations; testable on the CPU).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from workers.optimal import leave_one_out

Array = NDArray[np.float64]
_BETAS, _EPS = (0.9, 0.999), 1e-8  # torch.optim.Adam defaults, as in the notebook
CHUNK_ROWS = 64  # runs whose [rows, depth, n] factors are worked on at once: larger batches leave the cache
DRAW_BLOCK_ELEMENTS = 4_000_000  # χ² weights held at once (steps × runs × n), to bound memory at large batches


@dataclass
class BatchRun:
    """One run of a batch: its eigenvalues, initial γ, lr, batch size, seed and checkpoint."""

    eigenvalues: Array
    gamma0: Array
    lr: float
    batch_size: int
    seed: int
    checkpoint: Callable[[int, Array], bool] | None = None  # (generation index, γ after it) -> stop?
    gammas: list[Array] = field(default_factory=list)  # γ after each generation trained (float64)
    grad_norms: list[float] = field(default_factory=list)  # ‖∂L/∂γ‖ at each generation's last step


class NumpyBackend:
    """Array operations of a batch on numpy (CPU)."""

    name = "cpu"
    chunk_rows: int | None = CHUNK_ROWS  # None: the whole batch at once

    def __init__(self, dtype: str):
        self.dtype = np.dtype(dtype)

    def array(self, values: Any) -> Any:
        """A new contiguous array (never a view of `values`)."""
        return np.array(values, dtype=self.dtype, order="C", copy=True)

    def empty(self, shape: tuple[int, ...]) -> Any:
        return np.empty(shape, dtype=self.dtype)

    def numpy(self, values: Any) -> Array:
        return np.asarray(values, dtype=np.float64)

    def take(self, values: Any, rows: Array) -> Any:
        return values[rows]

    def columns(self, lam: Any) -> Any:
        """[runs, 2, n]: rows (1, −λ_ri), so that factors() is one small matrix product per run."""
        return self.array(np.stack([np.ones(lam.shape), -self.numpy(lam)], axis=1))

    def factors(self, steps: Any, columns: Any, out: Any) -> None:
        """out[r, t, i] = 1 − |γ_rt| λ_ri, as [1, |γ_rt|] @ columns[r] (one BLAS pass over out)."""
        rows = np.empty(steps.shape + (2,), dtype=self.dtype)
        rows[:, :, 0] = 1.0
        np.abs(steps, out=rows[:, :, 1])
        np.matmul(rows, columns, out=out)

    def prod(self, values: Any, out: Any) -> None:
        np.prod(values, axis=1, out=out)

    def reciprocal(self, values: Any) -> None:
        np.reciprocal(values, out=values)

    def matvec(self, matrices: Any, vectors: Any) -> Any:
        return np.matmul(matrices, vectors[:, :, None])[:, :, 0]

    def sign(self, values: Any) -> Any:
        return np.sign(values)

    def sqrt(self, values: Any) -> Any:
        return np.sqrt(values)

    def finite_rows(self, values: Any) -> Array:
        return np.isfinite(values).all(axis=1)


class TorchBackend(NumpyBackend):
    """The same operations on torch tensors (a GPU with `device: cuda`; the CPU in tests)."""

    chunk_rows = None  # a GPU wants the whole batch in one kernel

    def __init__(self, dtype: str, device: str):
        import torch

        self.torch, self.name = torch, device
        self.dtype = torch.float32 if dtype == "float32" else torch.float64

    def array(self, values: Any) -> Any:
        return self.torch.tensor(np.asarray(values), dtype=self.dtype, device=self.name)

    def empty(self, shape: tuple[int, ...]) -> Any:
        return self.torch.empty(shape, dtype=self.dtype, device=self.name)

    def numpy(self, values: Any) -> Array:
        return values.detach().to("cpu", self.torch.float64).numpy()

    def take(self, values: Any, rows: Array) -> Any:
        return values[self.torch.as_tensor(rows, device=values.device)]

    def columns(self, lam: Any) -> Any:
        return self.torch.stack([self.torch.ones_like(lam), -lam], dim=1)

    def factors(self, steps: Any, columns: Any, out: Any) -> None:
        rows = self.torch.stack([self.torch.ones_like(steps), steps.abs()], dim=2)
        self.torch.matmul(rows, columns, out=out)

    def prod(self, values: Any, out: Any) -> None:
        self.torch.prod(values, 1, out=out)

    def reciprocal(self, values: Any) -> None:
        values.reciprocal_()

    def matvec(self, matrices: Any, vectors: Any) -> Any:
        return self.torch.matmul(matrices, vectors[:, :, None])[:, :, 0]

    def sign(self, values: Any) -> Any:
        return self.torch.sign(values)

    def sqrt(self, values: Any) -> Any:
        return self.torch.sqrt(values)

    def finite_rows(self, values: Any) -> Array:
        return self.torch.isfinite(values).all(dim=1).cpu().numpy()


def backend_for(device: str, dtype: str) -> NumpyBackend:
    """numpy for `cpu`; torch on the GPU for `cuda` (an error without one) and for `auto` with one."""
    if device == "cpu":
        return NumpyBackend(dtype)
    import torch

    if torch.cuda.is_available():
        return TorchBackend(dtype, "cuda")
    if device == "cuda":
        raise RuntimeError("device: got 'cuda', expected a visible CUDA device (none found)")
    return NumpyBackend(dtype)


class BatchedAdam:
    """torch.optim.Adam (no weight decay, no amsgrad) on a [runs, T] parameter, one lr per run.

    One step counter for the batch, as torch keeps per tensor. Only a prefix [:, :depth] is updated:
    entries that have never had a gradient have zero moments, so torch leaves them unchanged."""

    def __init__(self, backend: NumpyBackend, shape: tuple[int, int], lr: Sequence[float],
                 betas: tuple[float, float] = _BETAS, eps: float = _EPS):
        self.backend, self.betas, self.eps = backend, betas, eps
        self.lr = backend.array(np.asarray(lr, dtype=np.float64)[:, None])  # on the device: no copy per step
        self.exp_avg, self.exp_avg_sq = backend.array(np.zeros(shape)), backend.array(np.zeros(shape))
        self.step_count = 0

    def keep(self, rows: Array) -> None:
        """Drop every run but `rows` (in that order)."""
        self.lr = self.backend.take(self.lr, rows)
        self.exp_avg = self.backend.take(self.exp_avg, rows)
        self.exp_avg_sq = self.backend.take(self.exp_avg_sq, rows)

    def step(self, param: Any, grad: Any) -> None:
        """Update param[:, :grad.shape[1]] in place."""
        beta1, beta2 = self.betas
        depth = grad.shape[1]
        self.step_count += 1
        exp_avg, exp_avg_sq = self.exp_avg[:, :depth], self.exp_avg_sq[:, :depth]
        exp_avg += (1.0 - beta1) * (grad - exp_avg)  # torch: exp_avg.lerp_(grad, 1 - beta1)
        exp_avg_sq *= beta2
        exp_avg_sq += (1.0 - beta2) * grad * grad
        step_size = self.lr / (1.0 - beta1**self.step_count)
        denom = self.backend.sqrt(exp_avg_sq) / math.sqrt(1.0 - beta2**self.step_count) + self.eps
        param[:, :depth] -= step_size * exp_avg / denom


def gradients(backend: NumpyBackend, gamma: Any, lam: Any, weights: Any, depth: int, work: Any, poly: Any,
              columns: Any) -> Any:
    """∂L_r/∂γ_rt, t < depth, of L_r = Σ_i w_ri P_r(λ_ri)² for every run r (weights: [runs, n]).

    work ([runs, ≥depth, n]) and poly ([runs, n]) are scratch; columns = backend.columns(lam).
    Leave-one-out products come from P/(1 − |γ_t|λ) (as torch's prod backward without zeros); a run
    with a factor exactly 0 (a root on an eigenvalue) uses prefix × suffix products instead."""
    factors = work[:, :depth, :]
    backend.factors(gamma[:, :depth], columns, factors)
    backend.prod(factors, poly)
    weighted = weights * poly
    weighted *= poly
    weighted *= lam
    weighted *= 2.0
    backend.reciprocal(factors)  # a factor 0 gives inf here, caught just below
    grad = backend.matvec(factors, weighted)
    finite = backend.finite_rows(grad)
    if not finite.all():  # a factor exactly 0 gives 0/0: those rows again without division (not diverged ones)
        for row in np.flatnonzero(~finite & backend.finite_rows(poly)):
            grad[row] = backend.array(_exact_row(backend, gamma[row, :depth], lam[row], weights[row]))
    grad *= -backend.sign(gamma[:, :depth])
    return grad


def _exact_row(backend: NumpyBackend, gamma: Any, lam: Any, weights: Any) -> Array:
    steps, eigenvalues, w = (backend.numpy(v) for v in (gamma, lam, weights))
    factors = 1.0 - eigenvalues[:, None] * np.abs(steps)
    poly = factors.prod(axis=1)
    return (2.0 * w * eigenvalues * poly) @ leave_one_out(factors)


def train_batch(runs: list[BatchRun], depths: list[int], steps_per_generation: int, mode: str,
                backend: NumpyBackend) -> None:
    """Train every run (γ [runs, T]) through generations of `depths`; fills each run's gammas and
    grad_norms. After each generation a run's checkpoint may stop it; it then leaves the batch.
    A diverging run overflows to inf / NaN in its own row only (no warnings: it is reported FAILED)."""
    with np.errstate(all="ignore"):
        _train_batch(runs, depths, steps_per_generation, mode, backend)


def _train_batch(runs: list[BatchRun], depths: list[int], steps_per_generation: int, mode: str,
                 backend: NumpyBackend) -> None:
    n = runs[0].eigenvalues.shape[0]
    active = list(range(len(runs)))
    gamma = backend.array(np.stack([run.gamma0 for run in runs]))
    lam = backend.array(np.stack([run.eigenvalues for run in runs]))
    adam = BatchedAdam(backend, tuple(gamma.shape), [run.lr for run in runs])
    generators = [np.random.default_rng([run.seed, 3]) for run in runs]
    chunk = backend.chunk_rows or len(runs)
    work, poly = backend.empty((min(chunk, len(runs)), max(depths), n)), backend.empty((min(chunk, len(runs)), n))
    uniform = backend.array(np.full((len(runs), n), 1.0 / n))
    columns = backend.columns(lam)
    for generation, depth in enumerate(depths):
        grad = None
        for weights in _weights(mode, [runs[r] for r in active], [generators[r] for r in active],
                                steps_per_generation, n, backend, uniform):
            if len(active) <= chunk:
                grad = gradients(backend, gamma, lam, weights, depth, work[: len(active)], poly[: len(active)], columns)
            else:  # row blocks: every operation is row-wise, so the numbers are the same
                grad = backend.empty((len(active), depth))
                for start in range(0, len(active), chunk):
                    rows = slice(start, min(start + chunk, len(active)))
                    size = rows.stop - rows.start
                    grad[rows] = gradients(backend, gamma[rows], lam[rows], weights[rows], depth, work[:size],
                                           poly[:size], columns[rows])
            adam.step(gamma, grad)
        gammas, norms = backend.numpy(gamma), np.linalg.norm(backend.numpy(grad), axis=1)
        keep = []
        for row, index in enumerate(active):
            run = runs[index]
            run.gammas.append(gammas[row].copy())
            run.grad_norms.append(float(norms[row]))
            if run.checkpoint is None or not run.checkpoint(generation, np.abs(gammas[row])):
                keep.append(row)
        if len(keep) < len(active):
            if not keep:
                return
            rows = np.asarray(keep)
            active = [active[row] for row in keep]
            gamma, lam, uniform, columns = (backend.take(v, rows) for v in (gamma, lam, uniform, columns))
            adam.keep(rows)


def _weights(mode: str, runs: list[BatchRun], generators: list[np.random.Generator], steps: int, n: int,
             backend: NumpyBackend, uniform: Any):
    """The per-step weights [runs, n] of one generation: 1/n (expected), or each run's χ²(B)/(B·n)
    draws, a block of steps at a time (the same numbers as one (steps, n) draw per run)."""
    if mode == "expected":
        for _ in range(steps):
            yield uniform
        return
    block = max(1, min(steps, DRAW_BLOCK_ELEMENTS // max(1, len(runs) * n)))
    for start in range(0, steps, block):
        size = min(block, steps - start)
        draws = np.empty((size, len(runs), n))
        for row, (run, generator) in enumerate(zip(runs, generators)):
            draws[:, row, :] = generator.chisquare(run.batch_size, (size, n)) * (1.0 / (run.batch_size * n))
        weights = backend.array(draws)
        for step in range(size):
            yield weights[step]
