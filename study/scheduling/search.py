"""Adaptive sweeps with Optuna ask/tell: random | tpe | cmaes | nsga2. The coordinator alone asks and tells.

A trial is one parameter point run once per seed; its value is the mean of the sweep's metric over
the seeds (any failed seed fails the trial), one value per metric for a multi-objective sweep (tpe,
nsga2, random). The study is named after the sweep and loaded if it exists, so a resubmission
continues it; trials left RUNNING by a dead coordinator are told FAIL. The sweep stops asking once
the study holds budget.trials trials in any state (PRUNED ones count: they are not re-run).

Pruning (`pruner:`): runs post checkpoint values to a PruneBoard actor (study.scheduling.task); `poll()` drains
it, reports the mean over the trial's seeds at each step every seed has reached (trial.report, each
step once, in order), asks should_prune and marks a pruned trial on the board, where its runs read
the flag at their next post and stop (KILLED). A unit of several points posts all their values in one
round trip (study.scheduling.task); a pruned point stops while the unit's others go on. A trial with a stopped run
is told PRUNED.

Runs quicker than study.scheduling.task.POST_EVERY_S post nothing. Their values are replayed from the training
curve each record carries, before the record is logged: each step is reported and, below the run's
last step, the pruner is asked as it would have been live. A trial pruned on replay is told PRUNED and
its run is logged KILLED with the reason (its compute was spent: only the sampler and the record learn
from the decision). The summary says in one line how many trials were judged that way.
"""

from __future__ import annotations

import hashlib
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend
from optuna.trial import TrialState

import study.mlflow_names as names
from study.spec.loading import RunPoint, Sweep
from study.scheduling.task import POST_EVERY_S, PruneBoard
from study.recording.layout import store_directory

JOURNAL_FILE = "optuna-journal.log"
POLL_EVERY_S = 0.02  # the coordinator drains the PruneBoard at most this often
REPLAYED = "; replayed after the run finished"  # reason suffix: the decision came after the run (too short to post)


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
    if sweep.method == "nsga2":
        return optuna.samplers.NSGAIISampler(seed=seed)
    return optuna.samplers.CmaEsSampler(seed=seed, warn_independent_sampling=False)


def make_pruner(sweep: Sweep) -> optuna.pruners.BasePruner:
    """The sweep's `pruner:` as an Optuna pruner; settings absent from the file keep Optuna's defaults."""
    settings = sweep.pruner.settings
    if sweep.pruner.name == "median":
        renamed = {"startup_trials": "n_startup_trials", "warmup_steps": "n_warmup_steps", "interval_steps": "interval_steps"}
        return optuna.pruners.MedianPruner(**{renamed[key]: value for key, value in settings.items()})
    if sweep.pruner.name == "successive_halving":
        return optuna.pruners.SuccessiveHalvingPruner(**settings)
    if sweep.pruner.name == "hyperband":
        return optuna.pruners.HyperbandPruner(**settings)
    return optuna.pruners.NopPruner()


def open_study(sweep: Sweep, storage: Any) -> optuna.Study:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(study_name=sweep.name, storage=storage, directions=[m.goal for m in sweep.metrics],
                                load_if_exists=True, pruner=make_pruner(sweep))
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
    values: list[list[float]] = field(default_factory=list)  # per finished seed: one value per metric
    failed: bool = False
    curves: dict[str, dict[int, float]] = field(default_factory=dict)  # run_key -> step -> checkpoint value
    reported: int = 0  # the last step told to Optuna (each step once, in order)
    pruned_at: tuple[int, float] | None = None  # (step, value) where should_prune said yes
    stopped: int = 0  # runs that stopped on the decision (KILLED)
    posted: bool = False  # some checkpoint reached the coordinator while a run trained
    replayed: bool = False  # pruned on its replayed curve, after its run had finished


