"""The README's `make demo` table is what the code computes: two of its rows are recomputed here from
configs/quick.yaml (in-process, no Ray or MLflow) and compared with the digits printed there. A
change to the numerics or to the sweep's defaults that moves them makes the README stale; this
fails then, and the table wants `make demo` again."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from study.spec.loading import load_sweep
from workers.run import run

REPO = Path(__file__).resolve().parents[1]
ROW = re.compile(r"^\s*(\d+)\s+(\d+)\s+(\d+\.(\d+)) ± (\d+\.\d+) \((\d+)\)", re.MULTILINE)


def _readme_rows() -> dict[tuple[int, float], tuple[float, int, float, int]]:
    """(T, kappa) -> (mean, decimals printed, std, count) of root_error in the README's demo table."""
    text = (REPO / "README.md").read_text()
    start = text.index("$ study results quick --group-by T,kappa --metric root_error,rho_ratio,mse_ratio")
    block = text[start : text.index("```", start)]
    return {(int(T), float(kappa)): (float(mean), len(decimals), float(std), int(count))
            for T, kappa, mean, decimals, std, count in ROW.findall(block)}


@pytest.mark.parametrize("T, kappa", [(4, 10.0), (8, 100.0)])
def test_the_demo_table_in_the_readme_is_what_the_code_computes(T, kappa):
    rows = _readme_rows()
    assert len(rows) == 6, rows  # 2 depths x 3 condition numbers
    mean, decimals, std, count = rows[(T, kappa)]
    sweep = load_sweep((REPO / "configs" / "quick.yaml").read_text())
    points = [p for p in sweep.expand() if p.params["T"] == T and float(p.params["kappa"]) == kappa]
    values = [run(point.params).scalars["root_error"] for point in points]
    assert len(values) == count == 4  # 2 sizes x 2 seeds
    half_digit = 0.5 * 10.0 ** -decimals + 1e-12  # what rounding to the printed digits allows
    assert abs(np.mean(values) - mean) <= half_digit, (np.mean(values), mean)
    assert abs(np.std(values, ddof=1) - std) <= half_digit, (np.std(values, ddof=1), std)  # pandas' std
