"""The live progress line of `study submit` (rich) and the final summary."""

from __future__ import annotations

from rich.console import Console
from rich.live import Live
from rich.text import Text

from study.scheduling.outcome import Progress, SweepSummary


def format_duration(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


def render(progress: Progress, metric: str) -> Text:
    """done / running / failed / skipped, ETA, best so far; a red warning during a tracking outage.
    Once the runs are done and writes remain: how many, and how long they will take."""
    todo = progress.total - progress.skipped
    line = Text()
    if progress.writes_pending:
        left = f", ~{format_duration(progress.writes_eta_s)} left" if progress.writes_eta_s is not None else ""
        line.append(f"{progress.done}/{todo} done; writing {progress.writes_pending:,} runs to MLflow{left}", style="bold")
        if progress.outage:
            line.append(f"\nwarning: {progress.outage}", style="bold red")
        return line
    line.append(f"{progress.done}/{todo} done", style="bold")
    line.append(f"  {progress.running} running  ")
    line.append(f"{progress.failed} failed", style="red" if progress.failed else "")
    if progress.pruned:
        line.append(f"  {progress.pruned} pruned")
    line.append(f"  {progress.skipped} skipped  ETA {format_duration(progress.eta_s)}")
    if progress.best is not None:
        line.append(f"  best {metric} {progress.best:.6g}", style="green")
    if progress.outage:
        line.append(f"\nwarning: {progress.outage}", style="bold red")
    return line


class ProgressLine:
    """Callable for submit(on_progress=...); use as a context manager around the sweep."""

    def __init__(self, metric: str, console: Console | None = None):
        self.metric = metric
        self.console = console or Console(stderr=True)
        self._live = Live(Text("starting..."), console=self.console, refresh_per_second=4, transient=False)

    def __enter__(self) -> "ProgressLine":
        self._live.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self._live.__exit__(*exc)
        if not self.console.is_terminal:  # rich prints the last frame without a line break there
            self.console.line()

    def __call__(self, progress: Progress) -> None:
        self._live.update(render(progress, self.metric))


def summary_text(summary: SweepSummary, metric: str) -> str:
    lines = [
        f"sweep {summary.sweep}: {summary.status} in {format_duration(summary.wall_s)}",
        f"runs: {summary.total} total, {summary.finished} finished, {summary.failed} failed, "
        f"{summary.skipped} skipped (done before), {summary.cancelled} cancelled"
        + (f", {summary.pruned} pruned" if summary.pruned else ""),
    ]
    lines += summary.notes
    if summary.best is not None:
        lines.append(f"best {metric}: {summary.best:.6g} at {summary.best_params}")
    if summary.spool:
        lines.append(f"error: {summary.outage}; {summary.writes_pending:,} writes wait in the journal: "
                     f"resubmit the sweep when the store is back to replay {summary.spool}")
    if summary.rejected_writes:
        lines.append(f"warning: MLflow rejected {len(summary.rejected_writes)} writes, e.g. {summary.rejected_writes[0]}")
    return "\n".join(lines)
