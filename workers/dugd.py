"""Training of deep-unfolded GD (domain.md §1): the authors' protocol in three modes.

- `dense`: the full recursion x_{t+1} = x_t − |γ_t| H̃ᵀ(H̃x_t − y) on fresh x ~ N(0, I) per mini-batch,
  loss nn.MSELoss()(x_g, x), as in DUGD_LMS_example.ipynb (row vectors, H = H̃ᵀ).
- `eigen`: the same sampling in the eigenbasis: loss Σ_i P_g(λ_i)² w_i with w_i = mean_b z_bi²/n,
  z ~ N(0, I_n). Σ_b z_bi² is χ²(batch_size), so w is drawn as χ²(B)/(B·n) directly: the same law as
  the notebook's batch, without drawing B·n normals per step. Arithmetic in `dtype`.
- `expected`: the exact expected loss (1/n) Σ_i P_g(λ_i)² (an infinite batch), float64.
Both run on workers/batched.py (analytic gradient, an Adam that mirrors torch.optim.Adam step for
step, many runs at once; torch eager cost ~200-500 µs per step here); one run is a batch of one.
`dense` runs torch (imported only then).

Protocol (domain.md §1.4): generations g = 1..T of `batches_per_generation` Adam steps at depth g
(`incremental`), or T such blocks at depth T (`full`). One Adam, created once and never reset, on one
γ tensor: entries beyond the depth get zero gradient and keep their init; bias correction runs per
tensor. init=random: γ_t ~ U[0.5, 1.5] / mean(λ), from `seed`. init=auto: every γ_t starts at the
optimal constant step 2/(λ_min + λ_max) of the reference edges (resolved_init).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray

from workers.batched import BatchedAdam, BatchRun, NumpyBackend, backend_for, train_batch
from workers.chebyshev import optimal_constant_step
from workers.metrics import error_curve, residual_polynomials
from workers.spectra import Problem

Array = NDArray[np.float64]
# on_checkpoint(step, value) -> stop?: called after generation `step` (1-based) with the exact expected
# loss (1/n) Σ P_g(λ_i)² of the trained prefix at that generation's depth (incremental: depth = step;
# full: depth T). Returning True stops training there (e.g. an early-stopping decision from outside).
OnCheckpoint = Callable[[int, float], bool]
VALIDATION_SAMPLES = 10_000  # the fixed validation batch (its χ² weights), shared by every mode


@dataclass(frozen=True)
class TrainingConfig:
    """The protocol knobs, shared by all three modes."""

    T: int = 25
    mode: Literal["dense", "eigen", "expected"] = "eigen"
    training: Literal["incremental", "full"] = "incremental"
    init: float | str = 0.3
    lr: float = 0.002
    batch_size: int = 200
    batches_per_generation: int = 500
    seed: int = 0
    dtype: Literal["float32", "float64"] = "float32"
    device: Literal["cpu", "cuda", "auto"] = "cpu"

    @classmethod
    def from_spec(cls, spec: Any) -> "TrainingConfig":
        return cls(**{name: getattr(spec, name) for name in cls.__dataclass_fields__})

    def depths(self) -> list[int]:
        """Network depth of each generation."""
        return list(range(1, self.T + 1)) if self.training == "incremental" else [self.T] * self.T


@dataclass
class Training:
    """What training produced; per-generation arrays have one row per generation."""

    gamma: Array  # raw trained parameter, layer order (the recursion uses |γ|)
    gamma_by_generation: Array  # (generations, T)
    validation_loss: Array  # fixed validation batch, at the generation's depth, float64
    expected_loss: Array  # exact (1/n) Σ P_g², at the generation's depth
    grad_norm: Array  # ‖∂loss/∂γ‖ at the generation's last step
    adam_steps: int
    device: str
    dtype: str
    stopped_at: int | None = None  # the generation after which on_checkpoint asked to stop

    @property
    def steps(self) -> Array:
        return np.abs(self.gamma)


def resolved_init(init: float | str, problem: Problem) -> float | str:
    """init=auto -> 2/(λ_min + λ_max) of the problem's reference edges; anything else unchanged.

    Why this step: it scales with the spectrum, so the first layer contracts every mode (by at most
    (κ−1)/(κ+1)) whatever κ and normalisation, where the paper's 0.3 (tuned to λ_max ≈ 5.7) makes
    |1 − γλ| ≫ 1 once λ_max ≫ 7 and training starts far outside the stable region. On the paper's
    own matrix it gives 0.34, close to 0.3. It is a constant init, so incremental training is needed
    to break the permutation symmetry, as with 0.3 (domain.md §1.6)."""
    if init == "auto":
        return optimal_constant_step(*problem.reference_edges)
    return init


def initial_gamma(config: TrainingConfig, problem: Problem) -> Array:
    """Constant init (auto: resolved_init), or init=random: U[0.5, 1.5] × 1/mean(λ) seeded by `seed`."""
    init = resolved_init(config.init, problem)
    if init == "random":
        rng = np.random.default_rng([config.seed, 1])
        return rng.uniform(0.5, 1.5, config.T) / float(np.mean(problem.eigenvalues))
    return np.full(config.T, float(init))


def train(problem: Problem, config: TrainingConfig, on_checkpoint: OnCheckpoint | None = None) -> Training:
    """Run the protocol in `config.mode`; deterministic given (problem, config). With on_checkpoint,
    training stops after the first generation at which it returns True (stopped_at; the arrays then
    hold only the generations trained)."""
    checkpoint = _checkpoints(problem.eigenvalues, config, on_checkpoint)
    if config.mode == "dense":
        gammas, grad_norms, device = _train_torch(problem, config, initial_gamma(config, problem), checkpoint)
        return training_record(problem, config, gammas, grad_norms, device, config.dtype)
    backend = backend_for(batch_device(config), batch_dtype(config))
    run = batch_run(problem, config, checkpoint)
    train_batch([run], config.depths(), config.batches_per_generation, config.mode, backend)
    return training_record(problem, config, run.gammas, run.grad_norms, backend.name, batch_dtype(config))


def batch_dtype(config: TrainingConfig) -> str:
    """expected: float64 (exact loss); eigen: the run's dtype."""
    return "float64" if config.mode == "expected" else config.dtype


