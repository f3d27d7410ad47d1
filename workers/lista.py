"""LISTA sparse coding with descending constraints (Hadou et al.; domain.md §7.2), run as
RobustUnrolling's `LISTA.py` / `training.py` / `testing.py` run it, on synthetic data made in the run.

Data. A dictionary D ∈ R^{n×m}, entries U[0, 1) (their `np.random.rand(N, int(1.2 N))`). Their
signals are CIFAR-10 grey images in [0, 1]^1024; ours are synthetic (no download, seeded): a planted
code s with round(sparsity·m) entries U[0, 1) on a random support, x = clip((2/k) D s + w, 0, 1),
scaled so a pixel averages 1/2, with w at `snr_db` (none by default: their images carry no added
noise). Targets z* = ISTA on ½‖x − Dz‖² + α‖z‖₁ from z = 0, step 1/(1.1‖D‖_F²) (their `torch.norm(W, p=2)`
of a matrix is the Frobenius norm), α = 0.5, `ista_iterations` of them (theirs: 3000), float64.

Model (their `LISTA` class). Internally on 100·x and 100·z; start Y_0 ~ N(0, I); layer l:
Y ← S_θl(W1_l Y + W2_l X), W1, W2, θ initialised N(0, 0.01²). Outputs y_l = Y_l / 100, except that
their record of the start, y_0, is Y_0 itself (not divided): the first layer's descent ratio is taken
against that. Noisy outputs (training of `noisy` and `constrained`, their --noisyOuts): after every
layer but the last, Y += train_noise · ξ · log‖∇f(Y)‖, f = ½‖X − DY‖², the norm per sample, detached.

Training. ½ mean_b ‖y_L − z*‖², Adam every mini-batch over the training set in a fixed order; for
`constrained` plus Σ_l ν_l (mean_b ‖y_l − z*‖/‖y_{l−1} − z*‖ − (1 − ε)), and once per epoch
ν ← max(0, ν + dual_lr · ĉ) with ĉ recomputed over the whole training set, noisy outputs included, no
grad. After every epoch the noise-free validation loss picks the checkpoint kept (theirs: the best).

Tests (float64, the trained weights cast up). Nominal: the per-layer mean distance ‖y_l − z*‖ and
descent ratios. Perturbed (`forward_noise`): start β·N(0, I) and every layer output but the last
+= β·ξ·log‖∇f‖, for each β of BETAS. Out of distribution (their OOD loop): x̃ = clip(x + p·ξ, 0, 1)
for each p of OOD_LEVELS, the distance of y_L(x̃) to the clean z* (what their figure plots) and to
z̃* = ISTA(x̃) (what its axis label names).

A run whose kept checkpoint ends no nearer z* than the zero code does (final_distance ≥ target_norm,
e.g. a huge lr) is FAILED, "diverged: …", with its numbers kept.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass

import numpy as np
import torch

from workers.descending import one_thread
from workers.fixed_point import soft_threshold
from workers.result import Result
from workers.specs import ListaSpec

SCALE = 100.0  # LISTA.py runs on 100·x and returns Y / 100
INIT_STD = 0.01  # LISTA.__init__'s sigma
STEP_MARGIN = 1.1  # ISTA step 1 / (1.1 ‖D‖_F²)
BETAS = (0.01, 0.1, 1.0, 10.0, 100.0, 1000.0)  # testing.py
OOD_LEVELS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6)  # testing.py's p_size
# Independent random streams: data and dictionary from matrix_seed; training, tests from seed.
_DATA, _TRAIN, _TEST = 0, 1, 2


@dataclass
class SparseCoding:
    """A dictionary and its train / validation / test sets (rows are samples), float64."""

    dictionary: np.ndarray  # (n, m)
    x: dict[str, np.ndarray]  # split -> (samples, n)
    z: dict[str, np.ndarray]  # split -> (samples, m), ISTA targets


def code_length(spec: ListaSpec) -> int:
    return spec.m if spec.m is not None else int(1.2 * spec.n)  # their int(N*1.2): 1228 for 1024


def ista(x: np.ndarray, dictionary: np.ndarray, alpha: float, iterations: int) -> np.ndarray:
    """RobustUnrolling's ISTA targets (rows are samples), float64."""
    d = torch.as_tensor(dictionary, dtype=torch.float64)
    step = 1.0 / (STEP_MARGIN * float(torch.sum(d * d)))
    gram = torch.eye(d.shape[1], dtype=torch.float64) - step * (d.T @ d)
    drive = step * (torch.as_tensor(x, dtype=torch.float64) @ d)
    z = torch.zeros(x.shape[0], d.shape[1], dtype=torch.float64)
    for _ in range(iterations):
        z = soft_threshold(z @ gram + drive, alpha * step)  # gram is symmetric
    return z.numpy()


