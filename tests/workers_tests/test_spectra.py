"""Problem instances: the authors' Gaussian matrix bit for bit, MP edges, exact-kappa families."""

import math

import numpy as np
import pytest
from scipy.integrate import quad

from workers.chgd import chgd_problem
from workers.specs import ChgdSpec, DugdSpec
from workers.spectra import DEFAULT_KAPPA, build_problem, kappa_mp, m_for_kappa, mp_edges


def test_gaussian_is_the_authors_matrix_bit_for_bit():
    problem = build_problem(DugdSpec(n=300, m=600, matrix_seed=12))
    np.random.seed(12)  # the notebook's own recipe, recomputed independently
    h = np.random.normal(0, 1 / np.sqrt(300), (300, 600))
    assert np.array_equal(problem.factor(), h.T)
    assert np.array_equal(problem.eigenvalues, np.linalg.eigvalsh(h @ h.T))
    # DUGD_LMS_example.ipynb printed these (np.linalg.eig; eigvalsh agrees to rounding)
    assert problem.lambda_max == pytest.approx(5.678370598467161, rel=1e-12)
    assert problem.lambda_min == pytest.approx(0.18419073567986688, rel=1e-12)
    assert problem.kappa_realized == pytest.approx(30.828752475023858, rel=1e-12)


def test_chgd_default_is_the_seed_32_300x450_matrix():
    problem = chgd_problem(ChgdSpec())
    assert (problem.n, problem.m) == (300, 450)
    assert chgd_problem(ChgdSpec(kappa=50.0)).m == build_problem(DugdSpec(kappa=50.0)).m  # kappa sets m
    # CHGD_MSE.ipynb printed: 88.10381317130214 4.933429045923184 0.05599563592475858
    assert problem.lambda_max == pytest.approx(4.933429045923184, rel=1e-12)
    assert problem.lambda_min == pytest.approx(0.05599563592475858, rel=1e-12)


def test_normalization_1_over_m_scales_the_spectrum_by_n_over_m():
    by_n = build_problem(DugdSpec(n=40, m=100, matrix_seed=3))
    by_m = build_problem(DugdSpec(n=40, m=100, matrix_seed=3, normalization="1/m"))
    np.testing.assert_allclose(by_m.eigenvalues, by_n.eigenvalues * 40 / 100, rtol=1e-12)
    assert by_m.kappa_mp == pytest.approx(by_n.kappa_mp, rel=1e-12)


def test_mp_edges_closed_forms():
    # entries N(0, 1/n), n/m = 1/2: (√2 ∓ 1)²; entries N(0, 1/m): (1 ∓ √(1/2))²
    assert mp_edges(0.5, "1/n") == pytest.approx(((math.sqrt(2) - 1) ** 2, (math.sqrt(2) + 1) ** 2), rel=1e-14)
    assert mp_edges(0.5, "1/m") == pytest.approx(((1 - math.sqrt(0.5)) ** 2, (1 + math.sqrt(0.5)) ** 2), rel=1e-14)
    problem = build_problem(DugdSpec(n=300, m=600))
    assert problem.kappa_mp == pytest.approx(((1 + math.sqrt(0.5)) / (1 - math.sqrt(0.5))) ** 2, rel=1e-14)
    # a finite draw lies inside the (wider) MP edges
    assert problem.mp_lower < problem.lambda_min and problem.lambda_max < problem.mp_upper


def test_gaussian_m_from_kappa_and_default_m():
    problem = build_problem(DugdSpec(n=100, kappa=30.0))
    assert problem.m == m_for_kappa(100, 30.0)
    assert kappa_mp(100, problem.m) <= 30.0 < kappa_mp(100, problem.m - 1)
    assert build_problem(DugdSpec(n=50)).m == 100


@pytest.mark.parametrize("params", [dict(m=200, kappa=10.0), dict(m=100)])
def test_gaussian_rejects_conflicting_or_singular_sizes(params):
    with pytest.raises(ValueError, match="m"):
        build_problem(DugdSpec(n=100, **params))


@pytest.mark.parametrize("spectrum", ["uniform", "loguniform", "mp"])
@pytest.mark.parametrize("normalization", ["1/n", "1/m"])
def test_synthetic_families_have_exact_kappa_and_pinned_edges(spectrum, normalization):
    problem = build_problem(DugdSpec(n=64, kappa=50.0, spectrum=spectrum, normalization=normalization))
    lam = problem.eigenvalues
    assert lam.shape == (64,) and np.all(np.diff(lam) > 0)
    assert problem.kappa_realized == pytest.approx(50.0, rel=1e-12)
    assert (problem.lambda_min, problem.lambda_max) == (problem.mp_lower, problem.mp_upper)
    assert problem.kappa_mp == pytest.approx(50.0, rel=1e-12)
    if spectrum == "uniform":
        np.testing.assert_allclose(np.diff(lam), np.diff(lam)[0], rtol=1e-9)
    if spectrum == "loguniform":
        np.testing.assert_allclose(lam[1:] / lam[:-1], (lam[1] / lam[0]), rtol=1e-9)


def test_synthetic_default_kappa_and_kappa_from_m():
    assert build_problem(DugdSpec(n=30, spectrum="uniform")).kappa_realized == pytest.approx(DEFAULT_KAPPA)
    assert build_problem(DugdSpec(n=30, m=90, spectrum="mp")).kappa_realized == pytest.approx(kappa_mp(30, 90))


def test_mp_family_sits_at_the_mp_quantiles():
    problem = build_problem(DugdSpec(n=41, kappa=20.0, spectrum="mp", normalization="1/m"))
    low, high = problem.lambda_min, problem.lambda_max
    density = lambda x: math.sqrt((high - x) * (x - low)) / x  # noqa: E731 - unnormalised MP density
    total = quad(density, low, high)[0]
    levels = [quad(density, low, x)[0] / total for x in problem.eigenvalues[1:-1]]
    np.testing.assert_allclose(levels, np.arange(1, 40) / 40, atol=1e-6)
    assert np.mean(problem.eigenvalues) == pytest.approx(1.0, abs=0.02)  # MP mean under 1/m


def test_synthetic_factor_reproduces_the_spectrum():
    problem = build_problem(DugdSpec(n=25, kappa=10.0, spectrum="loguniform", matrix_seed=5))
    h = problem.factor()
    np.testing.assert_allclose(np.linalg.eigvalsh(h.T @ h), problem.eigenvalues, rtol=1e-10)
    q = problem.eigenvectors()
    np.testing.assert_allclose(q.T @ q, np.eye(25), atol=1e-12)
    np.testing.assert_allclose(q @ np.diag(problem.eigenvalues) @ q.T, h.T @ h, atol=1e-12)
    # a different matrix seed rotates differently
    other = build_problem(DugdSpec(n=25, kappa=10.0, spectrum="loguniform", matrix_seed=6))
    assert not np.allclose(other.factor(), h)


def test_edges_select_the_chebyshev_reference():
    exact = build_problem(DugdSpec(n=300, m=600))
    mp = build_problem(DugdSpec(n=300, m=600, edges="mp"))
    assert exact.reference_edges == (exact.lambda_min, exact.lambda_max)
    assert mp.reference_edges == (mp.mp_lower, mp.mp_upper)
    assert mp.facts()["edges"] == "mp"