def batch_device(config: TrainingConfig) -> str:
    """expected: the CPU (its `device` is inactive); eigen: the run's device."""
    return "cpu" if config.mode == "expected" else config.device


def batch_run(problem: Problem, config: TrainingConfig, checkpoint: Callable[[int, Array], bool] | None) -> BatchRun:
    """The run of a batch (workers/batched.py) that trains this (problem, config)."""
    return BatchRun(eigenvalues=problem.eigenvalues, gamma0=initial_gamma(config, problem), lr=config.lr,
                    batch_size=config.batch_size, seed=config.seed, checkpoint=checkpoint)


def training_record(problem: Problem, config: TrainingConfig, gammas: list[Array], grad_norms: list[float],
                    device: str, dtype: str) -> Training:
    """A point's Training from γ after each of its generations (a prefix of a deeper training is cut
    to config.T entries); the validation loss uses the point's own seed."""
    lam = problem.eigenvalues
    n = lam.shape[0]
    gammas = [np.asarray(g, dtype=np.float64)[: config.T] for g in gammas]
    validation = np.random.default_rng([config.seed, 2]).chisquare(VALIDATION_SAMPLES, n) / (VALIDATION_SAMPLES * n)
    depths = config.depths()[: len(gammas)]
    validation_loss = np.array([error_curve(residual_polynomials(g[:d], lam), validation)[-1]
                                for g, d in zip(gammas, depths)])
    return Training(
        gamma=gammas[-1].copy(), gamma_by_generation=np.array(gammas), validation_loss=validation_loss,
        expected_loss=np.array([expected_loss(g, d, lam) for g, d in zip(gammas, depths)]), grad_norm=np.array(grad_norms[: len(gammas)]),
        adam_steps=len(depths) * config.batches_per_generation, device=device, dtype=dtype,
        stopped_at=len(gammas) if len(gammas) < config.T else None,
    )


