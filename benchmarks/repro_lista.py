"""Reproduction section §6a: descending constraints on LISTA (configs/lista-descending.yaml), run
in-process point by point and drawn; `benchmarks/reproductions.py lista-descending` calls it."""

from __future__ import annotations

from typing import Callable

import numpy as np

from repro_common import REPO, save, table
from study.figures.run_figures import log_axis, new_figure
from study.spec.loading import load_sweep
from workers.lista import BETAS, OOD_LEVELS
from workers.run import run

LISTA_CONFIG = REPO / "configs" / "lista-descending.yaml"
LISTA_MODELS = {"unconstrained": "LISTA", "noisy": "LISTA trained with noise", "constrained": "constrained LISTA"}


def lista_descending() -> None:
    """configs/lista-descending.yaml run point by point in-process (the page's size), then drawn."""
    points = load_sweep(LISTA_CONFIG).expand()
    results: dict[str, list] = {model: [] for model in LISTA_MODELS}
    for point in points:
        result = run(point.params)
        if result.status != "FINISHED":
            raise SystemExit(f"lista run failed: {result.reason}")
        results[point.params["model"]].append(result)
    first = results["constrained"][0]
    print(f"LISTA, {len(points) // 3} training seeds per model, n = {first.params['n']}, "
          f"m = {first.info['code_length']}, L = {first.params['layers']}, test signals {first.params['test_samples']}; "
          "mean ± std over seeds of the test mean ‖y_L − z*‖ (z*: ISTA targets)")

    def cell(model: str, read: Callable) -> str:
        values = np.array([read(result) for result in results[model]])
        return f"{values.mean():.3g} ± {values.std():.2g}"

    table(["model", "nominal", *(f"β = {beta:g}" for beta in BETAS), "β = 10 / nominal", "max descent ratio (noisy)"],
          [[LISTA_MODELS[model], cell(model, lambda r: r.scalars["final_distance"]),
            *(cell(model, lambda r, i=i: r.series["distance_by_beta"][i]) for i in range(len(BETAS))),
            cell(model, lambda r: r.scalars["distance_beta_10"] / r.scalars["final_distance"]),
            cell(model, lambda r: max(r.series["descent_ratio_noisy"]))] for model in LISTA_MODELS])
    print("Out of distribution: inputs clip(x + p·ξ, 0, 1); distance of y_L to the clean z* (their figure) "
          "and, in brackets, to the ISTA target of the perturbed input")
    table(["model", *(f"p = {level:g}" for level in OOD_LEVELS)],
          [[LISTA_MODELS[model], *(cell(model, lambda r, i=i: r.series["distance_by_ood"][i]) + " ("
                                   + cell(model, lambda r, i=i: r.series["distance_to_shifted_optimum_by_ood"][i]) + ")"
                                   for i in range(len(OOD_LEVELS)))] for model in LISTA_MODELS])
    figure = new_figure(13.0, 3.6)
    panels = [figure.add_subplot(1, 3, index + 1) for index in range(3)]
    for model, label in LISTA_MODELS.items():
        curves = {name: np.array([result.series[name] for result in results[model]])
                  for name in ("distance_curve", "distance_by_beta", "distance_by_ood")}
        for axes, name, x in ((panels[0], "distance_curve", np.arange(curves["distance_curve"].shape[1])),
                              (panels[1], "distance_by_beta", np.array(BETAS)),
                              (panels[2], "distance_by_ood", np.array(OOD_LEVELS))):
            axes.errorbar(x, curves[name].mean(axis=0), yerr=curves[name].std(axis=0), marker=".", capsize=2,
                          linewidth=1.1, label=label)
    panels[1].set_xscale("log")
    for axes in panels[:2]:
        log_axis(axes)
    for axes, title, xlabel in ((panels[0], "per layer, nominal test", "layer l"),
                                (panels[1], "perturbed layers (start and outputs × β)", "β"),
                                (panels[2], "perturbed inputs, distance to the clean z*", "p")):
        axes.set_title(title, fontsize=9)
        axes.set_xlabel(xlabel)
        axes.grid(True, alpha=0.3)
        axes.legend(fontsize=7)
    panels[0].set_ylabel("mean ‖y − z*‖")
    save(figure, "lista-descending.png")


