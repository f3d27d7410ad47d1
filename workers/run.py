"""run(spec) -> Result: the single entry point a Ray task calls. Pure: no Ray, MLflow or I/O."""

from __future__ import annotations

import importlib
import time
from collections.abc import Mapping
from typing import Any, Callable

from pydantic import TypeAdapter

from workers.result import Result
from workers.specs import ProbeSpec, RunSpec

_SPEC_ADAPTER: TypeAdapter = TypeAdapter(RunSpec)


def parse_spec(params: Mapping[str, Any]) -> Any:
    """Validate a parameter mapping into its problem's spec model (raises pydantic.ValidationError)."""
    data = dict(params)
    data.setdefault("problem", "dugd")
    return _SPEC_ADAPTER.validate_python(data)


def run(spec: Mapping[str, Any] | Any, on_checkpoint: Callable[[int, float], bool] | None = None) -> Result:
    """Run one spec. Never raises for a failing run: exceptions and non-finite results come back
    as a FAILED Result with the reason, so one bad point never takes a sweep down.
    on_checkpoint(step, value) -> stop? goes to problems that train in stages (dugd, psor with
    learned omega); a run it stops comes back KILLED with its partial curves."""
    if isinstance(spec, Mapping):
        spec = parse_spec(spec)
    params = spec.model_dump(mode="json")
    try:
        handler = _handler(spec.problem)  # imports its module (torch...) before the clock: wall_s is the run's
    except Exception as error:  # noqa: BLE001 - an import failure fails this run, not the sweep
        return Result(params=params, status="FAILED", reason=f"{type(error).__name__}: {error}")
    started = time.perf_counter()
    try:
        result = handler(spec, on_checkpoint) if on_checkpoint is not None and spec.problem in _CHECKPOINTED else handler(spec)
    except Exception as error:  # noqa: BLE001 - recorded, not swallowed
        result = Result(params=params, status="FAILED", reason=f"{type(error).__name__}: {error}")
    result.params = params
    clash = (result.scalars.keys() & result.series.keys()) | (result.info.keys() & (result.scalars.keys() | result.series.keys()))
    if clash:  # to_dict() and MLflow would silently keep only one of them
        result.status, result.reason = "FAILED", f"result names used twice: {', '.join(sorted(clash))}"
    bad = result.non_finite_scalars()
    if result.status == "FINISHED" and bad:
        result.status = "FAILED"
        result.reason = "non-finite result: " + ", ".join(f"{k}={result.scalars[k]}" for k in bad[:5])
    result.wall_s = time.perf_counter() - started
    return result


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
    "lista": ("workers.lista", "run_lista"),
}


def _handler(problem: str) -> Callable[[Any], Result]:
    if problem == "probe":
        return _run_probe
    module, name = _HANDLER_NAMES[problem]
    return getattr(importlib.import_module(module), name)


__all__ = ["Result", "parse_spec", "run"]
