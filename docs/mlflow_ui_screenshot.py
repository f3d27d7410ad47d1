"""docs/mlflow-ui.png: a sweep in the MLflow UI's classic runs view, taken by headless Chromium the
way tests/report_tests/test_browser.py drives it. After `make demo`, from the repository root:

    PYTHONPATH=. .venv/bin/python docs/mlflow_ui_screenshot.py --tracking-uri sqlite:///$PWD/mlflow.db
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

from mlflow import MlflowClient

from tests import browser


HIDDEN_ATTRIBUTES = ("Dataset", "Source", "Models")  # empty for these runs: room for metrics instead


def _option(text: str) -> str:
    """JS for the column selector's entry labelled exactly `text` (its smallest such element)."""
    return f"""Array.from(document.querySelectorAll('label, [role=menuitemcheckbox], [role=option], span'))
      .filter(e => e.innerText && e.innerText.trim() === {json.dumps(text)}).pop()"""


def arrange_columns(page: browser.Page, metrics: list[str]) -> None:
    """Show the chosen metrics instead of the empty attribute columns, and widen Run Name so the
    point names show whole."""
    page.click("""document.querySelector('button[data-component-id*="columnselector"]')""")
    search = """document.querySelector('input[placeholder="Search columns"]')"""
    page.wait_for(f"!!{search}", 15, "the column selector")
    for attribute in HIDDEN_ATTRIBUTES:
        page.click(_option(attribute))
    for metric in metrics:
        page.evaluate(f"{search}.focus() || {search}.select()")
        page.type_text(metric)
        page.wait_for(f"!!({_option(metric)})", 15, f"column option {metric}")
        page.click(_option(metric))
    page.press_escape()
    handle = """document.querySelector('.ag-header-cell[col-id="attributes.`Run Name`"] .ag-header-cell-resize')"""
    # Its left edge: the handle's right half lies under the next column's header.
    x, y = page.evaluate(f"(() => {{ const r = {handle}.getBoundingClientRect(); return [r.x + 2, r.y + r.height / 2]; }})()")
    page.drag(x, y, 90)
    page.send("Input.dispatchMouseEvent", type="mouseMoved", x=1, y=1)  # no header tooltip in the picture


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tracking-uri", default=f"sqlite:///{Path.cwd() / 'mlflow.db'}")
    parser.add_argument("--experiment", default="quick", help="the sweep's name")
    parser.add_argument("-o", "--output", default="docs/mlflow-ui.png")
    parser.add_argument("--width", type=int, default=1500)
    parser.add_argument("--height", type=int, default=900)
    parser.add_argument("--metrics", default="root_error,rho_ratio,mse_ratio", help="metric columns to show")
    args = parser.parse_args(argv)

    client = MlflowClient(args.tracking_uri)
    experiment = client.get_experiment_by_name(args.experiment)
    if experiment is None:
        print(f"error: --experiment: got {args.experiment!r}, expected an experiment in {args.tracking_uri}", file=sys.stderr)
        return 2
    children = client.search_runs([experiment.experiment_id], "tags.`study.kind` = 'run'", max_results=5000)
    executable = browser.browser_path()
    if executable is None:
        print("error: no Chromium on PATH (apt-get install chromium)", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="study-ui-shot-") as logs:
        ui, url = browser.start_mlflow_ui(args.tracking_uri, Path(logs))
        chromium = browser.Browser(executable, width=args.width, height=args.height)
        try:
            page = chromium.new_page()
            page.set_viewport(args.width, args.height)
            shown = browser.open_classic_runs_view(page, url, experiment.experiment_id, args.experiment, len(children))
            arrange_columns(page, args.metrics.split(","))
            time.sleep(2.0)  # let the table finish its layout before the picture
            page.screenshot(Path(args.output))
        finally:
            chromium.close()
            ui.stop()
    print(f"{args.output}: {len(shown)} runs shown, e.g. {[name for name in shown if name != args.experiment][:3]}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
