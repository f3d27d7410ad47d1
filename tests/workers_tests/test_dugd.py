"""DUGD training: Adam fidelity, mode agreement, the symmetry trap, the optimum, the authors' protocol."""

import dataclasses

import numpy as np
import pytest
import torch

from workers.dugd import NumpyAdam, TrainingConfig, train
from workers.metrics import mse_curve, root_error
from workers.optimal import loss_and_gradient, optimal_steps
from workers.specs import DugdSpec
from workers.spectra import build_problem

# γ_t printed by DUGD_LMS_example.ipynb after the authors' protocol (float32, CUDA, seed 12)
NOTEBOOK_STEPS = [2.7968, 0.1583, 2.7524, 0.1761, 2.6692, 0.1789, 2.4023, 0.1841, 2.0442, 0.1988, 1.7192,
                  0.1905, 1.1071, 0.2077, 0.8197, 0.2200, 0.6515, 0.2353, 0.5380, 0.2542, 0.4552, 0.3079,
                  0.2783, 0.3924, 0.3455]


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    # tiny matrices: torch's thread pool only adds contention on 2 shared cores
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def small():
    return build_problem(DugdSpec(n=20, m=40, matrix_seed=1))


@pytest.fixture(scope="module")
def authors():
    return build_problem(DugdSpec(n=300, m=600, matrix_seed=12))


def _torch_expected_loss(gamma, lam):
    poly = torch.prod(1.0 - lam[:, None] * gamma.abs(), dim=1)
    return (poly * poly).mean()


def test_analytic_gradient_matches_autograd_including_a_root_on_an_eigenvalue(small):
    lam = small.eigenvalues
    weights = np.full(lam.shape[0], 1 / lam.shape[0])
    for steps in (np.array([0.3, -0.7, 0.45, 1.1]), np.array([1 / lam[3], 0.2, 0.5])):  # exact zero factor
        loss, grad = loss_and_gradient(steps, lam, weights)
        gamma = torch.tensor(steps, dtype=torch.float64, requires_grad=True)
        reference = _torch_expected_loss(gamma, torch.tensor(lam))
        reference.backward()
        assert loss == pytest.approx(reference.item(), rel=1e-13)
        np.testing.assert_allclose(grad, gamma.grad.numpy(), rtol=1e-10, atol=1e-15)


def test_numpy_adam_tracks_torch_adam_through_the_incremental_protocol(small):
    config = TrainingConfig(T=4, mode="expected", lr=0.01, batches_per_generation=60)
    numpy_run = train(small, config)
    lam = torch.tensor(small.eigenvalues)
    gamma = torch.nn.Parameter(torch.full((4,), 0.3, dtype=torch.float64))
    optimizer = torch.optim.Adam([gamma], lr=0.01)
    for generation, depth in enumerate(config.depths()):
        for _ in range(60):
            optimizer.zero_grad()
            _torch_expected_loss(gamma[:depth], lam).backward()
            optimizer.step()
        np.testing.assert_allclose(numpy_run.gamma_by_generation[generation], gamma.detach().numpy(), rtol=1e-10)
    assert numpy_run.adam_steps == 240


def test_numpy_adam_leaves_untouched_entries_alone():
    adam, param = NumpyAdam(3, lr=0.1), np.array([1.0, 2.0, 3.0])
    adam.step(param, np.array([0.5]))
    assert param[0] == pytest.approx(0.9) and list(param[1:]) == [2.0, 3.0]  # first Adam step is lr·sign


