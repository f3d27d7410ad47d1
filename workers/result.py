"""The Result of one run: small, plain data, JSON-serialisable (design.md "Result fields")."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any, Literal


@dataclass
class Result:
    """What a run returns. `scalars` become MLflow metrics, `series` step-indexed metrics,
    `info` short strings/flags (params-like facts the run decided, e.g. which edges were used).

    A scalar None means "never reached" (e.g. no iterate reached the round-off floor): it is no
    number, so it is not logged, and aggregation over seeds counts only the runs that reached it."""

    params: dict[str, Any]
    status: Literal["FINISHED", "FAILED", "KILLED"] = "FINISHED"  # KILLED: stopped on request (on_checkpoint)
    reason: str | None = None
    scalars: dict[str, float | None] = field(default_factory=dict)
    series: dict[str, list[float]] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)
    wall_s: float = 0.0

    def non_finite_scalars(self) -> list[str]:
        return [k for k, v in self.scalars.items() if v is not None and not math.isfinite(v)]

    def to_dict(self) -> dict[str, Any]:
        """Flat JSON view: status, reason, params, then every scalar, series and info field."""
        out: dict[str, Any] = {"status": self.status, "reason": self.reason, "params": self.params}
        out.update(self.info)
        out.update({k: _json_float(v) for k, v in self.scalars.items()})
        out.update({k: [_json_float(x) for x in v] for k, v in self.series.items()})
        out["wall_s"] = self.wall_s
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Result":
        return cls(**data)

    def as_record(self) -> dict[str, Any]:
        """Lossless dict for transport (inverse of from_dict)."""
        return asdict(self)


def _json_float(value: float | None) -> float | str | None:
    # JSON has no NaN/Inf; keep them readable instead of emitting invalid JSON. None ("not reached") is null.
    return value if value is None or math.isfinite(value) else str(value)
