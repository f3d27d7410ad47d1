"""Questions asked of a sweep's results (design.md "What users see"), the same in the CLI, the API
and the Python client: the query input, validated like sweep files (one line per error naming the
field, the value and what was expected); the selection (`where`); the aggregated table and the
varying axes it pooled over; the per-run listing (`runs`); and the cells of the default table,
`mean ± std (count)` with the digits chosen per column.

Public face:
    parse_query(group_by, metric, where, runs, labels) -> Query    the syntax, before any store is read
    answer(frame, query) -> DataFrame     frame = study.reading.results.load_results(...); checked against it
    compact_cells(table, query) -> DataFrame of str                  the default table's cells
    column_text(values) -> list[str]      a column of numbers without spread, digits as in that table
    POOLED_COLUMN                         the table's field naming what it pooled over, when it did

Aggregation itself is study.reading.results.aggregate (mean, std, count over seeds, failures).
"""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from study.errors import StudyInputError, short
from workers.specs import SPEC_CLASSES

# How each front end names the query's fields in its error lines.
API_LABELS = {"group_by": "group_by", "metric": "metric", "where": "where", "runs": "runs"}
CLI_LABELS = {"group_by": "--group-by", "metric": "--metric", "where": "--where", "runs": "--runs"}
POOLED_COLUMN = "pooled_over"  # e.g. "n (2 values)"; present only when the group-by left a varying axis out
META_COLUMNS = ("run_id", "run_key", "status", "reason")
SPEC_FIELDS = frozenset(name for spec in SPEC_CLASSES.values() for name in spec.model_fields)
_NOT_AXES = {"seed", "problem"}  # the replicate axis, and one problem per sweep
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.\-]*")
_CLAUSE = re.compile(r"\s*([A-Za-z_][A-Za-z0-9_.\-]*)\s*(<=|>=|!=|==|=|<|>)\s*(.*?)\s*")
_ORDER = {"<": np.less, "<=": np.less_equal, ">": np.greater, ">=": np.greater_equal}
WHERE_FORM = "KEY=VALUE (or VALUE|VALUE), KEY!=VALUE, or KEY<, <=, >, >= NUMBER, comma-separated"
_LISTED = 12  # names listed in an error line before "..."


@dataclass(frozen=True)
class Condition:
    """One `where` clause: key, operator (= != < <= > >=) and its values (alternatives for = and !=)."""

    key: str
    op: str
    values: tuple[str, ...]
    text: str


@dataclass(frozen=True)
class Query:
    group_by: list[str] = field(default_factory=list)
    metrics: list[str] = field(default_factory=list)
    where: list[Condition] = field(default_factory=list)
    runs: bool = False
    labels: dict[str, str] = field(default_factory=lambda: dict(API_LABELS))

    @property
    def where_text(self) -> str:
        return ",".join(condition.text for condition in self.where)


def parse_query(group_by: Sequence[str] | str | None = (), metric: Sequence[str] | str | None = (),
                where: Sequence[str] | str | None = (), runs: bool = False, labels: dict[str, str] = API_LABELS,
                require_metric: bool = False) -> Query:
    """Check the query's syntax (every error at once). Lists may come comma-separated, repeated, or both."""
    errors: list[str] = []
    group_names = _names(_as_list(group_by), labels["group_by"], errors)
    metric_names = _names(_as_list(metric), labels["metric"], errors)
    conditions = _conditions(_as_list(where), labels["where"], errors)
    for name in sorted(set(group_names) & set(metric_names)):
        errors.append(f"{labels['metric']}: got {name!r}, expected a result metric that is not also in {labels['group_by']}")
    if runs and group_names:
        errors.append(f"{labels['runs']}: got it with {labels['group_by']} {','.join(group_names)!r}, "
                      f"expected no {labels['group_by']} (runs lists one row per run)")
    if (require_metric or group_names) and not metric_names and not runs:
        errors.append(f"{labels['metric']}: got nothing, expected at least one result metric to aggregate")
    if errors:
        raise StudyInputError(errors)
    return Query(group_names, metric_names, conditions, bool(runs), dict(labels))