def make_data(spec: ListaSpec) -> SparseCoding:
    rng = np.random.default_rng([spec.matrix_seed, _DATA])
    n, m = spec.n, code_length(spec)
    dictionary = rng.random((n, m))
    k = max(1, round(spec.sparsity * m))
    xs, zs = {}, {}
    for split, count in (("train", spec.train_samples), ("valid", spec.valid_samples), ("test", spec.test_samples)):
        codes = np.zeros((count, m))
        support = np.argsort(rng.random((count, m)), axis=1)[:, :k]
        np.put_along_axis(codes, support, rng.random((count, k)), axis=1)
        clean = (2.0 / k) * codes @ dictionary.T
        if spec.snr_db is not None:
            power = np.mean(clean**2, axis=1, keepdims=True)
            clean = clean + rng.standard_normal(clean.shape) * np.sqrt(power * 10 ** (-spec.snr_db / 10))
        xs[split] = np.clip(clean, 0.0, 1.0)
        zs[split] = ista(xs[split], dictionary, spec.alpha, spec.ista_iterations)
    return SparseCoding(dictionary=dictionary, x=xs, z=zs)


class Lista(torch.nn.Module):
    """Their LISTA: per layer W1 (m×m), W2 (m×n), θ (m), on rows of samples."""

    def __init__(self, layers: int, n: int, m: int, generator: torch.Generator) -> None:
        super().__init__()
        self.w1 = torch.nn.Parameter(torch.randn(layers, m, m, generator=generator) * INIT_STD)
        self.w2 = torch.nn.Parameter(torch.randn(layers, m, n, generator=generator) * INIT_STD)
        self.theta = torch.nn.Parameter(torch.randn(layers, m, generator=generator) * INIT_STD)

    def forward(  # type: ignore[override]
        self, x: torch.Tensor, dictionary: torch.Tensor, *, start: float, noise: float, generator: torch.Generator
    ) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """(outs y_0..y_L, layer outputs before their noise y'_1..y'_L). y_0 is the internal start, as
        theirs records it. start scales Y_0 ~ N(0, I); noise scales ξ·log‖∇f(Y)‖ after layers l < L."""
        big_x = SCALE * x
        y = start * torch.randn(x.shape[0], self.w1.shape[1], generator=generator, dtype=x.dtype)
        outs, clean = [y], []
        layers = self.w1.shape[0]
        for layer in range(layers):
            y = soft_threshold(y @ self.w1[layer].T + big_x @ self.w2[layer].T, self.theta[layer])
            clean.append(y / SCALE)
            if noise > 0 and layer < layers - 1:
                with torch.no_grad():
                    grad = torch.linalg.vector_norm((y @ dictionary.T - big_x) @ dictionary, dim=1, keepdim=True)
                y = y + noise * torch.randn(y.shape, generator=generator, dtype=y.dtype) * torch.log(grad)
            outs.append(y / SCALE)
        return outs, clean


def distances(outs: list[torch.Tensor], target: torch.Tensor) -> torch.Tensor:
    """(L+1, samples): ‖y_l − z*‖ per sample."""
    return torch.stack([torch.linalg.vector_norm(y - target, dim=1) for y in outs])


def descent_ratios(outs: list[torch.Tensor], target: torch.Tensor) -> torch.Tensor:
    """(L,): mean_b ‖y_l − z*‖ / ‖y_{l−1} − z*‖, the constrained quantity (their distancePenalty + 1 − ε)."""
    d = distances(outs, target)
    return (d[1:] / d[:-1]).mean(dim=1)


