"""Deep-unfolding studies: sweeps on Ray, recorded in MLflow, searched with Optuna.

What a notebook needs, all importable from here:

    sweep = study.load_sweep("configs/quick.yaml")          # a validated Sweep (StudyInputError otherwise)
    summary = study.submit(sweep)                           # run it (resumes: FINISHED points are skipped)
    frame = study.load_results("quick")                     # one row per run point
    table = study.aggregate(frame, ["T", "kappa"], ["root_error"])     # mean, std, count over seeds
    table = study.answer(frame, study.parse_query("T,kappa", "root_error", where="n=64"))
    study.sweep_status("quick"); study.list_sweeps()
    study.build_report("quick", "report-quick")             # the HTML page and its figures
    study.pareto_front(frame, study.stored_sweep("front")); study.importances(sweep, frame)
    with study.StudyClient("http://host:8000") as client: ...   # the same over `study serve`

Names load lazily (PEP 562): `import study` imports none of Ray, MLflow, Optuna, pandas or matplotlib,
so a Ray worker that imports study.scheduling.task pays only for what that module needs.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

# name -> the module that defines it (study/ by concern, docs/design-notes.md issue 21; these names stay).
_WHERE = {
    "load_sweep": "study.spec.loading",
    "Sweep": "study.spec.loading",
    "RunPoint": "study.spec.loading",
    "submit": "study.scheduling.coordinator",
    "SweepSummary": "study.scheduling.outcome",
    "load_results": "study.reading.results",
    "aggregate": "study.reading.results",
    "sweep_status": "study.reading.results",
    "list_sweeps": "study.reading.results",
    "parse_query": "study.reading.query",
    "answer": "study.reading.query",
    "Query": "study.reading.query",
    "build_report": "study.report.page",
    "Report": "study.report.page",
    "stored_sweep": "study.reading.analysis",
    "point_means": "study.reading.analysis",
    "pareto_front": "study.reading.analysis",
    "importances": "study.reading.analysis",
    "StudyClient": "study.client",
    "StudyInputError": "study.errors",
    "SweepNotFound": "study.reading.results",
    "SweepBusy": "study.scheduling.lease",
    "SweepStartRefused": "study.recording.parent_run",
    "ServiceError": "study.client",
}

__all__ = [
    "Query",
    "Report",
    "RunPoint",
    "ServiceError",
    "StudyClient",
    "StudyInputError",
    "Sweep",
    "SweepBusy",
    "SweepNotFound",
    "SweepStartRefused",
    "SweepSummary",
    "aggregate",
    "answer",
    "build_report",
    "importances",
    "list_sweeps",
    "load_results",
    "load_sweep",
    "pareto_front",
    "parse_query",
    "point_means",
    "stored_sweep",
    "submit",
    "sweep_status",
]


def __getattr__(name: str) -> Any:
    if name not in __all__:  # the public face is __all__; a name only in _WHERE stays hidden
        raise AttributeError(f"module 'study' has no attribute {name!r}")
    value = getattr(importlib.import_module(_WHERE[name]), name)
    globals()[name] = value  # once loaded, a plain attribute
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])


if TYPE_CHECKING:  # what type checkers and IDEs see; nothing of it runs
    from study.client import ServiceError, StudyClient
    from study.scheduling.coordinator import submit
    from study.errors import StudyInputError
    from study.reading.analysis import importances, pareto_front, point_means, stored_sweep
    from study.scheduling.lease import SweepBusy
    from study.reading.query import Query, answer, parse_query
    from study.report.page import Report, build_report
    from study.reading.results import SweepNotFound, aggregate, list_sweeps, load_results, sweep_status
    from study.scheduling.outcome import SweepSummary
    from study.spec.loading import RunPoint, Sweep, load_sweep
    from study.recording.parent_run import SweepStartRefused