class SearchSource:
    """Feeds the coordinator run points trial by trial and tells Optuna when a trial's seeds are done."""

    def __init__(self, sweep: Sweep, storage: Any, finished: dict[str, dict[str, float]], trials_in_flight: int):
        self.sweep = sweep
        self.study = open_study(sweep, storage)
        self.finished = finished  # run_key -> metrics already in MLflow: reused, not re-run
        self.trials_in_flight = max(1, trials_in_flight)
        self.reused = 0
        self.pruned = 0  # trials told PRUNED by this coordinator
        self.judged_late = 0  # trials whose runs all finished before posting a checkpoint (replayed)
        self.pruned_late = 0  # trials pruned on a replayed curve, after their runs had finished
        self._open: dict[int, _Trial] = {}
        self.board = None
        self._last_poll = 0.0
        if sweep.pruner.active:
            self.board = PruneBoard.remote()

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
                    self._record(state, point.run_key, self._values(self.finished[point.run_key]))
                else:
                    points.append(point)
        return points

    def checkpoint_ids(self, points: list[RunPoint]) -> list[tuple[int, str]] | None:
        """What each point of a unit posts to the board as (None without a pruner)."""
        return [(point.trial, point.run_key) for point in points] if self.board is not None else None

    def prepare(self, point: RunPoint, record: dict[str, Any]) -> dict[str, Any]:
        """Before a record is logged: a finished run's curve is replayed into the pruner (steps it never
        posted); a run stopped by a pruning decision, or pruned on the replay, gets its reason."""
        state = self._open.get(point.trial)
        if state is None:
            return record
        if record["status"] == "FINISHED" and self.sweep.pruner.active and state.pruned_at is None:
            curve = self._curve(record)
            state.curves.setdefault(point.run_key, {}).update(curve)
            if self._report_steps(state, ask_below=len(curve)):
                state.replayed = True
                step, value = state.pruned_at
                return {**record, "status": "KILLED", "reason": names.pruned_reason(step, value) + REPLAYED}
        if record["status"] == "KILLED" and state.pruned_at is not None:
            step, value = state.pruned_at
            record = {**record, "reason": names.pruned_reason(step, value)}
        return record

    def _curve(self, record: dict[str, Any]) -> dict[int, float]:
        curve = record.get("series", {}).get(names.CHECKPOINT_SERIES.get(self.sweep.problem, ""), [])
        return {step: float(value) for step, value in enumerate(curve, start=1)}

    def notes(self) -> list[str]:
        """One line when the pruner could only judge runs after they finished (too short to post)."""
        if self.board is None or not (self.judged_late or self.pruned_late):
            return []
        return [f"note: pruner {self.sweep.pruner.name}: {self.judged_late} trials finished before posting a checkpoint "
                f"(runs under {POST_EVERY_S * 1000:.0f} ms) and were judged on their replayed curves; {self.pruned_late} "
                f"were pruned after finishing (recorded as pruned, no compute saved)"]

    def observe(self, point: RunPoint, record: dict[str, Any]) -> None:
        state = self._open.get(point.trial)
        if state is None:
            return
        if record["status"] == "KILLED" and state.pruned_at is not None:
            state.stopped += 1
            self._record(state, point.run_key, None, stopped=True)
            return
        values = self._values(record["scalars"]) if record["status"] == "FINISHED" else None
        if values is not None:  # the whole curve, for steps never posted (tiny runs post nothing)
            state.curves.setdefault(point.run_key, {}).update(self._curve(record))
        self._record(state, point.run_key, values)

    def _values(self, scalars: dict[str, Any]) -> list[float] | None:
        values = [scalars.get(m.name) for m in self.sweep.metrics]
        if any(v is None or not math.isfinite(float(v)) for v in values):
            return None
        return [float(v) for v in values]

    def _record(self, state: _Trial, run_key: str, values: list[float] | None, stopped: bool = False) -> None:
        state.waiting.discard(run_key)
        if values is None and not stopped:
            state.failed = True
        elif values is not None:
            state.values.append(values)
        if state.waiting:
            return
        del self._open[state.trial.number]
        self.judged_late += self.board is not None and not state.posted
        self.pruned_late += state.replayed
        if state.failed:
            self.study.tell(state.trial, state=TrialState.FAIL)
        elif state.stopped:
            self.pruned += 1
            self.study.tell(state.trial, state=TrialState.PRUNED)
        else:
            if self.board is not None:
                self._report_steps(state, ask=False)
            means = [sum(column) / len(column) for column in zip(*state.values)]
            self.study.tell(state.trial, means if self.sweep.is_multi_objective else means[0])

    # --- pruning ------------------------------------------------------------------------------

    @property
    def poll_every_s(self) -> float | None:
        """How often the coordinator should call poll() (None: no pruner, never)."""
        return POLL_EVERY_S if self.board is not None else None

    def poll(self) -> None:
        """Drain the board: report complete steps, ask should_prune, mark pruned trials on the board.
        At most once per POLL_EVERY_S (one actor round trip each), however quickly results come in."""
        now = time.monotonic()
        if self.board is None or now - self._last_poll < POLL_EVERY_S:
            return
        self._last_poll = now
        import ray

        for trial, run_key, values in ray.get(self.board.drain.remote()):
            state = self._open.get(trial)
            if state is not None:
                state.posted = True
                state.curves.setdefault(run_key, {}).update(dict(values))
        pruned = [state.trial.number for state in self._open.values() if state.pruned_at is None and self._report_steps(state)]
        if pruned:
            self.board.stop.remote(pruned)

    def _report_steps(self, state: _Trial, ask: bool = True, ask_below: int | None = None) -> bool:
        """Report each step every seed has reached (mean over seeds), once, in order; True when pruned.
        ask_below: ask the pruner only before this step (a finished run's last step saves nothing)."""
        seeds = len(self.sweep.seeds)
        while state.pruned_at is None or not ask:  # a finishing trial reports its remaining steps too
            step = state.reported + 1
            values = [curve[step] for curve in state.curves.values() if step in curve]
            if len(values) < seeds:
                return False
            value = sum(values) / len(values)
            state.trial.report(value, step)
            state.reported = step
            if ask and (ask_below is None or step < ask_below) and state.trial.should_prune():
                state.pruned_at = (step, value)
                return True
        return False

    def exhausted(self) -> bool:
        return not self._open and self.trial_count() >= self.budget

    def best(self) -> tuple[float | None, dict[str, Any] | None]:
        """The best value of the primary (first) metric; multi-objective: among the Pareto front."""
        if self.sweep.is_multi_objective:
            front = self.study.best_trials
            if not front:
                return None, None
            pick = min if self.sweep.metric.goal == "minimize" else max
            best = pick(front, key=lambda trial: trial.values[0])
            return best.values[0], best.params
        try:
            best = self.study.best_trial
        except ValueError:  # no COMPLETE trial yet
            return None, None
        return best.value, best.params