def _as_list(values: Sequence[str] | str | None) -> list[str]:
    if values is None:
        return []
    return [values] if isinstance(values, str) else [str(value) for value in values]


def _names(values: list[str], label: str, errors: list[str]) -> list[str]:
    text = ",".join(values)
    if not text.strip():
        return []
    items = [item.strip() for value in values for item in value.split(",")]
    if any(not item for item in items):
        errors.append(f"{label}: got {short(text)}, expected comma-separated names (one of them is empty)")
    for item in items:
        if item and not _NAME.fullmatch(item):
            errors.append(f"{label}: got {short(item)}, expected a column name (letters, digits, '_', '.', '-')")
    repeated = [item for item in dict.fromkeys(items) if item and items.count(item) > 1]
    if repeated:
        errors.append(f"{label}: got {short(text)}, expected each name once ({', '.join(repeated)} repeated)")
    return [item for item in dict.fromkeys(items) if item]


def _conditions(values: list[str], label: str, errors: list[str]) -> list[Condition]:
    text = ",".join(values)
    if not text.strip():
        return []
    conditions: list[Condition] = []
    for clause in (item for value in values for item in value.split(",")):
        match = _CLAUSE.fullmatch(clause)
        raw = match.group(3) if match else ""
        if not match or not raw or any(op in raw for op in "<>=!"):
            errors.append(f"{label}: got {short(clause.strip() or text)}, expected {WHERE_FORM}")
            continue
        key, op = match.group(1), "=" if match.group(2) == "==" else match.group(2)
        options = tuple(option.strip() for option in raw.split("|")) if op in ("=", "!=") else (raw,)
        if any(not option for option in options):
            errors.append(f"{label}: got {short(clause.strip())}, expected a value on each side of '|'")
            continue
        if op in _ORDER and _number(raw) is None:
            errors.append(f"{label}: got {short(clause.strip())}, expected a number after {op}")
            continue
        condition = Condition(key, op, options, f"{key}{op}{'|'.join(options)}")
        if condition in conditions:
            errors.append(f"{label}: got {short(text)}, expected each condition once ({condition.text} repeated)")
            continue
        conditions.append(condition)
    return conditions


def _number(text: str) -> float | None:
    try:
        value = float(text)
    except ValueError:
        return None
    return value if not math.isnan(value) else None


# --- answering ------------------------------------------------------------------------------------


def parameter_columns(frame: pd.DataFrame) -> list[str]:
    """The run parameters among the frame's columns (spec fields, the run's info, any text column)."""
    return [c for c in frame.columns if c not in META_COLUMNS
            and (c in SPEC_FIELDS or c.startswith("info.") or not pd.api.types.is_numeric_dtype(frame[c]))]


def metric_columns(frame: pd.DataFrame) -> list[str]:
    parameters = set(parameter_columns(frame))
    return [c for c in frame.columns if c not in META_COLUMNS and c not in parameters]


def answer(frame: pd.DataFrame, query: Query) -> pd.DataFrame:
    """The query's table: the runs selected by `where`, then one row per run (`runs`), the groups'
    mean / std / count and failures (with POOLED_COLUMN when a varying axis was left out of the
    group-by), or, with neither group-by nor metric nor runs, the selected rows as they are."""
    from study.reading.results import aggregate

    parameters, metrics = parameter_columns(frame), metric_columns(frame)
    labels = query.labels
    errors = [_unknown(name, labels["group_by"], parameters, "a parameter of the sweep", metrics, "result metric")
              for name in query.group_by if name not in parameters]
    errors += [_unknown(name, labels["metric"], metrics, "a result metric", parameters, "parameter")
               for name in query.metrics if name not in metrics]
    selected, where_errors = select(frame, query.where, labels["where"], [*parameters, *metrics, "status"])
    errors = [line for line in errors if line] + where_errors
    if errors:
        raise StudyInputError(errors)
    if query.runs:
        return run_rows(selected, query.metrics)
    if not query.group_by and not query.metrics:
        return selected.reset_index(drop=True)
    table = aggregate(selected, query.group_by, query.metrics)
    pooled = pooled_axes(selected, query.group_by)
    if pooled:
        table[POOLED_COLUMN] = ", ".join(f"{name} ({count} values)" for name, count in pooled.items())
    return table


