"""The objectives of a sweep file: its metric (one, or a list for a multi-objective search) and its
pruner, with the checks that tie them to the search method and the problem (study.spec.schema and
study.spec.checks use these).

    metric: {name: mse, goal: minimize}                                   # one metric
    metric: [{name: mse, goal: minimize}, {name: adam_steps, goal: minimize}]   # nsga2, tpe, random
    pruner: median                                                        # or the long form:
    pruner: {name: median, startup_trials: 5, warmup_steps: 2}
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from study.errors import short

MAX_STARTUP_TRIALS = 100_000  # as many as a search may have (study.spec.schema.MAX_GRID_RUNS)
MAX_OBJECTIVES = 4
# The pruners and the settings each takes (Optuna's own defaults where a setting is absent).
PRUNER_SETTINGS = {
    "none": (),
    "median": ("startup_trials", "warmup_steps", "interval_steps"),
    "successive_halving": ("min_resource", "reduction_factor", "min_early_stopping_rate"),
    "hyperband": ("min_resource", "max_resource", "reduction_factor"),
}
# Problems whose runs report checkpoints (the value of the trained prefix at integer steps).
CHECKPOINTED_PROBLEMS = ("dugd", "psor")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class Metric(_Strict):
    name: str = Field("root_error", min_length=1, max_length=250)
    goal: Literal["minimize", "maximize"] = "minimize"


class Pruner(_Strict):
    """`pruner: median` or `pruner: {name: median, startup_trials: 5, warmup_steps: 2}`; see PRUNER_SETTINGS."""

    name: Literal["none", "median", "successive_halving", "hyperband"] = "none"
    startup_trials: int | None = Field(None, ge=0, le=MAX_STARTUP_TRIALS)
    warmup_steps: int | None = Field(None, ge=0, le=1_000_000)
    interval_steps: int | None = Field(None, ge=1, le=1_000_000)
    min_resource: int | None = Field(None, ge=1, le=1_000_000)
    max_resource: int | None = Field(None, ge=1, le=1_000_000)
    reduction_factor: int | None = Field(None, ge=2, le=100)
    min_early_stopping_rate: int | None = Field(None, ge=0, le=100)

    @model_validator(mode="after")
    def _settings_of_this_pruner(self) -> "Pruner":
        given = [key for key in type(self).model_fields if key != "name" and getattr(self, key) is not None]
        foreign = [key for key in given if key not in PRUNER_SETTINGS[self.name]]
        if foreign:
            takes = ", ".join(PRUNER_SETTINGS[self.name]) or "no settings"
            raise ValueError(f"no {', '.join(foreign)} for pruner {self.name} (it takes {takes})")
        return self

    @property
    def active(self) -> bool:
        return self.name != "none"

    @property
    def settings(self) -> dict[str, int]:
        return {key: getattr(self, key) for key in PRUNER_SETTINGS[self.name] if getattr(self, key) is not None}



def check_objectives(sweep: Any) -> list[str]:
    """Metric lists and pruners: what each search method and pruner can do."""
    errors = []
    names = [m.name for m in sweep.objectives]
    shown = short([m.model_dump() for m in sweep.objectives])
    if len(set(names)) != len(names):
        errors.append(f"metric: got {shown}, expected distinct metric names")
    if sweep.is_multi_objective and sweep.method == "cmaes":
        errors.append(f"metric: got {len(names)} metrics for method cmaes, expected one (CMA-ES is single-objective; "
                      "use method nsga2 or tpe)")
    if sweep.pruner.active and sweep.is_search:
        pruner = f"pruner: got {sweep.pruner.name}"
        if sweep.is_multi_objective:
            errors.append(f"{pruner} with {len(names)} metrics, expected pruner none (Optuna's pruners take one objective)")
        elif sweep.metric.goal != "minimize":
            errors.append(f"{pruner} with metric {sweep.metric.name} (maximize), expected a minimized metric "
                          "(checkpoints report the trained prefix's error, lower is better)")
        if sweep.problem not in CHECKPOINTED_PROBLEMS:
            errors.append(f"{pruner} for problem {sweep.problem}, expected a problem that reports checkpoints "
                          f"({', '.join(CHECKPOINTED_PROBLEMS)})")
        elif sweep.problem == "psor" and sweep.parameters.get("omega", "chebyshev") != "learned":
            errors.append(f"{pruner} for psor with omega {short(sweep.parameters.get('omega', 'chebyshev'))}, "
                          "expected omega: learned (only training reports checkpoints)")
    return errors
