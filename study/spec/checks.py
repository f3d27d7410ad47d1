"""The checks of a sweep that pydantic alone cannot make: its method against its parameters, and
every parameter, distribution and grid point against the run specs (workers.run.parse_spec).
Each returns one line per problem: `key: got VALUE, expected ...`. study.spec.loading.load_sweep runs them."""

from __future__ import annotations

import itertools
import math
from typing import Any

from pydantic import ValidationError

from study.errors import describe_validation_error, key_text, short
from study.spec.objectives import check_objectives
from study.spec.schema import MAX_GRID_RUNS, MAX_SEED, SCALAR_TYPES, Distribution, Sweep, grid_size

def check_method(sweep: Sweep) -> list[str]:
    errors = []
    if sweep.is_search and sweep.budget is None:
        errors.append(f"budget: missing, expected {{trials: N}} for method {sweep.method}")
    if not sweep.is_search and sweep.budget is not None:
        errors.append(f"budget: got {sweep.budget.model_dump()}, expected no budget for method grid")
    errors += check_objectives(sweep)
    if len(set(sweep.seeds)) != len(sweep.seeds):
        errors.append(f"seeds: got {short(sweep.seeds)}, expected distinct seeds")
    if any(seed < 0 or seed > MAX_SEED for seed in sweep.seeds):
        errors.append(f"seeds: got {short(sweep.seeds)}, expected integers from 0 to 2**63 - 1")
    return errors


def explain_name(line: str) -> str:
    if line.startswith("name: got") and "pattern" in line:
        return line.split(", expected")[0] + ", expected a safe identifier: letters, digits, '.', '_', '-', at most 100, starting with a letter or digit"
    return line


def check_parameters(sweep: Sweep, full_points: bool = True) -> list[str]:
    """Check each parameter value against the problem's spec model, then (if each is fine) full points."""
    from workers.specs import SPEC_CLASSES

    problem = sweep.parameters.get("problem", "dugd")
    if not isinstance(problem, str) or problem not in SPEC_CLASSES:
        return [f"parameters.problem: got {short(problem)}, expected one of {', '.join(SPEC_CLASSES)}"]
    model = SPEC_CLASSES[problem]
    errors: list[str] = []
    for key, value in sweep.parameters.items():
        prefix = f"parameters.{key_text(key)}"
        if key == "seed":
            errors.append(f"{prefix}: got {short(value)}, expected no `seed` parameter (use `seeds:`)")
        elif key not in model.model_fields:
            errors.append(f"{prefix}: unknown key (value {short(value)}); {problem} takes {', '.join(model.model_fields)}")
        elif key == "problem" and not isinstance(value, str):
            errors.append(f"{prefix}: got {short(value)}, expected one fixed problem name")
        elif isinstance(value, dict):
            errors += _check_distribution(sweep, model, key, value)
        elif isinstance(value, list):
            if not value:
                errors.append(f"{prefix}: got [], expected a non-empty list of values")
            for item in value:
                errors += _check_value(model, problem, key, item)
        else:
            errors += _check_value(model, problem, key, value)
    if errors or not full_points:
        return errors
    if not sweep.is_search:
        size = grid_size(sweep.axes) * len(sweep.seeds)
        if size > MAX_GRID_RUNS:
            return [f"parameters: got a grid of {size} runs, expected at most {MAX_GRID_RUNS} (split the sweep)"]
    return _check_points(sweep)


def _check_value(model: type, problem: str, key: str, value: Any) -> list[str]:
    prefix = f"parameters.{key_text(key)}"
    if isinstance(value, (list, dict)) or not (value is None or isinstance(value, SCALAR_TYPES)):
        return [f"{prefix}: got {short(value)}, expected a scalar value"]
    if isinstance(value, float) and not math.isfinite(value):
        return [f"{prefix}: got {value}, expected a finite number"]
    try:
        model(**{"problem": problem, key: value}) if key != "problem" else None
    except ValidationError as error:
        return [line for line in describe_validation_error(error, "parameters.") if line.startswith(prefix)]
    return []


def _check_distribution(sweep: Sweep, model: type, key: str, value: dict[str, Any]) -> list[str]:
    prefix = f"parameters.{key_text(key)}"
    if not sweep.is_search:
        return [f"{prefix}: got a distribution {short(value)}, expected a value or a list (distributions need method random, tpe or cmaes)"]
    try:
        dist = Distribution(**value)
    except ValidationError as error:
        return describe_validation_error(error, prefix + ".")
    if dist.distribution == "categorical":
        return [e for item in dist.values for e in _check_value(model, sweep.problem, key, item)]
    annotation = str(model.model_fields[key].annotation)
    if "int" not in annotation and "float" not in annotation:
        return [f"{prefix}: got {dist.distribution}, expected categorical for a non-numeric parameter"]
    if dist.distribution in ("uniform", "log_uniform") and "float" not in annotation:
        return [f"{prefix}: got {dist.distribution}, expected int_uniform or categorical for an integer parameter"]
    # Both ends must be valid values of the field, so every sample is.
    cast = int if dist.distribution == "int_uniform" else float
    return [e for end in (dist.min, dist.max) for e in _check_value(model, sweep.problem, key, cast(end))]


def _combos(sweep: Sweep):
    """Every grid point's axis values, or one corner of a search's space."""
    if sweep.is_search:
        corner = {k: v[0] for k, v in sweep.axes.items()}
        for key, dist in sweep.distributions.items():
            corner[key] = dist.values[0] if dist.values else (int(dist.min) if dist.distribution == "int_uniform" else dist.min)
        return [corner]
    keys = list(sweep.axes)
    return (dict(zip(keys, values)) for values in itertools.product(*sweep.axes.values()))


def _check_points(sweep: Sweep) -> list[str]:
    """Cross-field checks: validate full points (every grid point, or one corner for searches)."""
    from workers.run import parse_spec

    errors: list[str] = []
    for combo in _combos(sweep):
        try:
            parse_spec({**sweep.fixed, **combo, "seed": sweep.seeds[0]})
        except ValidationError as error:
            errors += [f"{line} (at {short(combo)})" for line in describe_validation_error(error, "parameters.")]
            if len(errors) >= 20:
                break
    return list(dict.fromkeys(errors))


def seed_note(sweep: Sweep) -> str | None:
    """One line when the sweep's seeds cannot change training on its points
    (workers.units.identical_across_seeds: e.g. mode expected with a constant init)."""
    if len(sweep.seeds) < 2:
        return None
    from workers.run import parse_spec
    from workers.units import identical_across_seeds

    total = same = 0
    for combo in _combos(sweep):
        total += 1
        try:
            same += identical_across_seeds(parse_spec({**sweep.fixed, **combo, "seed": sweep.seeds[0]}))
        except ValidationError:
            continue
    if not same:
        return None
    where = ("this search's points" if sweep.is_search else "every point") if same == total else f"{same} of {total} points"
    return (f"note: seeds {short(sweep.seeds)} cannot change training on {where} (no training draw depends on the "
            f"seed, e.g. mode expected with a constant init): training is identical across those seeds, so it runs "
            f"once and the seeds differ only in the validation sample; matrix_seed is the axis that replicates over "
            f"matrices (e.g. matrix_seed: [0, 1, 2])")

