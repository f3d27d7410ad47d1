"""run(spec) -> Result and run_many(specs) -> list[Result]: the entry points a Ray task calls.
Pure: no Ray, MLflow or I/O.

One code path (design.md "Units of work"): run(spec) is run_many([spec])[0]. run_many groups the
specs by problem; a problem module that defines `run_<problem>_many(specs, hooks) -> list[Result]`
gets its whole group at once (and shares problem-level work and training inside it); any other
problem runs each spec through its one-point handler. Planning units is workers/units.py.
"""

from __future__ import annotations

import importlib
import time
from collections.abc import Callable, Mapping, Sequence
from types import ModuleType
from typing import Any

from pydantic import TypeAdapter

from workers.result import Result
from workers.specs import ProbeSpec, RunSpec

_SPEC_ADAPTER: TypeAdapter = TypeAdapter(RunSpec)
# on_checkpoint(step, value) -> stop? (workers.dugd.OnCheckpoint; psor: step = depth)
OnCheckpoint = Callable[[int, float], bool]


def parse_spec(params: Mapping[str, Any]) -> Any:
    """Validate a parameter mapping into its problem's spec model (raises pydantic.ValidationError)."""
    data = dict(params)
    data.setdefault("problem", "dugd")
    return _SPEC_ADAPTER.validate_python(data)


def run(spec: Mapping[str, Any] | Any, on_checkpoint: OnCheckpoint | None = None) -> Result:
    """Run one spec: run_many([spec], [on_checkpoint])[0] (one code path). Never raises for a failing
    run: exceptions and non-finite results come back as a FAILED Result with the reason, so one bad
    point never takes a sweep down. on_checkpoint(step, value) -> stop? goes to problems that train in
    stages (dugd, psor with learned omega); a run it stops comes back KILLED with its partial curves."""
    return run_many([spec], [on_checkpoint])[0]


def run_many(specs: Sequence[Mapping[str, Any] | Any],
             on_checkpoint: Sequence[OnCheckpoint | None] | None = None) -> list[Result]:
    """Run every spec; the i-th Result is what running specs[i] alone gives (with on_checkpoint[i]).

    Never raises: an invalid spec, an exception, a NaN or a divergence makes that point FAILED with its
    reason, and the others finish. A point whose hook asks to stop comes back KILLED with its partial
    curves, the others go on.

    wall_s of a point is its equal share of its problem group's compute in this call: the seconds
    spent on all the points of that problem (problem-level work, shared training, every record),
    divided by their number. With one point it is the run's own time, as before; over a unit the
    wall_s add up to the unit's compute.
    """
    hooks = list(on_checkpoint) if on_checkpoint is not None else [None] * len(specs)
    if len(hooks) != len(specs):
        raise ValueError(f"on_checkpoint: got {len(hooks)} hooks, expected one per spec ({len(specs)})")
    results: list[Result | None] = [None] * len(specs)
    parsed: list[Any] = []
    groups: dict[str, list[int]] = {}
    for index, spec in enumerate(specs):
        try:
            parsed.append(parse_spec(spec) if isinstance(spec, Mapping) else spec)
        except Exception as error:  # noqa: BLE001 - an invalid point fails alone
            parsed.append(None)
            results[index] = Result(params=dict(spec), status="FAILED", reason=f"{type(error).__name__}: {error}")
            continue
        groups.setdefault(parsed[index].problem, []).append(index)
    for problem, indices in groups.items():
        group = [parsed[i] for i in indices]
        for index, result in zip(indices, _run_group(problem, group, [hooks[i] for i in indices])):
            results[index] = result
    return [result for result in results if result is not None]


def _run_group(problem: str, specs: list[Any], hooks: list[OnCheckpoint | None]) -> list[Result]:
    params = [spec.model_dump(mode="json") for spec in specs]
    try:  # imports its module (torch...) before the clock: wall_s is the runs'
        module = problem_module(problem)
    except Exception as error:  # noqa: BLE001 - an import failure fails these runs, not the sweep
        reason = f"{type(error).__name__}: {error}"
        return [Result(params=p, status="FAILED", reason=reason) for p in params]
    many = getattr(module, f"run_{problem}_many", None) if module is not None else None
    started = time.perf_counter()
    if many is not None:
        try:
            results = list(many(specs, hooks))
        except Exception as error:  # noqa: BLE001 - a failure of the shared work fails its points
            reason = f"{type(error).__name__}: {error}"
            results = [Result(params={}, status="FAILED", reason=reason) for _ in specs]
    else:
        handler = _handler(problem)
        results = [_run_alone(handler, problem, spec, hook) for spec, hook in zip(specs, hooks)]
    share = (time.perf_counter() - started) / max(len(specs), 1)
    for result, own in zip(results, params):
        _check(result, own)
        result.wall_s = share
    return results


def _run_alone(handler: Callable[..., Result], problem: str, spec: Any, hook: OnCheckpoint | None) -> Result:
    try:
        return handler(spec, hook) if hook is not None and problem in _CHECKPOINTED else handler(spec)
    except Exception as error:  # noqa: BLE001 - recorded, not swallowed
        return Result(params={}, status="FAILED", reason=f"{type(error).__name__}: {error}")


def _check(result: Result, params: dict[str, Any]) -> None:
    """Stamp the point's params; FAILED on clashing names or a non-finite scalar of a finished run."""
    result.params = params
    clash = (result.scalars.keys() & result.series.keys()) | (result.info.keys() & (result.scalars.keys() | result.series.keys()))
    if clash:  # to_dict() and MLflow would silently keep only one of them
        result.status, result.reason = "FAILED", f"result names used twice: {', '.join(sorted(clash))}"
    bad = result.non_finite_scalars()
    if result.status == "FINISHED" and bad:
        result.status = "FAILED"
        result.reason = "non-finite result: " + ", ".join(f"{k}={result.scalars[k]}" for k in bad[:5])


def _run_probe(spec: ProbeSpec) -> Result:
    deadline = time.perf_counter() + spec.work_s
    spins = 0
    while time.perf_counter() < deadline:  # busy CPU work, like a real run
        spins += 1
    if spec.fail == "raise":
        raise RuntimeError(f"probe asked to fail (seed={spec.seed})")
    value = float("nan") if spec.fail == "nan" else (spec.x - 1.0) ** 2 + 0.01 * spec.seed
    return Result(params={}, scalars={"value": value, "root_error": value}, series={"curve": [value, value / 2]})


_CHECKPOINTED = {"dugd", "psor"}  # handlers taking on_checkpoint
# Problem modules are imported on first use, so a worker pays only for the problems it runs.
_HANDLER_NAMES = {
    "dugd": ("workers.dugd_run", "run_dugd"),
    "chgd": ("workers.chgd", "run_chgd"),
    "psor": ("workers.psor", "run_psor"),
    "unrolling": ("workers.unrolling_run", "run_unrolling"),
    "lista": ("workers.lista", "run_lista"),
}


def _handler(problem: str) -> Callable[..., Result]:
    if problem == "probe":
        return _run_probe
    return getattr(problem_module(problem), _HANDLER_NAMES[problem][1])


def problem_module(problem: str) -> ModuleType | None:
    """The problem's module (imported now, on first use), or None for the built-in probe."""
    if problem == "probe":
        return None
    return importlib.import_module(_HANDLER_NAMES[problem][0])


__all__ = ["OnCheckpoint", "Result", "parse_spec", "problem_module", "run", "run_many"]