def test_eigen_and_dense_agree_in_distribution(small):
    seeds = range(8)
    config = dict(T=4, batch_size=50, batches_per_generation=100, lr=0.01, dtype="float64")
    learned = {mode: np.array([np.sort(train(small, TrainingConfig(mode=mode, seed=s, **config)).steps) for s in seeds])
               for mode in ("dense", "eigen")}
    difference = learned["dense"].mean(axis=0) - learned["eigen"].mean(axis=0)
    standard_error = np.sqrt(sum(v.var(axis=0, ddof=1) for v in learned.values()) / len(seeds))
    # per rank: within 4 standard errors of the difference and within 5% of the step
    assert np.all(np.abs(difference) <= 4 * standard_error + 1e-6)
    assert np.all(np.abs(difference) <= 0.05 * learned["eigen"].mean(axis=0))
    # and the seeds really differ (the modes sample), unlike `expected`
    assert np.all(learned["eigen"].std(axis=0) > 0)


@pytest.mark.parametrize("mode", ["dense", "eigen", "expected"])
def test_symmetry_trap(small, mode):
    base = dict(T=4, mode=mode, batch_size=20, batches_per_generation=50, lr=0.01, dtype="float64")
    trapped = train(small, TrainingConfig(training="full", **base))
    assert np.ptp(trapped.gamma) <= 1e-7 and abs(trapped.gamma[0] - 0.3) > 1e-3  # moved, together
    incremental = train(small, TrainingConfig(training="incremental", **base))
    assert np.ptp(incremental.steps) > 0.05
    randomised = train(small, TrainingConfig(training="full", init="random", **base))
    assert np.ptp(randomised.steps) > 0.05


def test_expected_mode_from_random_init_reaches_the_lbfgs_optimum_at_T8(authors):
    optimum = mse_curve(optimal_steps(authors.eigenvalues, 8), authors.eigenvalues)[-1]
    for seed in range(3):
        config = TrainingConfig(T=8, mode="expected", training="full", init="random", lr=0.01,
                                batches_per_generation=2000, seed=seed)  # 16,000 Adam steps
        trained = train(authors, config)
        assert trained.expected_loss[-1] <= 1.01 * optimum
        assert trained.expected_loss[-1] >= optimum * (1 - 1e-9)  # L-BFGS found the minimum


def test_authors_protocol_reproduces_the_notebook_and_stops_short_of_the_optimum(authors):
    trained = train(authors, TrainingConfig(mode="expected"))
    assert trained.adam_steps == 12_500
    # Same zig-zag as the notebook's learned steps, up to its sampling noise. 12,500 Adam steps at
    # T=25 amplify rounding: eigenvalues perturbed by 1e-15 (relative) move this error between ~0.006
    # and ~0.08 (numpy/BLAS builds differ by that much; 24 jitters on OpenBLAS's Haswell kernel: median
    # 0.034, two above 0.07, max 0.082), so check the ensemble, not one bit pattern: its median and its
    # second-worst member, with a looser bound on the worst.
    notebook_roots = 1 / np.array(NOTEBOOK_STEPS)
    jitter = [authors.eigenvalues * (1 + 1e-15 * np.random.default_rng(seed).standard_normal(authors.n))
              for seed in range(6)]
    errors = [root_error(train(dataclasses.replace(authors, eigenvalues=lam), TrainingConfig(mode="expected")).steps,
                         notebook_roots) for lam in jitter]
    assert np.median(errors) < 0.05 and sorted(errors)[-2] < 0.08 and max(errors) < 0.12, errors
    assert root_error(trained.steps, notebook_roots) < 0.08
    assert np.all(np.diff(np.sign(np.diff(trained.steps[:12]))) != 0)  # alternates: large, small, large
    loss = trained.expected_loss[-1]
    optimum = mse_curve(optimal_steps(authors.eigenvalues, 25), authors.eigenvalues)[-1]
    gap = loss / optimum - 1
    print(f"\nauthors' protocol at T=25: expected MSE {loss:.4e}, L-BFGS optimum {optimum:.4e}, gap {gap:.1f}x")
    assert loss > 2 * optimum  # the protocol stops well short of the optimum (measured: ~43x)
    # the validation batch and the exact loss agree to sampling error (χ²(10,000) weights)
    assert trained.validation_loss[-1] == pytest.approx(loss, rel=0.1)
