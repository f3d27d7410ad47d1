"""HTTP client for `study serve` (httpx), and the `--server` modes of `study submit` / `study results`.

The token comes from $STUDY_API_TOKEN, as on the server.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from typing import Any

import httpx

TOKEN_ENV = "STUDY_API_TOKEN"
TERMINAL_STATES = frozenset({"finished", "failed", "cancelled"})


class ServiceError(Exception):
    """The service said no. `lines` are its one-line messages; 422 means bad input (CLI exit 2)."""

    def __init__(self, status_code: int, lines: list[str]):
        self.status_code = status_code
        self.lines = lines
        super().__init__(f"HTTP {status_code}: " + "; ".join(lines))


class StudyClient:
    """One connection to a study service. Use as a context manager, or call close()."""

    def __init__(self, server: str, token: str | None = None, timeout: float = 30.0):
        token = token if token is not None else os.environ.get(TOKEN_ENV)
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._http = httpx.Client(base_url=server.rstrip("/"), headers=headers, timeout=timeout)

    def __enter__(self) -> "StudyClient":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def _call(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        response = self._http.request(method, path, **kwargs)
        if response.is_error:
            raise ServiceError(response.status_code, _error_lines(response))
        return response

    def submit(self, sweep_text: str) -> dict[str, Any]:
        """Send a sweep file (YAML or JSON text); returns {"id", "state", "runs"}."""
        return self._call("POST", "/sweeps", content=sweep_text.encode(), headers={"Content-Type": "application/yaml"}).json()

    def sweeps(self) -> list[dict[str, Any]]:
        return self._call("GET", "/sweeps").json()

    def status(self, sweep_id: str) -> dict[str, Any]:
        return self._call("GET", f"/sweeps/{sweep_id}").json()

    def cancel(self, sweep_id: str) -> dict[str, Any]:
        return self._call("POST", f"/sweeps/{sweep_id}/cancel").json()

    def results(
        self, sweep_id: str, group_by: Sequence[str] = (), metrics: Sequence[str] = (), fmt: str = "json",
        where: Sequence[str] | str = (), runs: bool = False,
    ) -> Any:
        """Rows as a list of dicts (fmt="json") or CSV text (fmt="csv"), as `study results` computes them:
        `where` selects runs first ("n=64,mode=eigen", "kappa>=30"); `runs` lists one row per run.
        A query the service refuses raises ServiceError (422, one line per problem)."""
        params: dict[str, Any] = {"group_by": list(group_by), "metric": list(metrics), "format": fmt,
                                  "where": [where] if isinstance(where, str) else list(where)}
        if runs:
            params["runs"] = "true"
        response = self._call("GET", f"/sweeps/{sweep_id}/results", params=params)
        return response.json() if fmt == "json" else response.text

    def follow(
        self,
        sweep_id: str,
        on_update: Callable[[dict[str, Any]], None] | None = None,
        poll_s: float = 1.0,
        timeout_s: float | None = None,
    ) -> dict[str, Any]:
        """Poll until the sweep reaches a terminal state; returns its last status."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while True:
            status = self.status(sweep_id)
            if on_update is not None:
                on_update(status)
            if status["state"] in TERMINAL_STATES:
                return status
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"sweep {sweep_id} still {status['state']} after {timeout_s} s")
            time.sleep(poll_s)


def _error_lines(response: httpx.Response) -> list[str]:
    try:
        detail = response.json().get("detail")
    except ValueError:
        detail = response.text.strip() or response.reason_phrase
    return [str(line) for line in detail] if isinstance(detail, list) else [str(detail)]


def progress_line(status: dict[str, Any]) -> str:
    """One line: state, done/total, running, failed, ETA, best so far."""
    parts = [f"{status['id']}: {status['state']}"]
    if "total" in status:
        parts.append(f"done {status.get('done', 0)}/{status['total']}")
        parts.append(f"running {status.get('running', 0)}")
        parts.append(f"failed {status.get('failed', 0)}")
    if status.get("eta_s") is not None:
        parts.append(f"eta {status['eta_s']:.0f}s")
    best = status.get("best")
    if best is not None:
        parts.append(f"best {best:.6g}" if isinstance(best, (int, float)) else f"best {best}")
    if status.get("outage"):
        parts.append(f"store outage: {status['outage']}")
    if status.get("error"):
        parts.append(f"error: {status['error']}")
    return "  ".join(parts)


def submit_to_server(server: str, sweep_text: str, follow: bool = True, echo: Callable[[str], None] = print) -> int:
    """`study submit --server URL FILE`: send, then print a progress line on every change.
    Returns the exit code: 0 finished, 1 failed or cancelled. Raises ServiceError on refusal."""
    with StudyClient(server) as client:
        accepted = client.submit(sweep_text)
        echo(f"submitted {accepted['id']} ({accepted['runs']} runs) to {server}")
        if not follow:
            return 0
        last = [""]

        def show(status: dict[str, Any]) -> None:
            line = progress_line(status)
            if line != last[0]:
                echo(line)
                last[0] = line

        try:
            final = client.follow(accepted["id"], on_update=show)
        except KeyboardInterrupt:  # the sweep belongs to the service now: stop watching, not the sweep
            echo(f"stopped following; {accepted['id']} keeps running on {server} (POST /sweeps/{accepted['id']}/cancel stops it)")
            return 130
    return 0 if final["state"] == "finished" else 1


def results_frame_from_server(server: str, sweep_id: str, group_by: Sequence[str] = (), metrics: Sequence[str] = (),
                              where: Sequence[str] | str = (), runs: bool = False):
    """`study results --server URL SWEEP`: the table `study results` computes locally, read over HTTP."""
    import pandas as pd

    with StudyClient(server) as client:
        return pd.DataFrame(client.results(sweep_id, group_by, metrics, fmt="json", where=where, runs=runs))
