"""Adaptive sweeps with Optuna ask/tell: random | tpe | cmaes. The coordinator alone asks and tells.

A trial is one parameter point run once per seed; its value is the mean of the sweep's metric over
the seeds (any failed seed fails the trial). The study is named after the sweep and loaded if it
exists, so a resubmission continues it; trials left RUNNING by a dead coordinator are told FAIL.
The sweep stops asking once the study holds budget.trials trials in any state.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend
from optuna.trial import TrialState

from study.spec import RunPoint, Sweep
from study.tracking import store_directory

JOURNAL_FILE = "optuna-journal.log"


def default_storage_path(tracking_uri: str) -> Path:
    """Beside a SQLite MLflow store (dir/optuna-journal.log), else in the working directory."""
    return (store_directory(tracking_uri) or Path.cwd()) / JOURNAL_FILE


def open_storage(tracking_uri: str, optuna_storage: str | None = None) -> Any:
    """An RDB URL (e.g. postgresql+psycopg2://...) or a journal file path; default: the journal file."""
    if optuna_storage and "://" in optuna_storage:
        return optuna_storage
    path = Path(optuna_storage) if optuna_storage else default_storage_path(tracking_uri)
    path.parent.mkdir(parents=True, exist_ok=True)
    return JournalStorage(JournalFileBackend(str(path)))


def make_sampler(sweep: Sweep, trials_so_far: int = 0) -> optuna.samplers.BaseSampler:
    # Seeded by the sweep name and the trials already stored, so a resumed search does not replay
    # the random start-up points it already tried.
    seed = (int(hashlib.sha256(sweep.name.encode()).hexdigest()[:8], 16) + trials_so_far) % 2**31
    if sweep.method == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if sweep.method == "tpe":
        return optuna.samplers.TPESampler(seed=seed)
    return optuna.samplers.CmaEsSampler(seed=seed, warn_independent_sampling=False)


def open_study(sweep: Sweep, storage: Any) -> optuna.Study:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(study_name=sweep.name, storage=storage, direction=sweep.metric.goal, load_if_exists=True)
    study.sampler = make_sampler(sweep, len(study.get_trials(deepcopy=False)))
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        study.tell(trial.number, state=TrialState.FAIL)  # its coordinator died with it in flight
    return study


def suggest(trial: optuna.Trial, sweep: Sweep) -> dict[str, Any]:
    """The trial's parameter point: distributions and list-valued (categorical) parameters."""
    params: dict[str, Any] = {}
    for key, values in sweep.axes.items():
        params[key] = trial.suggest_categorical(key, values)
    for key, dist in sweep.distributions.items():
        if dist.distribution == "categorical":
            params[key] = trial.suggest_categorical(key, dist.values)
        elif dist.distribution == "int_uniform":
            params[key] = trial.suggest_int(key, int(dist.min), int(dist.max))
        else:
            params[key] = trial.suggest_float(key, dist.min, dist.max, log=dist.distribution == "log_uniform")
    return params


@dataclass
class _Trial:
    trial: optuna.Trial
    waiting: set[str]
    values: list[float] = field(default_factory=list)
    failed: bool = False


class SearchSource:
    """Feeds the coordinator run points trial by trial and tells Optuna when a trial's seeds are done."""

    def __init__(self, sweep: Sweep, storage: Any, finished: dict[str, dict[str, float]], trials_in_flight: int):
        self.sweep = sweep
        self.study = open_study(sweep, storage)
        self.finished = finished  # run_key -> metrics already in MLflow: reused, not re-run
        self.trials_in_flight = max(1, trials_in_flight)
        self.reused = 0
        self._open: dict[int, _Trial] = {}

    @property
    def budget(self) -> int:
        return self.sweep.budget.trials

    def trial_count(self) -> int:
        return len(self.study.get_trials(deepcopy=False))

    def next_points(self, capacity: int) -> list[RunPoint]:
        points: list[RunPoint] = []
        while len(self._open) < self.trials_in_flight and len(points) < capacity and self.trial_count() < self.budget:
            trial = self.study.ask()
            params = suggest(trial, self.sweep)
            trial_points = [self.sweep.point(params, seed, trial=trial.number) for seed in self.sweep.seeds]
            state = self._open[trial.number] = _Trial(trial, {p.run_key for p in trial_points})
            for point in trial_points:
                if point.run_key in self.finished:  # the same point ran before: reuse its metric
                    self.reused += 1
                    self._record(state, point.run_key, self.finished[point.run_key].get(self.sweep.metric.name))
                else:
                    points.append(point)
        return points

    def observe(self, point: RunPoint, record: dict[str, Any]) -> None:
        state = self._open.get(point.trial)
        if state is None:
            return
        value = record["scalars"].get(self.sweep.metric.name) if record["status"] == "FINISHED" else None
        self._record(state, point.run_key, value)

    def _record(self, state: _Trial, run_key: str, value: float | None) -> None:
        state.waiting.discard(run_key)
        if value is None or not math.isfinite(value):
            state.failed = True
        else:
            state.values.append(float(value))
        if state.waiting:
            return
        del self._open[state.trial.number]
        if state.failed:
            self.study.tell(state.trial, state=TrialState.FAIL)
        else:
            self.study.tell(state.trial, sum(state.values) / len(state.values))

    def exhausted(self) -> bool:
        return not self._open and self.trial_count() >= self.budget

    def best(self) -> tuple[float | None, dict[str, Any] | None]:
        try:
            best = self.study.best_trial
        except ValueError:  # no COMPLETE trial yet
            return None, None
        return best.value, best.params
