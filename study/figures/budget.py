"""Which runs a sweep gives figures inside the Ray task. No matplotlib here: every task asks.

One summary.png costs ~0.2 s of CPU on the 2-core host (benchmarks/figures_overhead.py): 2-4x a whole
run of configs/quick.yaml. Rendering it beside the run is worth it only when the run is long enough for
the figure to add at most MAX_FIGURE_SHARE; shorter runs get theirs from `study figures SWEEP` afterwards.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

FIGURE_COST_S = 0.2
MAX_FIGURE_SHARE = 0.10
MIN_RUN_S_FOR_FIGURES = float(os.environ.get("STUDY_MIN_RUN_S_FOR_FIGURES", FIGURE_COST_S / MAX_FIGURE_SHARE))


def worth_rendering(record: Mapping[str, Any], min_run_s: float = MIN_RUN_S_FOR_FIGURES) -> bool:
    """True when the run (a Result record or dict with wall_s) took at least `min_run_s`."""
    return float(record.get("wall_s") or 0.0) >= min_run_s