def loss_of(outs: list[torch.Tensor], target: torch.Tensor) -> torch.Tensor:
    """Their loss_function: ½ mean_b ‖y_L − z*‖²."""
    return 0.5 * (torch.linalg.vector_norm(outs[-1] - target, dim=1) ** 2).mean()


@dataclass
class Training:
    model: Lista
    duals: np.ndarray  # (L,)
    dual_max_history: list[float]
    validation_loss: list[float]
    best_epoch: int


def train(spec: ListaSpec, data: SparseCoding) -> Training:
    generator = torch.Generator().manual_seed(int(np.random.default_rng([spec.seed, _TRAIN]).integers(2**62)))
    m = code_length(spec)
    model = Lista(spec.layers, spec.n, m, generator)
    d = torch.as_tensor(data.dictionary, dtype=torch.float32)
    x, z = (torch.as_tensor(data.x["train"], dtype=torch.float32), torch.as_tensor(data.z["train"], dtype=torch.float32))
    xv, zv = (torch.as_tensor(data.x["valid"], dtype=torch.float32), torch.as_tensor(data.z["valid"], dtype=torch.float32))
    noise = 0.0 if spec.model == "unconstrained" else spec.train_noise
    constrained = spec.model == "constrained"
    duals = torch.zeros(spec.layers)
    optimizer = torch.optim.Adam(model.parameters(), lr=spec.lr)
    batches = max(1, spec.train_samples // spec.batch_size)
    best, best_state, best_epoch = math.inf, copy.deepcopy(model.state_dict()), -1
    validation, dual_history = [], []
    for epoch in range(spec.epochs):
        for batch in range(batches):
            rows = slice(batch * spec.batch_size, (batch + 1) * spec.batch_size)
            outs, _ = model(x[rows], d, start=1.0, noise=noise, generator=generator)
            objective = loss_of(outs, z[rows])
            if constrained:
                objective = objective + torch.dot(duals, descent_ratios(outs, z[rows]) - (1.0 - spec.eps))
            optimizer.zero_grad()
            objective.backward()
            optimizer.step()
        with torch.no_grad():
            if constrained:
                rows = slice(0, batches * spec.batch_size)
                outs, _ = model(x[rows], d, start=1.0, noise=noise, generator=generator)
                slack = descent_ratios(outs, z[rows]) - (1.0 - spec.eps)
                duals = torch.clamp(duals + spec.dual_lr * slack, min=0.0)
            dual_history.append(float(duals.max()))
            loss = float(loss_of(model(xv, d, start=1.0, noise=0.0, generator=generator)[0], zv))
        validation.append(loss)
        if loss < best:
            best, best_state, best_epoch = loss, copy.deepcopy(model.state_dict()), epoch
    model.load_state_dict(best_state)
    return Training(model, duals.numpy().astype(np.float64), dual_history, validation, best_epoch)


def _level_name(level: float) -> str:
    return f"{level:g}"


def evaluate(spec: ListaSpec, data: SparseCoding, model: Lista) -> tuple[dict[str, float], dict[str, list[float]]]:
    """The float64 tests of the module docstring: (scalars, series)."""
    model = copy.deepcopy(model).double()
    generator = torch.Generator().manual_seed(int(np.random.default_rng([spec.seed, _TEST]).integers(2**62)))
    rng = np.random.default_rng([spec.seed, _TEST])
    d = torch.as_tensor(data.dictionary)
    x, z = torch.as_tensor(data.x["test"]), torch.as_tensor(data.z["test"])
    scalars: dict[str, float] = {}
    series: dict[str, list[float]] = {}
    with torch.no_grad():
        outs, _ = model(x, d, start=1.0, noise=0.0, generator=generator)
        curve = distances(outs, z).mean(dim=1)
        ratios = descent_ratios(outs, z)
        nominal = float(curve[-1])
        series["distance_curve"] = curve.tolist()
        series["descent_ratio"] = ratios.tolist()
        scalars.update(final_distance=nominal, test_loss=float(loss_of(outs, z)), descent_ratio_max=float(ratios.max()),
                       violating_layers=float(torch.sum(ratios > 1.0 - spec.eps)),
                       target_norm=float(torch.linalg.vector_norm(z, dim=1).mean()))
        # the constraint as trained: under the training noise (train_noise; for LISTA its default)
        series["descent_ratio_noisy"] = descent_ratios(
            model(x, d, start=1.0, noise=spec.train_noise, generator=generator)[0], z).tolist()
        by_beta, spread, l1 = [], [], []
        for beta in sorted({*BETAS, spec.beta}):
            outs, clean = model(x, d, start=beta, noise=beta, generator=generator)
            final = torch.linalg.vector_norm(outs[-1] - z, dim=1)
            if beta in BETAS:
                by_beta.append(float(final.mean()))
                spread.append(float(final.std()))
                l1.append(float(torch.linalg.vector_norm(outs[-1], ord=1, dim=1).mean()))
                scalars[f"distance_beta_{_level_name(beta)}"] = float(final.mean())
            if beta == spec.beta:
                scalars["perturbed_distance"] = float(final.mean())
                scalars["degradation"] = float(final.mean()) / nominal
                # did layer l, from its (noisy) input, end nearer z* than that input? (their descentPercentage)
                before, after = distances(outs[:-1], z), distances(clean, z)
                series["descending_fraction"] = (after < before).double().mean(dim=1).tolist()
        series.update(distance_by_beta=by_beta, distance_std_by_beta=spread, l1_by_beta=l1)
        to_clean, to_perturbed = [], []
        for level in sorted({*OOD_LEVELS, spec.ood_level}):
            shifted = np.clip(data.x["test"] + level * rng.standard_normal(data.x["test"].shape), 0.0, 1.0)
            final = model(torch.as_tensor(shifted), d, start=1.0, noise=0.0, generator=generator)[0][-1]
            clean_distance = float(torch.linalg.vector_norm(final - z, dim=1).mean())
            shifted_target = torch.as_tensor(ista(shifted, data.dictionary, spec.alpha, spec.ista_iterations))
            shifted_distance = float(torch.linalg.vector_norm(final - shifted_target, dim=1).mean())
            if level in OOD_LEVELS:
                to_clean.append(clean_distance)
                to_perturbed.append(shifted_distance)
                scalars[f"distance_ood_{_level_name(level)}"] = clean_distance
            if level == spec.ood_level:
                scalars["ood_distance"] = clean_distance
                scalars["ood_distance_to_shifted_optimum"] = shifted_distance
        series.update(distance_by_ood=to_clean, distance_to_shifted_optimum_by_ood=to_perturbed)
    return scalars, series


def run_lista(spec: ListaSpec) -> Result:
    with one_thread():
        data = make_data(spec)
        training = train(spec, data)
        if training.best_epoch < 0:  # the checkpoint kept would be the untrained start: say so
            return Result(params={}, status="FAILED", series={"validation_loss": training.validation_loss},
                          reason=f"diverged: no epoch gave a finite validation loss (lr {spec.lr:g})")
        scalars, series = evaluate(spec, data, training.model)
    status, reason = "FINISHED", None
    if not scalars["final_distance"] < scalars["target_norm"]:  # no better than the zero code: training failed
        status, reason = "FAILED", (f"diverged: test ‖y_L − z*‖ = {scalars['final_distance']:.3g} is no better than "
                                    f"the zero code's ‖z*‖ = {scalars['target_norm']:.3g} (lr {spec.lr:g})")
    scalars.update(best_epoch=float(training.best_epoch), dual_max=float(training.duals.max()),
                   final_validation_loss=training.validation_loss[-1])
    series.update(validation_loss=training.validation_loss, dual=training.duals.tolist(),
                  dual_max_history=training.dual_max_history)
    info = {"code_length": code_length(spec), "betas": ",".join(map(_level_name, BETAS)),
            "ood_levels": ",".join(map(_level_name, OOD_LEVELS))}
    return Result(params={}, status=status, reason=reason, scalars=scalars, series=series, info=info)


__all__ = ["BETAS", "OOD_LEVELS", "Lista", "SparseCoding", "code_length", "evaluate", "ista", "make_data",
           "run_lista", "train"]
