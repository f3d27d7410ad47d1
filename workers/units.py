"""Planning units of work (design.md "Units of work"); pure. workers.run.run_many runs a unit.

- `plan_units(specs, slots)` groups a sweep's point indices into units (the coordinator sends one Ray
  task per unit, which calls workers.run.run_many on its points).
- `identical_across_seeds(spec)`: the seed cannot change the point's training.

A problem module (workers.run.problem_module) may define `unit_keys(spec) -> (share_key, family_key)`,
`unit_work(spec) -> float` and `identical_across_seeds(spec) -> bool`; the defaults say "shares nothing, costs 1, seed matters".
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping, Sequence
from typing import Any

from workers.run import parse_spec, problem_module

UNITS_PER_SLOT = 4  # plan_units aims at about this many units per slot, so stragglers even out


def _hook(problem: str, name: str) -> Callable[[Any], Any] | None:
    try:
        module = problem_module(problem)
    except Exception:  # noqa: BLE001 - planning falls back to the defaults; the run will report the error
        return None
    return getattr(module, name, None) if module is not None else None


# --- Planning (pure) -----------------------------------------------------------------------------------


def unit_keys(spec: Any) -> tuple[Hashable, Hashable]:
    """(share_key, family_key) of a point: points with equal share keys may batch together; points with
    equal (share_key, family_key) must stay in one unit (they train once). Default: its own family."""
    keys = _hook(spec.problem, "unit_keys")
    if keys is not None:
        return keys(spec)
    return (spec.problem,), _identity(spec)


def unit_work(spec: Any) -> float:
    """Rough relative compute of a point alone (the problem module's `unit_work`, else 1)."""
    work = _hook(spec.problem, "unit_work")
    return float(work(spec)) if work is not None else 1.0


def identical_across_seeds(spec: Mapping[str, Any] | Any) -> bool:
    """True where the seed cannot change the point's training, so points differing only in seed train
    once (records still differ where the seed enters, e.g. a validation sample). Per problem:
    dugd: mode expected with a constant init (auto or a number), no descending constraints;
    chgd: always (no randomness at all); others: False."""
    if isinstance(spec, Mapping):
        spec = parse_spec(spec)
    decide = _hook(spec.problem, "identical_across_seeds")
    return bool(decide(spec)) if decide is not None else False


def plan_units(specs: Sequence[Mapping[str, Any] | Any], slots: int,
               units_per_slot: int = UNITS_PER_SLOT) -> list[list[int]]:
    """Group point indices into units: every index exactly once, in a deterministic order.

    Rule: points form families (equal unit_keys; a family is never split: it trains once). A family's
    work is its costliest point's unit_work (it trains once, at its deepest point) plus 5 % of the
    others'. Families sorted by share key are packed greedily, in order, into units of at most
    target = total work / (units_per_slot × slots), so a unit mostly holds one share key (it batches),
    tiny share groups merge, and there are about units_per_slot units per slot when there is enough
    work (fewer when there are fewer families). A family above the target is a unit alone. Fewer
    units per slot batch more per unit; more balance stragglers better.
    """
    if slots < 1 or units_per_slot < 1:
        raise ValueError(f"slots, units_per_slot: got {slots}, {units_per_slot}, expected both >= 1")
    parsed = [parse_spec(s) if isinstance(s, Mapping) else s for s in specs]
    families: dict[tuple[Hashable, Hashable], list[int]] = {}
    for index, spec in enumerate(parsed):
        families.setdefault(_keyed(unit_keys(spec)), []).append(index)
    work: dict[tuple[Hashable, Hashable], float] = {}
    for key, members in families.items():
        costs = sorted((unit_work(parsed[i]) for i in members), reverse=True)
        work[key] = costs[0] + 0.05 * sum(costs[1:])
    target = sum(work.values()) / (units_per_slot * slots)
    units: list[list[int]] = []
    current: list[int] = []
    current_work = 0.0
    for key in sorted(families, key=repr):
        if current and current_work + work[key] > target * (1 + 1e-9):
            units.append(current)
            current, current_work = [], 0.0
        current.extend(families[key])
        current_work += work[key]
    if current:
        units.append(current)
    return units


def _keyed(keys: tuple[Hashable, Hashable]) -> tuple[Hashable, Hashable]:
    return keys[0], keys[1]


def _identity(spec: Any) -> Hashable:
    return tuple(sorted((k, repr(v)) for k, v in spec.model_dump(mode="json").items()))


__all__ = ["UNITS_PER_SLOT", "identical_across_seeds", "plan_units", "unit_keys", "unit_work"]
