"""Per-run figures: every file is a real PNG, the plotted numbers are the closed forms, failures survive."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from study.figures import run_figures as plots
from tests.support.images import png_size
from tests.support.figure_data import dugd_result, gaussian_spectrum, psor_result
from workers import chebyshev




def lines_by_label(figure, axes_index: int = 0) -> dict:
    return {line.get_label(): line for line in figure.axes[axes_index].get_lines()}


def test_dugd_run_figures_are_real_pngs():
    pngs = plots.run_figures(dugd_result())
    assert set(pngs) == {"steps.png", "roots.png", "residual_polynomial.png", "mse_curves.png"}
    for name, data in pngs.items():
        width, height = png_size(data)
        assert width >= 400 and height >= 300, name
        assert len(data) > 10_000, name  # axes, curves and text: far above an empty canvas


def test_psor_run_figures_with_and_without_learned_omega():
    assert set(plots.run_figures(psor_result())) == {"error_curves.png", "omega.png"}
    plain = plots.run_figures(psor_result(learned=False))
    assert set(plain) == {"error_curves.png", "omega.png"}
    figure = plots.error_curves_figure(psor_result(learned=False))
    assert set(lines_by_label(figure)) == {"plain (ω = 1)", "optimal constant ω", "Chebyshev (1st kind)"}


def test_sorted_overlay_shows_sorted_steps():
    result = dugd_result(T=10, noise=0.2)
    figure = plots.steps_figure(result)
    by_layer, overlay = lines_by_label(figure, 0), lines_by_label(figure, 1)
    np.testing.assert_array_equal(by_layer["learned"].get_ydata(), result["learned_steps"])
    np.testing.assert_array_equal(overlay["learned"].get_ydata(), np.sort(result["learned_steps"])[::-1])
    np.testing.assert_array_equal(overlay["Chebyshev (1st kind)"].get_ydata(), np.sort(result["chebyshev_steps"])[::-1])


def test_residual_polynomial_of_chebyshev_steps_peaks_at_the_bound():
    # domain.md §9: the worst case of |P_T^Ch| on [λ_min, λ_max] equals 2q^T/(1+q^{2T}) (equioscillation).
    result = dugd_result(T=8)
    kappa = result["lambda_max"] / result["lambda_min"]
    figure = plots.residual_polynomial_figure(result, eigenvalues=np.array([]))
    curve = lines_by_label(figure)["Chebyshev (1st kind)"]
    assert np.max(curve.get_ydata()) == pytest.approx(chebyshev.chebyshev_bound(kappa, 8), rel=1e-6)
    assert curve.get_xdata()[0] == result["lambda_min"] and curve.get_xdata()[-1] == result["lambda_max"]


def test_eigenvalue_marks_lie_on_the_learned_polynomial():
    result = dugd_result(T=6, noise=0.3)
    eigenvalues = gaussian_spectrum()
    marks = lines_by_label(plots.residual_polynomial_figure(result, eigenvalues))["eigenvalues (learned)"]
    expected = np.abs(np.prod(1 - np.outer(eigenvalues, result["learned_steps"]), axis=1))
    np.testing.assert_allclose(marks.get_ydata(), expected, rtol=1e-12)
    # the largest mark is ρ(W_T), which the Result reports independently
    assert np.max(marks.get_ydata()) == pytest.approx(result["rho"], rel=1e-12)


def test_roots_figure_compares_reciprocal_steps_with_nodes():
    result = dugd_result(T=7)
    lines = lines_by_label(plots.roots_figure(result))
    nodes = chebyshev.chebyshev_nodes(result["lambda_min"], result["lambda_max"], 7)
    np.testing.assert_allclose(lines["Chebyshev (1st kind): 1/γ"].get_ydata(), np.sort(nodes), rtol=1e-12)
    np.testing.assert_allclose(lines["learned: 1/γ"].get_ydata(), np.sort(1 / np.array(result["learned_steps"])))


def test_references_rebuilt_from_the_interval_when_the_result_lacks_them():
    result = dugd_result(T=5)
    del result["chebyshev_steps"], result["second_kind_steps"]
    references = plots.reference_steps(result)
    low, high = result["lambda_min"], result["lambda_max"]
    np.testing.assert_allclose(references["Chebyshev (1st kind)"], chebyshev.chebyshev_steps(low, high, 5))
    np.testing.assert_allclose(references["Chebyshev (2nd kind)"], chebyshev.second_kind_steps(low, high, 5))


def test_failed_and_partial_results_survive():
    bare_failure = {"status": "FAILED", "reason": "RuntimeError: boom", "params": {"problem": "dugd", "T": 4}}
    assert plots.run_figures(bare_failure) == {}
    assert plots.run_figures({}) == {}
    assert plots.run_figures({"status": "FAILED", "params": {"problem": "psor"}}) == {}
    assert plots.run_figures({"params": {"problem": "probe"}, "curve": [1.0, 0.5]}) == {}
    # a diverged run: non-finite values written as strings by Result.to_dict, some series missing
    diverged = dugd_result(status="FAILED")
    diverged["mse_curve"] = diverged["mse_curve"][:3] + ["inf", "nan"]
    del diverged["learned_steps"]
    pngs = plots.run_figures(diverged)
    assert {"steps.png", "mse_curves.png", "residual_polynomial.png"} <= set(pngs)
    assert all(png_size(data) for data in pngs.values())
    # garbage where a series should be is skipped, not raised
    assert plots.series({"x": ["a", 1]}, "x") is None and plots.series({"x": 3}, "x") is None


def test_rendering_is_thread_safe_and_deterministic():
    results = [dugd_result(T=t, seed=t) for t in (4, 8)]
    sequential = [plots.run_figures(r) for r in results]
    concurrent: list = [None] * len(results)

    def render(index: int) -> None:
        concurrent[index] = plots.run_figures(results[index])

    threads = [threading.Thread(target=render, args=(i,)) for i in range(len(results))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert concurrent == sequential


def test_summary_figure_is_the_sweep_artifact_and_travels_as_json():
    import json

    from workers.result import Result

    result = dugd_result(T=6)
    summary = plots.summary_figures(result)
    assert list(summary) == [plots.SUMMARY_PNG] and png_size(summary[plots.SUMMARY_PNG])[0] >= 600
    figure = plots.summary_figure(result)
    overlay, polynomial = figure.axes
    assert set(lines_by_label(figure, 1)) >= {"learned", "Chebyshev (1st kind)"}
    assert "Chebyshev (2nd kind)" not in lines_by_label(figure, 1)  # fewer curves: cheaper in the sweep
    # what a Ray task does: a transport record in, base64 PNGs out, through JSON (the writer's spool) and back
    record = Result(params=result["params"], scalars={k: result[k] for k in ("lambda_min", "lambda_max")},
                    series={k: result[k] for k in ("learned_steps", "chebyshev_steps")}).as_record()
    assert plots.record_figures(record) == {}  # a 0-second run: its figure would cost more than the run
    encoded = json.loads(json.dumps(plots.record_figures(record, min_run_s=0.0)))
    assert png_size(plots.decode_figures(encoded)[plots.SUMMARY_PNG])[0] >= 600
    psor = plots.summary_figures(psor_result())
    assert png_size(psor[plots.SUMMARY_PNG])[0] >= 600
    assert plots.summary_figures({"params": {"problem": "probe"}}) == {}
    assert plots.summary_figures({"status": "FAILED", "params": {"problem": "dugd"}}) == {}


@pytest.mark.parametrize(
    "spec, names",
    [
        (dict(problem="dugd", n=24, T=4, kappa=10, mode="expected", batches_per_generation=20, eval_samples=100),
         {"steps.png", "roots.png", "residual_polynomial.png", "mse_curves.png"}),
        (dict(problem="chgd", n=24, T=4, kappa=10, iterations=12), {"steps.png", "residual_polynomial.png", "error_curves.png"}),
        (dict(problem="psor", fixed_point="ista", n=24, T=4, iterations=12), {"error_curves.png", "omega.png"}),
    ],
    ids=["dugd", "chgd", "psor"],
)
def test_figures_of_real_runs(spec, names):
    from workers.run import run

    result = run(spec)
    assert result.status == "FINISHED", result.reason
    flat = result.to_dict()
    pngs = plots.run_figures(flat)
    assert set(pngs) == names
    assert all(png_size(data)[0] >= 400 and len(data) > 10_000 for data in pngs.values())
    assert png_size(plots.summary_figures(flat)[plots.SUMMARY_PNG])[0] >= 600
    if spec["problem"] == "dugd":
        # the eigenvalues come back from the run's own parameters (workers.spectra), and the learned
        # polynomial's largest value on them is the run's reported rho
        eigenvalues = plots.eigenvalues_of(flat)
        assert eigenvalues is not None and len(eigenvalues) == 24
        marks = lines_by_label(plots.residual_polynomial_figure(flat))["eigenvalues (learned)"]
        assert np.max(marks.get_ydata()) == pytest.approx(flat["rho"], rel=1e-9)
    if spec["problem"] == "psor":
        labels = set(lines_by_label(plots.error_curves_figure(flat)))
        assert labels == {"plain (ω = 1)", "optimal constant ω", "Chebyshev (1st kind)", "e₀ · bound^(k/T)"}
