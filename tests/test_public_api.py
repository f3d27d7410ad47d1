"""The package's public face (`import study`) and what importing it, or the Ray task's module, loads."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

import study

ROOT = Path(__file__).resolve().parent.parent
HEAVY = ("mlflow", "optuna", "ray", "torch", "pandas", "matplotlib")


def _loaded_after(statement: str) -> dict:
    """Import in a fresh interpreter: which of HEAVY it loaded, and how long the statement took."""
    code = ("import json, sys, time\n"
            "started = time.perf_counter()\n"
            f"{statement}\n"
            "seconds = time.perf_counter() - started\n"
            f"print(json.dumps({{'seconds': seconds, 'loaded': [m for m in {HEAVY!r} if m in sys.modules]}}))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("name", study.__all__)
def test_every_public_name_resolves(name):
    value = getattr(study, name)
    assert value is not None and name in dir(study)
    assert getattr(value, "__name__", name) == name  # the object itself, not a module of that name


def test_the_public_face_covers_a_notebook_session():
    wanted = {"load_sweep", "submit", "load_results", "aggregate", "sweep_status", "list_sweeps", "parse_query",
              "answer", "build_report", "pareto_front", "importances", "StudyClient", "StudyInputError",
              "SweepNotFound", "SweepBusy", "SweepStartRefused"}
    assert wanted <= set(study.__all__)
    assert all(issubclass(getattr(study, error), Exception)
               for error in ("StudyInputError", "SweepNotFound", "SweepBusy", "SweepStartRefused", "ServiceError"))


def test_all_lists_each_name_once():
    assert len(set(study.__all__)) == len(study.__all__)


def test_an_unknown_name_is_an_attribute_error():
    with pytest.raises(AttributeError, match="no_such_thing"):
        study.no_such_thing  # noqa: B018


def test_import_study_is_cheap():
    """Nothing heavy at import; the time is a loose bound (a loaded 2-core box), the modules are exact."""
    found = _loaded_after("import study")
    assert found["loaded"] == []
    assert found["seconds"] < 1.0, found


def test_the_ray_task_module_loads_no_mlflow_optuna_matplotlib_or_pandas():
    found = _loaded_after("import study.scheduling.task")
    assert set(found["loaded"]) <= {"ray", "torch"}, found  # a worker starts with Ray; torch only when a run needs it


def test_workers_import_neither_study_ray_nor_mlflow():
    code = ("import sys, workers.run, workers.specs\n"
            "print(sorted(m for m in ('study', 'ray', 'mlflow', 'optuna') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120, check=True)
    assert out.stdout.strip() == "[]"


def test_no_import_cycles_in_study_or_workers():
    """Every import counts, function-level ones included (grimp reads the source, as lint-imports does);
    .importlinter's layers cannot see a cycle inside one layer, this can."""
    grimp = pytest.importorskip("grimp")
    graph = grimp.build_graph("study", "workers", cache_dir=None)
    edges = {m: set(graph.find_modules_directly_imported_by(m)) for m in graph.modules}
    cycles = [sorted(component) for component in _strongly_connected(edges) if len(component) > 1]
    assert cycles == [], "import cycles: " + "; ".join(" <-> ".join(c) for c in cycles)


def _strongly_connected(edges: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's algorithm, iterative (no recursion limit on long chains)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []
    for root in sorted(edges):
        if root in index:
            continue
        work = [(root, iter(sorted(edges[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(edges.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                components.append(component)
    return components


def test_study_version_and_shell_completion():
    from importlib.metadata import version

    from typer.testing import CliRunner

    from study.cli import app

    done = CliRunner().invoke(app, ["--version"])
    assert done.exit_code == 0 and done.stdout.strip() == f"study {version('deep-unfolding-study')}"
    shown = CliRunner().invoke(app, ["--help"], env={"COLUMNS": "200"})
    assert "--install-completion" in shown.stdout and "--version" in shown.stdout  # README: "Shell completion"
