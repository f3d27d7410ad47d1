"""Answers about terminated sweeps, kept in memory by the HTTP service.

A sweep whose parent run is terminated cannot change until it is submitted again, and a
submission first sets the parent RUNNING. So an answer (status, a results query) computed for a
terminated sweep stays valid while the parent run's (id, status, end time, results rows) stay the
same. The parent is looked up at most once every `revalidate_s` per sweep, by one request while
the others wait for it; a running sweep is never cached. Concurrent requests for the same missing
answer compute it once.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Any

from study.mlflow_names import METRIC_RESULTS_ROWS


class FinishedSweeps:
    def __init__(self, tracking_uri: str | None, revalidate_s: float = 2.0, max_answers: int = 512):
        self.tracking_uri = tracking_uri
        self.revalidate_s = revalidate_s
        self.max_answers = max_answers
        self._checked: dict[str, tuple[float, Hashable | None]] = {}
        self._answers: OrderedDict[Hashable, tuple[Hashable, Any]] = OrderedDict()
        self._computing: dict[Hashable, threading.Lock] = {}
        self._checking: dict[str, threading.Lock] = {}
        self._lock = threading.Lock()

    def answer(self, sweep: str, question: Hashable, compute: Callable[[], Any]) -> Any:
        """compute(), or the answer kept for this question while the sweep is unchanged."""
        token = self._token(sweep)
        if token is None:
            return compute()
        key = (sweep, question)
        with self._lock:
            gate = self._computing.setdefault(key, threading.Lock())
        with gate:
            with self._lock:
                kept = self._answers.get(key)
                if kept is not None and kept[0] == token:
                    self._answers.move_to_end(key)
                    return kept[1]
            value = compute()
            with self._lock:
                self._answers[key] = (token, value)
                while len(self._answers) > self.max_answers:
                    self._answers.popitem(last=False)
            return value

    def forget(self, sweep: str) -> None:
        """The sweep is being submitted again: nothing kept about it holds."""
        with self._lock:
            self._checked.pop(sweep, None)
            for key in [key for key in self._answers if key[0] == sweep]:
                del self._answers[key]

    def _token(self, sweep: str) -> Hashable | None:
        # One parent-run check per sweep at a time: when the check falls due, the concurrent
        # requests wait for it and take its answer rather than each running a search of their own.
        with self._lock:
            gate = self._checking.setdefault(sweep, threading.Lock())
        with gate:
            return self._checked_token(sweep)

    def _checked_token(self, sweep: str) -> Hashable | None:
        now = time.monotonic()
        with self._lock:
            checked = self._checked.get(sweep)
            if checked is not None and now - checked[0] < self.revalidate_s:
                return checked[1]
        from study.reading import results

        parents = results.parent_runs(self.tracking_uri, sweep)
        token = None
        if not parents.empty:
            parent = parents.sort_values("start_time").iloc[0]
            if parent["status"] != "RUNNING":
                rows = parent.get(f"metrics.{METRIC_RESULTS_ROWS}")
                token = (parent["run_id"], parent["status"], str(parent["end_time"]), None if rows != rows else rows)
        with self._lock:
            self._checked[sweep] = (now, token)
        return token