def _unknown(name: str, label: str, allowed: list[str], what: str, other: list[str], other_kind: str) -> str:
    if name in other:
        return f"{label}: got {name!r}, expected {what} ({name} is a {other_kind})"
    close = difflib.get_close_matches(name, allowed, n=1)
    if close:
        return f"{label}: got {name!r}, expected {what} (did you mean {close[0]}?)"
    listed = ", ".join(sorted(allowed)[:_LISTED]) + (", ..." if len(allowed) > _LISTED else "")
    return f"{label}: got {name!r}, expected {what} ({listed or 'the sweep has no runs yet'})"


def select(frame: pd.DataFrame, conditions: list[Condition], label: str, keys: list[str]) -> tuple[pd.DataFrame, list[str]]:
    """Rows meeting every condition, and the errors (unknown keys, values the key never takes)."""
    errors: list[str] = []
    mask = pd.Series(True, index=frame.index)
    for condition in conditions:
        if condition.key not in keys:
            errors.append(_unknown(condition.key, label, keys, "a parameter, result metric or status", [], ""))
            continue
        column = frame[condition.key]
        numeric = pd.api.types.is_numeric_dtype(column)
        if condition.op in _ORDER:
            if not numeric:
                errors.append(f"{label}: got {condition.text!r}, expected = or != for {condition.key}, which is not a number")
                continue
            mask &= column.notna() & _ORDER[condition.op](column, _number(condition.values[0]))
            continue
        present = column.dropna()
        if numeric:
            wanted = [_number(value) for value in condition.values]
            if None in wanted:
                errors.append(f"{label}: got {condition.text!r}, expected a number for {condition.key}")
                continue
            taken = set(present.astype(float))
        else:
            wanted, taken = list(condition.values), set(present.astype(str))
        missing = [value for value, want in zip(condition.values, wanted) if want not in taken]
        if missing:
            shown = ", ".join(_plain(v) for v in _sorted(taken)[:_LISTED]) or "no value"
            errors.append(f"{label}: got {condition.text!r}, expected a value {condition.key} takes in this sweep ({shown})")
            continue
        hit = column.isin(wanted) if numeric else column.notna() & column.astype(str).isin(wanted)
        mask &= hit if condition.op == "=" else column.notna() & ~hit
    if not errors and conditions and not mask.any():
        errors.append(f"{label}: got {','.join(c.text for c in conditions)!r}, which selects none of the sweep's {len(frame)} runs")
    return frame[mask], errors


def varying_axes(frame: pd.DataFrame) -> list[str]:
    """Spec parameters (not the seed) that take more than one value in these rows, by name."""
    columns = [c for c in frame.columns if c in SPEC_FIELDS and c not in _NOT_AXES]
    return sorted(c for c in columns if frame[c].nunique(dropna=False) > 1)


def pooled_axes(frame: pd.DataFrame, group_by: list[str]) -> dict[str, int]:
    """Spec parameters (not the seed) that vary inside some group: name -> most values in one group.
    Counted within groups, so a setting that only exists beside another axis's value is not reported."""
    columns = [c for c in frame.columns if c in SPEC_FIELDS and c not in _NOT_AXES and c not in group_by]
    if not columns or frame.empty:
        return {}
    counts = (frame.groupby(group_by, dropna=False)[columns].nunique(dropna=False).max() if group_by
              else frame[columns].nunique(dropna=False))
    return {name: int(count) for name, count in sorted(counts.items()) if count > 1}


