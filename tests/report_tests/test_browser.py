"""A real browser on what users open: headless Chromium (Chrome DevTools protocol, tests/support/browser.py)
loads the sweep report over loopback HTTP and checks that every figure decodes and that its table reads
like `study results` (mean ± std (count)), and opens the MLflow UI on a test store and checks that the
classic runs view lists the runs by their point names.

Skipped, loudly, where no Chromium exists; CI sets CI_REQUIRE_BROWSER=1 and so fails instead.
"""

from __future__ import annotations

import functools
import http.server
import os
import re
import threading
from pathlib import Path

import pytest
from mlflow import MlflowClient

import study.mlflow_names as names

from study.report import page as report
from study.spec.loading import load_sweep
from tests.support import browser
from tests.support.mlflow import write_sweep

pytestmark = pytest.mark.browser

SWEEP = """
name: browse
seeds: [0, 1]
parameters:
  problem: dugd
  n: 16
  T: [4, 8]
  kappa: [10, 30]
  mode: expected
  batches_per_generation: 5
  eval_samples: 10
"""
CHILD_NAMES = {f"T={T} kappa={kappa} s={seed}" for T in (4, 8) for kappa in (10, 30) for seed in (0, 1)}


@pytest.fixture(scope="module")
def chromium():
    executable = browser.browser_path()
    missing = None
    if executable is None:
        missing = f"no Chromium on PATH (looked for {', '.join(browser.BROWSER_NAMES)}); .ci/system-deps.sh installs Debian's `chromium`"
    else:
        try:
            import websocket  # noqa: F401 - websocket-client, the `test` extra
        except ImportError:
            missing = "websocket-client is not installed (pip install -e '.[test]')"
    if missing:
        if os.environ.get("CI_REQUIRE_BROWSER") == "1":
            pytest.fail(f"CI_REQUIRE_BROWSER=1 but the browser tests cannot run: {missing}")
        pytest.skip(f"BROWSER NOT TESTED: {missing}")
    started = browser.Browser(executable)
    yield started
    started.close()


@pytest.fixture(scope="module")
def sweep_store(tmp_path_factory):
    """A SQLite store with one finished 8-run DUGD sweep, written as the coordinator writes it."""
    base = tmp_path_factory.mktemp("browser-store")
    uri = f"sqlite:///{base / 'mlflow.db'}"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("STUDY_SPOOL_DIR", str(base / "spool"))
        sweep = load_sweep(SWEEP)
        write_sweep(sweep, uri)
    return uri, base


@pytest.fixture
def served():
    """Serve a folder over loopback HTTP; returns a function folder -> base URL."""
    servers = []

    def serve(folder: Path) -> str:
        handler = functools.partial(QuietHandler, directory=str(folder))
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}"

    yield serve
    for server in servers:
        server.shutdown()
        server.server_close()


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:  # keep pytest's output clean
        pass


# Per <img>: its src, whether it finished loading, and its decoded width (0: missing or not an image).
IMAGES_JS = """Array.from(document.images).map(i => ({src: i.getAttribute('src'), complete: i.complete, width: i.naturalWidth}))"""


# The aggregated table as the browser renders it: header cells, then each row's cells (innerText).
TABLE_JS = """Array.from(document.querySelectorAll('table.results tr')).map(r => Array.from(r.cells).map(c => c.innerText.trim()))"""


def test_report_page_every_figure_loads_in_chromium(chromium, sweep_store, served, monkeypatch):
    uri, base = sweep_store
    monkeypatch.setenv("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    made = report.build_report("browse", base / "report", tracking_uri=uri)
    linked = re.findall(r'<img[^>]+src="([^"]+)"', made.index.read_text(encoding="utf-8"))
    # heatmap, one line plot per swept axis (T, kappa), the parameter importances, and the steps and
    # roots of the 2 largest and 2 smallest runs
    assert len(linked) == 1 + 2 + 1 + 4 * 2

    page = chromium.new_page()
    url = served(made.index.parent)
    page.navigate(f"{url}/index.html")
    images = page.wait_for(f"(() => {{ const s = {IMAGES_JS}; return s.every(i => i.complete) && s; }})()", 30,
                           "report images finish loading")
    assert [image["src"] for image in images] == linked
    assert [image["src"] for image in images if image["width"] < 400] == []  # figures are >= 400 px wide

    # The table reads like `study results`: `mean ± std (count)` with digits chosen per column, not 7.17188e-05.
    rows = page.evaluate(TABLE_JS)
    assert rows[0] == ["T", "kappa", "root_error", "failed"]
    assert len(rows) == 1 + 4 and all(re.fullmatch(r"\d\.\d+ ± \d\.\d+ \(2\)", row[2]) for row in rows[1:]), rows
    assert {(row[0], row[1]) for row in rows[1:]} == {("4", "10"), ("4", "30"), ("8", "10"), ("8", "30")}

    # The check sees a broken figure: remove one file and the browser decodes it as width 0.
    (made.index.parent / linked[0]).unlink()
    page.navigate(f"{url}/index.html")
    images = page.wait_for(f"(() => {{ const s = {IMAGES_JS}; return s.every(i => i.complete) && s; }})()", 30,
                           "report images finish loading")
    assert [image["src"] for image in images if image["width"] == 0] == [linked[0]]


def test_mlflow_ui_classic_view_lists_runs_by_point_name(chromium, sweep_store):
    uri, base = sweep_store
    experiment = MlflowClient(uri).get_experiment_by_name("browse")
    assert experiment.tags[names.TAG_EXPERIMENT_KIND] == names.EXPERIMENT_KIND_RUNS
    ui, url = browser.start_mlflow_ui(uri, base)
    try:
        page = chromium.new_page()
        shown = browser.open_classic_runs_view(page, url, experiment.experiment_id, "browse", len(CHILD_NAMES))
        assert sorted(shown) == sorted(CHILD_NAMES | {"browse"})  # the parent and its 8 children, once each
        text = page.evaluate("document.body.innerText")
        assert "9 matching runs" in text, text[-800:]
    finally:
        ui.stop()
