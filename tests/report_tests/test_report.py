"""study report on a real SQLite MLflow store laid out as the coordinator writes it (design.md, MLflow)."""

from __future__ import annotations

import io
import re
from pathlib import Path

import pandas as pd
import pytest
from mlflow import MlflowClient
from mlflow.entities import Metric, Param

from study.report import page as report
from study.reading.results import aggregate, load_results
from tests.support.figure_data import dugd_result
from tests.support.cli import invoke
from tests.support.images import png_size

SWEEP_YAML = """name: {name}
method: grid
seeds: [0, 1]
parameters:
  problem: dugd
  T: [4, 8]
  n: [30, 40]
  kappa: 5
"""
SCALARS = ("lambda_min", "lambda_max", "root_error", "step_error", "rho", "rho_chebyshev")


def write_sweep(uri: str, name: str, points: list[dict], failures: list[dict] = ()) -> str:
    """A parent run with sweep.yaml, and one child per point with params, metrics and result.json."""
    client = MlflowClient(uri)
    experiment = client.create_experiment(name)
    parent = client.create_run(experiment, tags={"study.sweep_id": name, "study.kind": "sweep"}, run_name=name)
    client.log_text(parent.info.run_id, SWEEP_YAML.format(name=name), "sweep.yaml")
    for index, point in enumerate([*points, *failures]):
        failed = "reason" in point
        result = None if failed else dugd_result(T=point["T"], n=point["n"], seed=point["seed"], kappa=5.0, noise=0.02 * point["n"] / 10)
        params = {"problem": "dugd", "kappa": 5.0, **{k: v for k, v in point.items() if k != "reason"}}
        child = client.create_run(experiment, tags={
            "mlflow.parentRunId": parent.info.run_id, "study.sweep_id": name, "study.kind": "run", "study.run_key": f"key{index:03d}",
            **({"study.reason": point["reason"]} if failed else {})})
        metrics = [] if failed else [Metric(k, result[k], 0, 0) for k in SCALARS]
        client.log_batch(child.info.run_id, params=[Param(k, str(v)) for k, v in params.items()], metrics=metrics)
        if result is not None:
            client.log_dict(child.info.run_id, result, "result.json")
        client.set_terminated(child.info.run_id, status="FAILED" if failed else "FINISHED")
    client.set_terminated(parent.info.run_id, status="FINISHED")
    return parent.info.run_id


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """One SQLite store for the module (creating one costs seconds), holding three sweeps the tests only read:
    grid (T × n × 2 seeds, one failure with HTML in its reason), flat (seeds only), doomed (all failed)."""
    uri = f"sqlite:///{tmp_path_factory.mktemp('store') / 'mlflow.db'}"
    points = [{"T": T, "n": n, "seed": s} for T in (4, 8) for n in (30, 40) for s in (0, 1)]
    failures = [{"T": 8, "n": 40, "seed": 2, "reason": "RuntimeError: <script>alert('x')</script> diverged & died"}]
    parents = {"grid": write_sweep(uri, "grid", points, failures)}
    parents["flat"] = write_sweep(uri, "flat", [{"T": 6, "n": 30, "seed": s} for s in (0, 1, 2)])
    parents["doomed"] = write_sweep(uri, "doomed", [], [{"T": 4, "n": 30, "seed": 0, "reason": "ValueError: bad"}])
    return uri, parents


@pytest.fixture
def grid_store(store):
    uri, parents = store
    return uri, parents["grid"]