def run_rows(frame: pd.DataFrame, metrics: list[str]) -> pd.DataFrame:
    """One row per run: the varying parameters, seed, metrics, status, reason, run id."""
    axes = varying_axes(frame)
    columns = [c for c in [*axes, "seed", *metrics, "status", "reason", "run_id"] if c in frame.columns]
    order = [c for c in [*axes, "seed"] if c in frame.columns]
    rows = frame[columns]
    return (rows.sort_values(order, kind="stable") if order else rows).reset_index(drop=True)


# --- the default table ----------------------------------------------------------------------------


def compact_cells(table: pd.DataFrame, query: Query) -> pd.DataFrame:
    """The aggregated table as text: group values, `mean ± std (count)` per metric, failures."""
    cells = pd.DataFrame({name: table[name].map(_plain) for name in query.group_by}, index=table.index)
    for metric in query.metrics:
        means, stds, counts = table[f"{metric}_mean"], table[f"{metric}_std"], table[f"{metric}_count"]
        mean_text, std_text = _column_formats(means.to_numpy(float), stds.to_numpy(float))
        cells[metric] = [_cell(mean, std, int(count), mean_text, std_text) for mean, std, count in zip(means, stds, counts)]
    cells["failed"] = table["failed"].astype(int).astype(str)
    if "pruned" in table.columns:
        cells["pruned"] = table["pruned"].astype(int).astype(str)
    return cells.reset_index(drop=True)


def column_text(values: Sequence[float]) -> list[str]:
    """One column of numbers without a spread (a Pareto front's means) as text, digits chosen for the column
    as in the default table; – where missing."""
    numbers = np.asarray(values, dtype=float)
    text, _ = _column_formats(numbers, np.full(numbers.shape, np.nan))
    return [text(v) if math.isfinite(v) else "–" for v in numbers]


def _column_formats(means: np.ndarray, stds: np.ndarray):
    """One format per column: the typical std gets two significant digits and the means as many
    decimals; scientific when the means are huge or tiny; four significant digits without spread."""
    sizes = np.abs(means[np.isfinite(means) & (means != 0)])
    spreads = stds[np.isfinite(stds) & (stds > 0)]
    scale = float(np.median(sizes)) if sizes.size else 1.0
    spread = float(np.median(spreads)) if spreads.size else None
    if sizes.size and (sizes.max() >= 1e5 or sizes.max() < 1e-3):
        digits = 4 if spread is None else min(max(math.floor(math.log10(scale)) - math.floor(math.log10(spread)) + 2, 2), 5)
        return (lambda v: f"{v:.{digits - 1}e}"), (lambda v: f"{v:.1e}")
    if spread is not None:
        decimals = min(max(1 - math.floor(math.log10(spread)), 0), 6)
    else:
        decimals = min(max(3 - math.floor(math.log10(scale)), 0), 6)
    return (lambda v: f"{v:.{decimals}f}"), (lambda v: f"{v:.{decimals}f}")


def _cell(mean: float, std: float, count: int, mean_text, std_text) -> str:
    if count == 0 or not math.isfinite(mean):
        return f"– ({count})"
    if not math.isfinite(std):
        return f"{mean_text(mean)} ({count})"
    return f"{mean_text(mean)} ± {std_text(std)} ({count})"


def _plain(value: object) -> str:
    """A parameter value as a person writes it: 30 rather than 30.0; – when absent."""
    if value is None or isinstance(value, float) and math.isnan(value):
        return "–"
    if isinstance(value, (float, np.floating)):
        return str(int(value)) if float(value).is_integer() and abs(value) < 1e15 else f"{value:.6g}"
    return str(value)


def _sorted(values: set) -> list:
    try:
        return sorted(values)
    except TypeError:  # mixed types
        return sorted(values, key=str)
