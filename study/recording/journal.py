"""The write journal of one sweep on one store: every MLflow write command, appended before it is
applied, so that nothing is lost while the store is down or when the coordinator dies.

Two JSON-lines files per (sweep, store), under $STUDY_SPOOL_DIR or ~/.cache/study/spool:

- the journal (`<sweep>-<store digest>.jsonl`): this coordinator's commands, removed as soon as
  everything in it has reached the store;
- the inherited backlog (`….inherited.jsonl`): a journal an earlier coordinator left behind,
  replayed first by the next coordinator of the same sweep and store, then removed.

study.recording.writer.TrackingWriter applies the commands; this module only keeps them.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from study.recording import layout as tracking


def inherited_path(spool: Path) -> Path:
    return spool.with_suffix(".inherited.jsonl")


class Journal:
    """Append-only command log with sequence numbers; thread-safe appends."""

    def __init__(self, sweep_name: str, tracking_uri: str):
        self.path = tracking.spool_path(sweep_name, tracking_uri)
        self.inherited = inherited_path(self.path)
        self.rejected = self.path.with_suffix(".rejected.jsonl")
        self.appended = 0
        self._lock = threading.Lock()
        self._handle: Any = None  # open while the journal file exists; closed before it is removed
        self._adopt()

    def _adopt(self) -> None:
        """A journal left by an earlier coordinator becomes the inherited backlog."""
        if self.path.exists():
            with self.inherited.open("a") as handle:
                handle.write(self.path.read_text())
            self.path.unlink()

    def append(self, command: dict[str, Any]) -> int:
        """Give the command the next sequence number and write it down (before it is queued)."""
        with self._lock:
            self.appended += 1
            command["seq"] = self.appended
            if self._handle is None:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self._handle = self.path.open("a")
            self._handle.write(json.dumps(command) + "\n")
            self._handle.flush()  # in the OS's hands: a killed coordinator loses nothing
            return self.appended

    def commands_after(self, seq: int) -> list[dict[str, Any]]:
        """Our own commands past `seq` (what an outage cut off)."""
        with self._lock:
            lines = self.path.read_text().splitlines() if self.path.exists() else []
        return [command for command in map(json.loads, lines) if command["seq"] > seq]

    def forget_if_caught_up(self, applied: int) -> None:
        """Remove the journal once every appended command was applied."""
        with self._lock:
            if applied == self.appended:
                self._close()
                self.path.unlink(missing_ok=True)

    def close(self) -> None:
        with self._lock:
            self._close()

    def _close(self) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None

    def backlog(self) -> list[str]:
        return self.inherited.read_text().splitlines() if self.inherited.exists() else []

    def keep_backlog(self, lines: list[str]) -> None:
        """Rewrite the inherited backlog to what is still to replay (atomically)."""
        temporary = self.inherited.with_suffix(".tmp")
        temporary.write_text("".join(line + "\n" for line in lines))
        os.replace(temporary, self.inherited)

    def drop_backlog(self) -> None:
        self.inherited.unlink(missing_ok=True)

    def reject(self, command: dict[str, Any], message: str) -> None:
        """A write the store refused (not an outage) is kept beside the journal."""
        self.rejected.parent.mkdir(parents=True, exist_ok=True)
        with self.rejected.open("a") as handle:
            handle.write(json.dumps({"error": message, "command": command}) + "\n")

    def pending_files(self) -> bool:
        return self.path.exists() or self.inherited.exists()


def journaled_commands(sweep_name: str, tracking_uri: str) -> Iterator[dict[str, Any]]:
    """Every command waiting in the journal and backlog of a sweep (without adopting them)."""
    spool = tracking.spool_path(sweep_name, tracking_uri)
    for path in (inherited_path(spool), spool):
        if path.exists():
            yield from map(json.loads, path.read_text().splitlines())


def journaled_runs(sweep: Any, tracking_uri: str) -> tuple[dict[str, dict[str, float]], dict[str, int]]:
    """From a journal left by an earlier coordinator: (run_key -> scalars of FINISHED runs,
    run_key -> highest attempt). They count for resume: those runs are not lost."""
    finished: dict[str, dict[str, float]] = {}
    attempts: dict[str, int] = {}
    for command in journaled_commands(sweep.name, tracking_uri):
        if command.get("op") == "run":
            key = command["run_key"]
            attempts[key] = max(attempts.get(key, 0), int(command["attempt"]))
            if command["record"]["status"] == "FINISHED":
                finished[key] = command["record"]["scalars"]
    return finished, attempts