def referenced_files(index: Path) -> list[str]:
    return re.findall(r'(?:src|href)="([^"]+)"', index.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def grid_report(store, tmp_path_factory):
    uri, parents = store
    return report.build_report("grid", tmp_path_factory.mktemp("report") / "out", tracking_uri=uri), uri, parents["grid"]


def test_report_files_exist_are_pngs_and_are_logged(grid_report):
    made, uri, parent = grid_report
    assert made.swept == ["T", "n"]  # kappa is single-valued, seed is the replicate axis
    assert made.counts == {"runs": 9, "done": 8, "failed": 1, "other": 0}
    links = referenced_files(made.index)
    # heatmap + one line plot per swept axis + the parameter importance bar chart
    # + steps/roots overlays of the 2 largest and 2 smallest runs
    assert len(links) == 1 + 2 + 1 + 4 * 2
    for link in links:
        path = made.index.parent / link
        assert path.is_file(), link
        assert png_size(path.read_bytes())[0] >= 400 and path.stat().st_size > 5_000
    logged = {Path(a.path).name for a in MlflowClient(uri).list_artifacts(parent, "report")}
    assert {"index.html", "table.csv", *links} <= logged


def test_report_table_equals_study_results(grid_report):
    made, uri, _ = grid_report
    done = invoke("results", "grid", "--group-by", "T,n", "--metric", "root_error", "--format", "csv", "--tracking-uri", uri)
    assert done.exit_code == 0, done.output
    from_cli = pd.read_csv(io.StringIO(done.stdout))
    pd.testing.assert_frame_equal(pd.read_csv(made.index.parent / "table.csv"), from_cli, check_exact=True)
    # and the aggregation itself: mean over the two seeds of the logged metric
    frame = load_results("grid", uri)
    cell = frame[(frame["T"] == 8) & (frame["n"] == 30) & (frame["status"] == "FINISHED")]["root_error"]
    row = made.table[(made.table["T"] == 8) & (made.table["n"] == 30)].iloc[0]
    assert row["root_error_mean"] == pytest.approx(cell.mean(), rel=1e-12) and row["root_error_count"] == 2
    assert made.table[(made.table["T"] == 8) & (made.table["n"] == 40)]["failed"].item() == 1


def test_report_escapes_text_and_lists_failures(grid_report):
    text = grid_report[0].index.read_text(encoding="utf-8")
    assert "<script>" not in text
    assert "&lt;script&gt;alert(" in text and "&lt;/script&gt; diverged &amp; died" in text
    assert "T: [4, 8]" in text  # the sweep file is on the page


def test_single_value_axes_and_missing_heatmap_axes(store, tmp_path):
    mlflow_uri, _ = store
    made = report.build_report("flat", tmp_path / "flat", x="kappa", y="mode", panel="lr", tracking_uri=mlflow_uri)
    assert made.swept == [] and len(made.table) == 1 and made.table["root_error_count"].item() == 3
    frame = load_results("flat", mlflow_uri)
    assert made.table["root_error_mean"].item() == pytest.approx(frame["root_error"].mean(), rel=1e-12)
    for link in referenced_files(made.index):
        assert (made.index.parent / link).is_file()
    assert "heatmap_root_error.png" in referenced_files(made.index)


def test_all_failed_sweep_reports_failures_only(store, tmp_path):
    mlflow_uri, _ = store
    made = report.build_report("doomed", tmp_path / "doomed", tracking_uri=mlflow_uri)
    assert made.counts["failed"] == 1 and made.table is None and made.figures == []
    assert "ValueError: bad" in made.index.read_text()


def test_report_and_plot_cli(grid_store, tmp_path, monkeypatch):
    uri, _ = grid_store
    monkeypatch.chdir(tmp_path)
    done = invoke("report", "grid", "-o", "rep", "--x", "n", "--y", "T", "--panel", "kappa", "--tracking-uri", uri)
    assert done.exit_code == 0, done.output
    assert (tmp_path / "rep" / "index.html").is_file() and "1 failed" in done.stdout
    bad = invoke("report", "nope", "--tracking-uri", uri)
    assert bad.exit_code == 2 and "nope" in bad.stderr and len(bad.stderr.strip().splitlines()) == 1
    bad = invoke("report", "grid", "--metric", "root_eror", "--tracking-uri", uri)
    assert bad.exit_code == 2 and "root_eror" in bad.stderr and len(bad.stderr.strip().splitlines()) == 1
    done = invoke("results", "grid", "--group-by", "T,n", "--plot", "T", "--tracking-uri", uri)
    assert done.exit_code == 0, done.output
    assert png_size((tmp_path / "grid_root_error_by_T.png").read_bytes())[0] >= 400
    bad = invoke("results", "grid", "--group-by", "T", "--plot", "kappa", "--tracking-uri", uri)
    assert bad.exit_code == 2 and "kappa" in bad.stderr


def test_metric_lines_follow_the_aggregate(grid_store):
    from study.report.sweep_figures import metric_by_axis_figure

    uri, _ = grid_store
    frame = load_results("grid", uri)
    figure = metric_by_axis_figure(frame, "root_error", "T", ["T", "n"])
    table = aggregate(frame, ["T", "n"], ["root_error"])
    lines = {bars.get_label(): bars.lines[0] for bars in figure.axes[0].containers}  # errorbar containers
    assert set(lines) == {"n=30", "n=40"}
    expected = table[table["n"] == 30].sort_values("T")["root_error_mean"].to_numpy()
    assert list(lines["n=30"].get_ydata()) == pytest.approx(list(expected), rel=1e-12)


def test_figure_stage_logs_figures_on_child_runs(store, tmp_path, monkeypatch):
    # its own sweep, so the module's shared store stays read-only for the other tests
    uri, _ = store
    write_sweep(uri, "staged", [{"T": 4, "n": 30, "seed": s} for s in (0, 1)],
                [{"T": 4, "n": 30, "seed": 2, "reason": "ValueError: bad"}])
    done = invoke("figures", "staged", "--tracking-uri", uri)
    assert done.exit_code == 0, done.output
    assert "logged for 2 runs; 0 had them; 1 with nothing to draw" in done.stdout
    client = MlflowClient(uri)
    frame = load_results("staged", uri)
    for run_id, status in zip(frame["run_id"], frame["status"]):
        names = {Path(a.path).name for a in client.list_artifacts(run_id, "figures")}
        if status == "FINISHED":
            assert names == {"summary.png"}
            png = Path(client.download_artifacts(run_id, "figures/summary.png", str(tmp_path)))
            assert png_size(png.read_bytes())[0] >= 600
        else:
            assert names == set()
    again = invoke("figures", "staged", "--tracking-uri", uri)
    assert "logged for 0 runs; 2 had them" in again.stdout
    assert invoke("figures", "nope", "--tracking-uri", uri).exit_code == 2


@pytest.mark.parametrize("axis, values, scale, whole_ticks", [
    ("T", [2, 3, 4], "linear", True),           # layers: integer ticks, never 2.25 (matplotlib's default)
    ("T", [4.0, 8.0], "linear", True),          # whole numbers read back from MLflow params as floats
    ("kappa", [10, 30, 100], "log", False),      # spans a decade
    ("lr", [1e-4, 1e-3, 1e-2], "log", False),
])
def test_metric_lines_axes_log_over_decades_integer_for_counts(axis, values, scale, whole_ticks):
    from study.report.sweep_figures import metric_lines_figure

    count = len(values)
    table = pd.DataFrame({axis: values, "root_error_mean": [0.3, 0.2, 0.1][:count], "root_error_std": [0.01] * count,
                          "root_error_count": [2] * count, "failed": [0] * count})
    axes = metric_lines_figure(table, axis, "root_error").axes[0]
    assert axes.get_xscale() == scale
    if whole_ticks:
        ticks = [t for t in axes.get_xticks() if min(values) <= t <= max(values)]
        assert len(ticks) >= 2 and all(float(t).is_integer() for t in ticks), ticks


def test_report_page_table_reads_like_study_results(grid_report):
    """The page's table holds the cells `study results` prints: `mean ± std (count)`, not raw floats."""
    made, uri, _ = grid_report
    page = made.index.read_text(encoding="utf-8")
    table = page[page.index('<table border="1" class="dataframe results">'):]
    cells = re.findall(r"<td>([^<]*)</td>", table[: table.index("</table>")])
    means = [c for c in cells if "±" in c]
    assert len(means) == 4 and all(re.fullmatch(r"\d+\.\d+ ± \d+\.\d+ \(2\)", c) for c in means), cells
    assert not re.search(r"\de-\d", " ".join(cells))  # no 7.17188e-05
