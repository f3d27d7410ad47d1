"""Units of work on Ray: the coordinator's side of workers.units. A sweep's pending points are grouped
into units that share computation (workers.units.plan_units: depth families, batched protocols, one
training for seeds that cannot change it), one Ray task per unit (study.scheduling.task.run_unit); here are the
planning call, each unit's Ray options (CPU or one GPU) and its timeout backstop."""

from __future__ import annotations

from typing import Any

from study.spec.loading import RunPoint, Sweep
from workers.result import Result


def plan(points: list[RunPoint], slots: int) -> list[list[RunPoint]]:
    """The points as units sized for `slots` (a family such as a depth prefix is never split)."""
    from workers.units import plan_units

    return [[points[index] for index in unit] for unit in plan_units([point.params for point in points], slots)]


def wants_gpu(unit: list[RunPoint], gpus_in_cluster: float) -> bool:
    """A unit trains on one GPU when a point asks `device: cuda`, or `auto` where the cluster has one.
    Without any GPU in the cluster it asks for none: a `cuda` point then fails in the worker with its
    own reason (no CUDA device), instead of the unit waiting forever for a GPU that never comes."""
    if gpus_in_cluster <= 0:
        return False
    return any(point.params.get("device") in ("cuda", "auto") for point in unit)


def options(sweep: Sweep, unit: list[RunPoint], gpus_in_cluster: float) -> dict[str, Any]:
    """Ray options for the unit's task: the sweep's resources, and one GPU per unit that trains on one."""
    num_gpus = sweep.resources.num_gpus
    if wants_gpu(unit, gpus_in_cluster):
        num_gpus = max(num_gpus, 1)
    return {
        "num_cpus": sweep.resources.num_cpus,
        "num_gpus": num_gpus,
        "max_retries": sweep.max_retries,  # a worker that dies is retried, the whole unit ...
        "retry_exceptions": False,  # ... an exception is not (points never raise anyway)
    }


def hard_limit_s(timeout_s: float, points: int) -> float:
    """Backstop from submission (study.scheduling.task.run_unit): the unit's alarm (timeout_s x points), then each
    point again alone under timeout_s, plus time for a worker to start."""
    return 2 * timeout_s * points + max(30.0, timeout_s)


def failed(point: RunPoint, reason: str) -> dict[str, Any]:
    return Result(params=point.params, status="FAILED", reason=reason).as_record()
