"""DUGD points of a unit: which train together, and each point's Training out of a shared training.

- Problem cache: one Problem (spectrum, edges, matrix) per distinct instance in a run_many call.
- Families (unit_keys' family_key): points whose trainings coincide train once.
  - Depth prefixes: under `training: incremental`, generation g of a depth-G training is the whole
    training at depth g (same draws, same Adam state on the prefix, later entries untouched; a random
    init's first g draws are its depth-g draws), so a family trains at its largest T and a point at
    T = g takes generations 1..g, cut to g entries. Not under `full`.
  - Identical seeds (identical_across_seeds): one training for all seeds.
- Batches: families sharing n and the protocol's shape (T, mode, training, steps, dtype, device) train
  as one array program (workers/batched.py). `dense` and descending-constraint points run alone.
- Checkpoints stay per point: a family asks each member's hook after each of the member's generations;
  a member told to stop is cut there (KILLED); the family stops when no member needs more.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from workers.batched import BatchRun, backend_for, train_batch
from workers.dugd import (OnCheckpoint, Training, TrainingConfig, batch_device, batch_dtype, batch_run, expected_loss,
                          training_record)
from workers.specs import DugdSpec
from workers.spectra import Problem, build_problem

INSTANCE_FIELDS = ("n", "m", "kappa", "spectrum", "normalization", "matrix_seed", "edges")


def identical_across_seeds(spec: DugdSpec) -> bool:
    """The seed cannot change training: the exact expected loss (no draws) from a constant init (auto or
    a number), without descending constraints (their training draws noise from the seed). Only the
    validation sample and the empirical MSE curve still depend on the seed."""
    return spec.descent_eps is None and spec.mode == "expected" and spec.init != "random"


def unit_keys(spec: DugdSpec) -> tuple[tuple, tuple]:
    """(share_key, family_key) for workers.units.plan_units.

    share_key: what a batch of trainings has in common (n and the protocol's shape). family_key: the
    training itself, so the points of a family train once: without T under incremental training (depth
    prefixes), without the seed where identical_across_seeds."""
    params = spec.model_dump(mode="json")
    if spec.descent_eps is not None or spec.mode == "dense":  # these run alone
        return ("dugd", spec.mode, spec.n, spec.descent_eps is not None), tuple(sorted(params.items()))
    share = ("dugd", spec.n, spec.mode, spec.training, spec.batches_per_generation, batch_dtype(spec),
             batch_device(spec), spec.T if spec.training == "full" else 0)
    dropped = {"eval_samples"} | ({"T"} if spec.training == "incremental" else set())
    if identical_across_seeds(spec):
        dropped.add("seed")
    if spec.mode == "expected":  # no batches, float64 on the CPU
        dropped |= {"batch_size", "dtype", "device"}
    return share, tuple(sorted((k, v) for k, v in params.items() if k not in dropped))


def unit_work(spec: DugdSpec) -> float:
    """Rough compute of a point alone, in factor evaluations: steps × n × summed depth (dense: × its
    batch's matrix products; descending: its own steps)."""
    if spec.descent_eps is not None:
        return float(spec.descent_epochs * spec.descent_batches_per_epoch * spec.n * spec.T * 4)
    depth_sum = spec.T * (spec.T + 1) / 2 if spec.training == "incremental" else spec.T * spec.T
    per_factor = 4.0 * spec.batch_size * (spec.m or 2 * spec.n) if spec.mode == "dense" else 1.0
    return float(spec.batches_per_generation * spec.n * depth_sum * per_factor)


class Problems:
    """Problems by instance, built once per run_many call (no state survives the call)."""

    def __init__(self) -> None:
        self._built: dict[tuple, Problem] = {}

    def get(self, spec: DugdSpec) -> Problem:
        key = instance_key(spec)
        if key not in self._built:
            self._built[key] = build_problem(spec)
        return self._built[key]


def instance_key(spec: Any) -> tuple:
    return tuple(getattr(spec, name) for name in INSTANCE_FIELDS)


@dataclass
class _Member:
    index: int
    spec: DugdSpec
    hook: OnCheckpoint | None
    generations: int  # generations this point trains alone (= its T)
    stopped_at: int | None = None  # its hook asked to stop after this generation (1-based)
    error: Exception | None = None  # its hook raised: this point fails alone, the family goes on


@dataclass
class _Family:
    problem: Problem
    config: TrainingConfig  # of its deepest member
    members: list[_Member] = field(default_factory=list)

    def checkpoint(self, generation: int, gamma: np.ndarray) -> bool:
        """Ask each member still training; True when no member needs another generation."""
        done = generation + 1
        value = None
        for member in self.members:
            if member.hook is None or member.stopped_at is not None or member.generations < done:
                continue
            if value is None:  # the same for every member: computed once
                value = expected_loss(gamma, self.config.depths()[generation], self.problem.eigenvalues)
            try:
                stop = member.hook(done, value)
            except Exception as error:  # noqa: BLE001 - the point fails alone, as it would by itself
                member.error, member.stopped_at = error, done
                continue
            if stop and done < member.generations:
                member.stopped_at = done
        return all(member.stopped_at is not None or member.generations <= done for member in self.members)


def train_points(specs: Sequence[DugdSpec], hooks: Sequence[OnCheckpoint | None],
                 problems: Problems) -> list[Training | Exception | None]:
    """Each point's Training (None: the point runs alone, i.e. dense or descending; an Exception: its
    training failed). Families train once, batches as one array program."""
    out: list[Training | Exception | None] = [None] * len(specs)
    families: dict[tuple, _Family] = {}
    for index, (spec, hook) in enumerate(zip(specs, hooks)):
        if spec.descent_eps is not None or spec.mode == "dense":
            continue
        try:
            problem = problems.get(spec)
        except Exception as error:  # noqa: BLE001 - this point fails alone
            out[index] = error
            continue
        family = families.setdefault(unit_keys(spec), _Family(problem, TrainingConfig.from_spec(spec)))
        family.members.append(_Member(index, spec, hook, spec.T))
        if spec.T > family.config.T:
            family.config = TrainingConfig.from_spec(spec)
    batches: dict[tuple, list[_Family]] = {}
    for family in families.values():
        config = family.config
        batches.setdefault((family.problem.n, config.T, config.mode, config.training, config.batches_per_generation,
                            batch_dtype(config), batch_device(config)), []).append(family)
    for (_, _, mode, _, steps, dtype, device), group in batches.items():
        runs = [batch_run(family.problem, family.config, family.checkpoint) for family in group]
        try:
            backend = backend_for(device, dtype)
            train_batch(runs, group[0].config.depths(), steps, mode, backend)
        except Exception as error:  # noqa: BLE001 - a failed batch fails its points, not the call
            for family in group:
                for member in family.members:
                    out[member.index] = error
            continue
        for family, run in zip(group, runs):
            for member in family.members:
                out[member.index] = member.error or _member_training(family, member, run, backend.name, dtype)
    return out


def _member_training(family: _Family, member: _Member, run: BatchRun, device: str, dtype: str) -> Training:
    trained = member.stopped_at or member.generations
    config = TrainingConfig.from_spec(member.spec)
    return training_record(family.problem, config, run.gammas[:trained], run.grad_norms[:trained], device, dtype)


__all__ = ["Problems", "identical_across_seeds", "instance_key", "train_points", "unit_keys", "unit_work"]
