"""Loading a sweep file: YAML (or JSON) text or a path into a validated Sweep, with one line per error.

Every parameter value is checked against the problem's spec model (workers/specs.py, through
study.spec.checks), so a sweep with an error never reaches Ray or MLflow. The schema itself (Sweep,
RunPoint, run_key, ...) lives in study.spec.schema; its names are importable from here too.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from study.errors import StudyInputError, describe_validation_error, short
from study.spec.objectives import Metric
from study.spec.checks import check_method, check_parameters, explain_name
from study.spec.schema import (MAX_GRID_RUNS, MAX_SEED, SEARCH_METHODS, Budget, Distribution, Resources, RunPoint,
                                Sweep, Tracking, grid_size, run_key)

# A sweep file is a few dozen values; these caps stop YAML alias bombs ("billion laughs") and
# absurd nesting before validation walks them (aliases are shared references until expanded).
MAX_DOCUMENT_VALUES = 1_000_000
MAX_DOCUMENT_DEPTH = 32

__all__ = ["MAX_DOCUMENT_DEPTH", "MAX_DOCUMENT_VALUES", "MAX_GRID_RUNS", "MAX_SEED", "SEARCH_METHODS", "Budget",
           "Distribution", "Metric", "Resources", "RunPoint", "Sweep", "Tracking", "flatten", "grid_size", "load_sweep",
           "run_key"]


def load_sweep(source: str | os.PathLike[str]) -> Sweep:
    """Load and validate a sweep file (a path, or YAML / JSON text). Raises StudyInputError with
    every problem found, one line each: `key: got VALUE, expected ...`."""
    text = _read(source)
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(error, "problem", None) or str(error).splitlines()[0]
        raise StudyInputError([f"sweep file: invalid YAML{where}: {problem}"]) from None
    except (ValueError, RecursionError) as error:  # an int past Python's digit limit; nesting past the stack
        reason = "nesting too deep" if isinstance(error, RecursionError) else str(error).split(";")[0]
        raise StudyInputError([f"sweep file: unreadable YAML: {reason}"]) from None
    _check_document_size(data)
    if data is None:  # nothing but blank lines or comments
        raise StudyInputError(["sweep file: got an empty document, expected a mapping of sweep settings (name, parameters, ...)"])
    if not isinstance(data, dict):
        raise StudyInputError([f"sweep file: got {short(data)}, expected a mapping of sweep settings"])
    try:
        sweep = Sweep.model_validate(data)
    except ValidationError as error:
        errors = [explain_name(line) for line in describe_validation_error(error)]
        if isinstance(data.get("metric"), dict):  # one metric is held as a list of one: say metric.goal, not metric.0.goal
            errors = [line.replace("metric.0.", "metric.", 1) if line.startswith("metric.0.") else line for line in errors]
        # Report the parameters' errors too, so one pass over the file shows every problem.
        if isinstance(data.get("parameters"), dict) and data["parameters"]:
            method = data.get("method") if data.get("method") in SEARCH_METHODS else "grid"
            lenient = Sweep.model_construct(parameters=data["parameters"], method=method, seeds=[0], budget=None)
            errors += check_parameters(lenient, full_points=False)
        raise StudyInputError(errors) from None
    sweep._source_text = text
    errors = check_method(sweep) + check_parameters(sweep)
    if errors:
        raise StudyInputError(errors)
    return sweep


def _check_document_size(data: Any) -> None:
    """Reject documents that expand (through YAML aliases) past MAX_DOCUMENT_VALUES values, nest
    deeper than MAX_DOCUMENT_DEPTH, or refer to themselves. Linear in the document as parsed."""
    sizes: dict[int, int] = {}
    open_ids: set[int] = set()

    def size(node: Any, depth: int) -> int:
        if not isinstance(node, (dict, list)):
            return 1
        if depth > MAX_DOCUMENT_DEPTH:
            raise StudyInputError([f"sweep file: got values nested deeper than {MAX_DOCUMENT_DEPTH} levels, expected a flat sweep file"])
        if id(node) in open_ids:
            raise StudyInputError(["sweep file: got a YAML alias that refers to itself, expected a finite document"])
        if id(node) not in sizes:
            open_ids.add(id(node))
            children = [*node.keys(), *node.values()] if isinstance(node, dict) else node
            total = 1
            for child in children:
                total += size(child, depth + 1)
                if total > MAX_DOCUMENT_VALUES:
                    raise StudyInputError([f"sweep file: got more than {MAX_DOCUMENT_VALUES} values once YAML aliases are expanded, expected at most {MAX_DOCUMENT_VALUES}"])
            open_ids.discard(id(node))
            sizes[id(node)] = total
        return sizes[id(node)]

    size(data, 0)


def _read(source: str | os.PathLike[str]) -> str:
    if isinstance(source, os.PathLike):
        path = Path(source)
    elif "\n" in source or source.lstrip().startswith("{") or not source.strip():
        return source  # text (an empty string is an empty document, not the path "")
    else:
        path = Path(source)
        if not path.exists() and ":" in source:
            return source  # a one-line YAML mapping such as "name: x"
    try:
        return path.read_text()
    except OSError as error:
        raise StudyInputError([f"sweep file: got {str(path)!r}, expected a readable file ({error.strerror})"]) from None


def flatten(data: Any, prefix: str = "") -> dict[str, str]:
    """Flatten nested mappings into dotted keys with string values (for MLflow params)."""
    if isinstance(data, dict):
        out: dict[str, str] = {}
        for key, value in data.items():
            out.update(flatten(value, f"{prefix}{key}."))
        return out
    return {prefix.rstrip("."): json.dumps(data) if isinstance(data, list) else str(data)}
