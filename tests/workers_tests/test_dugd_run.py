"""run_dugd end to end: every result field, the CLI acceptance command, failures with reasons."""

import json

import numpy as np
import pytest
import torch

from workers.run import run

DESIGN_SCALARS = ["lambda_min", "lambda_max", "kappa_realized", "kappa_mp", "root_error", "step_error",
                  "max_abs_log_ratio", "rho", "rho_chebyshev", "chebyshev_bound", "rate", "rate_chebyshev",
                  "q", "rate_constant", "mse", "mse_chebyshev", "mse_gd", "mse_empirical",
                  "root_error_mp", "root_error_second_kind", "root_error_optimal",
                  "step_error_mp", "step_error_second_kind", "step_error_optimal"]
DESIGN_SERIES = ["learned_steps", "chebyshev_steps", "second_kind_steps", "optimal_steps", "mse_curve",
                 "mse_curve_empirical", "mse_curve_gd", "mse_curve_chebyshev", "mse_curve_second_kind",
                 "mse_curve_heavy_ball", "validation_loss"]


def test_cli_runs_the_authors_full_protocol_in_eigen_mode(run_cli):
    done = run_cli("run-one", "problem=dugd", "n=300", "m=600", "matrix_seed=12", "T=25", "mode=eigen", "init=0.3", "--json")
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["status"] == "FINISHED"
    assert result["adam_steps"] == 12_500 and result["optimizer_reset"] is False
    for name in DESIGN_SCALARS + ["wall_s"]:
        assert isinstance(result[name], float), name
    for name in DESIGN_SERIES:
        assert isinstance(result[name], list) and result[name], name
    assert len(result["learned_steps"]) == 25 and len(result["mse_curve"]) == 26
    assert len(result["validation_loss"]) == 25
    assert (result["mode"], result["device"], result["dtype"], result["edges"], result["m"]) == (
        "eigen", "cpu", "float32", "exact", 600)
    # the learned steps track Chebyshev in root space, as the papers report
    assert result["root_error"] < 0.1
    assert result["mse_curve"][-1] == result["mse"] and result["mse_curve"][0] == pytest.approx(1.0)


def test_dense_run_empirical_curve_matches_the_analytic_one():
    torch.set_num_threads(1)
    result = run({"problem": "dugd", "n": 20, "m": 40, "T": 3, "mode": "dense", "batches_per_generation": 20,
                  "batch_size": 20, "eval_samples": 4000, "dtype": "float64"})
    assert result.status == "FINISHED", result.reason
    analytic, empirical = np.array(result.series["mse_curve"]), np.array(result.series["mse_curve_empirical"])
    # 4,000 samples × 20 coordinates: each mode's weight has ~2% relative noise
    np.testing.assert_allclose(empirical, analytic, rtol=0.1)
    assert result.info["device"] == "cpu" and result.info["dtype"] == "float64"


def test_mp_edges_make_the_mp_reference_primary():
    result = run({"problem": "dugd", "n": 30, "m": 60, "T": 4, "mode": "expected", "edges": "mp",
                  "batches_per_generation": 50})
    s = result.scalars
    assert result.info["edges"] == "mp"
    assert s["root_error"] == s["root_error_mp"] and s["lambda_min_reference"] == s["mp_lower"]


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-GPU message")
def test_cuda_without_a_gpu_fails_with_a_reason():
    result = run({"problem": "dugd", "n": 10, "m": 20, "T": 2, "mode": "eigen", "device": "cuda"})
    assert result.status == "FAILED" and "device" in result.reason
    auto = run({"problem": "dugd", "n": 10, "m": 20, "T": 2, "mode": "eigen", "device": "auto",
                "batches_per_generation": 5})
    assert auto.status == "FINISHED" and auto.info["device"] == "cpu"


def test_rho_by_generation_falls_in_full_training_between_its_loss_bounds():
    # Takabe & Wadayama (domain.md §3): training lowers ρ(W_T) with the loss. Full training (depth T at
    # every generation) from a random init, the paper's sampling (batch 10,000 in the eigenbasis).
    from workers.metrics import rho
    from workers.specs import DugdSpec
    from workers.spectra import build_problem

    params = dict(problem="dugd", n=40, m=80, matrix_seed=12, T=6, training="full", init="random", mode="eigen",
                  lr=0.01, batches_per_generation=200, batch_size=10000)
    result = run(params)
    assert result.status == "FINISHED", result.reason
    rhos = np.asarray(result.series["rho_by_generation"])
    loss = np.asarray(result.series["expected_loss"])  # (1/n) Σ P_T(λ_i)² at the same generations
    assert rhos.shape == (6,) and np.all(np.diff(rhos) < 0)
    # ρ² ≤ ‖W‖_F² = n·loss ≤ n ρ²: the sandwich behind "lowering the loss lowers ρ"
    assert np.all(np.sqrt(loss) <= rhos) and np.all(rhos <= np.sqrt(40 * loss))
    # the last generation's ρ is the run's ρ; and it is below the random init's
    assert rhos[-1] == pytest.approx(result.scalars["rho"], rel=1e-12)
    lam = build_problem(DugdSpec(n=40, m=80, matrix_seed=12)).eigenvalues
    init = np.random.default_rng([0, 1]).uniform(0.5, 1.5, 6) / lam.mean()  # workers.dugd.initial_gamma
    assert rhos[-1] < rho(init, lam)
    # incremental training: one ρ per generation, at that generation's depth
    incremental = run({**params, "training": "incremental", "mode": "expected", "batches_per_generation": 20})
    steps = np.asarray(incremental.series["learned_steps_by_generation"]).reshape(6, 6)
    expected = [rho(steps[g, : g + 1], lam) for g in range(6)]
    np.testing.assert_allclose(incremental.series["rho_by_generation"], expected, rtol=1e-12)
