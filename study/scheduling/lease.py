"""One coordinator per sweep and store: the lease a coordinator holds while it runs a sweep.

Which mechanism covers which case:

- Embedded stores (sqlite:///..., a file store): an OS file lock (fcntl.flock) on
  <store dir>/.study-locks/<store file>.<sweep>.lock, held for the coordinator's life. It covers
  every process on the host that opens that store: CLI and CLI, CLI and `study serve`, two threads
  of one service. The kernel drops the lock when its holder dies, even by kill -9, so a resubmit
  gets it at once (no expiry). The file holds the holder as JSON (host, pid, since) for the
  refusal. Not covered: one SQLite file shared by several hosts over a network filesystem (flock
  is unreliable there, and so is SQLite). The first use of a SQLite store in a process is also
  serialised, with a blocking flock on <store file>.init.lock (study.recording.parent_run.store_init_lock):
  MLflow migrates a fresh store on first use, and two migrations at once leave it broken, even for
  two different sweeps.
- Server and database stores (http(s)://, postgresql://, ...): tags on the sweep's parent run, one
  per claimant (names.TAG_LEASE_PREFIX + holder id; JSON value: host, pid, since, heartbeat, state).
  It covers coordinators on different hosts and Ray clusters that share the store. A claimant that
  finds no live claim writes its own, waits SETTLE_S and reads again (compare-and-check): a claim
  already `held` wins, else the earliest (since, holder id); the others delete their claim and
  refuse. The holder rewrites its heartbeat every TTL/6; a claim whose heartbeat is older than the
  TTL (STUDY_LEASE_TTL_S, default 30 s) is dead, so a holder lost to kill -9 or a dead node keeps
  a resubmit out for at most one TTL. Assumes the hosts' clocks agree to well within the TTL and
  that a tag written is visible to readers within SETTLE_S. A holder cut off from the store for
  longer than the TTL (its heartbeats fail) can be overtaken by a new coordinator: the lease is
  only as good as the store's reachability.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from mlflow import MlflowClient

import study.mlflow_names as names
from study.recording.parent_run import LOCK_DIR, SweepStartRefused, sqlite_file, start_parent

log = logging.getLogger(__name__)

SETTLE_S = 1.0
WAIT_POLL_S = 1.0


def ttl_s() -> float:
    return float(os.environ.get("STUDY_LEASE_TTL_S", "30"))


class SweepBusy(RuntimeError):
    """Another coordinator holds the sweep; str() is the one line the loser prints."""

    def __init__(self, sweep: str, holder: dict[str, Any], expiry: str):
        self.sweep, self.holder = sweep, holder
        super().__init__(f"sweep {sweep} is being run by host {holder.get('host', '?')} pid {holder.get('pid', '?')} "
                         f"since {_clock(holder.get('since'))} ({expiry}); use --wait to wait for it")


def _clock(epoch: Any) -> str:
    try:
        return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(float(epoch)))
    except (TypeError, ValueError):
        return "?"


def _me(holder_id: str) -> dict[str, Any]:
    return {"id": holder_id, "host": socket.gethostname(), "pid": os.getpid(), "since": time.time()}


def acquire(sweep: Any, tracking_uri: str, *, wait: bool = False,
            on_wait: Callable[[str], None] | None = None) -> "FileLease | TagLease":
    """Hold the sweep (a Sweep) on this store, or raise SweepBusy (wait=True: wait for the holder,
    telling on_wait once, then hold it). A server store gets the sweep's parent run created first."""
    lease = _lease_for(sweep, tracking_uri)
    told = False
    while True:
        try:
            lease.try_acquire()
            return lease
        except SweepBusy as busy:
            if not wait:
                raise
            if on_wait is not None and not told:
                on_wait(f"waiting: {str(busy).rsplit(';', 1)[0]}")
                told = True
            time.sleep(WAIT_POLL_S)


def _lease_for(sweep: Any, tracking_uri: str) -> "FileLease | TagLease":
    sweep_name = sweep.name
    parsed, store = urlparse(tracking_uri), sqlite_file(tracking_uri)
    if store is not None:
        return FileLease(sweep_name, store)
    if parsed.scheme in ("", "file"):
        return FileLease(sweep_name, Path(parsed.path or tracking_uri).resolve() / "store")
    return TagLease(sweep, tracking_uri)


