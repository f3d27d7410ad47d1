"""The DUGD and CHGD runs carry the curse-of-unrolling and descending-constraint fields."""

import numpy as np
import pytest

from workers import chebyshev as cheb
from workers.run import run
from workers.unrolling import jacobian_errors


def test_dugd_run_reports_unrolling_metrics_consistent_with_its_steps():
    result = run(dict(problem="dugd", n=60, m=120, T=6, mode="expected", batches_per_generation=100))
    assert result.status == "FINISHED", result.reason
    jacobian = result.series["jacobian_error"]
    assert len(jacobian) == 7
    assert result.scalars["burn_in_index"] == float(np.argmax(jacobian))
    # the Chebyshev reference: max|P_T'| = 2T² ρ_T / (λ_max − λ_min) on the exact edges (domain.md §6)
    low, high = result.scalars["lambda_min"], result.scalars["lambda_max"]
    expected = 2 * 6**2 * cheb.chebyshev_bound(high / low, 6) / (high - low)
    assert result.scalars["max_abs_dpoly_chebyshev"] == pytest.approx(expected, rel=1e-6)


def test_chgd_run_reports_unrolling_metrics():
    result = run(dict(problem="chgd", n=40, T=4, iterations=12))
    assert result.status == "FINISHED", result.reason
    steps = np.array(result.series["chebyshev_steps"])
    assert result.series["jacobian_error"] == pytest.approx(jacobian_errors(steps, _eigenvalues(result)).tolist(), rel=1e-12)


def _eigenvalues(result):
    from workers.chgd import chgd_problem
    from workers.run import parse_spec

    return chgd_problem(parse_spec(result.params)).eigenvalues


def test_dugd_with_descent_eps_runs_primal_dual_and_descends():
    eps = 0.05
    result = run(dict(problem="dugd", n=60, m=120, T=6, descent_eps=eps, init="random", lr=0.02))
    assert result.status == "FINISHED", result.reason
    assert result.info["training"] == "primal-dual"
    assert max(result.series["descent_ratio"]) <= 1 - eps + 0.01
    assert result.scalars["violating_layers"] == 0.0
    assert len(result.series["learned_steps"]) == 6 and "root_error" in result.scalars


@pytest.mark.parametrize(
    "params",
    [
        dict(problem="dugd", n=30, T=4, kappa=10, mode="expected", batches_per_generation=50),
        dict(problem="chgd", n=30, iterations=10),
        dict(problem="psor", n=32),
        dict(problem="unrolling", n=30, iterations=20),
        dict(problem="unrolling", n=30, iterations=20, step="chebyshev"),
        dict(problem="probe"),
    ],
)
def test_every_result_name_is_used_once(params):
    # Result.to_dict() is flat, and MLflow keys metrics by name: a scalar and a series of one name would collide.
    result = run(params)
    assert result.status == "FINISHED", result.reason
    names = [*result.scalars, *result.series, *result.info]
    assert len(names) == len(set(names))
