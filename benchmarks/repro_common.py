"""What every docs/reproductions.md section script shares: the repository root on sys.path, the
figure folder, and the Markdown table printer."""

from __future__ import annotations

import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from study.figures.run_figures import log_axis, to_png  # noqa: E402

OUT = REPO / "docs" / "reproductions"


def save(figure, name: str) -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / name).write_bytes(to_png(figure))
    print(f"wrote docs/reproductions/{name}")


def table(header: list[str], rows: list[list[object]]) -> None:
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for row in rows:
        print("| " + " | ".join(_cell(value) for value in row) + " |")
    print()


def _cell(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def config_fixed(name: str) -> dict:
    """A committed sweep file's fixed parameters (scalars), as a run's parameters."""
    from study.spec.loading import load_sweep

    return dict(load_sweep((REPO / "configs" / name).read_text()).fixed)


def finish_axes(axes, xlabel: str, title: str, log: bool = True, legend_size: int = 7) -> None:
    """The common finish of a section's panel: log y (optional), x label, small title, grid, legend."""
    if log:
        log_axis(axes)
    axes.set_xlabel(xlabel)
    axes.set_title(title, fontsize=9)
    axes.grid(True, alpha=0.3)
    axes.legend(fontsize=legend_size)
