"""An outage (the store unreachable: keep the write and retry) told apart from a refusal (the store
answered no: keep the write aside and say so)."""

from __future__ import annotations

_UNREACHABLE_MARKERS = (
    "max retries exceeded", "connection refused", "failed to establish", "connection aborted",
    "unable to open database", "database is locked", "read timed out", "not a directory",
    "temporarily unavailable", "service unavailable", "bad gateway", "response code 50",
)


def is_unreachable(error: BaseException) -> bool:
    """A connection-type failure (store down, file unreachable) rather than a rejected write."""
    seen: BaseException | None = error
    while seen is not None:
        if isinstance(seen, (ConnectionError, TimeoutError, OSError)):
            return True
        if type(seen).__name__ in {"OperationalError", "ConnectionError", "Timeout", "ConnectTimeout"}:
            return True
        if any(marker in str(seen).lower() for marker in _UNREACHABLE_MARKERS):
            return True
        seen = seen.__cause__ or seen.__context__
    return False