class FileLease:
    """flock beside an embedded store (see the module docstring)."""

    def __init__(self, sweep_name: str, store: Path):
        self.sweep_name = sweep_name
        self.path = store.parent / LOCK_DIR / f"{store.name}.{sweep_name}.lock"
        self._fd: int | None = None

    def try_acquire(self) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)  # not inherited by children (PEP 446)
        except OSError as error:  # the store's directory is unusable: so is the store
            raise SweepStartRefused(f"sweep {self.sweep_name}: cannot lock it beside its store ({type(error).__name__}: "
                                    f"{error.strerror or error}); nothing was scheduled") from error
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise SweepBusy(self.sweep_name, self._holder(), "the lock is released the moment that process exits") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(_me(uuid.uuid4().hex)).encode(), 0)
        self._fd = fd

    def _holder(self) -> dict[str, Any]:
        for _ in range(20):  # the holder writes its JSON right after taking the lock
            try:
                return json.loads(self.path.read_text())
            except (OSError, ValueError):
                time.sleep(0.05)
        return {}

    def release(self) -> None:
        if self._fd is None:
            return
        os.ftruncate(self._fd, 0)
        fcntl.flock(self._fd, fcntl.LOCK_UN)
        os.close(self._fd)
        self._fd = None


class TagLease:
    """Claim tags with a heartbeat on the parent run of a server store (see the module docstring)."""

    def __init__(self, sweep: Any, tracking_uri: str):
        self.sweep, self.sweep_name, self.uri = sweep, sweep.name, tracking_uri
        self.holder_id = uuid.uuid4().hex
        self.key = names.TAG_LEASE_PREFIX + self.holder_id
        self.ttl_s = ttl_s()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._client = self._parent_id = None
        self._me: dict[str, Any] = {}

    def _expiry(self) -> str:
        return f"lease expires {self.ttl_s:g} s after its last heartbeat"

    def _claims(self) -> dict[str, dict[str, Any]]:
        """Live claims on the parent run: holder id -> claim."""
        tags = self._client.get_run(self._parent_id).data.tags
        now, live = time.time(), {}
        for key, value in tags.items():
            if key.startswith(names.TAG_LEASE_PREFIX) and value:
                try:
                    claim = json.loads(value)
                    if now - float(claim["heartbeat"]) <= self.ttl_s:
                        live[key.removeprefix(names.TAG_LEASE_PREFIX)] = claim
                except (ValueError, KeyError, TypeError):
                    continue
        return live

    def _write(self, state: str) -> None:
        self._me.update(state=state, heartbeat=time.time())
        self._client.set_tag(self._parent_id, self.key, json.dumps(self._me))

    def try_acquire(self) -> None:
        self._client = MlflowClient(self.uri)
        if self._parent_id is None:
            self._parent_id = start_parent(self.sweep, self.uri)
        others = {key: claim for key, claim in self._claims().items() if key != self.holder_id}
        if others:
            raise SweepBusy(self.sweep_name, _first(others)[1], self._expiry())
        self._me = _me(self.holder_id)
        self._write("claim")
        time.sleep(SETTLE_S)
        claims = self._claims()
        claims.setdefault(self.holder_id, self._me)
        winner, claim = _first(claims)
        if winner != self.holder_id:
            self._client.delete_tag(self._parent_id, self.key)
            raise SweepBusy(self.sweep_name, claim, self._expiry())
        self._write("held")
        self._stop.clear()
        self._thread = threading.Thread(target=self._beat, name=f"lease-{self.sweep_name}", daemon=True)
        self._thread.start()

    def _beat(self) -> None:
        while not self._stop.wait(max(0.2, self.ttl_s / 6)):
            try:
                self._write("held")
            except Exception as error:  # noqa: BLE001 - the store may be down for a while; keep trying
                log.warning("lease heartbeat for sweep %s failed: %s", self.sweep_name, error)

    def release(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
            self._thread = None
            try:
                self._client.delete_tag(self._parent_id, self.key)
            except Exception as error:  # noqa: BLE001 - it expires after one TTL anyway
                log.warning("could not release the lease on sweep %s: %s", self.sweep_name, error)


def _first(claims: dict[str, dict[str, Any]]) -> tuple[str, dict[str, Any]]:
    """The claim that wins: one already held, else the earliest (since, holder id)."""
    key = min(claims, key=lambda k: (claims[k].get("state") != "held", float(claims[k].get("since", 0)), k))
    return key, claims[key]
