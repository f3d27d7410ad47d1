"""The sweep file's schema (pydantic): the Sweep model, its parts, and its expansion into run points.

A sweep file is YAML (or JSON) text:

    name: dugd-grid
    method: grid                      # grid | random | tpe | cmaes | nsga2
    metric: {name: root_error, goal: minimize}   # or a list of them: a multi-objective search
    pruner: none                      # none | median | successive_halving | hyperband, or {name: median, ...}
    seeds: [0, 1]                     # the replicate axis
    parameters: {problem: dugd, n: [64, 128], T: 8, lr: {distribution: log_uniform, min: 1e-4, max: 0.1}}

Each run point gets a `run_key`: a hash of the canonical JSON of its fully validated spec (defaults
filled), stable across processes and machines. study.spec.loading.load_sweep reads a file into this schema
and then runs the checks of study.spec.checks.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
from dataclasses import dataclass
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, field_serializer, field_validator, model_validator

from study.spec.objectives import MAX_OBJECTIVES, PRUNER_SETTINGS, Metric, Pruner

MAX_GRID_RUNS = 100_000
MAX_SEED = 2**63 - 1
SEARCH_METHODS = ("random", "tpe", "cmaes", "nsga2")
SCALAR_TYPES = (bool, int, float, str)  # the types a parameter's value may take
_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class Budget(_Strict):
    trials: int = Field(ge=1, le=MAX_GRID_RUNS)


class Resources(_Strict):
    num_cpus: float = Field(1, ge=0, le=1024)
    num_gpus: float = Field(0, ge=0, le=64)


class Tracking(_Strict):
    # charted: scalars plus the curves a researcher charts (study.mlflow_names.CHARTED_CURVES) as MLflow
    # metrics, the rest in result.json; all: every curve as step-indexed metrics (about 4x the rows).
    curves: Literal["charted", "all"] = "charted"


class Distribution(_Strict):
    """A search-space entry: uniform / log_uniform / int_uniform over [min, max], or categorical values."""

    distribution: Literal["uniform", "log_uniform", "int_uniform", "categorical"]
    min: float | None = None
    max: float | None = None
    values: list[Any] | None = None

    @model_validator(mode="after")
    def _check(self) -> "Distribution":
        if self.distribution == "categorical":
            if not self.values or self.min is not None or self.max is not None:
                raise ValueError("categorical takes a non-empty `values` list and no min/max")
            return self
        if self.values is not None or self.min is None or self.max is None:
            raise ValueError(f"{self.distribution} takes `min` and `max` and no values")
        if not self.min < self.max:
            raise ValueError(f"min < max (got min={self.min}, max={self.max})")
        if self.distribution == "log_uniform" and self.min <= 0:
            raise ValueError(f"log_uniform needs min > 0 (got min={self.min})")
        if self.distribution == "int_uniform" and not (self.min.is_integer() and self.max.is_integer()):
            raise ValueError(f"int_uniform needs integer min and max (got {self.min}, {self.max})")
        return self


@dataclass(frozen=True)
class RunPoint:
    """One run: the fully validated spec (defaults filled) and its content hash."""

    params: dict[str, Any]
    run_key: str
    trial: int | None = None


class Sweep(_Strict):
    name: str = Field(pattern=_NAME_PATTERN, description="safe identifier; the sweep id")
    experiment: str | None = Field(None, min_length=1, max_length=250)
    method: Literal["grid", "random", "tpe", "cmaes", "nsga2"] = "grid"
    # `metric:` in the file: one {name, goal}, or a list of them (multi-objective; the first is primary).
    objectives: list[Metric] = Field(default_factory=lambda: [Metric()], alias="metric", min_length=1,
                                     max_length=MAX_OBJECTIVES)
    pruner: Pruner = Field(default_factory=Pruner, exclude_if=lambda pruner: not pruner.active)
    budget: Budget | None = None
    seeds: list[int] = Field(default_factory=lambda: [0], min_length=1, max_length=10_000)
    parameters: dict[str, Any] = Field(min_length=1)
    resources: Resources = Resources()
    max_retries: int = Field(2, ge=0, le=100)
    timeout_s: float | None = Field(None, gt=0)
    tracking: Tracking = Tracking()
    # The text the sweep was loaded from (logged as the parent run's sweep.yaml artifact).
    _source_text: str = PrivateAttr("")

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False, populate_by_name=False,
                              serialize_by_alias=True)

    @field_validator("objectives", mode="before")
    @classmethod
    def _one_metric_is_a_list_of_one(cls, value: Any) -> Any:
        return [value] if isinstance(value, dict) else value

    @field_validator("pruner", mode="before")
    @classmethod
    def _pruner_by_name(cls, value: Any) -> Any:
        if isinstance(value, str):
            return {"name": value}
        if not isinstance(value, (dict, Pruner)):
            raise ValueError(f"a pruner name ({', '.join(PRUNER_SETTINGS)}) or {{name: NAME, setting: N, ...}}")
        return value

    @field_serializer("objectives")
    def _metric_as_written(self, objectives: list[Metric]) -> Any:
        # One metric dumps as the mapping it was (parent-run params metric.name / metric.goal).
        return objectives[0].model_dump() if len(objectives) == 1 else [m.model_dump() for m in objectives]

    @property
    def metric(self) -> Metric:
        """The primary metric: the only one, or the first of a multi-objective list ('best' uses it)."""
        return self.objectives[0]

    @property
    def metrics(self) -> list[Metric]:
        return list(self.objectives)

    @property
    def is_multi_objective(self) -> bool:
        return len(self.objectives) > 1

    @property
    def notes(self) -> list[str]:
        """One line each: settings that apply but do nothing here."""
        if self.pruner.active and not self.is_search:
            return [f"note: pruner {self.pruner.name} ignored: grid sweeps run every point to the end"]
        return []

    @field_validator("seeds", mode="before")
    @classmethod
    def _seeds_are_not_booleans(cls, value: Any) -> Any:
        # pydantic would read `true` as seed 1; a boolean in the replicate axis is a typo, not a seed.
        if isinstance(value, list) and any(isinstance(seed, bool) for seed in value):
            raise ValueError("integer seeds, not booleans")
        return value

    @property
    def source_text(self) -> str:
        return self._source_text or yaml.safe_dump(self.model_dump(mode="json", exclude_none=True), sort_keys=False)

    @property
    def experiment_name(self) -> str:
        return self.experiment or self.name

    @property
    def problem(self) -> str:
        return str(self.parameters.get("problem", "dugd"))

    @property
    def is_search(self) -> bool:
        return self.method in SEARCH_METHODS

    @property
    def fixed(self) -> dict[str, Any]:
        return {k: v for k, v in self.parameters.items() if not isinstance(v, (list, dict))}

    @property
    def axes(self) -> dict[str, list[Any]]:
        """Grid axes (grid method) or categorical choices (search methods), in file order."""
        return {k: v for k, v in self.parameters.items() if isinstance(v, list)}

    @property
    def varying_axes(self) -> list[str]:
        """The parameters whose value differs between points (axes of more than one value, search
        distributions), sorted by name: what names a child run, besides its seed."""
        varying = [k for k, v in self.axes.items() if len({json.dumps(item, sort_keys=True) for item in v}) > 1]
        return sorted([*varying, *self.distributions])

    @property
    def distributions(self) -> dict[str, Distribution]:
        return {k: Distribution(**v) for k, v in self.parameters.items() if isinstance(v, dict)}

    @property
    def total_runs(self) -> int:
        """Runs the sweep asks for: grid points x seeds, or trials x seeds for a search."""
        if self.is_search:
            return self.budget.trials * len(self.seeds)
        return grid_size(self.axes) * len(self.seeds)

    def point(self, params: dict[str, Any], seed: int, trial: int | None = None) -> RunPoint:
        """Validate one parameter assignment (fixed values + chosen axis values) into a RunPoint."""
        from workers.run import parse_spec

        spec = parse_spec({**self.fixed, **params, "seed": seed})
        dumped = spec.model_dump(mode="json")
        return RunPoint(params=dumped, run_key=run_key(dumped), trial=trial)

    def expand(self) -> list[RunPoint]:
        """Every grid run: the product of the axes (file order), seeds innermost."""
        if self.is_search:
            raise ValueError(f"sweep {self.name!r} uses method {self.method}: its points come from the search")
        keys = list(self.axes)
        return [
            self.point(dict(zip(keys, values)), seed)
            for values in itertools.product(*self.axes.values())
            for seed in self.seeds
        ]

    def summary(self) -> str:
        axes = ", ".join(f"{k} ({len(v)})" for k, v in self.axes.items()) or "none"
        lines = [f"sweep {self.name}: {self.method}, problem {self.problem}, experiment {self.experiment_name}"]
        if self.is_search:
            dists = ", ".join(f"{k} ({d.distribution})" for k, d in self.distributions.items()) or "none"
            lines.append(f"{self.budget.trials} trials x {len(self.seeds)} seeds = {self.total_runs} runs")
            lines.append(f"search space: {dists}; categorical: {axes}")
        else:
            lines.append(f"{self.total_runs} runs = grid {grid_size(self.axes)} x {len(self.seeds)} seeds")
            lines.append(f"axes: {axes}")
        lines.append("metric: " + ", ".join(f"{m.name} ({m.goal})" for m in self.objectives))
        if self.pruner.active:
            settings = ", ".join(f"{k}={v}" for k, v in self.pruner.settings.items())
            lines.append(f"pruner: {self.pruner.name}" + (f" ({settings})" if settings else ""))
        return "\n".join([*lines, *self.notes])


def run_key(params: dict[str, Any]) -> str:
    """16 hex digits of sha256 over canonical JSON (sorted keys, no spaces) of a validated spec."""
    canonical = json.dumps(params, sort_keys=True, separators=(",", ":"), allow_nan=False)
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def grid_size(axes: dict[str, list[Any]]) -> int:
    """Points of a grid: the product of its axes' lengths."""
    return math.prod(len(v) for v in axes.values())