def _checkpoints(lam: Array, config: TrainingConfig, on_checkpoint: OnCheckpoint | None) -> Callable[[int, Array], bool]:
    """(generation index, γ after it) -> stop?; never stops without on_checkpoint (and costs nothing)."""
    if on_checkpoint is None:
        return lambda generation, gamma: False
    depths = config.depths()

    def checkpoint(generation: int, gamma: Array) -> bool:
        return bool(on_checkpoint(generation + 1, expected_loss(gamma, depths[generation], lam)))

    return checkpoint


def expected_loss(gamma: Array, depth: int, lam: Array) -> float:
    """The exact expected loss (1/n) Σ_i P_depth(λ_i)² of the prefix γ[:depth], float64 (what
    on_checkpoint receives and Training.expected_loss holds)."""
    return float(error_curve(residual_polynomials(np.asarray(gamma, dtype=np.float64)[:depth], lam),
                             np.full(lam.shape[0], 1.0 / lam.shape[0]))[-1])


class NumpyAdam:
    """torch.optim.Adam on one float64 vector: workers.batched.BatchedAdam with one row."""

    def __init__(self, size: int, lr: float):
        self._adam = BatchedAdam(NumpyBackend("float64"), (1, size), [lr])

    def step(self, param: Array, grad: Array) -> None:
        """Update param[:len(grad)] in place."""
        self._adam.step(param[None, :], grad[None, :])


def resolve_device(requested: str) -> str:
    """`auto` picks cuda when present; `cuda` without a GPU is an error, not a silent fallback."""
    import torch

    if requested == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if requested == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device: got 'cuda', expected a visible CUDA device (none found)")
    return requested


def _train_torch(problem: Problem, config: TrainingConfig, gamma0: Array,
                 checkpoint: Callable[[int, Array], bool]) -> tuple[list[Array], list[float], str]:
    import torch
    import torch._dynamo  # noqa: F401 - torch.optim imports it on first use (~1.5 s)

    device = resolve_device(config.device)
    dtype = torch.float32 if config.dtype == "float32" else torch.float64
    gamma = torch.nn.Parameter(torch.tensor(gamma0, dtype=dtype, device=device))
    optimizer = torch.optim.Adam([gamma], lr=config.lr)  # created once, never reset
    loss_at_depth = _dense_loss(problem, config, dtype, device)
    gammas, grad_norms = [], []
    for generation, depth in enumerate(config.depths()):
        batch_losses = loss_at_depth(generation, depth)
        for batch in range(config.batches_per_generation):
            optimizer.zero_grad()
            loss = batch_losses(gamma, batch)
            loss.backward()
            optimizer.step()
        gammas.append(gamma.detach().to("cpu", torch.float64).numpy().copy())
        grad_norms.append(float(gamma.grad.norm()))
        if checkpoint(generation, np.abs(gammas[-1])):
            break
    return gammas, grad_norms, device


def _dense_loss(problem: Problem, config: TrainingConfig, dtype: Any, device: str):
    """Faithful to the notebook: fresh x ~ N(0, I) per batch, y = xH, s ← s − |γ_t|(sH − y)Hᵀ."""
    import torch

    h = torch.tensor(problem.factor().T, dtype=dtype, device=device)  # H (n×m), row-vector form
    generator = torch.Generator(device=device).manual_seed(config.seed)
    n = problem.n

    def for_generation(generation: int, depth: int):
        def batch_loss(gamma, batch: int):
            x = torch.randn(config.batch_size, n, generator=generator, dtype=dtype, device=device)
            y = x @ h
            s = torch.zeros_like(x)
            for t in range(depth):
                s = s - gamma[t].abs() * ((s @ h - y) @ h.T)
            return torch.nn.functional.mse_loss(s, x)

        return batch_loss

    return for_generation
